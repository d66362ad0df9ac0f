"""SmoothGrad and its variants: input gradients averaged over noisy copies of each image.

Smilkov et al. 2017 (SmoothGrad), with SmoothGrad² (mean of squared gradients) and VarGrad
(Adebayo et al. 2018, their variance). Noise σ = level·(max − min) of each image (seed 004).

The target is selected once on the clean input (see `targets.py`) and kept for every sample.
Randomness: `key` is one key, or one key per image (shape `(N,)`); image i's n noise draws are
`jax.random.split(k_i, n)` with k_i = key[i], or `fold_in(key, i)` for a single key. With one key
per image (the batch runner derives them from image names) an image's noise does not depend on its
batch or position; with a single key it depends on the position.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ..core import Attribution, finite_input, prepare
from ..taps import output
from .targets import Selection, Target, score, select, target_layer

VARIANTS = ("mean", "squared", "vargrad")


def per_image_keys(key: jax.Array, n: int) -> jax.Array:
    """`(n,)` keys: `key` itself when it already holds one key per image, else `fold_in(key, i)`."""
    if key.shape == (n,):
        return key
    if key.shape != ():
        raise ValueError(f"key must be one PRNG key or one per image ({n},), got shape {key.shape}")
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))


@finite_input
def smoothgrad(
    model,
    variables,
    x: jax.Array,
    target: Target = None,
    *,
    n: int = 50,
    level: float = 0.15,
    variant: str = "mean",
    key: jax.Array,
    chunk: int | None = None,
):
    """Input gradient of the target's value averaged over `n` noisy copies of each image.

    Args:
      x: `(N, H, W, C)` float, preprocessed.
      target: see `targets.py`; selected on the clean `x`.
      n: noise samples per image.
      level: noise σ as a fraction of each image's value range (max − min); 0 gives the plain gradient.
      variant: "mean" (SmoothGrad), "squared" (SmoothGrad², mean of g²), "vargrad" (variance of g,
        population form: mean of (g − mean g)²).
      key: PRNG key (required).
      chunk: samples per forward/backward pass (each pass holds chunk·N images); None = all n.

    Returns an `Attribution`: maps `(N, H, W, C)`, `out` the clean output at the target's layer.
    """
    if n < 1:
        raise ValueError(f"smoothgrad needs n >= 1 noise samples, got n={n}")
    if level < 0:
        raise ValueError(f"smoothgrad noise level must be >= 0, got level={level}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown smoothgrad variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    check_chunk(chunk)
    net, variables = prepare(model, variables)
    stop = target_layer(target)
    out, vjp = jax.vjp(lambda x: output(net, variables, x, stop)[0], x)
    sel = select(out, target)
    (g0,) = vjp(jax.grad(lambda o: jnp.sum(score(o, sel)))(out))

    span = jnp.max(x, axis=(1, 2, 3)) - jnp.min(x, axis=(1, 2, 3))
    sigma = (level * span).reshape(-1, 1, 1, 1).astype(x.dtype)
    keys = jax.vmap(lambda k: jax.random.split(k, n))(per_image_keys(key, x.shape[0]))
    keys = jnp.swapaxes(keys, 0, 1)  # (n, N): sample-major, so chunks run over samples

    def chunk_sums(ks):  # ks (k, N) keys → Σ over the k samples of (d, d²), d = g − g0
        noise = jax.vmap(jax.vmap(lambda kk: jax.random.normal(kk, x.shape[1:]).astype(x.dtype)))(ks)
        g = batched_score_grad(net, variables, x[None] + noise * sigma[None], sel, stop)
        d = g - g0[None]
        return jnp.sum(d, axis=0), jnp.sum(d * d, axis=0)

    # Sums are shifted by the clean gradient g0: the variance then does not cancel catastrophically,
    # and level=0 gives back g0 exactly.
    s1, s2 = chunked_sum(chunk_sums, keys, chunk)
    mean_d = s1 / n
    var = jnp.maximum(s2 / n - mean_d * mean_d, 0)
    mean = g0 + mean_d
    if variant == "mean":
        maps = mean
    elif variant == "squared":
        maps = var + mean * mean
    else:
        maps = var
    return Attribution(maps, sel.index, out, {})


# --- shared by the sample-based methods (SmoothGrad, Integrated Gradients) ---------------


def batched_score_grad(net, variables, xs: jax.Array, sel: Selection, stop: str | None) -> jax.Array:
    """∂score/∂x for k copies of the batch at once: `xs` `(k, N, H, W, C)`, one selection for all."""
    k, n = xs.shape[:2]
    flat = _shard_rows(xs.reshape(k * n, *xs.shape[2:]))
    tiled = Selection(jnp.tile(sel.index, k), None if sel.pos is None else jnp.tile(sel.pos, (k, 1)))
    g = jax.grad(lambda z: jnp.sum(score(output(net, variables, z, stop)[0], tiled)))(flat)
    return g.reshape(xs.shape)


def _shard_rows(a: jax.Array) -> jax.Array:
    """Spread the rows (samples × images) over the "batch" axis of the mesh set by the caller (`jax.set_mesh`,
    as `batch.bind_methods` does for several devices), so one image's noise samples or IG steps run on
    every device; unchanged without such a mesh or when the rows do not divide evenly."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or "batch" not in mesh.axis_names or a.shape[0] % mesh.shape["batch"]:
        return a
    return jax.lax.with_sharding_constraint(a, jax.sharding.PartitionSpec("batch"))


def chunked_sum(f: Callable, xs, chunk: int | None):
    """Σ over chunks of `f(xs[s:s + chunk])`, `xs` a pytree with a leading sample axis.

    `f` takes a chunk `(k, ...)` and returns that chunk's contribution (any pytree); a `lax.scan`
    adds them so that only one chunk is live at a time. A last, shorter chunk takes the remainder.
    """
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    k = n if chunk is None else min(chunk, n)
    full, rest = divmod(n, k)
    head = jax.tree_util.tree_map(lambda a: a[: full * k].reshape(full, k, *a.shape[1:]), xs)
    if full == 1:
        acc = f(jax.tree_util.tree_map(lambda a: a[0], head))
    else:
        one = jax.tree_util.tree_map(lambda a: a[0], head)
        zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(f, one))
        # XLA:CPU runs a loop body several times slower than the same ops unrolled (its convolutions
        # lose their threading inside loops), so on CPU the chunks are unrolled: same sums, same order.
        unroll = full if jax.default_backend() == "cpu" else 1
        acc, _ = jax.lax.scan(
            lambda acc, c: (jax.tree_util.tree_map(jnp.add, acc, f(c)), None), zeros, head, unroll=unroll
        )
    if rest:
        tail = f(jax.tree_util.tree_map(lambda a: a[full * k :], xs))
        acc = jax.tree_util.tree_map(jnp.add, acc, tail)
    return acc


def check_chunk(chunk: int | None) -> None:
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be None (all at once) or >= 1, got chunk={chunk}")
