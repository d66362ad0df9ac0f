"""Backward rules by construction: a transformation of the traced program, no hooks, no model edits.

`apply_rules(fn, composite)` traces `fn` to a jaxpr and evaluates it again, equation by
equation, replacing each matched operation by its rule (a `custom_vjp` whose forward is the same
operation). What counts as a site:

- "relu": `max(x, 0)` however it was written — `jnp.maximum(x, 0)`, `jax.nn.relu` / `nn.relu`
  (a `custom_jvp` around a jitted `max`), a ReLU module — found by its equation, not its name;
- "conv", "dense": convolutions and matrix products of the data with parameters; a rule there
  (`rules.lrp`) sees the layer with the per-channel affine map after it merged in — a bias add, an
  inference BatchNorm, however written: every elementwise add/sub/mul/div by a per-channel value
  that does not depend on the input (zennit's BatchNorm canonizer, for any model);
- "pool": fixed linear maps of the data — sums and means over axes or windows, products with
  constants (an adaptive average pool's bins) — with the scaling after them (a mean's division);
- "max_pool", "add": max-pooling windows and residual sums (two computed operands of one shape);
- "activation": the other elementwise nonlinearities of the data, `tanh` and the logistic sigmoid
  (LRP passes relevance through them, as zennit's `Pass`).

Which operand is the data is tracked through the program: the arguments at `params_argnums` (the
variables) are parameters, the rest data, closed-over constants neither.

A site's module path comes from the `jax.named_scope` that `taps` opens around every submodule
call. Nested `jit`s and `remat` are inlined so rules reach inside them; the bodies of `scan`,
`while`, `cond` and of other custom derivatives are left as they are.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from .composite import Composite, Site

SCOPE = "jaxviz:"
"""Prefix of the `jax.named_scope` that carries a module path into the traced program (`jaxviz.taps`
writes it around each module's call; the rules read a site's layer path from it)."""

_INLINE = ("jit", "pjit", "closed_call", "core_call", "checkpoint", "remat")
_LINEAR = {"conv_general_dilated": "conv", "dot_general": "dense"}
_SUMS = ("reduce_sum", "reduce_window_sum")
_ACTIVATIONS = ("tanh", "logistic")
_AFFINE = ("add", "sub", "mul", "div")
CONST, PARAM, DATA = 0, 1, 2
"""Where a value comes from: closed-over constants, the parameters, or the data (the strongest wins)."""


def apply_rules(fn, composite: Composite, params_argnums: tuple[int, ...] = (0,), constants_are_params: bool = False):
    """`fn(*args)` with `composite`'s rules in place of the VJPs of the sites they match; the
    arguments at `params_argnums` are the parameters, the others the data; closed-over arrays are
    parameters too with `constants_are_params` (a plain function with its weights built in)."""

    @functools.wraps(fn)
    def rewritten(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        flat = _eval(
            closed.jaxpr,
            closed.consts,
            *_leaves(args, params_argnums),
            composite,
            "",
            {},
            None,
            PARAM if constants_are_params else CONST,
        )
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), flat)

    return rewritten


def sites(fn, *args, params_argnums: tuple[int, ...] = (0,)) -> list[tuple[Site, tuple]]:
    """Every site of `fn(*args)` with its input shapes, in program order (what a composite can match)."""
    closed = jax.make_jaxpr(fn)(*args)
    found: list = []
    _eval(closed.jaxpr, closed.consts, *_leaves(args, params_argnums), None, "", {}, found)
    return found


def _leaves(args, params_argnums) -> tuple[list, list[int]]:
    leaves, origins = [], []
    for i, a in enumerate(args):
        flat = jax.tree_util.tree_leaves(a)
        leaves += flat
        origins += [PARAM if i in params_argnums else DATA] * len(flat)
    return leaves, origins


def _path(eqn, outer: str) -> str:
    stack = str(eqn.source_info.name_stack)
    inner = [p[len(SCOPE) :] for p in stack.split("/") if p.startswith(SCOPE)]
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


def _site_kind(eqn, origins: list[int]) -> str | None:
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
    if name == "reduce_window_max":
        return "max_pool"
    if name in _ACTIVATIONS and origins[0] == DATA:
        return "activation"
    if name == "add":  # a residual sum, not a bias: two computed operands of one shape
        a, b = eqn.invars
        same = origins == [DATA, DATA] and a.aval.shape == b.aval.shape
        return "add" if same else None
    if name in _LINEAR and sorted(origins) in ([PARAM, DATA], [CONST, DATA]):
        return _LINEAR[name] if PARAM in origins else "pool"
    if name in _SUMS and origins[0] == DATA:
        return "pool"
    return None


def _feature_axis(eqn, data_index: int) -> int | None:
    """The output axis that a per-channel map after a linear site acts on (None: no such axis to merge)."""
    name = eqn.primitive.name
    if name == "conv_general_dilated":
        return eqn.params["dimension_numbers"].out_spec[1]
    if name == "dot_general" and data_index == 0:  # x · W: W's one free dimension is the output's last
        (_, contract), (_, batch) = eqn.params["dimension_numbers"]
        if len(eqn.invars[1].aval.shape) - len(contract) - len(batch) == 1:
            return len(eqn.outvars[0].aval.shape) - 1
    return None


def _chain(eqns, i: int, uses: dict, consumer: dict, origin: dict, axis: int | None) -> list[tuple[int, int]]:
    """`[(equation index, position of the running value)]` of the per-channel affine ops after site `i`:
    add/sub/mul/div of the site's value (its only use) by a scalar or, with `axis`, a value that
    varies along that axis only, and that does not depend on the data."""
    out, chain = eqns[i].outvars[0], []
    while uses.get(out) == 1 and out in consumer:
        j = consumer[out]
        e = eqns[j]
        if e.primitive.name not in _AFFINE or len(e.invars) != 2:
            break
        pos = 0 if e.invars[0] is out else 1
        other = e.invars[1 - pos]
        if (pos == 1 and e.primitive.name == "div") or _origin(other, origin) == DATA:
            break
        shape, full = tuple(other.aval.shape), tuple(out.aval.shape)
        per_channel = (
            axis is not None
            and len(shape) == len(full)
            and all(d == 1 or (k == axis and d == full[k]) for k, d in enumerate(shape))
        )
        if shape != () and not per_channel:
            break
        chain.append((j, pos))
        out = e.outvars[0]
    return chain


def _origin(v, origin: dict) -> int:
    return CONST if isinstance(v, jcore.Literal) else origin.get(v, CONST)


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


def _eval(
    jaxpr,
    consts,
    args,
    arg_origins,
    composite: Composite | None,
    outer: str,
    counts: dict,
    found: list | None,
    const_origin: int = CONST,
):
    env: dict = {}
    origin: dict = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, val in zip(jaxpr.constvars, consts):
        env[v], origin[v] = val, const_origin
    for v, val, o in zip(jaxpr.invars, args, arg_origins):
        env[v], origin[v] = val, o
    wanted = composite.kinds if composite is not None else frozenset()
    uses, consumer = _uses(jaxpr)
    deferred: dict[int, tuple] = {}  # last equation of a merged chain → the linear site it completes
    skip: set[int] = set()
    for i, eqn in enumerate(jaxpr.eqns):
        origins = [_origin(v, origin) for v in eqn.invars]
        for v in eqn.outvars:
            origin[v] = max(origins, default=CONST)
        if i in skip:
            continue
        if i in deferred:  # the last op of a merged chain: the whole layer, under its rule
            env[eqn.outvars[0]] = _linear_site(jaxpr.eqns, *deferred.pop(i), read)
            continue
        invals = [read(v) for v in eqn.invars]
        path = _path(eqn, outer)
        name = eqn.primitive.name
        outvals = None
        kind = _site_kind(eqn, origins)
        if kind is not None and (found is not None or kind in wanted):
            layer = counts.get("layer", 0) if kind in ("conv", "dense") else -1
            site = Site(kind, path, counts.get(kind, 0), name, layer)
            counts[kind] = site.index + 1
            if layer >= 0:
                counts["layer"] = layer + 1
            if found is not None:
                found.append((site, tuple(tuple(np.shape(v)) for v in invals)))
            rule = composite.rule_for(site) if composite is not None else None
            if rule is not None and kind == "relu":
                outvals = [rule.apply(site, invals[_relu_input(eqn)] if name == "max" else invals[0])]
            elif rule is not None and kind == "activation":
                outvals = [rule.apply(site, lambda a, eqn=eqn: _bind(eqn, [a])[0], invals[0])]
            elif rule is not None and kind == "max_pool":
                outvals = [rule.apply(site, lambda *a, eqn=eqn: _bind(eqn, a)[0], _window(eqn), *invals)]
            elif rule is not None and kind == "add":
                outvals = [_add_site(rule, *invals)]
            elif rule is not None:  # conv, dense, pool: with the affine ops after it
                data = origins.index(DATA)
                chain = _chain(
                    jaxpr.eqns, i, uses, consumer, origin, _feature_axis(eqn, data) if kind != "pool" else None
                )
                if chain:
                    skip.update(j for j, _ in chain[:-1])
                    deferred[chain[-1][0]] = (rule, kind, i, data, chain)
                    continue
                outvals = [_linear_site(jaxpr.eqns, rule, kind, i, data, [], read)]
        if outvals is None and name in _INLINE:
            inner = eqn.params.get("jaxpr") or eqn.params.get("call_jaxpr")
            closed = inner if isinstance(inner, jcore.ClosedJaxpr) else None
            outvals = _eval(
                closed.jaxpr if closed else inner,
                closed.consts if closed else (),
                invals,
                origins,
                composite,
                path,
                counts,
                found,
                const_origin,
            )
        if outvals is None:
            outvals = _bind(eqn, invals)
        for v, val in zip(eqn.outvars, outvals):
            if not isinstance(v, jcore.DropVar):
                env[v] = val
    return [read(v) for v in jaxpr.outvars]


def _uses(jaxpr) -> tuple[dict, dict]:
    """How often each variable is read (the outputs count) and, for each, the last equation reading it."""
    uses: dict = {}
    consumer: dict = {}
    for j, e in enumerate(jaxpr.eqns):
        for v in e.invars:
            if not isinstance(v, jcore.Literal):
                uses[v] = uses.get(v, 0) + 1
                consumer[v] = j
    for v in jaxpr.outvars:
        if not isinstance(v, jcore.Literal):
            uses[v] = uses.get(v, 0) + 1
    return uses, consumer


def _linear_site(eqns, rule, kind: str, i: int, data: int, chain: list, read):
    """Equation `i` (a conv, dense or pool site) and the affine `chain` after it, as one layer whose
    forward is the model's own and whose VJP is `rule`'s relevance."""
    from .lrp import Layer

    site_eqn = eqns[i]
    operands = [read(v) for v in site_eqn.invars]
    x, w = operands[data], operands[1 - data] if len(operands) == 2 else None
    others = [read(eqns[j].invars[1 - pos]) for j, pos in chain]

    def linear(x, w):
        return _bind(site_eqn, [x] if w is None else ([x, w] if data == 0 else [w, x]))[0]

    def after(y, others):
        for (j, pos), o in zip(chain, others):
            y = _bind(eqns[j], [y, o] if pos == 0 else [o, y])[0]
        return y

    @jax.custom_vjp
    def layer(x, w, others):
        return after(linear(x, w), others)

    def fwd(x, w, others):
        return layer(x, w, others), (x, w, others)

    def bwd(res, g):
        x, w, others = res
        if kind == "pool":
            rel = rule.pool_relevance(lambda t: after(linear(t, w), others), x, g)
        else:
            w_eff, b = _merged(site_eqn, data, w, chain, others, after)
            rel = rule.relevance(Layer(x, w_eff, b, linear), g)
        return (
            rel.astype(x.dtype),
            jax.tree_util.tree_map(jnp.zeros_like, w),
            jax.tree_util.tree_map(jnp.zeros_like, others),
        )

    layer.defvjp(fwd, bwd)
    return layer(x, w, others)


def _merged(eqn, data: int, w, chain: list, others: list, after):
    """`(w', b)`: the kernel with the chain's per-channel scale folded in, and the chain's offset
    (None without a chain), from the chain evaluated at 0 and 1 on one value per channel."""
    if not chain:
        return w, None
    out = eqn.outvars[0].aval
    axis = _feature_axis(eqn, data)
    probe = [1] * len(out.shape)
    probe[axis] = out.shape[axis]
    zero = after(jnp.zeros(probe, out.dtype), others)
    scale = (after(jnp.ones(probe, out.dtype), others) - zero).reshape(-1)
    if eqn.primitive.name == "conv_general_dilated":
        w_axis = eqn.params["dimension_numbers"].rhs_spec[0]
    else:
        w_axis = next(k for k in range(w.ndim) if k not in eqn.params["dimension_numbers"][0][1])
    shape = [1] * w.ndim
    shape[w_axis] = -1
    return w * scale.reshape(shape).astype(w.dtype), jnp.broadcast_to(zero, probe)


def _add_site(rule, a, b):
    """A residual sum `a + b` whose VJP splits the relevance in proportion (`rule.add_relevance`)."""

    @jax.custom_vjp
    def add(a, b):
        return a + b

    def fwd(a, b):
        return a + b, (a, b)

    def bwd(res, g):
        ra, rb = rule.add_relevance(*res, g)
        return ra.astype(res[0].dtype), rb.astype(res[1].dtype)

    add.defvjp(fwd, bwd)
    return add(a, b)


__all__ = ["apply_rules", "sites"]
