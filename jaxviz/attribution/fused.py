"""Many methods from one forward pass (issue 8; seed 002's bundle), on any model.

    explain = fused_compiled(["saliency", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam"], model)
    results = explain(variables, x, target)   # {"saliency": Attribution, "deconvnet": ..., ...}

Backprop (saliency), deconvnet and guided backprop differ only in the backward rule of the ReLUs
(`rules`); their forward passes are the same. The plain pass is one `jax.vjp` of the model with
zero deltas at the CAM layers, so one backward pass gives the input gradient and Grad-CAM's ∂y/∂A
(`taps`); each rule adds one `jax.vjp` of the same model under that rule. The forward programs
of those VJPs are the same operations on the same operands, so XLA's common-subexpression
elimination keeps one forward: the five seed-002 maps cost one forward and three backward passes
(Captum: six forward, six backward); `program_cost` counts it and the tests check it. Guided
Grad-CAM multiplies the guided walk with the Grad-CAM map; gradient × input and CAM need nothing
more.

Results equal `engine.compiled` run per method (the tests compare them), with the same target
convention (`targets.py`) and the same per-method options, routed like `batch.bind_methods` does:
each option goes to the methods that accept it (`layer` to the CAM methods, `layers` to deconvnet
and guided backprop, `n` to SmoothGrad, ...), and `dtype` / `precision` (see `engine`) to all.
Names not in `FUSABLE` (SmoothGrad, IG, occlusion, Score-CAM, ...) run unchanged inside the
same compiled call. CAM for a `Unit` target is an error, as in `cam.cam`.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from ..core import Attribution, as_net, prepare
from ..rules import deconvnet_relu, guided_relu
from ..taps import output
from .cam import cam_layer, check_before_unit, check_head, upsample_normalize
from .engine import (
    MODE_OPTIONS,
    hashable_options,
    in_dtype,
    key_use,
    method_options,
    split_modes,
    target_caller,
)
from .gradients import with_relu_rule
from .registry import METHODS
from .targets import Unit, cotangent, select, target_layer

FUSABLE = ("saliency", "gradient_x_input", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam", "cam")
"""Methods computed from the shared forward pass; other names run as they are in the same call."""

SHARES_FORWARD = ("lrp",)
"""Other methods that are one backward walk of the model: run inside a fused call (as any name is),
XLA keeps one forward pass for them and the `FUSABLE` ones (LRP beside seed 002's five on VGG16:
19.6 GFLOP per 64-px image instead of 9.9 + 12.1), so batch jobs put them in the fused call."""

BUNDLE_002 = ("saliency", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam")
"""Seed 002's methods: backpropagation, deconvnet, guided backprop, Grad-CAM, guided Grad-CAM."""

TRACES: collections.Counter = collections.Counter()
"""How many times each (names, options) bundle was traced."""

_RULES = {"deconvnet": deconvnet_relu, "guided_backprop": guided_relu}


def fused_compiled(names: Sequence[str], model, /, **options) -> Callable:
    """The cached compiled `fn(variables, x, target=None, key=None) -> {name: Attribution}`.

    Args:
      names: method names (`attribution.METHODS`); those in `FUSABLE` share one forward pass.
      model: any model (`core`).
      options: method options, each routed to the methods that accept it; `dtype` and
        `precision` (`engine`) apply to all. An option no named method accepts is an error.

    The function has `.lower(...)` like `engine.compiled`'s (for `engine.program_cost`).
    """
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
    return _fused(names, tuple(METHODS[n] for n in names), as_net(model), hashable_options(options))


@functools.lru_cache(maxsize=64)
def _fused(names: tuple[str, ...], fns: tuple, net, options: tuple) -> Callable:
    opts, dtype, precision = split_modes(dict(options))
    per_method = {n: {k: v for k, v in opts.items() if k in method_options(n)} for n in names}
    needs_key = any(key_use(n)[1] for n in names)

    def run(variables, x, target, key):
        TRACES[(names, options)] += 1
        return fused_methods(net, variables, x, target, names, per_method, key)

    label = "fused[" + ",".join(names) + "]"
    inner = target_caller(in_dtype(run, dtype), label, net, needs_key=needs_key, precision=precision)

    def call(variables, x, target=None, key=None):
        results = inner(variables, x, target, key)  # a pytree: its keys come back sorted
        return {n: results[n] for n in names}

    call.lower = inner.lower
    call.__name__ = inner.__name__
    return call


def fused_methods(
    model, variables, x: jax.Array, target, names: Sequence[str], options: dict[str, dict], key: jax.Array | None = None
) -> dict[str, Attribution]:
    """Every method in `names` on `x` `(N, H, W, C)`; the `FUSABLE` ones from one forward pass.

    `options[name]` holds that method's own options. Not jitted: `fused_compiled` compiles it.
    """
    net, variables = prepare(model, variables)
    results = {}
    fusable = [n for n in names if n in FUSABLE and not (n == "cam" and isinstance(target, Unit))]
    for name in names:
        if name not in fusable:
            extra = {"key": key} if key_use(name)[0] else {}
            results[name] = METHODS[name](net, variables, x, target, **options.get(name, {}), **extra)
    if not fusable:
        return results

    stop = target_layer(target)
    layers = {
        n: cam_layer(net, variables, x, options.get(n, {}).get("layer"))
        for n in fusable
        if n in ("grad_cam", "guided_grad_cam", "cam")
    }
    for name, layer in layers.items():
        check_before_unit(net, variables, x, layer, target, name)
    paths = tuple(dict.fromkeys(layers.values()))
    shapes = jax.eval_shape(lambda v, x: output(net, v, x, stop, paths)[1], variables, x)
    deltas = {p: jnp.zeros(shapes[p].shape, shapes[p].dtype) for p in paths}
    (out, acts), vjp = jax.vjp(lambda x, d: output(net, variables, x, stop, paths, d), x, deltas)
    sel = select(out, target)
    g_plain, at = vjp((cotangent(out, sel), jax.tree_util.tree_map(jnp.zeros_like, acts)))

    rule_maps = {}

    def rule_map(rule: str, layers_opt) -> jax.Array:
        if (rule, layers_opt) not in rule_maps:
            what = "deconvnet" if rule == "deconvnet" else "guided backprop"
            variant, _ = with_relu_rule(net, variables, x, _RULES[rule], layers_opt, what)
            o, vjp_rule = jax.vjp(lambda x: output(variant, variables, x, stop)[0], x)
            rule_maps[rule, layers_opt] = vjp_rule(cotangent(o, sel))[0]
        return rule_maps[rule, layers_opt]

    def grad_cam_map(name):
        p = layers[name]
        alpha = jnp.mean(at[p], axis=(1, 2), keepdims=True)
        return upsample_normalize(
            jnp.sum(alpha * acts[p], axis=-1), x.shape[1:3], options.get(name, {}).get("cam_norm", "max")
        )

    for name in fusable:
        o = options.get(name, {})
        if name == "saliency":
            maps = g_plain
        elif name == "gradient_x_input":
            maps = g_plain * x
        elif name in _RULES:
            maps = rule_map(name, o.get("layers"))
        elif name == "grad_cam":
            maps = grad_cam_map(name)
        elif name == "guided_grad_cam":
            maps = rule_map("guided_backprop", None) * grad_cam_map(name)[..., None]
        else:  # cam: the head's weights are Σ_ij ∂y/∂A (see `cam.py`)
            check_head(net, "gap", "CAM")
            p = layers[name]
            w = jnp.sum(at[p], axis=(1, 2))
            maps = upsample_normalize(jnp.einsum("nhwk,nk->nhw", acts[p], w), x.shape[1:3])
        results[name] = Attribution(maps, sel.index, out, {})
    return {n: results[n] for n in names}


__all__ = ["BUNDLE_002", "FUSABLE", "SHARES_FORWARD", "fused_compiled", "fused_methods"]
