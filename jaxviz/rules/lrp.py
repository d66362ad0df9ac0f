"""Layer-wise relevance propagation: rules for linear layers, pools and sums, and zennit's composites.

A linear layer's rule sees the layer as the transformation found it (`Layer`): its input `x`, its
kernel `w` and bias `b` — with whatever per-channel affine map follows it in the model (a BatchNorm
in inference, a bias add) already merged in, as zennit's `SequentialMergeBatchNorm` canonizer does —
and the bias-free operation `layer.linear(x, w)` (the model's own convolution or matrix product). It
returns the relevance of the input from the relevance `g` arriving at the output, as zennit defines
it (`z` = the layer's output under modified inputs and parameters, `s(z) = z + ε·sign(z)`, sign(0) = 1,
Lᵀ the transpose of `linear`):

    epsilon      R = x ⊙ Lᵀ_w(g / s_ε(z)),                                  z = L(x, w) + b
    zplus        R = x⁺ ⊙ Lᵀ_{w⁺}(h) + x⁻ ⊙ Lᵀ_{w⁻}(h),   h = g / s(L(x⁺, w⁺) + b⁺ + L(x⁻, w⁻))
    gamma        zplus's form with w ± γ·w^±, split by the sign of the layer's own output
    alpha_beta   α·(relevance of the positive part) − β·(of the negative part),  α − β = 1
    zbox         R = x ⊙ Lᵀ_w(h) − l ⊙ Lᵀ_{w⁺}(h) − u ⊙ Lᵀ_{w⁻}(h),  h = g / s(z − z_l⁺ − z_u⁻)
    flat         R = Lᵀ_1(g / s(L(1, 1)))          wsquare  R = Lᵀ_{w²}(g / s(L(1, w²) + b²))

Pools (average pools, global means, any fixed linear map) and residual sums take `norm`: each input
gets relevance in proportion to its contribution, `R_i = x_i ⊙ Lᵀ(g / s(z))`. ReLUs take `pass_relu`
(the relevance goes through unchanged), max-pools their gradient (winner takes all). A composite
says which rule goes where (`lrp_composite(name)`, or `rules.composite({...})` with your own).

    from jaxviz.rules.lrp import Layer, LinearRule, lrp_composite, stabilize
    comp = lrp_composite("epsilon_plus_flat")          # or epsilon_gamma_box(low=..., high=...), ...
    jaxviz.attribution.lrp(model, variables, x, composite=comp)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .composite import Composite, FirstLayer, Kind
from .relu import relu_rule


def stabilize(z: jax.Array, epsilon: float) -> jax.Array:
    """`z + ε·sign(z)` with sign(0) = +1 (zennit's stabilizer): never zero, same sign as z."""
    return z + jnp.where(z >= 0, epsilon, -epsilon).astype(z.dtype)


class Layer(NamedTuple):
    """A linear layer as a rule sees it: `z = linear(x, w) + b`.

    `w` and `b` include the per-channel affine map after the layer (BatchNorm, bias), merged;
    `b` is None for a layer without one. `linear(x, w)` is the model's own bias-free operation.
    """

    x: jax.Array
    w: jax.Array
    b: jax.Array | None
    linear: Callable[[jax.Array, jax.Array], jax.Array]

    def out(self, x, w, b=None) -> jax.Array:
        """`linear(x, w) + b` (b None: no bias)."""
        z = self.linear(x, w)
        return z if b is None else z + b

    def back(self, w, h) -> jax.Array:
        """`Lᵀ_w(h)`: the transpose of `linear(·, w)` applied to `h` (a gradient with `w` held)."""
        return jax.linear_transpose(lambda t: self.linear(t, w), self.x)(h)[0]


def _pos(a):
    return None if a is None else jnp.maximum(a, 0)


def _neg(a):
    return None if a is None else jnp.minimum(a, 0)


def _bias(layer: Layer, zero_bias: bool):
    return None if zero_bias else layer.b


@dataclass(frozen=True)
class LinearRule:
    """A rule for convolutions and matrix products: `relevance(layer, g) -> R_in` (see the module
    docstring). Subclass it (a frozen dataclass: equal rules share one compilation) or use
    `linear_rule(fn)` for a function."""

    kinds = ("conv", "dense")

    def relevance(self, layer: Layer, g: jax.Array) -> jax.Array:
        raise NotImplementedError


@dataclass(frozen=True)
class FunctionRule(LinearRule):
    """A linear-layer rule from a function `fn(layer, g) -> R_in`."""

    fn: Callable[[Layer, jax.Array], jax.Array]
    name: str = ""

    def relevance(self, layer, g):
        return self.fn(layer, g)


def linear_rule(fn: Callable[[Layer, jax.Array], jax.Array], name: str | None = None) -> FunctionRule:
    """A conv/dense rule from `fn(layer, g)`: the relevance of `layer.x` from the output's `g`."""
    return FunctionRule(fn, name or getattr(fn, "__name__", "linear_rule"))


@dataclass(frozen=True)
class Epsilon(LinearRule):
    """LRP-ε (ε = 0: LRP-0): R = x ⊙ Lᵀ_w(g / s_ε(L(x, w) + b))."""

    epsilon: float = 1e-6
    zero_bias: bool = False

    def relevance(self, layer, g):
        z = layer.out(layer.x, layer.w, _bias(layer, self.zero_bias))
        return layer.x * layer.back(layer.w, g / stabilize(z, self.epsilon))


@dataclass(frozen=True)
class ZPlus(LinearRule):
    """LRP-z⁺ (α=1, β=0 with negative inputs allowed): positive weights for positive inputs, negative for
    negative ones; the bias's positive part on the positive side."""

    stabilizer: float = 1e-6
    zero_bias: bool = False

    def relevance(self, layer, g):
        x, w, b = layer.x, layer.w, _bias(layer, self.zero_bias)
        xp, xn, wp, wn = _pos(x), _neg(x), _pos(w), _neg(w)
        h = g / stabilize(layer.out(xp, wp, _pos(b)) + layer.out(xn, wn), self.stabilizer)
        return xp * layer.back(wp, h) + xn * layer.back(wn, h)


@dataclass(frozen=True)
class Gamma(LinearRule):
    """Generalized LRP-γ: w + γ·w⁺ where the output is positive, w + γ·w⁻ where it is negative."""

    gamma: float = 0.25
    stabilizer: float = 1e-6
    zero_bias: bool = False

    def relevance(self, layer, g):
        x, w, b = layer.x, layer.w, _bias(layer, self.zero_bias)
        xp, xn = _pos(x), _neg(x)

        def up(p):
            return None if p is None else p + self.gamma * jnp.maximum(p, 0)

        def down(p):
            return None if p is None else p + self.gamma * jnp.minimum(p, 0)

        z = layer.out(x, w, layer.b)  # the layer's own output decides the side (bias kept, as zennit's)
        h_pos = (z > 0) * g / stabilize(layer.out(xp, up(w), up(b)) + layer.out(xn, down(w)), self.stabilizer)
        h_neg = (z < 0) * g / stabilize(layer.out(xp, down(w), down(b)) + layer.out(xn, up(w)), self.stabilizer)
        return (
            xp * layer.back(up(w), h_pos)
            + xn * layer.back(down(w), h_pos)
            + xp * layer.back(down(w), h_neg)
            + xn * layer.back(up(w), h_neg)
        )


@dataclass(frozen=True)
class AlphaBeta(LinearRule):
    """LRP-αβ: α·(positive contributions) − β·(negative contributions), α − β = 1 (e.g. 2/1, 1/0)."""

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6
    zero_bias: bool = False

    def __post_init__(self):
        if self.alpha < 0 or self.beta < 0 or abs(self.alpha - self.beta - 1) > 1e-12:
            raise ValueError(
                f"alpha_beta needs alpha, beta >= 0 and alpha - beta = 1; got alpha={self.alpha}, beta={self.beta}"
            )

    def relevance(self, layer, g):
        x, w, b = layer.x, layer.w, _bias(layer, self.zero_bias)
        xp, xn, wp, wn = _pos(x), _neg(x), _pos(w), _neg(w)
        h_pos = g / stabilize(layer.out(xp, wp, _pos(b)) + layer.out(xn, wn), self.stabilizer)
        h_neg = g / stabilize(layer.out(xp, wn, _neg(b)) + layer.out(xn, wp), self.stabilizer)
        return self.alpha * (xp * layer.back(wp, h_pos) + xn * layer.back(wn, h_pos)) - self.beta * (
            xp * layer.back(wn, h_neg) + xn * layer.back(wp, h_neg)
        )


@dataclass(frozen=True)
class ZBox(LinearRule):
    """LRP-z^B for inputs bounded by `low` and `high` (scalars or one value per channel, in the model's
    input space: the preprocessed values of black and white)."""

    low: float | tuple[float, ...] = 0.0
    high: float | tuple[float, ...] = 1.0
    stabilizer: float = 1e-6
    zero_bias: bool = False

    def relevance(self, layer, g):
        x, w, b = layer.x, layer.w, _bias(layer, self.zero_bias)
        lo = jnp.broadcast_to(jnp.asarray(self.low, x.dtype), x.shape)
        hi = jnp.broadcast_to(jnp.asarray(self.high, x.dtype), x.shape)
        wp, wn = _pos(w), _neg(w)
        z = layer.out(x, w, b) - layer.out(lo, wp, _pos(b)) - layer.out(hi, wn, _neg(b))
        h = g / stabilize(z, self.stabilizer)
        return x * layer.back(w, h) - lo * layer.back(wp, h) - hi * layer.back(wn, h)


@dataclass(frozen=True)
class Flat(LinearRule):
    """LRP-flat: relevance spread uniformly over each output's receptive field (weights and inputs 1)."""

    stabilizer: float = 1e-6

    def relevance(self, layer, g):
        ones = jnp.ones_like(layer.w)
        z = layer.out(jnp.ones_like(layer.x), ones)
        return layer.back(ones, g / stabilize(z, self.stabilizer))


@dataclass(frozen=True)
class WSquare(LinearRule):
    """LRP-w²: relevance spread in proportion to the squared weights (inputs ignored)."""

    stabilizer: float = 1e-6
    zero_bias: bool = False

    def relevance(self, layer, g):
        w2, b = layer.w**2, _bias(layer, self.zero_bias)
        z = layer.out(jnp.ones_like(layer.x), w2, None if b is None else b**2)
        return layer.back(w2, g / stabilize(z, self.stabilizer))


@dataclass(frozen=True)
class Norm:
    """Pools and sums: each input's relevance in proportion to its share, R_i = x_i ⊙ Lᵀ(g / s(z)).

    At a "pool" site (average pool, global mean, any fixed linear map) `apply_pool` gets the layer's
    forward; at an "add" site (a residual sum) `apply_add` gets the two summands."""

    stabilizer: float = 1e-6

    kinds = ("pool", "add")

    def pool_relevance(self, forward, x, g):
        z, vjp = jax.vjp(forward, x)
        return x * vjp(g / stabilize(z, self.stabilizer))[0]

    def add_relevance(self, a, b, g):
        h = g / stabilize(a + b, self.stabilizer)
        return a * h, b * h


pass_relu = relu_rule(lambda x, g: g, "pass")
"""ReLU rule that passes the relevance through unchanged (zennit's `Pass` for activations)."""


@dataclass(frozen=True)
class Pass:
    """tanh and sigmoid sites (kind "activation"): the model's own activation forward, the relevance
    passed through unchanged (zennit's `Pass`)."""

    kinds = ("activation",)

    def apply(self, site, forward, x):
        @jax.custom_vjp
        def act(x):
            return forward(x)

        act.defvjp(lambda x: (forward(x), None), lambda _, g: (g,))
        return act(x)


pass_activation = Pass()

COMPOSITES = (
    "epsilon_plus",
    "epsilon_plus_flat",
    "epsilon_gamma_box",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
)


def lrp_composite(
    name: str,
    *,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    stabilizer: float = 1e-6,
    low=None,
    high=None,
    residual: bool = True,
) -> Composite:
    """zennit's composite `name` with its defaults: dense layers ε, convolutions z⁺ / γ / α2β1, the first
    linear layer flat (`*_flat`) or the first convolution z^B (`epsilon_gamma_box`, which needs the
    input bounds `low`/`high`); ReLUs, tanh and sigmoids pass, pools and (with `residual`, zennit's ResNet
    canonizer) residual sums norm, max-pools their gradient. BatchNorm after a conv/dense is always merged
    into it."""
    if name not in COMPOSITES:
        raise ValueError(f"unknown LRP composite {name!r}; known: {', '.join(COMPOSITES)}")
    conv = {
        "epsilon_plus": ZPlus(stabilizer),
        "epsilon_plus_flat": ZPlus(stabilizer),
        "epsilon_gamma_box": Gamma(gamma, stabilizer),
    }.get(name, AlphaBeta(2.0, 1.0, stabilizer))
    first = []
    if name.endswith("_flat"):
        first = [(FirstLayer(), Flat(stabilizer))]
    elif name == "epsilon_gamma_box":
        if low is None or high is None:
            raise ValueError(
                "epsilon_gamma_box needs the input bounds low= and high= (the preprocessed values of "
                "black and white, per channel: jaxviz.data.preprocess.input_bounds(preprocessing))"
            )
        first = [(FirstLayer(kind="conv"), ZBox(_bound(low), _bound(high), stabilizer))]
    norm = Norm(stabilizer)
    base = [(Kind("relu"), pass_relu), (Kind("activation"), pass_activation), (Kind("pool"), norm)]
    base += [(Kind("add"), norm)] if residual else []
    pairs = first + base + [(Kind("conv"), conv), (Kind("dense"), Epsilon(epsilon))]
    return Composite(tuple(pairs), name)


def _bound(v):
    return tuple(float(a) for a in v) if isinstance(v, list | tuple) or getattr(v, "ndim", 0) else float(v)


__all__ = [
    "COMPOSITES",
    "AlphaBeta",
    "Epsilon",
    "Flat",
    "FunctionRule",
    "Gamma",
    "Layer",
    "LinearRule",
    "Norm",
    "Pass",
    "WSquare",
    "ZBox",
    "ZPlus",
    "linear_rule",
    "lrp_composite",
    "pass_activation",
    "pass_relu",
    "stabilize",
]
