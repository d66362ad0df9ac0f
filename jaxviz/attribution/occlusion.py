"""Occlusion (Zeiler & Fergus 2014): slide a patch over the image and record the drop of p(target).

Every occluded copy of every image is a row of one batched computation, run `chunk` patch
positions at a time. The map follows Captum's Occlusion / FeatureAblation convention: each
pixel gets the mean drop over the patch positions that cover it.

`occlusion_sweep` keeps what Zeiler & Fergus's figure 7 draws per occluder position instead of a
map: every class probability (panel d: the true class's; panel e: the most probable class) and the
total activation of the feature map that responds most strongly to the unoccluded image (panel b).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..core import Attribution, finite_input, prepare
from ..taps import output, run
from .targets import Target, Unit, score, select, target_layer


@finite_input
def occlusion(
    model,
    variables,
    x: jax.Array,
    target: Target = None,
    *,
    patch: int | tuple[int, int] = 8,
    stride: int | tuple[int, int] = 4,
    fill: float | jax.Array = 0.0,
    chunk: int | None = 64,
    prob: bool = True,
):
    """Mean drop of the target's probability when a `patch` of value `fill` hides each pixel.

    Args:
      x: `(N, H, W, C)` float, preprocessed (model space).
      target: see `targets.py`; selected on the clean `x`.
      patch, stride: window size and step in pixels, an int or `(height, width)`. Windows start
        at 0, stride, 2·stride, ...; when `(H − patch) % stride != 0` one more window is aligned
        to the bottom (right) border, so every pixel is covered.
      fill: the patch's value in model space, anything broadcastable to `x` (a scalar, a `(C,)`
        color such as the preprocessed gray, an image). The default 0 is the mean color after
        mean subtraction.
      chunk: patch positions per forward pass (each pass holds chunk·N images); None = all.
      prob: score with the softmax probability of the target class; False uses the raw logit.
        `Unit` targets always use the unit's raw value.

    Returns an `Attribution` with maps `(N, H, W)` = mean over covering windows of
    score(x) − score(occluded x) (positive where hiding the pixel lowers the score).
    """
    h, w = x.shape[1:3]
    ph, pw = _pair(patch, "patch")
    sh, sw = _pair(stride, "stride")
    if ph > h or pw > w:
        raise ValueError(f"occlusion patch {ph}x{pw} is larger than the {h}x{w} image")
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be None (all at once) or >= 1, got chunk={chunk}")
    rows, cols = _windows(h, ph, sh), _windows(w, pw, sw)  # (Py, H), (Px, W) 0/1 masks
    fill = jnp.broadcast_to(jnp.asarray(fill, x.dtype), x.shape)
    stop = target_layer(target)
    raw = isinstance(target, Unit) or not prob

    def value(o, sel):  # the raw score, or the target's log-probability
        return score(o, sel) if raw else _target_log_prob(o, sel)

    net, variables = prepare(model, variables)
    out = output(net, variables, x, stop)[0]
    sel = select(out, target)
    clean = value(out, sel)
    rows_j, cols_j = jnp.asarray(rows, x.dtype), jnp.asarray(cols, x.dtype)

    def occluded_value(pos):  # one window (row index, column index) → the score of every image (N,)
        a, b = pos
        hole = (rows_j[a][:, None] * cols_j[b][None, :])[None, :, :, None] > 0
        return value(output(net, variables, jnp.where(hole, fill, x), stop)[0], sel)

    py, px = len(rows), len(cols)
    a, b = np.meshgrid(np.arange(py), np.arange(px), indexing="ij")
    scores = jax.lax.map(
        occluded_value, (jnp.asarray(a.ravel()), jnp.asarray(b.ravel())), batch_size=py * px if chunk is None else chunk
    )  # (P, N)
    if raw:
        drop = clean[None] - scores
    else:  # p − p' = −p·expm1(log p' − log p): exact even when p rounds to 1 in float32
        drop = -jnp.exp(clean)[None] * jnp.expm1(scores - clean[None])
    drop = drop.T.reshape(-1, py, px)
    # Windows form a grid, so Σ_windows drop·mask factorizes into row and column masks.
    total = jnp.einsum("nab,ay,bx->nyx", drop, rows_j, cols_j)
    count = np.outer(rows.sum(0), cols.sum(0))
    return Attribution(total / jnp.asarray(count, x.dtype)[None], sel.index, out, {})


class Sweep(NamedTuple):
    """What the model does with the occluder at each position `(a, b)` of a `Py × Px` grid of windows.

    probs `(N, Py, Px, K)`: softmax of the occluded images; clean `(N, K)`: of the unoccluded ones;
    feature `(N, Py, Px)`: total activation (sum over the map) of channel `channel` `(N,)` of `layer`
    — each image's strongest channel on the unoccluded image — or None without a layer; rows, cols:
    each window's first pixel along y and x (`(Py,)`, `(Px,)`), so window (a, b) covers
    `[rows[a], rows[a] + patch) × [cols[b], cols[b] + patch)`."""

    probs: np.ndarray
    clean: np.ndarray
    feature: np.ndarray | None
    channel: np.ndarray | None
    layer: str | None
    rows: np.ndarray
    cols: np.ndarray


@finite_input
def occlusion_sweep(
    model,
    variables,
    x: jax.Array,
    *,
    layer: str | None = None,
    patch: int | tuple[int, int] = 8,
    stride: int | tuple[int, int] = 4,
    fill: float | jax.Array = 0.0,
    chunk: int | None = 64,
) -> Sweep:
    """Class probabilities (and a feature map's total activation) with a `patch` of `fill` at each position.

    Args as `occlusion` (x preprocessed `(N, H, W, C)`; windows on the same grid); `layer` (a module
    path or alias with a spatial output) adds panel (b)'s feature-map total. Returns a `Sweep`."""
    h, w = x.shape[1:3]
    (ph, pw), (sh, sw) = _pair(patch, "patch"), _pair(stride, "stride")
    if ph > h or pw > w:
        raise ValueError(f"occlusion patch {ph}x{pw} is larger than the {h}x{w} image")
    rows, cols = _windows(h, ph, sh), _windows(w, pw, sw)
    fill = jnp.broadcast_to(jnp.asarray(fill, x.dtype), x.shape)
    net, variables = prepare(model, variables)
    capture = () if layer is None else (layer,)

    def forward(images):  # softmax (N, K) and each channel's total activation (N, C) or None
        logits, acts = run(net, variables, images, capture)
        return jax.nn.softmax(logits, -1), None if layer is None else _totals(acts[net.resolve(layer)], layer)

    clean, totals = forward(x)
    channel = None if layer is None else jnp.argmax(totals, -1)
    rows_j, cols_j = jnp.asarray(rows, bool), jnp.asarray(cols, bool)

    def occluded(pos):
        a, b = pos
        hole = (rows_j[a][:, None] & cols_j[b][None, :])[None, :, :, None]
        probs, t = forward(jnp.where(hole, fill, x))
        return probs, None if t is None else jnp.take_along_axis(t, channel[:, None], 1)[:, 0]

    py, px = len(rows), len(cols)
    a, b = np.meshgrid(np.arange(py), np.arange(px), indexing="ij")
    probs, feature = jax.lax.map(
        occluded, (jnp.asarray(a.ravel()), jnp.asarray(b.ravel())), batch_size=py * px if chunk is None else chunk
    )  # (P, N, K), (P, N)
    n = x.shape[0]
    probs = np.moveaxis(np.asarray(probs), 0, 1).reshape(n, py, px, -1)
    feature = None if feature is None else np.asarray(feature).T.reshape(n, py, px)
    return Sweep(
        probs,
        np.asarray(clean),
        feature,
        None if channel is None else np.asarray(channel),
        layer,
        rows.argmax(1),
        cols.argmax(1),
    )


def _totals(a: jax.Array, layer: str) -> jax.Array:
    if a.ndim != 4:
        raise ValueError(
            f"occlusion_sweep layer {layer!r} has no spatial output (shape {a.shape[1:]}); choose a conv or ReLU layer"
        )
    return a.sum((1, 2))


def _target_log_prob(logits: jax.Array, sel) -> jax.Array:
    """log p_c = −softplus(logsumexp_{j≠c}(z_j − z_c)): keeps its ~1e-9 digits when p_c ≈ 1, where
    `log_softmax` rounds to exactly 0 and a confident model's occlusion map would vanish."""
    others = logits - score(logits, sel)[:, None]
    others = jnp.where(jax.nn.one_hot(sel.index, logits.shape[-1], dtype=bool), -jnp.inf, others)
    return -jax.nn.softplus(jax.nn.logsumexp(others, axis=-1))


def _windows(size: int, patch: int, stride: int) -> np.ndarray:
    """0/1 masks `(windows, size)` of the patch positions along one axis, the last at the border."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    m = np.zeros((len(starts), size), np.float32)
    for i, s in enumerate(starts):
        m[i, s : s + patch] = 1
    return m


def _pair(v, what: str) -> tuple[int, int]:
    pair = (v, v) if np.ndim(v) == 0 else tuple(v)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"occlusion {what} must be a positive int or (height, width), got {v!r}")
    return int(pair[0]), int(pair[1])
