"""The model interface: any model becomes one pure program `(variables, x) -> logits`.

Every method, metric, optvis objective and inspect tool takes `(model, variables, x, ...)` where
`model` is one of

- a `flax.linen.Module` with its full variables dict (`{"params": ..., "batch_stats": ...}`), run in
  inference mode: `train=False` / `deterministic=True` are passed when `__call__` has such an
  argument, and `apply_kwargs` (see `as_net`) overrides or adds keywords;
- a `flax.nnx.Module` (its variables: None or `nnx.state(module)`; split and merged inside, put in
  `.eval()` mode);
- a plain JAX function `f(x) -> logits` with `variables=None`, or `f(variables, x)` with variables
  (Equinox, Haiku's `apply`, hand-written code): everything that needs no named layer works;
- a `Net`, the normalized form (`as_net(model)`), which also carries backward rules
  (`net.with_rules(composite)`, see `jaxviz.rules`).

Layers are named by module path with dots, as torchvision names modules (`features.28`, `layer4`,
`layer4.2.conv3`); a block's name means its output. Models may add aliases (`conv5_3`) through a
`layer_aliases()` method. `taps.py` reads activations and gradients at any such layer.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .rules.composite import as_composite, on_layers


class Attribution(NamedTuple):
    """What every attribution method returns.

    maps: `(N, H, W, C)` for gradient methods, `(N, H, W)` for CAM-like and perturbation methods.
    index: `(N,)` the explained class (or unit channel) per image.
    out: the model output at the target's layer (the logits for class targets).
    extras: method-specific values, e.g. Integrated Gradients' `{"completeness": (N,)}`.
    """

    maps: jax.Array
    index: jax.Array
    out: jax.Array
    extras: dict = {}


class LayerError(KeyError):
    """An unknown layer name; the message lists what exists."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


LINEN, NNX, FUNCTION = "linen", "nnx", "function"

# Keyword arguments that put a module in inference mode, when its __call__ takes them.
_INFERENCE_KWARGS = {"train": False, "training": False, "is_training": False, "deterministic": True}


@dataclass(frozen=True)
class Net:
    """A model normalized to one program, with the backward rules it runs under.

    `source` is the linen module, the NNX graph definition or the function; `kind` says which.
    `apply_kwargs` are keyword arguments of every call (sorted pairs); `rules` a
    `jaxviz.rules.Composite` or None (the model's own VJPs). Hashable: compiled functions are
    cached by it, and two Nets with equal fields share one compilation.
    """

    source: Any
    kind: str
    apply_kwargs: tuple = ()
    rules: Any = None
    name: str = field(default="", compare=False)

    def with_rules(self, rules) -> Net:
        """The same model with a composite (or a single ReLU rule for every ReLU); None removes them."""
        return replace(self, rules=None if rules is None else as_composite(rules))

    @property
    def module(self):
        """The linen module (None for NNX graphs and functions)."""
        return self.source if self.kind == LINEN else None

    @property
    def num_classes(self) -> int | None:
        n = getattr(self.source, "num_classes", None)
        return n if isinstance(n, int) else None

    def aliases(self) -> dict[str, str]:
        """`{alias: module path}` the model declares (e.g. `conv5_3`, `features.28`)."""
        fn = getattr(self.source, "layer_aliases", None)
        return dict(fn()) if callable(fn) else {}

    def resolve(self, name: str, known: list[str] | None = None) -> str:
        """The module path of a layer name or alias. `known` (all paths), when given, is checked."""
        name = str(name)
        path = self.aliases().get(name, name)
        if known is None or path in known:
            return path
        every = list(known) + list(self.aliases())
        close = difflib.get_close_matches(name, every, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        shown = ", ".join(known[:60]) + (f", ... ({len(known)} in all)" if len(known) > 60 else "")
        raise LayerError(
            f"unknown layer {name!r} for {self.name or self.kind}.{hint} Layers: {shown} "
            f"(`jaxviz models` or `jaxviz.taps.layer_table` lists them with shapes)"
        )


def as_net(model, apply_kwargs: dict | None = None) -> Net:
    """Normalize `model` (linen module, NNX module, function or Net) to a `Net`.

    `apply_kwargs` are passed to every call (e.g. `{"train": False}`); by default inference-mode
    keywords (`train=False`, `training=False`, `is_training=False`, `deterministic=True`) are passed
    when the module's `__call__` takes them.
    """
    if isinstance(model, Net):
        if apply_kwargs:
            return replace(model, apply_kwargs=tuple(sorted({**dict(model.apply_kwargs), **apply_kwargs}.items())))
        return model
    import flax.linen as nn

    if isinstance(model, nn.Module):
        kw = _inference_kwargs(type(model).__call__)
        kw.update(apply_kwargs or {})
        return Net(model, LINEN, tuple(sorted(kw.items())), name=type(model).__name__)
    nnx = _nnx()
    if nnx is not None and isinstance(model, nnx.Module):
        graphdef, _ = nnx.split(model)
        kw = _inference_kwargs(type(model).__call__)
        kw.update(apply_kwargs or {})
        return Net(graphdef, NNX, tuple(sorted(kw.items())), name=type(model).__name__)
    if callable(model):
        return Net(
            model,
            FUNCTION,
            tuple(sorted((apply_kwargs or {}).items())),
            name=getattr(model, "__name__", type(model).__name__),
        )
    raise TypeError(
        f"model must be a flax.linen Module, a flax.nnx Module, a function or a jaxviz Net; got {type(model).__name__}"
    )


def with_rule(model, rule, layers=None) -> Net:
    """`model` (any kind) with `rule` at its ReLUs — all of them, or those under the `layers` paths.

    Raises ValueError when the composite would touch no ReLU (a tanh LeNet-5, a wrong path) only when
    the model runs (see `jaxviz.taps.check_applies`).
    """
    return as_net(model).with_rules(on_layers(rule, layers))


def prepare(model, variables):
    """`(Net, variables)` for a method call: an NNX module's state is taken when `variables` is None."""
    net = as_net(model)
    return net, as_variables(net, model if variables is None and net.kind == NNX else variables)


def as_variables(net: Net, variables):
    """The variables pytree a Net's program takes (an NNX module gives its state)."""
    nnx = _nnx()
    if nnx is not None and isinstance(variables, nnx.Module):
        return nnx.state(variables)
    if (
        net.kind == LINEN
        and variables is not None
        and not isinstance(variables, dict)
        and not hasattr(variables, "keys")
    ):
        raise TypeError(
            f"variables for {net.name} must be a dict like {{'params': ...}}, got {type(variables).__name__}"
        )
    if net.kind == NNX and (variables is None or isinstance(variables, Net)):
        raise TypeError(
            f"{net.name} is an NNX model held as a Net: pass its state as variables "
            f"(the NNX module itself, or nnx.state(module))"
        )
    if net.kind in (LINEN, NNX) and variables is None:
        raise TypeError(
            f"{net.name} needs its variables (for a linen module the dict from init or "
            f"`jaxviz.load`; for NNX the module or nnx.state(module))"
        )
    if net.kind == LINEN and "params" not in variables:
        # plain params are accepted for convenience (the embedded models have no other collection)
        return {"params": variables}
    return variables


def _inference_kwargs(call) -> dict:
    try:
        params = inspect.signature(call).parameters
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in _INFERENCE_KWARGS.items() if k in params}


def _nnx():
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover - flax without nnx
        return None
    return nnx


Model = Any
"""A linen module, an NNX module, a function `f(x)` / `f(variables, x)`, or a `Net`."""

MethodFn = Callable[..., Attribution]

__all__ = ["Attribution", "LayerError", "Model", "Net", "as_net", "as_variables", "prepare"]


def check_finite(x, name: str) -> None:
    """Refuse a concrete input holding NaN or inf (under `jit` the maps would come out finite and wrong).

    Traced inputs (a caller's own `jit`) are not checked: there is no value to look at."""
    if isinstance(x, jax.core.Tracer):
        return
    bad = int(np.size(x) - jnp.isfinite(jnp.asarray(x)).sum())
    if bad:
        raise ValueError(
            f"{name}: the input holds {bad} NaN or infinite value(s); check how it was loaded and preprocessed"
        )


def finite_input(method):
    """Decorator for a public method `method(model, variables, x, ...)`: `check_finite(x)` first."""

    @functools.wraps(method)
    def checked(model, variables, x, *args, **kwargs):
        check_finite(x, method.__name__)
        return method(model, variables, x, *args, **kwargs)

    return checked
