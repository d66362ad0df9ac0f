"""Receptive fields, and the dataset images that excite a channel most (seed 004: top-k patches).

`receptive_fields` applies the standard recurrence over a model's layers (Araujo et al. 2019):
for a layer with kernel k, stride s and padding p on an input whose units have size r, jump j and
first centre `start`:
    r' = r + (k - 1) j,    j' = j s,    start' = start + ((k - 1) / 2 - p) j
with pixels covering `[i, i + 1)` so the input starts at r = 1, j = 1, start = 0.5. Pools have
k = s = window; pad layers shift `start` by -p·j; it stops at the first flatten / global pool.

`top_k_all` keeps, per channel, the k largest spatial maxima seen so far while streaming the
dataset; `plot_top_k` crops each winner's receptive field around its argmax position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..models.base import (
    ACT,
    ADAPTIVE_AVG,
    CONV,
    DENSE,
    DROPOUT,
    FLATTEN,
    GAP,
    GMP,
    PAD,
    POOL,
)
from ..plot import pyplot, save_figure
from ..taps import activations
from .extract import run_batches


@dataclass(frozen=True)
class RF:
    """Receptive field of a layer's units: side `size`, `jump` (stride in input pixels), and
    `start`, the centre of unit 0 in continuous input coordinates (pixel i covers [i, i+1))."""

    size: float
    jump: float
    start: float

    def __iter__(self):
        return iter((self.size, self.jump, self.start))


def _conv_padding(padding, k: int) -> float:
    if isinstance(padding, str):
        return (k - 1) // 2 if padding.upper() == "SAME" else 0
    return padding


def receptive_fields(model, input_hw: tuple[int, int] | None = None) -> dict[str, RF]:
    """Receptive field `RF(size, jump, start)` of every layer up to the first flatten / global pool.

    `input_hw` is accepted for API symmetry; the recurrence does not depend on the input size
    (sizes may exceed it: clip with `receptive_box`).
    """
    del input_hw
    r, j, start = 1.0, 1.0, 0.5
    out: dict[str, RF] = {}
    for layer in model.layers():
        kind = layer.kind
        if kind == CONV:
            k, s, p = layer.kernel, layer.stride, _conv_padding(layer.padding, layer.kernel)
        elif kind == POOL:
            k = s = layer.size
            p = 0
        elif kind == PAD:
            k, s, p = 1, 1, layer.size
        elif kind in (ACT, DROPOUT):
            k, s, p = 1, 1, 0
        elif kind in (FLATTEN, GAP, GMP, ADAPTIVE_AVG, DENSE):
            break
        else:
            raise ValueError(f"no receptive-field rule for layer kind {kind!r}")
        r, start, j = r + (k - 1) * j, start + ((k - 1) / 2 - p) * j, j * s
        out[layer.name] = RF(r, j, start)
        for alias in layer.aliases:
            out[alias] = out[layer.name]
    return out


def receptive_field(model, variables, input_shape: tuple[int, int, int], layer: str) -> RF:
    """`RF(size, jump, start)` of `layer` on any model, from the gradient's support.

    The unit at the centre of the layer's grid is differentiated with respect to the input under
    rules that keep every dependency: ReLUs pass the gradient through (`pass`) and max pools spread it
    over their whole window (`rules.spread_max_pool`), so the support of the input gradient is the
    region the unit can see (up to exact cancellations of weights, which random cotangents make
    improbable). Its bounding box gives the size and the centre; the jump is input size / layer size.
    Exact for conv / pool stacks like VGG's, and meaningful for residual and concatenating nets.
    """
    from ..core import as_net, as_variables
    from ..rules import Kind, composite, relu_rule, spread_max_pool
    from ..taps import output

    net = as_net(model)
    variables = as_variables(net, variables)
    passing = composite({Kind("relu"): relu_rule(lambda x, g: g, "pass"), Kind("max_pool"): spread_max_pool})
    probe = net.with_rules(passing)
    h, w = input_shape[:2]
    x = jax.random.normal(jax.random.key(0), (1, *input_shape))
    out, vjp = jax.vjp(lambda x: output(probe, variables, x, layer)[0], x)
    if out.ndim != 4:
        raise ValueError(f"layer {layer!r} is not spatial (output {out.shape[1:]}): it sees the whole image")
    lh, lw = out.shape[1:3]
    cy, cx = lh // 2, lw // 2
    ct = jnp.zeros_like(out).at[0, cy, cx].set(jax.random.normal(jax.random.key(1), out.shape[-1:]))
    support = np.asarray(jnp.abs(vjp(ct)[0][0]).sum(-1)) > 0
    ys = np.nonzero(support.any(1))[0]
    if not len(ys):
        raise ValueError(f"layer {layer!r} does not depend on the input (zero gradient everywhere)")
    jump = h / lh
    nominal = (cy + 0.5) * jump  # the unit's centre on a stride-aligned grid
    if ys[0] > 0 and ys[-1] < h - 1:
        size, centre = float(ys[-1] + 1 - ys[0]), (ys[0] + ys[-1] + 1) / 2
    else:  # clipped by the border: symmetric about the unit's centre
        size, centre = float(2 * max(nominal - ys[0], ys[-1] + 1 - nominal)), nominal
    return RF(size, float(jump), float(centre - cy * jump))


def _box(rf, y: int, x: int) -> tuple[int, int, int, int]:
    """Unclipped `(y0, x0, y1, x1)` (end exclusive) of the unit at `(y, x)`."""
    size, jump, start = rf
    cy, cx = start + y * jump, start + x * jump
    y0, x0 = int(np.floor(cy - size / 2 + 1e-6)), int(np.floor(cx - size / 2 + 1e-6))
    return y0, x0, y0 + int(size), x0 + int(size)


def receptive_box(rf, y: int, x: int, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Input-pixel box `(y0, x0, y1, x1)` (end exclusive) of the unit at `(y, x)`, clipped to `hw`."""
    y0, x0, y1, x1 = _box(rf, y, x)
    h, w = hw
    return max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)


@dataclass(frozen=True)
class TopK:
    """Per channel (rows), the k best images: `values` `(C, k)` (spatial max of the channel),
    `indices` `(C, k)` dataset indices, `positions` `(C, k, 2)` argmax `(y, x)` in the layer's grid.
    Sorted by decreasing value; ties keep the lower dataset index first."""

    layer: str
    channels: np.ndarray
    values: np.ndarray
    indices: np.ndarray
    positions: np.ndarray


def _spatial_max(a):
    """`(N, H, W, C)` → max `(N, C)` and argmax `(N, C, 2)`; `(N, C)` → itself, positions 0."""
    if a.ndim == 2:
        return a, jnp.zeros((*a.shape, 2), jnp.int32)
    n, h, w, c = a.shape
    flat = a.reshape(n, h * w, c)
    arg = jnp.argmax(flat, axis=1)
    return jnp.max(flat, axis=1), jnp.stack([arg // w, arg % w], axis=-1).astype(jnp.int32)


def top_k_all(
    lm,
    dataset,
    layer: str,
    channels: Sequence[int] | None = None,
    k: int = 9,
    *,
    batch_size: int = 64,
    progress: bool = True,
) -> TopK:
    """The `k` images with the highest spatial maximum of each channel of `layer` (all by default).

    One streaming pass; per channel only `k` values, indices and positions are kept.
    """
    model = lm.model

    def fn(params, x, valid):
        a = activations(model, params, x, [layer])[layer]
        if channels is not None:
            a = a[..., jnp.asarray(list(channels))]
        return _spatial_max(a)

    vals = idx = pos = None
    for start, m, (v, p) in run_batches(lm, dataset, fn, batch_size=batch_size, progress=progress, desc="top-k"):
        v, p = v[:m].T.astype(np.float32), p[:m].transpose(1, 0, 2)  # (C, m), (C, m, 2)
        i = np.broadcast_to(np.arange(start, start + m), v.shape)
        if vals is None:
            vals, idx, pos = v[:, :0], i[:, :0], p[:, :0]
        vals, idx, pos = (np.concatenate([vals, v], 1), np.concatenate([idx, i], 1), np.concatenate([pos, p], 1))
        order = np.argsort(-vals, axis=1, kind="stable")[:, :k]
        vals, idx = np.take_along_axis(vals, order, 1), np.take_along_axis(idx, order, 1)
        pos = np.take_along_axis(pos, order[..., None], 1)
    chans = np.arange(vals.shape[0]) if channels is None else np.asarray(list(channels))
    return TopK(layer, chans, vals, idx.astype(np.int64), pos)


def top_k(lm, dataset, layer: str, channel: int, k: int = 9, **kwargs) -> TopK:
    """`top_k_all` for one channel (a `TopK` with a single row)."""
    return top_k_all(lm, dataset, layer, [channel], k, **kwargs)


def crop(image: np.ndarray, rf, y: int, x: int, fill: float = 0.5) -> np.ndarray:
    """The receptive field of unit `(y, x)` cut from `image` `(H, W, C)`; parts outside are `fill`."""
    y0, x0, y1, x1 = _box(rf, y, x)
    h, w = image.shape[:2]
    out = np.full((y1 - y0, x1 - x0, image.shape[2]), fill, np.float32)
    cy0, cx0, cy1, cx1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    if cy1 > cy0 and cx1 > cx0:
        out[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = image[cy0:cy1, cx0:cx1]
    return out


def plot_top_k(dataset, result: TopK, rf, path: str | Path, cell: float = 1.1, dpi: int = 100) -> Path:
    """PNG grid: one row per channel, its k receptive-field crops (padded grey past the image
    border), each titled with its activation. `rf` is the layer's `RF` (or the dict of them)."""
    plt = pyplot()

    if isinstance(rf, dict):
        rf = rf[result.layer]
    images = dataset.images if hasattr(dataset, "images") else np.asarray(dataset)
    rows, cols = result.values.shape
    fig, axes = plt.subplots(rows, max(cols, 1), figsize=(cell * max(cols, 1) + 0.4, cell * rows + 0.45), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            i = result.indices[r, c]
            if i < 0:
                continue
            y, x = result.positions[r, c]
            patch = crop(images[i], rf, int(y), int(x))
            ax.imshow(
                patch[..., 0] if patch.shape[2] == 1 else patch, cmap="gray", vmin=0, vmax=1, interpolation="nearest"
            )
            ax.set_title(f"{result.values[r, c]:.3g}", fontsize=6)
        axes[r, 0].set_ylabel(f"ch {result.channels[r]}", fontsize=7)
    fig.suptitle(f"{result.layer}: top {cols}", fontsize=8)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.3 / (cell * rows + 0.45)))
    return save_figure(fig, path, dpi)
