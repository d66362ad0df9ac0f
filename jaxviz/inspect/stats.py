"""Per-channel activation statistics over a dataset, and the dead filters they reveal (seed 003).

`ChannelStats` holds running statistics of one layer: per channel the count of positions, mean,
standard deviation (Chan et al.'s parallel Welford update in float64), maximum, and fraction of
"zero" activations (value <= eps; eps = 0 by default, i.e. exactly zero after a ReLU), plus one
fixed-bin histogram for the whole layer. Each batch is reduced on device to small partials, so
a pass over 10 000 images never brings the activations themselves to the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..plot import pyplot, save_figure
from .extract import run_batches


def default_edges() -> np.ndarray:
    """Histogram edges (float32): one bin (-inf, 0], then log-spaced bins from 1e-3 to 1e3, then (1e3, inf).

    Bins are half-open `[e_i, e_{i+1})` like `np.histogram`; the first edge is the most negative
    float32 rather than -inf and the second the smallest normal float32 (XLA flushes
    denormals), so `np.histogram(values, edges)` reproduces the counts exactly.
    """
    lo = np.finfo(np.float32).min
    hi = np.finfo(np.float32).max
    return np.concatenate([[lo, np.finfo(np.float32).tiny], np.geomspace(1e-3, 1e3, 49), [hi]]).astype(np.float32)


def batch_partials(a: jax.Array, valid: jax.Array, edges: jax.Array, eps: float) -> dict[str, jax.Array]:
    """Reduce one batch `(N, ..., C)` to per-channel count/mean/M2/max/zeros and a layer histogram.

    `valid` `(N,)` masks padded rows. Works under `jit`; everything is float32/int32 on device.
    """
    c = a.shape[-1]
    a = a.astype(jnp.float32)
    w = jnp.broadcast_to(valid.reshape((-1,) + (1,) * (a.ndim - 1)), a.shape)
    flat, wf = a.reshape(-1, c), w.reshape(-1, c).astype(jnp.float32)
    count = jnp.sum(wf, axis=0)
    mean = jnp.sum(flat * wf, axis=0) / jnp.maximum(count, 1.0)
    m2 = jnp.sum(jnp.square(flat - mean[None, :]) * wf, axis=0)
    mx = jnp.max(jnp.where(wf > 0, flat, -jnp.inf), axis=0)
    zeros = jnp.sum(jnp.where(wf > 0, flat <= eps, False), axis=0, dtype=jnp.int32)
    idx = jnp.searchsorted(edges, flat.ravel(), side="right") - 1
    hist = jnp.bincount(jnp.clip(idx, 0, len(edges) - 2), weights=wf.ravel(), length=len(edges) - 1)
    return {"count": count, "mean": mean, "m2": m2, "max": mx, "zeros": zeros, "hist": hist}


@dataclass
class ChannelStats:
    """Running per-channel statistics of one layer; `update` with batches, read the properties."""

    layer: str
    channels: int
    eps: float = 0.0
    edges: np.ndarray = field(default_factory=default_edges)
    count: int = 0  # positions seen per channel (images x H x W)
    images: int = 0
    _mean: np.ndarray | None = None
    _m2: np.ndarray | None = None
    max: np.ndarray | None = None
    zeros: np.ndarray | None = None  # int64 count of values <= eps
    hist: np.ndarray | None = None  # int64 counts per bin of `edges`, all channels together

    def __post_init__(self):
        self.edges = np.asarray(self.edges, np.float32)
        c = self.channels
        self._mean = np.zeros(c, np.float64) if self._mean is None else self._mean
        self._m2 = np.zeros(c, np.float64) if self._m2 is None else self._m2
        self.max = np.full(c, -np.inf, np.float32) if self.max is None else self.max
        self.zeros = np.zeros(c, np.int64) if self.zeros is None else self.zeros
        self.hist = np.zeros(len(self.edges) - 1, np.int64) if self.hist is None else self.hist

    def update(self, a, valid=None) -> ChannelStats:
        """Add a batch of activations `(N, ..., C)` (NumPy or JAX); `valid` `(N,)` masks rows."""
        a = jnp.asarray(a)
        valid = jnp.ones(a.shape[0], bool) if valid is None else jnp.asarray(valid)
        p = jax.device_get(_partials_jit(a, valid, jnp.asarray(self.edges), self.eps))
        return self.merge(p, int(np.sum(np.asarray(valid))))

    def merge(self, p: dict, n_images: int) -> ChannelStats:
        """Fold in partials from `batch_partials` (Chan et al.: exact, stable, in float64)."""
        nb = float(np.asarray(p["count"]).reshape(-1)[0]) if np.size(p["count"]) else 0.0
        if nb == 0:
            return self
        na, n = float(self.count), float(self.count) + nb
        mb = np.asarray(p["mean"], np.float64)
        delta = mb - self._mean
        self._mean = self._mean + delta * (nb / n)
        self._m2 = self._m2 + np.asarray(p["m2"], np.float64) + delta**2 * (na * nb / n)
        self.max = np.maximum(self.max, np.asarray(p["max"], np.float32))
        self.zeros = self.zeros + np.asarray(p["zeros"], np.int64)
        self.hist = self.hist + np.rint(np.asarray(p["hist"], np.float64)).astype(np.int64)
        self.count += int(round(nb))
        self.images += n_images
        return self

    @property
    def mean(self) -> np.ndarray:
        return self._mean.copy()

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self._m2 / max(self.count, 1))

    @property
    def zero_fraction(self) -> np.ndarray:
        return self.zeros / max(self.count, 1)

    @property
    def dead(self) -> np.ndarray:
        """Channels never above eps on any position of any image."""
        return np.flatnonzero(self.max <= self.eps)

    def summary(self) -> dict:
        """Plain arrays: count, images, mean, std, max, zero_fraction, dead, hist, edges."""
        return {
            "layer": self.layer,
            "count": self.count,
            "images": self.images,
            "mean": self.mean,
            "std": self.std,
            "max": self.max.copy(),
            "zero_fraction": self.zero_fraction,
            "dead": self.dead,
            "hist": self.hist.copy(),
            "edges": self.edges.copy(),
        }


_partials_jit = jax.jit(batch_partials, static_argnames="eps")


def activation_stats(
    lm,
    dataset,
    layers: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    eps: float = 0.0,
    edges: np.ndarray | None = None,
    progress: bool = True,
) -> dict[str, ChannelStats]:
    """`ChannelStats` of each layer (default: every activation layer with spatial output).

    One pass over `dataset` (display-space images, normalized with `lm.preprocessing`); each
    batch runs the net up to the deepest layer and is reduced on device.
    """
    from ..taps import activations, feature_layers

    model = lm.model
    if layers is None:
        layers = feature_layers(model, lm.variables, lm.input_shape)
    layers = list(layers)
    edges = default_edges() if edges is None else np.asarray(edges, np.float32)
    edges_j = jnp.asarray(edges)

    def fn(params, x, valid):
        acts = activations(model, params, x, layers)
        return {n: batch_partials(a, valid, edges_j, eps) for n, a in acts.items()}

    stats: dict[str, ChannelStats] = {}
    for _, m, parts in run_batches(lm, dataset, fn, batch_size=batch_size, progress=progress, desc="stats"):
        for name in layers:
            p = parts[name]
            if name not in stats:
                stats[name] = ChannelStats(name, len(p["mean"]), eps, edges)
            stats[name].merge(p, m)
    return stats


def dead_filters(stats: ChannelStats | dict[str, ChannelStats]) -> np.ndarray | dict[str, np.ndarray]:
    """Indices of channels never active (max <= eps), for one layer or a dict of layers."""
    if isinstance(stats, ChannelStats):
        return stats.dead
    return {name: s.dead for name, s in stats.items()}


def stats_table(stats: dict[str, ChannelStats], per_channel: bool = False) -> list[dict]:
    """Rows for CSV/JSON: one per layer, or one per (layer, channel) when `per_channel`."""
    rows = []
    for name, s in stats.items():
        if per_channel:
            dead = set(s.dead.tolist())
            for c in range(s.channels):
                rows.append(
                    {
                        "layer": name,
                        "channel": c,
                        "mean": float(s.mean[c]),
                        "std": float(s.std[c]),
                        "max": float(s.max[c]),
                        "zero_fraction": float(s.zero_fraction[c]),
                        "dead": c in dead,
                    }
                )
        else:
            rows.append(
                {
                    "layer": name,
                    "channels": s.channels,
                    "images": s.images,
                    "positions": s.count,
                    "mean": float(np.mean(s.mean)),
                    "max": float(np.max(s.max)),
                    "zero_fraction": float(np.mean(s.zero_fraction)),
                    "dead": len(s.dead),
                    "dead_fraction": len(s.dead) / max(s.channels, 1),
                    "dead_channels": s.dead.tolist(),
                }
            )
    return rows


def plot_stats(stats: dict[str, ChannelStats], path: str | Path, cell: float = 2.4, dpi: int = 100) -> Path:
    """PNG: bars of dead-filter fraction and mean zero fraction per layer, then each layer's histogram."""
    plt = pyplot()

    names = list(stats)
    panels = 1 + len(names)
    cols = min(4, panels)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols * 1.2, cell * rows), squeeze=False)
    axes = axes.ravel()
    x = np.arange(len(names))
    ax = axes[0]
    ax.bar(x - 0.2, [len(stats[n].dead) / max(stats[n].channels, 1) for n in names], 0.4, label="dead filters")
    ax.bar(x + 0.2, [float(np.mean(stats[n].zero_fraction)) for n in names], 0.4, label="zero fraction")
    ax.set_xticks(x, names, rotation=60, fontsize=6)
    ax.set_ylim(0, 1)
    ax.set_title("per layer", fontsize=8)
    ax.legend(fontsize=6)
    for i, name in enumerate(names, start=1):
        s, ax = stats[name], axes[i]
        counts = s.hist.astype(np.float64)
        labels = ["<=0"] + [f"{e:.2g}" for e in s.edges[1:-1]]
        ax.bar(np.arange(len(counts)), counts / max(counts.sum(), 1), width=1.0, color="tab:gray")
        ticks = np.linspace(0, len(counts) - 1, 5).astype(int)
        ax.set_xticks(ticks, [labels[t] for t in ticks], fontsize=6)
        ax.set_yscale("log")
        ax.set_title(f"{name}: {len(s.dead)}/{s.channels} dead", fontsize=8)
    for ax in axes[panels:]:
        ax.axis("off")
    fig.tight_layout(pad=0.4)
    return save_figure(fig, path, dpi)
