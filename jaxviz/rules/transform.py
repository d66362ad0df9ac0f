"""Backward rules by construction: a transformation of the traced program, no hooks, no model edits.

`apply_rules(fn, composite)` traces `fn` to a jaxpr and evaluates it again, equation by
equation, replacing each matched operation by its rule (a `custom_vjp` whose forward is the same
operation). What counts as a site:

- "relu": `max(x, 0)` however it was written — `jnp.maximum(x, 0)`, `jax.nn.relu` / `nn.relu`
  (a `custom_jvp` around a jitted `max`), a ReLU module — found by its equation, not its name;
- "conv", "dense", "max_pool", "add": convolutions, matrix products, max-pooling windows and
  residual sums (listed by `sites`; LRP rules apply to them).

A site's module path comes from the `jax.named_scope` that `taps` opens around every submodule
call. Nested `jit`s and `remat` are inlined so rules reach inside them; the bodies of `scan`,
`while`, `cond` and of other custom derivatives are left as they are.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import numpy as np
from jax.extend import core as jcore

from ..taps import SCOPE
from .composite import Composite, Site

_INLINE = ("jit", "pjit", "closed_call", "core_call", "checkpoint", "remat")
_KINDS = {"conv_general_dilated": "conv", "dot_general": "dense", "reduce_window_max": "max_pool", "add": "add"}


def apply_rules(fn, composite: Composite):
    """`fn(*args)` with `composite`'s rules in place of the VJPs of the sites they match."""

    @functools.wraps(fn)
    def rewritten(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        counts: dict[str, int] = {}
        flat = _eval(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(args), composite, "", counts, None)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), flat)

    return rewritten


def sites(fn, *args) -> list[tuple[Site, tuple]]:
    """Every site of `fn(*args)` with its input shapes, in program order (what a composite can match)."""
    closed = jax.make_jaxpr(fn)(*args)
    found: list = []
    _eval(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(args), None, "", {}, found)
    return found


def _path(eqn, outer: str) -> str:
    stack = str(eqn.source_info.name_stack)
    inner = [p[len(SCOPE):] for p in stack.split("/") if p.startswith(SCOPE)]
    return inner[-1] if inner else outer


def _is_zero(atom) -> bool:
    if isinstance(atom, jcore.Literal):
        v = np.asarray(atom.val)
        return v.shape == () and v == 0
    return False


def _relu_input(eqn):
    """The input of a ReLU equation `max(x, 0)` / `max(0, x)`, or None."""
    if eqn.primitive.name != "max" or len(eqn.invars) != 2:
        return None
    a, b = eqn.invars
    if _is_zero(b) and not isinstance(a, jcore.Literal):
        return 0
    if _is_zero(a) and not isinstance(b, jcore.Literal):
        return 1
    return None


def _sole_eqn(eqn):
    """The one equation inside a custom_jvp / custom_vjp wrapper (through nested jits), or None."""
    jaxpr = eqn.params.get("call_jaxpr")
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    while jaxpr is not None and len(jaxpr.eqns) == 1 and jaxpr.eqns[0].primitive.name in _INLINE:
        inner = jaxpr.eqns[0].params.get("jaxpr") or jaxpr.eqns[0].params.get("call_jaxpr")
        jaxpr = getattr(inner, "jaxpr", inner)
    return jaxpr.eqns[0] if jaxpr is not None and len(jaxpr.eqns) == 1 else None


def _site_kind(eqn) -> str | None:
    name = eqn.primitive.name
    if name in ("custom_jvp_call", "custom_vjp_call"):
        inner = _sole_eqn(eqn)  # jax.nn.relu; jaxviz's fast max-pool
        if inner is None:
            return None
        if _relu_input(inner) is not None:
            return "relu"
        return "max_pool" if inner.primitive.name == "reduce_window_max" else None
    if _relu_input(eqn) is not None:
        return "relu"
    if name == "add":  # a residual sum, not a bias: two computed operands of one shape
        a, b = eqn.invars
        same = not isinstance(a, jcore.Literal) and not isinstance(b, jcore.Literal) and a.aval.shape == b.aval.shape
        return "add" if same else None
    return _KINDS.get(name)


def _window(eqn) -> dict:
    """`window_dimensions`, `window_strides`, `padding` of a max-pool site (through custom_vjp wrappers)."""
    if eqn.primitive.name != "reduce_window_max":
        eqn = _sole_eqn(eqn)
    return {k: eqn.params[k] for k in ("window_dimensions", "window_strides", "padding")}


def _bind(eqn, invals) -> list:
    """The equation itself, on new inputs."""
    params = eqn.primitive.get_bind_params(eqn.params)
    with eqn.ctx.manager if getattr(eqn, "ctx", None) is not None else contextlib.nullcontext():
        ans = eqn.primitive.bind(*invals, **params)
    return list(ans) if eqn.primitive.multiple_results else [ans]


def _eval(jaxpr, consts, args, composite: Composite | None, outer: str, counts: dict, found: list | None):
    env: dict = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, val in zip(jaxpr.constvars, consts):
        env[v] = val
    for v, val in zip(jaxpr.invars, args):
        env[v] = val
    wanted = composite.kinds if composite is not None else None
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        path = _path(eqn, outer)
        name = eqn.primitive.name
        kind = _site_kind(eqn)
        outvals = None
        if kind is not None and (found is not None or kind in wanted):
            site = Site(kind, path, counts.get(kind, 0), name)
            counts[kind] = site.index + 1
            if found is not None:
                found.append((site, tuple(tuple(np.shape(v)) for v in invals)))
            rule = composite.rule_for(site) if composite is not None else None
            if rule is not None and kind == "relu":
                outvals = [rule.apply(site, invals[_relu_input(eqn)] if name == "max" else invals[0])]
            elif rule is not None and kind == "max_pool":
                outvals = [rule.apply(site, lambda *a, eqn=eqn: _bind(eqn, a)[0], _window(eqn), *invals)]
        if outvals is None and name in _INLINE:
            inner = eqn.params.get("jaxpr") or eqn.params.get("call_jaxpr")
            if isinstance(inner, jcore.ClosedJaxpr):
                outvals = _eval(inner.jaxpr, inner.consts, invals, composite, path, counts, found)
            else:
                outvals = _eval(inner, (), invals, composite, path, counts, found)
        if outvals is None:
            outvals = _bind(eqn, invals)
        for v, val in zip(eqn.outvars, outvals):
            if not isinstance(v, jcore.DropVar):
                env[v] = val
    return [read(v) for v in jaxpr.outvars]


__all__ = ["apply_rules", "sites"]
