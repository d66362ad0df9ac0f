"""Many methods from one forward pass (issue 8; seed 002's bundle).

    explain = fused_compiled(["saliency", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam"], model)
    results = explain(params, x, target)      # {"saliency": (maps, index, out), "deconvnet": ..., ...}

Backprop (saliency), deconvnet and guided backprop differ only in the backward rule of the ReLUs
(`rules.py`); their forward passes are the same. So the model runs forward once, layer by
layer, keeping each layer's VJP (`jax.vjp`, which holds the layer's residuals: the max-pool
switches, the inputs of the convolutions) and each ReLU's input. Then one backward walk per rule
reuses them: at a ReLU the walk applies the rule's backward on the stored pre-activation (the
VJP of the rule's custom_vjp ReLU); elsewhere the stored VJP (max-pooling's is `models.base.max_pool_vjp`). Grad-CAM's ∂y/∂A at its layer is
read off the plain walk on its way down; guided Grad-CAM multiplies the guided walk with that
map; gradient × input and CAM need nothing more. The five seed-002 maps cost one forward and
three backward passes (Captum: six forward, six backward); `program_cost` counts it.

Results equal `engine.compiled` run per method (same operations, same order; the tests compare
them), with the same target convention (`targets.py`) and the same per-method options, routed like
`batch.bind_methods` does: each option goes to the methods that accept it (`layer` to Grad-CAM and
guided Grad-CAM, `layers` to deconvnet and guided backprop, `n` to SmoothGrad, ...), and `dtype` /
`precision` (see `engine`) to all. Names not in `FUSABLE` (SmoothGrad, IG, occlusion, Score-CAM,
...) need their own passes; they run unchanged inside the same compiled call.

Exceptions, where a fused method runs its own code in the same call instead: guided Grad-CAM for a
`Unit` target (`cam.guided_grad_cam` then explains the unit's channel as a class) and CAM for a
`Unit` target (an error, as in `cam.cam`).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..models.base import ACT, DENSE, GAP, forward
from ..rules import deconvnet_relu, guided_relu, with_rule
from .cam import _upsample_normalize, last_conv_layer
from .engine import (
    MODE_OPTIONS,
    hashable_options,
    in_dtype,
    key_use,
    method_options,
    split_modes,
    target_caller,
)
from .targets import Unit, cotangent, select, target_layer

FUSABLE = ("saliency", "gradient_x_input", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam", "cam")
"""Methods computed from the shared forward pass; other names run as they are in the same call."""

BUNDLE_002 = ("saliency", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam")
"""Seed 002's methods: backpropagation, deconvnet, guided backprop, Grad-CAM, guided Grad-CAM."""

TRACES: collections.Counter = collections.Counter()
"""How many times each (names, options) bundle was traced."""

_RULES = {"deconvnet": deconvnet_relu, "guided_backprop": guided_relu}


class Tape(NamedTuple):
    """One forward pass kept for many backward walks.

    `inputs[i]` / `outputs[i]` are layer i's input and output, `vjps[i]` its VJP (the model's own
    backward rule), for the layers up to the target's layer.
    """

    inputs: list
    outputs: list
    vjps: list


def _slice(i: int) -> dict:
    """`forward` keywords that run layer i alone."""
    return {"start_after": i - 1 if i else None, "stop_at": i}


def forward_tape(model, params, x: jax.Array, stop: str | None = None) -> Tape:
    """Run `model` on `x` `(N, H, W, C)` layer by layer up to `stop` (None: the logits), keeping each VJP."""
    layers = model.layers()
    last = len(layers) - 1 if stop is None else model.resolve(stop)
    inputs, outputs, vjps = [], [], []
    h = x
    for i in range(last + 1):
        inputs.append(h)
        h, vjp = jax.vjp(functools.partial(_run_layer, model, params, i), h)
        outputs.append(h)
        vjps.append(vjp)
    return Tape(inputs, outputs, vjps)


def _run_layer(model, params, i, h):
    return forward(model, params, h, **_slice(i))


def backward(model, params, tape: Tape, ct: jax.Array, rule_model=None, capture: Sequence[int] = (),
             down_to: int = 0) -> tuple[jax.Array, dict[int, jax.Array]]:
    """Walk `ct` (cotangent of the last tape output) back to layer `down_to`'s input.

    At activation layers the backward rule is `rule_model`'s (a `rules.with_rule` variant of
    `model`: same forward, other ReLU backward), elsewhere the tape's VJPs. Returns the cotangent
    of layer `down_to`'s input (the input gradient for 0) and `{i: cotangent of layer i's output}`
    for the layers in `capture`.
    """
    layers = model.layers()
    last = len(tape.vjps) - 1
    grads = {last: ct} if last in capture else {}
    g = ct
    for i in range(last, down_to - 1, -1):
        if rule_model is not None and layers[i].kind == ACT:
            (g,) = jax.vjp(functools.partial(_run_layer, rule_model, params, i), tape.inputs[i])[1](g)
        else:
            (g,) = tape.vjps[i](g)
        if i - 1 in capture:  # g is now the cotangent of layer i's input = layer i − 1's output
            grads[i - 1] = g
    return g, grads


def fused_compiled(names: Sequence[str], model, /, **options) -> Callable:
    """The cached compiled `fn(params, x, target=None, key=None) -> {name: (maps, index, out, ...)}`.

    Args:
      names: method names (`attribution.METHODS`); those in `FUSABLE` share one forward pass.
      model: a `SequentialNet`.
      options: method options, each routed to the methods that accept it; `dtype` and
        `precision` (`engine`) apply to all. An option no named method accepts is an error.

    The function has `.lower(...)` like `engine.compiled`'s (for `engine.program_cost`).
    """
    from . import METHODS

    names = tuple(dict.fromkeys(names))
    if not names:
        raise ValueError("fused_compiled needs at least one method name")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    accepted = {o for n in names for o in method_options(n)} | set(MODE_OPTIONS)
    bad = [k for k in options if k not in accepted]
    if bad:
        raise ValueError(f"no method in {list(names)} takes option(s) {bad}; options: {sorted(accepted)}")
    return _fused(names, model, hashable_options(options))


@functools.lru_cache(maxsize=64)
def _fused(names: tuple[str, ...], model, options: tuple) -> Callable:
    opts, dtype, precision = split_modes(dict(options))
    per_method = {n: {k: v for k, v in opts.items() if k in method_options(n)} for n in names}
    needs_key = any(key_use(n)[1] for n in names)

    def run(params, x, target, key):
        TRACES[(names, options)] += 1
        return fused_methods(model, params, x, target, names, per_method, key)

    label = "fused[" + ",".join(names) + "]"
    inner = target_caller(in_dtype(run, dtype), label, model, needs_key=needs_key, precision=precision)

    def call(params, x, target=None, key=None):
        results = inner(params, x, target, key)  # a pytree: its keys come back sorted
        return {n: results[n] for n in names}

    call.lower = inner.lower
    call.__name__ = inner.__name__
    return call


def fused_methods(model, params, x: jax.Array, target, names: Sequence[str], options: dict[str, dict],
                  key: jax.Array | None = None) -> dict[str, tuple]:
    """Every method in `names` on `x` `(N, H, W, C)`; the `FUSABLE` ones from one forward pass.

    `options[name]` holds that method's own options. Not jitted: `fused_compiled` compiles it.
    """
    from . import METHODS

    results = {}
    fusable = [n for n in names if n in FUSABLE and not _own_path(n, target)]
    for name in names:
        if name not in fusable:
            extra = {"key": key} if key_use(name)[0] else {}
            results[name] = METHODS[name](model, params, x, target, **options.get(name, {}), **extra)
    if not fusable:
        return results

    stop = target_layer(target)
    tape = forward_tape(model, params, x, stop)
    out = tape.outputs[-1]
    sel = select(out, target)
    ct = cotangent(out, sel)

    cam_layers = {n: model.resolve(options.get(n, {}).get("layer") or last_conv_layer(model))
                  for n in fusable if n in ("grad_cam", "guided_grad_cam")}
    for i in cam_layers.values():
        if stop is not None and model.resolve(stop) <= i:
            raise ValueError(f"Grad-CAM layer {model.layers()[i].name!r} must come before the target unit's "
                             f"layer {stop!r}")
    input_grad = any(n in fusable for n in ("saliency", "gradient_x_input"))
    if input_grad or cam_layers:
        down_to = 0 if input_grad else min(cam_layers.values()) + 1
        g_plain, at = backward(model, params, tape, ct, capture=set(cam_layers.values()), down_to=down_to)

    grad_cams = {}
    for i in set(cam_layers.values()):
        alpha = jnp.mean(at[i], axis=(1, 2), keepdims=True)
        grad_cams[i] = _upsample_normalize(jnp.sum(alpha * tape.outputs[i], axis=-1), x.shape[1:3])

    rule_maps = {}

    def rule_map(rule: str, layers) -> jax.Array:
        if (rule, layers) not in rule_maps:
            variant = with_rule(model, _RULES[rule], layers)
            rule_maps[rule, layers] = backward(model, params, tape, ct, rule_model=variant)[0]
        return rule_maps[rule, layers]

    for name in fusable:
        o = options.get(name, {})
        if name == "saliency":
            results[name] = (g_plain, sel.index, out)
        elif name == "gradient_x_input":
            results[name] = (g_plain * x, sel.index, out)
        elif name in _RULES:
            results[name] = (rule_map(name, o.get("layers")), sel.index, out)
        elif name == "grad_cam":
            results[name] = (grad_cams[cam_layers[name]], sel.index, out)
        elif name == "guided_grad_cam":
            m = grad_cams[cam_layers[name]]
            results[name] = (rule_map("guided_backprop", None) * m[..., None], sel.index, out)
        elif name == "cam":
            results[name] = _cam(model, params, tape, sel, x.shape[1:3])
    return {n: results[n] for n in names}


def _own_path(name: str, target) -> bool:
    """Methods that, for this target, run their own code (see the module docstring)."""
    return isinstance(target, Unit) and name in ("guided_grad_cam", "cam")


def _cam(model, params, tape: Tape, sel, hw):
    """`cam.cam` from the tape: Σ_k w_k^c A^k at the layer before global average pooling."""
    layers = model.layers()
    kinds = [layer.kind for layer in layers]
    if GAP not in kinds or kinds[kinds.index(GAP) + 1:] != [DENSE]:
        raise ValueError(f"CAM needs a global-average-pooling head followed by one dense layer; "
                         f"{type(model).__name__} has none: use grad_cam")
    a = tape.outputs[kinds.index(GAP) - 1]
    w = params[layers[-1].name]["kernel"][:, sel.index].T  # (N, K)
    return _upsample_normalize(jnp.einsum("nhwk,nk->nhw", a, w), hw), sel.index, tape.outputs[-1]


__all__ = ["BUNDLE_002", "FUSABLE", "Tape", "backward", "forward_tape", "fused_compiled", "fused_methods"]
