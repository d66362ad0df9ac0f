"""Backward rules: ReLUs whose forward pass is ReLU and whose backward pass is a chosen rule.

A rule is one small function `backward(x, g) -> grad_in` of the ReLU's input `x` and the
incoming gradient `g` (R_{l+1}); `relu_rule(backward)` turns it into a `jax.custom_vjp`
activation that any model takes as its `act` (seeds 003/004):

    backprop         R_l = (f_l > 0) · R_{l+1}
    deconvnet        R_l = (R_{l+1} > 0) · R_{l+1}
    guided backprop  R_l = (f_l > 0) · (R_{l+1} > 0) · R_{l+1}

Max-pooling keeps its ordinary VJP, which routes the gradient through the forward switches,
as deconvnet prescribes. `with_rule(model, act, layers=...)` applies a rule to all or some ReLUs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp

Backward = Callable[[jax.Array, jax.Array], jax.Array]


def relu_rule(backward: Backward, name: str | None = None) -> Callable[[jax.Array], jax.Array]:
    """A ReLU whose VJP is `backward(x, g)`; forward is always `max(x, 0)`."""

    @jax.custom_vjp
    def relu(x):
        return jnp.maximum(x, 0)

    def fwd(x):
        return jnp.maximum(x, 0), x

    def bwd(x, g):
        return (backward(x, g).astype(g.dtype),)

    relu.defvjp(fwd, bwd)
    relu.__name__ = relu.__qualname__ = name or getattr(backward, "__name__", "relu_rule")
    return relu


def _backprop(x, g):
    return jnp.where(x > 0, g, 0)


def _deconvnet(x, g):
    return jnp.maximum(g, 0)


def _guided(x, g):
    return jnp.where((x > 0) & (g > 0), g, 0)


backprop_relu = relu_rule(_backprop, "backprop_relu")
deconvnet_relu = relu_rule(_deconvnet, "deconvnet_relu")
guided_relu = relu_rule(_guided, "guided_relu")

RULES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "backprop": backprop_relu, "deconvnet": deconvnet_relu, "guided": guided_relu}


def with_rule(model, act: Callable[[jax.Array], jax.Array], layers: Iterable[str] | str | None = None):
    """The same model (same params) with `act` at the chosen activation layers.

    Args:
      model: a `SequentialNet`.
      act: the activation, e.g. `guided_relu` or your own `relu_rule(...)`.
      layers: None for every activation layer; `"features"` for the convolutional part only
        (seed 000 applies guided ReLUs there); or an iterable of layer names/aliases.
    """
    _check_relu_model(model)
    if layers is None:
        return model.clone(act=act, layer_acts=())
    names = model.act_layers()
    if layers == "features":
        chosen = [n for n in names if not _after_flatten(model, n)]
    else:
        chosen = [model.layers()[model.resolve(n)].name for n in layers]
        bad = [n for n in chosen if n not in names]
        if bad:
            raise ValueError(f"layers {bad} are not activation layers; rules apply to: {', '.join(names)}")
    return model.clone(layer_acts=tuple((n, act) for n in chosen))


def _check_relu_model(model) -> None:
    """Rules replace ReLUs; swapping one in for tanh (LeNet-5) would silently change the forward pass."""
    with jax.ensure_compile_time_eval():  # concrete even while a method is being traced
        probe = jnp.array([-1.0, 0.5])
        relu_like = bool(jnp.all(model.act(probe) == jnp.maximum(probe, 0)))
    if not relu_like:
        raise ValueError(f"{type(model).__name__} uses {getattr(model.act, '__name__', model.act)}, not ReLU: "
                         "ReLU backward rules (deconvnet, guided backprop) do not apply; use saliency, "
                         "gradient_x_input, smoothgrad, integrated_gradients or occlusion")


def _after_flatten(model, name: str) -> bool:
    kinds = [layer.kind for layer in model.layers()]
    cut = next((i for i, k in enumerate(kinds) if k in ("flatten", "gap", "gmp")), len(kinds))
    return model.resolve(name) > cut
