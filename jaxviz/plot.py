"""Views of attribution maps and figures: normalization, overlays, comparison grids.

Maps come as `(N, H, W, C)` (gradient methods) or `(N, H, W)` (CAM family). Views turn them
into `(N, H, W)` in [0, 1] (or [-1, 1] for signed maps); figures use matplotlib, imported lazily.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .atomic import atomic_path


def abs_max(maps: np.ndarray) -> np.ndarray:
    """max_c |g| per pixel (seed 003's saliency view); `(N, H, W, C)` → `(N, H, W)`."""
    maps = np.asarray(maps)
    return np.abs(maps).max(-1) if maps.ndim == 4 else np.abs(maps)


def clamp_max(maps: np.ndarray) -> np.ndarray:
    """clamp(max_c g, min=0) per pixel (seed 000's saliency view)."""
    maps = np.asarray(maps)
    return np.maximum(maps.max(-1) if maps.ndim == 4 else maps, 0)


def percentile_normalize(maps: np.ndarray, q: float = 99.0) -> np.ndarray:
    """Scale each map to [0, 1], clipping at its q-th percentile so a few pixels don't dominate."""
    maps = np.asarray(maps, np.float32)
    flat = maps.reshape(len(maps), -1)
    lo = flat.min(1)
    hi = np.percentile(flat, q, axis=1)
    scale = np.where(hi > lo, hi - lo, 1.0)
    shape = (-1,) + (1,) * (maps.ndim - 1)
    return np.clip((maps - lo.reshape(shape)) / scale.reshape(shape), 0, 1)


def signed_normalize(maps: np.ndarray, q: float = 99.0) -> np.ndarray:
    """Scale each signed map to [-1, 1] by its q-th percentile of |value| (for diverging colormaps)."""
    maps = np.asarray(maps, np.float32)
    hi = np.percentile(np.abs(maps).reshape(len(maps), -1), q, axis=1)
    hi = np.where(hi > 0, hi, 1.0).reshape((-1,) + (1,) * (maps.ndim - 1))
    return np.clip(maps / hi, -1, 1)


def rgb_gradient(maps: np.ndarray, q: float = 99.0) -> np.ndarray:
    """A colour gradient image (guided backprop's usual look): 0.5 + signed/2, `(N, H, W, 3)`."""
    return 0.5 + 0.5 * signed_normalize(maps, q)


def default_view(maps: np.ndarray) -> np.ndarray:
    """Grayscale `(N, H, W)` in [0, 1]: abs-max + percentile for gradients; CAM-like maps
    (already ≥ 0, or occlusion's probability drops) divided by their maximum, negatives cut."""
    maps = np.asarray(maps, np.float32)
    if maps.ndim == 4:
        return percentile_normalize(abs_max(maps))
    top = maps.reshape(len(maps), -1).max(1).reshape(-1, 1, 1)
    return np.clip(maps / np.where(top > 0, top, 1.0), 0, 1)


SIGNED_VIEWS = frozenset({"lrp"})
"""Methods whose maps are relevance with a sign that matters: `view(..., signed=True)` in batch jobs and the demo."""


def relevance_view(maps: np.ndarray, q: float = 99.0) -> np.ndarray:
    """LRP's usual look, `(N, H, W, 3)` in [0, 1]: channels summed, scaled by the q-th percentile of
    |R|, positive relevance red, negative blue, zero white (matplotlib's `bwr`)."""
    from matplotlib import colormaps

    maps = np.asarray(maps, np.float32)
    summed = maps.sum(-1) if maps.ndim == 4 else maps
    return colormaps["bwr"](0.5 + 0.5 * signed_normalize(summed, q))[..., :3].astype(np.float32)


def view(
    maps: np.ndarray, images: np.ndarray, alpha: float = 0.4, cmap: str = "jet", signed: bool = False
) -> np.ndarray:
    """What a person looks at, per image: CAM-like `(N, H, W)` maps as a heatmap over `images`
    `(N, H, W, 3)` in [0, 1] (seed 000 blends at 0.4); gradient maps `(N, H, W, C)` as grayscale;
    with `signed` (LRP), `relevance_view`."""
    maps = np.asarray(maps)
    if signed:
        return relevance_view(maps)
    if maps.ndim == 3:
        return np.stack([overlay(img, m, alpha, cmap) for img, m in zip(images, default_view(maps))])
    return default_view(maps)


def colors(maps: np.ndarray, cmap: str = "jet", signed: bool = False) -> np.ndarray:
    """The maps alone in colour, `(N, H, W, 3)` in [0, 1], for drawing over the image at an opacity of
    one's choice (`jaxviz report`): CAM-like `(N, H, W)` maps through `cmap`, gradient maps
    `(N, H, W, C)` as grayscale, with `signed` relevance red/white/blue (`relevance_view`)."""
    from matplotlib import colormaps

    maps = np.asarray(maps)
    if signed:
        return relevance_view(maps)
    gray = default_view(maps)
    if maps.ndim == 3:
        return colormaps[cmap](gray)[..., :3].astype(np.float32)
    return np.repeat(gray[..., None], 3, -1)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.4, cmap: str = "jet") -> np.ndarray:
    """Blend a `(H, W)` heatmap in [0, 1] over an `(H, W, 3)` image in [0, 1] (seed 000: alpha 0.4)."""
    from matplotlib import colormaps

    colored = colormaps[cmap](np.clip(heat, 0, 1))[..., :3]
    return np.clip((1 - alpha) * image + alpha * colored, 0, 1).astype(np.float32)


def comparison_grid(
    path: str | Path,
    images: np.ndarray,
    panels: Mapping[str, np.ndarray],
    row_titles: Sequence[str] | None = None,
    cell: float = 1.6,
    dpi: int = 100,
) -> Path:
    """Rows = images, columns = input + one panel per method (seed 002, fig. 7.8).

    `panels` maps a column title to `(N, H, W)` (drawn grayscale) or `(N, H, W, 3)` arrays in [0, 1].
    Written atomically as PNG.
    """
    plt = pyplot()
    n, cols = len(images), 1 + len(panels)
    fig, axes = plt.subplots(n, cols, figsize=(cell * cols, cell * n + 0.3), squeeze=False)
    for r in range(n):
        cells = [("input", images[r])] + [(t, p[r]) for t, p in panels.items()]
        for c, (title, img) in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(title.replace("_", " "), fontsize=8)
        if row_titles is not None:
            axes[r, 0].set_ylabel(row_titles[r], fontsize=7)
    fig.tight_layout(pad=0.3)
    return save_figure(fig, path, dpi)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


FIGURE_FORMATS = ("png", "svg", "pdf", "eps")
"""What `save_figure` writes: raster PNG and matplotlib's vector formats (seed 002 wrote PNG and EPS)."""


def below_title(fig, title) -> tuple[float, float, float, float]:
    """`tight_layout`'s rect leaving about 0.3 in at the top for a suptitle (none when `title` is falsy)."""
    return (0.0, 0.0, 1.0, 1.0 - 0.3 / fig.get_figheight() if title else 1.0)


def save_figure(fig, path: str | Path, dpi: int = 100, formats: Sequence[str] = ("png",)) -> Path:
    """Write `fig` atomically as `path` (PNG) and, for each other of `formats`, beside it with that
    suffix (`bar.svg`, `bar.eps`); close it. Returns the PNG's path."""
    bad = [f for f in formats if f not in FIGURE_FORMATS]
    if bad:
        raise ValueError(f"figure formats {bad} unknown; use {', '.join(FIGURE_FORMATS)}")
    path = Path(path)
    try:
        for fmt in dict.fromkeys(["png", *formats]):
            with atomic_path(path.with_suffix(f".{fmt}")) as tmp:
                fig.savefig(tmp, dpi=dpi, format=fmt)
    finally:
        pyplot().close(fig)
    return path
