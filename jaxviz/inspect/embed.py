"""2-D maps of a layer's feature space: t-SNE (van der Maaten & Hinton 2008) and thumbnail grids.

`tsne` places each image's feature vector in the plane; `grid_assignment` snaps those points
to a rows × cols grid with an optimal one-to-one assignment (Karpathy's "t-SNE grid" view), so
thumbnails do not overlap; `embedding_figures` draws a scatter coloured by label and the grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plot import pyplot, save_figure


def tsne(features: np.ndarray, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """scikit-learn's t-SNE of `(N, D)` features → `(N, 2)` float32, deterministic for a seed.

    Barnes-Hut above 1000 points, exact below; PCA initialization. The perplexity is capped
    below N (t-SNE needs perplexity < N).
    """
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise ImportError("t-SNE uses scikit-learn: pip install 'jaxviz-cnn[inspect]'") from None

    x = np.asarray(features, np.float32).reshape(len(features), -1)
    n = len(x)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    perplexity = float(min(perplexity, max(1.0, (n - 1) / 3)))
    method = "barnes_hut" if n > 1000 else "exact"
    y = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, method=method).fit_transform(x)
    return y.astype(np.float32)


def grid_assignment(points2d: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Each point's cell in a rows × cols grid, minimizing the total squared distance.

    Points are scaled to the grid's extent (each axis min-max to [0, cols−1] × [0, rows−1]),
    then `scipy.optimize.linear_sum_assignment` finds the one-to-one assignment.

    Args:
      points2d: `(N, 2)` float, x then y.
      rows, cols: the grid, with rows·cols ≥ N.

    Returns:
      `(N,)` int cell indices `row * cols + col` (row 0 at the top, where y is largest), all distinct.
    """
    from scipy.optimize import linear_sum_assignment

    p = np.asarray(points2d, np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points2d must be (N, 2), got {p.shape}")
    if rows * cols < len(p):
        raise ValueError(f"a {rows}x{cols} grid has {rows * cols} cells, fewer than {len(p)} points")
    lo, hi = p.min(0), p.max(0)
    unit = (p - lo) / np.where(hi > lo, hi - lo, 1.0)
    # y grows upward in a scatter but rows grow downward in an image grid
    scaled = np.stack([unit[:, 0] * (cols - 1), (1 - unit[:, 1]) * (rows - 1)], 1)
    r, c = np.divmod(np.arange(rows * cols), cols)
    cells = np.stack([c, r], 1).astype(np.float64)
    cost = ((scaled[:, None, :] - cells[None, :, :]) ** 2).sum(-1)
    pts, assigned = linear_sum_assignment(cost)
    out = np.empty(len(p), np.int64)
    out[pts] = assigned
    return out


def embedding_figures(dataset, feats: np.ndarray, path_scatter: str | Path, path_grid: str | Path, *,
                      points2d: np.ndarray | None = None, seed: int = 0, perplexity: float = 30.0,
                      cols: int | None = None, title: str = "t-SNE") -> np.ndarray:
    """Write a t-SNE scatter coloured by label and a thumbnail grid of the same layout.

    Args:
      dataset: a `Dataset` (images `(N, H, W, C)` in [0, 1], labels, class names).
      feats: `(N, K)` features of its images (e.g. `neighbours.layer_features`).
      path_scatter, path_grid: the PNGs to write.
      points2d: a precomputed `(N, 2)` embedding; default `tsne(feats, seed=seed)`.
      cols: grid columns; default the smallest square that holds N.

    Returns:
      the `(N, 2)` embedding.
    """
    y = tsne(feats, seed=seed, perplexity=perplexity) if points2d is None else np.asarray(points2d)
    images, labels = np.asarray(dataset.images), np.asarray(dataset.labels)
    n = len(y)
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.5, 5))
    cmap = plt.get_cmap("tab10" if max(len(dataset.classes), 1) <= 10 else "tab20")
    for lab in np.unique(labels):
        m = labels == lab
        name = dataset.classes[lab] if 0 <= lab < len(dataset.classes) else "unlabelled"
        ax.scatter(y[m, 0], y[m, 1], s=12, color=cmap(int(lab) % cmap.N), label=name)
    ax.set_xticks([]), ax.set_yticks([])
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title(f"{title} ({n} images)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path_scatter)

    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    cell = grid_assignment(y, rows, cols)
    h, w, ch = images.shape[1:]
    canvas = np.ones((rows * h, cols * w, ch), np.float32)
    for i, c in enumerate(cell):
        r, cc = divmod(int(c), cols)
        canvas[r * h:(r + 1) * h, cc * w:(cc + 1) * w] = images[i]
    side = min(12.0, max(4.0, 0.35 * cols))
    fig, ax = plt.subplots(figsize=(side, side * rows * h / (cols * w) + 0.3))
    ax.imshow(canvas[..., 0] if ch == 1 else canvas, cmap="gray" if ch == 1 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{title} grid ({rows}x{cols})", fontsize=9)
    fig.tight_layout(pad=0.2)
    save_figure(fig, path_grid)
    return y
