"""Integrated Gradients (Sundararajan et al. 2017): (x − x0) ⊙ ∫₀¹ ∂y/∂x(x0 + α(x − x0)) dα.

The attributions of an image sum to ≈ f(x) − f(x0) ("completeness"); the function returns the
relative error of that identity per image, so callers can see whether `steps` was enough.
The target is selected once on the clean input (see `targets.py`) and kept along the path.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..core import Attribution, finite_input, prepare
from ..taps import output
from .smoothgrad import batched_score_grad, check_chunk, chunked_sum, per_image_keys
from .targets import Target, score, select, target_layer

BASELINES = ("zeros", "blur", "uniform")
RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


@finite_input
def integrated_gradients(
    model,
    variables,
    x: jax.Array,
    target: Target = None,
    *,
    steps: int = 50,
    baseline: str | jax.Array | float = "zeros",
    key: jax.Array | None = None,
    method: str = "riemann_trapezoid",
    blur_sigma: float = 5.0,
    chunk: int | None = None,
):
    """Integrated Gradients along the straight path from a baseline `x0` to `x`.

    Args:
      x: `(N, H, W, C)` float, preprocessed (model space).
      target: see `targets.py`; selected on the clean `x`.
      steps: points on the path (quadrature nodes).
      baseline: "zeros" (the model-space zero, i.e. the mean color after mean subtraction);
        "blur" (x blurred by a Gaussian of `blur_sigma` pixels, scipy.ndimage's default
        'reflect' border and truncate=4); "uniform" (uniform noise in [min(x_i), max(x_i)] per
        image, from `key[i]` for one key per image, else `fold_in(key, i)`; needs `key`); or an array
        broadcastable to `x`
        (e.g. a black image already in model space).
      method: quadrature rule, as in Captum: "riemann_left", "riemann_right", "riemann_middle",
        "riemann_trapezoid" (needs steps >= 2), "gausslegendre".
      chunk: path points per forward/backward pass (each pass holds chunk·N images); None = all.

    Returns an `Attribution` with maps `(N, H, W, C)` and `extras["completeness"]` `(N,)`:
    |Σ maps − (f(x) − f(x0))| / |f(x) − f(x0)| per image, with f the target's value (inf or nan
    where f(x) = f(x0)).
    """
    if steps < 1:
        raise ValueError(f"integrated_gradients needs steps >= 1, got steps={steps}")
    check_chunk(chunk)
    alphas, weights = _quadrature(method, steps)
    x0 = make_baseline(x, baseline, key=key, blur_sigma=blur_sigma)
    net, variables = prepare(model, variables)
    stop = target_layer(target)
    out = output(net, variables, x, stop)[0]
    sel = select(out, target)
    delta = x - x0

    def chunk_sum(aw):  # Σ_k w_k ∂y/∂x at x0 + α_k (x − x0), for a chunk of k path points
        a, w = aw
        points = x0[None] + a.reshape(-1, 1, 1, 1, 1) * delta[None]
        g = batched_score_grad(net, variables, points, sel, stop)
        return jnp.einsum("k,knhwc->nhwc", w, g)

    avg_grad = chunked_sum(chunk_sum, (jnp.asarray(alphas, x.dtype), jnp.asarray(weights, x.dtype)), chunk)
    maps = delta * avg_grad
    gap = score(out, sel) - score(output(net, variables, x0, stop)[0], sel)
    completeness = jnp.abs(jnp.sum(maps, axis=(1, 2, 3)) - gap) / jnp.abs(gap)
    return Attribution(maps, sel.index, out, {"completeness": completeness})


def make_baseline(
    x: jax.Array, baseline: str | jax.Array | float, *, key: jax.Array | None = None, blur_sigma: float = 5.0
) -> jax.Array:
    """The baseline `x0` shaped like `x` `(N, H, W, C)`; see `integrated_gradients` for the kinds."""
    if isinstance(baseline, str):
        if baseline == "zeros":
            return jnp.zeros_like(x)
        if baseline == "blur":
            return gaussian_blur(x, blur_sigma)
        if baseline == "uniform":
            if key is None:
                raise ValueError("baseline='uniform' needs a PRNG key: pass key=jax.random.key(...)")
            lo, hi = jnp.min(x, axis=(1, 2, 3)), jnp.max(x, axis=(1, 2, 3))
            draw = jax.vmap(lambda k, lo, hi: jax.random.uniform(k, x.shape[1:], jnp.float32, lo, hi))
            return draw(per_image_keys(key, x.shape[0]), lo.astype(jnp.float32), hi.astype(jnp.float32)).astype(x.dtype)
        raise ValueError(f"unknown baseline {baseline!r}; use one of {', '.join(BASELINES)} or an array")
    b = jnp.asarray(baseline, x.dtype)
    try:
        return jnp.broadcast_to(b, x.shape)
    except ValueError:
        raise ValueError(f"baseline of shape {b.shape} does not broadcast to the input's {x.shape}") from None


def gaussian_blur(x: jax.Array, sigma: float, truncate: float = 4.0) -> jax.Array:
    """Per-channel Gaussian blur of `(N, H, W, C)` as `scipy.ndimage.gaussian_filter` over H and W.

    Separable: one vertical and one horizontal depthwise convolution, after 'reflect' padding
    (scipy's default border: d c b a | a b c d).
    """
    if sigma <= 0:
        raise ValueError(f"blur sigma must be > 0 pixels, got {sigma}")
    radius = int(truncate * sigma + 0.5)
    t = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k = jnp.asarray(k / k.sum(), x.dtype)
    c = x.shape[-1]
    xp = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="symmetric")

    def conv(z, kernel):
        return jax.lax.conv_general_dilated(
            z,
            kernel,
            (1, 1),
            "VALID",
            feature_group_count=c,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )

    z = conv(xp, jnp.tile(k.reshape(-1, 1, 1, 1), (1, 1, 1, c)))
    return conv(z, jnp.tile(k.reshape(1, -1, 1, 1), (1, 1, 1, c)))


def _quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes α in [0, 1] and weights (summing to 1) of a quadrature rule with `steps` nodes."""
    s = np.arange(steps)
    if method == "riemann_left":
        return s / steps, np.full(steps, 1 / steps)
    if method == "riemann_right":
        return (s + 1) / steps, np.full(steps, 1 / steps)
    if method == "riemann_middle":
        return (s + 0.5) / steps, np.full(steps, 1 / steps)
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ValueError(f"method='riemann_trapezoid' needs steps >= 2, got steps={steps}")
        w = np.full(steps, 1 / (steps - 1))
        w[[0, -1]] /= 2
        return np.linspace(0, 1, steps), w
    if method == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, w / 2
    raise ValueError(f"unknown integration method {method!r}; choose one of {', '.join(RULES)}")
