"""2-D maps of a layer's feature space: t-SNE (van der Maaten & Hinton 2008) and thumbnail grids.

`tsne` places each image's feature vector in the plane: exact t-SNE up to 1000 points, above
that the FFT-accelerated t-SNE of openTSNE (Linderman et al. 2019, "FIt-SNE") when installed,
else scikit-learn's Barnes-Hut. Features may be a read-only `np.memmap` (50 000 images streamed
to disk), read once as float32.

The grid view (Karpathy's "t-SNE grid") snaps the points to a rows × cols grid so thumbnails do
not overlap, by a one-to-one assignment minimizing the total squared distance between points and
cell centres (points min-max scaled to the grid, row 0 at the top):

- `grid_fill` gives each *cell* a distinct point, so that no cell stays empty when there are at
  least as many points as cells (50 000 images on a 50×50 grid: each cell shows the point
  nearest it, with no image shown twice);
- `grid_assignment` gives each *point* a distinct cell (needs rows·cols ≥ N).

Both solve it exactly (`scipy.optimize.linear_sum_assignment`) while the cost matrix has at
most `DENSE_MAX` entries (about 2000 points on 2000 cells). Above that they start from a greedy
matching on `cKDTree` candidates (shortest point–cell distance first, each point used once) and
improve it by exact dense assignments on groups of 256 nearby cells (Z-order tiles, shifted
between passes; the total never increases). On even layouts that lands within ~1 % of the
optimum; on very gappy ones (tight t-SNE clusters, most cells empty) within ~20–25 %, where
greedy alone is ~2× off. 50 000 points on 100×100 cells take a few seconds and O(N) memory.
An exact sparse solver (`scipy.sparse.csgraph.min_weight_full_bipartite_matching` on the
k-nearest-neighbour graph) was measured and rejected: exact only on its candidate graph, and
its run time blows up on gappy layouts (over 800 s for 50 000 Gaussian points on 100×100).

`thumbnail_grid` lays images out on such a grid, reading only the images it shows;
`embedding_figures` draws a scatter coloured by label and the grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plot import pyplot, save_figure

TSNE_METHODS = ("auto", "fft", "barnes_hut", "exact")
GRID_METHODS = ("auto", "dense", "local", "greedy")
DENSE_MAX = 4_000_000
"""Largest cost matrix (cells × points) that `method="auto"` solves densely (32 MB of float64)."""
BIG = 2500
"""Above this many points `embedding_figures` defaults to a 50×50 filled grid and a light scatter."""


# --- t-SNE --------------------------------------------------------------------------------------


def tsne(
    features: np.ndarray,
    *,
    seed: int = 0,
    perplexity: float = 30.0,
    method: str = "auto",
    n_jobs: int = -1,
    iterations: int | None = None,
) -> np.ndarray:
    """t-SNE of `(N, D)` features (any array-like, e.g. a read-only memmap) → `(N, 2)` float32.

    Deterministic for a seed; PCA initialization; the perplexity is capped below N/3.

    Args:
      method: "exact" or "barnes_hut" (scikit-learn), "fft" (openTSNE's FIt-SNE), or "auto":
        exact up to 1000 points, above that fft if openTSNE is installed, else barnes_hut.
      n_jobs: fft's threads (−1: all cores). Its result depends on the thread count, so pin it
        (e.g. 1) to reproduce an fft embedding on another machine.
      iterations: gradient steps after the 250 early-exaggeration steps; None: the backend's default
        (fft 500, scikit-learn 750). The time is about proportional to 250 + iterations.
    """
    if method not in TSNE_METHODS:
        raise ValueError(f"t-SNE method {method!r} unknown; use one of {', '.join(TSNE_METHODS)}")
    n = len(features)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    if iterations is not None and iterations < 1:
        raise ValueError(f"t-SNE iterations must be >= 1 (after the 250 early-exaggeration steps), got {iterations}")
    # a float32 memmap passes through without a copy; anything else becomes one float32 array
    x = np.asarray(features, np.float32).reshape(n, -1)
    perplexity = float(min(perplexity, max(1.0, (n - 1) / 3)))
    if method == "auto":
        method = "exact" if n <= 1000 else "fft" if _has("openTSNE") else "barnes_hut"
    if method == "fft":
        try:
            from openTSNE import TSNE as OpenTSNE
        except ImportError:
            raise ImportError("t-SNE method 'fft' uses openTSNE: pip install 'jaxviz-cnn[inspect]'") from None
        emb = OpenTSNE(
            n_components=2,
            perplexity=perplexity,
            initialization="pca",
            random_state=seed,
            n_jobs=n_jobs,
            negative_gradient_method="fft",
            verbose=False,
            **({} if iterations is None else {"n_iter": iterations}),
        ).fit(x)
        return np.asarray(emb, np.float32)
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise ImportError(f"t-SNE method {method!r} uses scikit-learn: pip install 'jaxviz-cnn[inspect]'") from None
    steps = {} if iterations is None else {"max_iter": 250 + iterations}  # its max_iter counts the 250
    y = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, method=method, **steps)
    y = y.fit_transform(x)
    return y.astype(np.float32)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# --- grid assignment ----------------------------------------------------------------------------


def grid_fill(points2d: np.ndarray, rows: int, cols: int, *, method: str = "auto") -> np.ndarray:
    """The point shown in each cell of a rows × cols grid, minimizing the total squared distance.

    Points are scaled to the grid's extent (each axis min-max to [0, cols−1] × [0, rows−1], y
    upward so row 0 is at the top); each cell gets a distinct point. With N ≥ rows·cols every
    cell is filled (by the point nearest it, as far as distinct points allow); with fewer points
    every point is placed once and the other cells get −1.

    Args:
      points2d: `(N, 2)` float, x then y.
      method: "dense" (exact, `linear_sum_assignment`, memory rows·cols·N), "greedy" (k-nearest
        candidates, shortest first, each point once), "local" (greedy, then exact dense
        re-assignment of groups of 256 neighbouring cells), or "auto": dense while
        rows·cols·N ≤ `DENSE_MAX`, else local. 50 000 points on 100×100 take seconds.

    Returns:
      `(rows * cols,)` int64 point indices per cell `row * cols + col`, distinct, −1 for none.
    """
    if method not in GRID_METHODS:
        raise ValueError(f"grid method {method!r} unknown; use one of {', '.join(GRID_METHODS)}")
    if rows < 1 or cols < 1:
        raise ValueError(f"a grid needs rows, cols ≥ 1, got {rows}x{cols}")
    pts = _scaled(points2d, rows, cols)
    r, c = np.divmod(np.arange(rows * cols), cols)
    cells = np.stack([c, r], 1).astype(np.float64)
    fill = np.full(rows * cols, -1, np.int64)
    if len(pts) == 0:
        return fill
    if len(pts) >= len(cells):
        fill[:] = _match(cells, pts, method)
    else:
        fill[_match(pts, cells, method)] = np.arange(len(pts))
    return fill


def grid_assignment(points2d: np.ndarray, rows: int, cols: int, *, method: str = "auto") -> np.ndarray:
    """Each point's cell in a rows × cols grid, minimizing the total squared distance.

    The inverse of `grid_fill` (same scaling and methods) when rows·cols ≥ N.

    Args:
      points2d: `(N, 2)` float, x then y.
      rows, cols: the grid, with rows·cols ≥ N.

    Returns:
      `(N,)` int cell indices `row * cols + col` (row 0 at the top, where y is largest), all distinct.
    """
    n = len(points2d)
    if rows * cols < n:
        raise ValueError(f"a {rows}x{cols} grid has {rows * cols} cells, fewer than {n} points")
    fill = grid_fill(points2d, rows, cols, method=method)
    out = np.empty(n, np.int64)
    placed = np.flatnonzero(fill >= 0)
    out[fill[placed]] = placed
    return out


def _scaled(points2d, rows: int, cols: int) -> np.ndarray:
    """`(N, 2)` points in grid units: column (x) in [0, cols−1], row (y, flipped) in [0, rows−1]."""
    p = np.asarray(points2d, np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points2d must be (N, 2), got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("points2d has NaN or infinite values")
    if len(p) == 0:
        return p
    lo, hi = p.min(0), p.max(0)
    unit = (p - lo) / np.where(hi > lo, hi - lo, 1.0)
    # y grows upward in a scatter but rows grow downward in an image grid
    return np.stack([unit[:, 0] * (cols - 1), (1 - unit[:, 1]) * (rows - 1)], 1)


def _match(left: np.ndarray, right: np.ndarray, method: str) -> np.ndarray:
    """`(L,)` distinct indices into `right` `(R, 2)` for each of `left` `(L, 2)`, L ≤ R."""
    if method == "auto":
        method = "dense" if len(left) * len(right) <= DENSE_MAX else "local"
    if method == "dense":
        from scipy.optimize import linear_sum_assignment
        from scipy.spatial.distance import cdist

        rows, cols = linear_sum_assignment(cdist(left, right, "sqeuclidean"))
        out = np.empty(len(left), np.int64)
        out[rows] = cols
        return out
    if method == "greedy":
        return _greedy(left, right)
    return _local(left, right)


def _greedy(left: np.ndarray, right: np.ndarray, k: int = 8) -> np.ndarray:
    """Greedy matching in rounds: candidate edges to the k nearest free `right` points, shortest
    first, each side used once; whatever is left unmatched queries again with k doubled."""
    from scipy.spatial import cKDTree

    out = np.full(len(left), -1, np.int64)
    free = np.ones(len(right), bool)
    todo = np.arange(len(left))
    while todo.size:
        cand = np.flatnonzero(free)
        kk = min(k, cand.size)
        d, j = cKDTree(right[cand]).query(left[todo], k=kk)
        d, j = d.reshape(len(todo), kk), cand[j.reshape(len(todo), kk)]
        li = np.repeat(todo, kk)
        order = np.lexsort((j.ravel(), li, d.ravel()))  # ties broken by index: deterministic
        for a, b in zip(li[order].tolist(), j.ravel()[order].tolist()):
            if out[a] < 0 and free[b]:
                out[a] = b
                free[b] = False
        todo = todo[out[todo] < 0]
        k *= 2
    return out


def _local(
    left: np.ndarray, right: np.ndarray, *, group: int = 256, passes: int = 8, k: int = 4, tol: float = 1e-4
) -> np.ndarray:
    """Greedy matching improved by exact dense assignments on groups of `group` nearby lefts.

    Each pass cuts the lefts, in Z-order (alternately x-major and y-major, boundaries shifted by
    half a group every other pass), into groups; a group is re-solved with
    `linear_sum_assignment` over its own current rights plus its members' k nearest free ones,
    so the total never increases. Stops after `passes`, or when a pair of passes gains < tol.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial import cKDTree
    from scipy.spatial.distance import cdist

    nl, nr = len(left), len(right)
    out = _greedy(left, right)
    free = np.ones(nr, bool)
    free[out] = False
    total = ((left - right[out]) ** 2).sum()
    orders = [_morton(left), _morton(left[:, ::-1])]
    for p in range(passes):
        order = orders[(p // 2) % 2]
        offset = (group // 2) * (p % 2)
        fidx = np.flatnonzero(free)
        tree = cKDTree(right[fidx]) if fidx.size else None
        for start in range(-offset, nl, group):
            a = order[max(start, 0) : start + group]
            mine = out[a]
            pool = mine
            if tree is not None:
                _, j = tree.query(left[a], k=min(k, fidx.size))
                cand = np.unique(fidx[j.reshape(-1)])
                pool = np.concatenate([mine, cand[free[cand]]])  # earlier groups may have taken some
            _, col = linear_sum_assignment(cdist(left[a], right[pool], "sqeuclidean"))
            free[mine] = True
            free[pool[col]] = False
            out[a] = pool[col]
        prev, total = total, ((left - right[out]) ** 2).sum()
        if p % 2 == 1 and total > prev * (1 - tol):
            break
    return out


def _morton(xy: np.ndarray) -> np.ndarray:
    """The order of `(N, 2)` points along a Z-order curve (x bits interleaved with y bits)."""
    lo, hi = xy.min(0), xy.max(0)
    q = ((xy - lo) / np.where(hi > lo, hi - lo, 1.0) * 65535).astype(np.uint64)
    return np.argsort(_spread_bits(q[:, 0]) | (_spread_bits(q[:, 1]) << np.uint64(1)), kind="stable")


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """16-bit ints with a zero inserted after every bit (b3b2b1b0 → 0b30b20b10b0)."""
    v = v.astype(np.uint64) & np.uint64(0xFFFF)
    for shift, mask in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333), (1, 0x55555555)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


# --- figures ------------------------------------------------------------------------------------


def thumbnail_grid(
    images, cells: np.ndarray, rows: int, cols: int, *, size: int | None = None, chunk: int = 512
) -> np.ndarray:
    """A canvas of thumbnails: `images[cells[i]]` in cell i (row-major), white where cells[i] < 0.

    Args:
      images: `(N, H, W, C)` in [0, 1], or any object with `len` and `images[index_array]` →
        `(k, H, W, C)` (a memmap, an h5py dataset: indices are read sorted, in chunks).
      cells: `(rows * cols,)` int image index per cell, −1 for empty (`grid_fill`'s output).
      size: thumbnail side in pixels (nearest-neighbour resampling); default the images' own.

    Returns:
      `(rows * h, cols * w, C)` float32, h = w = size when given.
    """
    cells = np.asarray(cells, np.int64).reshape(-1)
    if len(cells) != rows * cols:
        raise ValueError(f"cells has {len(cells)} entries for a {rows}x{cols} grid")
    if len(images) == 0:
        raise ValueError("thumbnail_grid needs at least one image")
    shown = np.flatnonzero(cells >= 0)
    if shown.size and cells[shown].max() >= len(images):
        raise ValueError(f"cells index image {cells[shown].max()} of {len(images)}")
    shape = _thumbs(images, np.zeros(1, np.int64), size).shape[1:]
    h, w = shape[:2]
    canvas = np.ones((rows * h, cols * w, shape[2]), np.float32)
    order = shown[np.argsort(cells[shown], kind="stable")]
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        # read each image once, indices increasing (h5py needs it)
        uniq, inv = np.unique(cells[part], return_inverse=True)
        batch = _thumbs(images, uniq, size)
        for cell, img in zip(part.tolist(), batch[inv.reshape(-1)]):
            r, c = divmod(cell, cols)
            canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = img
    return canvas


def _thumbs(images, index: np.ndarray, size: int | None) -> np.ndarray:
    """`images[index]` as `(k, h, w, C)` float32, resampled to size × size when given."""
    batch = np.asarray(images[index], np.float32)
    if batch.ndim == 3:
        batch = batch[..., None]
    if batch.ndim != 4:
        raise ValueError(f"images[index] must be (k, H, W, C) or (k, H, W), got {batch.shape}")
    return batch if size is None else _resample(batch, size)


def _resample(batch: np.ndarray, size: int) -> np.ndarray:
    """`(k, H, W, C)` → `(k, size, size, C)` by nearest-neighbour sampling of pixel centres."""
    h, w = batch.shape[1:3]
    ys = np.minimum(((np.arange(size) + 0.5) * h / size).astype(int), h - 1)
    xs = np.minimum(((np.arange(size) + 0.5) * w / size).astype(int), w - 1)
    return batch[:, ys][:, :, xs]


def embedding_figures(
    dataset,
    feats: np.ndarray | None,
    path_scatter: str | Path,
    path_grid: str | Path,
    *,
    points2d: np.ndarray | None = None,
    seed: int = 0,
    perplexity: float = 30.0,
    cols: int | None = None,
    title: str = "t-SNE",
    grid: tuple[int, int] | None = None,
    images=None,
    labels: np.ndarray | None = None,
    classes=None,
    tsne_method: str = "auto",
    grid_method: str = "auto",
) -> np.ndarray:
    """Write a t-SNE scatter coloured by label and a thumbnail grid of the same layout.

    Args:
      dataset: a `Dataset` (images `(N, H, W, C)` in [0, 1], labels, class names), or None when
        `images` (and optionally `labels`, `classes`) are given; those keywords override it.
      feats: `(N, K)` features of its images (e.g. `neighbours.layer_features`, or a memmap).
      path_scatter, path_grid: the PNGs to write.
      points2d: a precomputed `(N, 2)` embedding; default `tsne(feats, seed=seed, method=tsne_method)`.
      grid: `(rows, cols)`; default up to `BIG` points the smallest square that holds all N
        (each image once), above that 50×50 cells each filled by its nearest point.
      cols: grid columns, rows then the fewest that hold N (the older way to choose a grid).
      images: `(N, H, W, C)` or any object with `len` and `images[index_array]`; only the
        thumbnails shown are read.
      grid_method: `grid_fill`'s method.

    Returns:
      the `(N, 2)` embedding.
    """
    images = images if images is not None else dataset.images
    labels = labels if labels is not None else getattr(dataset, "labels", None)
    classes = tuple(classes if classes is not None else getattr(dataset, "classes", ()))
    n = len(images)
    if points2d is None:
        if feats is None:
            raise ValueError("embedding_figures needs feats or points2d")
        y = tsne(feats, seed=seed, perplexity=perplexity, method=tsne_method)
    else:
        y = np.asarray(points2d, np.float32)
    if len(y) != n:
        raise ValueError(f"{len(y)} embedded points for {n} images")
    labels = np.full(n, -1, np.int64) if labels is None else np.asarray(labels).astype(np.int64)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} images")
    plt = pyplot()

    big = n > BIG
    fig, ax = plt.subplots(figsize=(6.5, 5))
    cmap = plt.get_cmap("tab10" if max(len(classes), 1) <= 10 else "tab20")
    size = max(0.5, min(12.0, 6000 / n))  # marker area: small dots (rasterized) for many points
    for lab in np.unique(labels):
        m = labels == lab
        name = classes[lab] if 0 <= lab < len(classes) else "unlabelled"
        ax.scatter(
            y[m, 0],
            y[m, 1],
            s=size,
            color=cmap(int(lab) % cmap.N),
            label=name,
            linewidths=0 if big else None,
            rasterized=big,
        )
    ax.set_xticks([]), ax.set_yticks([])
    # legend dots at the small-N size, whatever the plot's
    ax.legend(
        fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, markerscale=float(np.sqrt(12.0 / size))
    )
    ax.set_title(f"{title} ({_count(n)} images)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path_scatter)

    if grid is not None:
        rows, cols = grid
    elif cols is not None:
        rows = int(np.ceil(n / cols))
    elif big:
        rows = cols = 50
    else:
        cols = int(np.ceil(np.sqrt(n)))
        rows = int(np.ceil(n / cols))
    cell = grid_fill(y, rows, cols, method=grid_method)
    side = min(12.0, max(4.0, 0.35 * cols))
    # thumbnails no bigger than about 2 px per screen pixel at save_figure's 100 dpi
    px = int(np.ceil(2 * 100 * side / cols))
    thumb = None if max(_thumbs(images, np.zeros(1, np.int64), None).shape[1:3]) <= px else px
    canvas = thumbnail_grid(images, cell, rows, cols, size=thumb)
    h, w, ch = canvas.shape[0] // rows, canvas.shape[1] // cols, canvas.shape[2]
    fig, ax = plt.subplots(figsize=(side, side * rows * h / (cols * w) + 0.3))
    ax.imshow(
        canvas[..., 0] if ch == 1 else canvas, cmap="gray" if ch == 1 else None, vmin=0, vmax=1, interpolation="nearest"
    )
    ax.set_axis_off()
    if n >= rows * cols:
        what = f"{rows}x{cols} cells of {_count(n)} images, nearest point per cell"
    else:
        what = f"{rows}x{cols}, {n} images"
    ax.set_title(f"{title} grid ({what})", fontsize=9)
    fig.tight_layout(pad=0.2)
    save_figure(fig, path_grid)
    return y


def _count(n: int) -> str:
    """50000 → "50 000"."""
    return f"{n:,}".replace(",", " ")
