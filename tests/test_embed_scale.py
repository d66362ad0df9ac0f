"""t-SNE and its thumbnail grid at scale (seed 004): FFT t-SNE, filled grids, lazy thumbnails."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from jaxviz.inspect import embed


def _cells(rows, cols):
    r, c = np.divmod(np.arange(rows * cols), cols)
    return np.stack([c, r], 1).astype(np.float64)


def _cost(points, rows, cols, fill):
    """Total squared distance of a `grid_fill` result, in the documented grid units."""
    s, ok = embed._scaled(points, rows, cols), fill >= 0
    return float(((s[fill[ok]] - _cells(rows, cols)[ok]) ** 2).sum())


def _blobs(n, seed, k=10, spread=6.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(k, 2))
    lab = rng.integers(k, size=n)
    return centres[lab] + rng.normal(size=(n, 2))


class LazyImages:
    """Images read only by index arrays, which must be increasing (as h5py needs); records reads."""

    def __init__(self, arr):
        self.arr, self.reads = arr, []

    def __len__(self):
        return len(self.arr)

    def __getitem__(self, idx):
        idx = np.asarray(idx)
        assert idx.ndim == 1 and (np.diff(idx) > 0).all(), idx
        self.reads.append(idx)
        return self.arr[idx]


# --- grid_fill / grid_assignment ----------------------------------------------------------------


def test_grid_fill_fills_every_cell_with_distinct_points():
    pts = _blobs(5000, 0)
    fill = embed.grid_fill(pts, 40, 40)
    assert fill.shape == (1600,) and fill.dtype == np.int64
    assert (fill >= 0).all() and fill.max() < 5000
    assert len(np.unique(fill)) == 1600


@pytest.mark.parametrize(
    "rows,cols,method", [(10, 12, "dense"), (60, 60, "auto"), (60, 60, "local"), (60, 60, "greedy")]
)
def test_jittered_grid_points_land_in_their_own_cells(rows, cols, method):
    rng = np.random.default_rng(1)
    cells = _cells(rows, cols)
    # x = column, y = rows counted from the bottom (row 0 is at the top)
    pts = np.stack([cells[:, 0], rows - 1 - cells[:, 1]], 1) + rng.uniform(-0.2, 0.2, size=cells.shape)
    perm = rng.permutation(len(pts))
    fill = embed.grid_fill(pts[perm], rows, cols, method=method)
    np.testing.assert_array_equal(perm[fill], np.arange(rows * cols))
    np.testing.assert_array_equal(embed.grid_assignment(pts[perm], rows, cols, method=method), perm)


@pytest.mark.parametrize("n,rows,cols", [(400, 20, 20), (2000, 20, 20), (300, 20, 20)])
def test_local_assignment_is_within_a_few_percent_of_the_dense_optimum(n, rows, cols):
    pts = np.random.default_rng(n).normal(size=(n, 2))  # Gaussian: empty corners, long moves
    dense = _cost(pts, rows, cols, embed.grid_fill(pts, rows, cols, method="dense"))
    local = _cost(pts, rows, cols, embed.grid_fill(pts, rows, cols, method="local"))
    greedy = _cost(pts, rows, cols, embed.grid_fill(pts, rows, cols, method="greedy"))
    assert dense <= local * (1 + 1e-9)
    assert local <= 1.05 * dense
    assert local <= greedy * (1 + 1e-9)


def test_grid_fill_with_fewer_points_than_cells_places_each_point_once():
    pts = np.random.default_rng(5).uniform(size=(3000, 2))
    fill = embed.grid_fill(pts, 60, 60)  # 3000 x 3600 > DENSE_MAX: the local path
    placed = fill[fill >= 0]
    assert (fill == -1).sum() == 600
    np.testing.assert_array_equal(np.sort(placed), np.arange(3000))
    cell = embed.grid_assignment(pts, 60, 60)
    np.testing.assert_array_equal(fill[cell], np.arange(3000))


def test_grid_fill_edge_cases_and_errors():
    assert (embed.grid_fill(np.zeros((0, 2)), 2, 2) == -1).all()
    same = embed.grid_fill(np.ones((5, 2)), 2, 2)  # identical points: no scale, still distinct
    assert (same >= 0).all() and len(np.unique(same)) == 4
    with pytest.raises(ValueError, match="method"):
        embed.grid_fill(np.zeros((4, 2)), 2, 2, method="sparse")
    with pytest.raises(ValueError, match="NaN"):
        embed.grid_fill(np.full((4, 2), np.nan), 2, 2)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        embed.grid_fill(np.zeros((4, 3)), 2, 2)


@pytest.mark.slow
def test_grid_fill_50k_points_on_100x100_cells_is_fast():
    pts = _blobs(50_000, 2)
    t = time.perf_counter()
    fill = embed.grid_fill(pts, 100, 100)
    seconds = time.perf_counter() - t
    print(f"grid_fill 50 000 points on 100x100: {seconds:.1f} s")
    assert (fill >= 0).all() and len(np.unique(fill)) == 10_000
    assert seconds < 20


# --- t-SNE --------------------------------------------------------------------------------------


def _two_clusters(n=1500, d=20, seed=0):
    rng = np.random.default_rng(seed)
    lab = np.arange(n) % 2
    x = rng.normal(size=(n, d)) + 8.0 * lab[:, None]
    return x.astype(np.float32), lab


def _separated(y, lab):
    """Every point's 10 nearest embedded neighbours share its cluster; the centroids are far apart."""
    from scipy.spatial import cKDTree

    _, nn = cKDTree(y).query(y, k=11)
    agree = (lab[nn[:, 1:]] == lab[:, None]).mean()
    gap = np.linalg.norm(y[lab == 0].mean(0) - y[lab == 1].mean(0))
    spread = max(y[lab == 0].std(0).max(), y[lab == 1].std(0).max())
    return agree > 0.99 and gap > 3 * spread


@pytest.mark.slow  # FIt-SNE's FFT grid costs the same at any N: ~28 s a run at the default 250 + 500 steps
def test_fft_tsne_is_deterministic_reads_a_memmap_and_keeps_clusters(tmp_path):
    pytest.importorskip("openTSNE")
    x, lab = _two_clusters()
    path = tmp_path / "feats.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")  # read-only memmap, as streamed features are
    a = embed.tsne(mm, seed=3, method="fft", iterations=100)
    b = embed.tsne(x, seed=3, method="fft", iterations=100)
    assert a.shape == (1500, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert _separated(a, lab)


@pytest.mark.slow
def test_barnes_hut_tsne_keeps_clusters():
    x, lab = _two_clusters(1200)
    y = embed.tsne(x, seed=0, method="barnes_hut", iterations=100)
    assert y.shape == (1200, 2) and _separated(y, lab)


def test_tsne_iterations_reach_either_backend(monkeypatch):
    """`iterations` counts the steps after early exaggeration: openTSNE's n_iter, scikit-learn's max_iter − 250."""
    openTSNE = pytest.importorskip("openTSNE")
    manifold = pytest.importorskip("sklearn.manifold")
    seen = {}

    class Spy:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def fit(self, x):
            return np.zeros((len(x), 2))

        fit_transform = fit

    monkeypatch.setattr(openTSNE, "TSNE", Spy)
    monkeypatch.setattr(manifold, "TSNE", Spy)
    x = np.zeros((10, 3), np.float32)
    embed.tsne(x, method="fft", iterations=7)
    assert seen["n_iter"] == 7
    seen.clear()
    embed.tsne(x, method="exact", iterations=7)
    assert seen["max_iter"] == 257
    seen.clear()
    embed.tsne(x, method="exact")
    assert "max_iter" not in seen  # the backend's default


def test_tsne_method_errors(monkeypatch):
    x = np.zeros((10, 3), np.float32)
    with pytest.raises(ValueError, match="method"):
        embed.tsne(x, method="umap")
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        embed.tsne(x, iterations=0)
    monkeypatch.setitem(sys.modules, "openTSNE", None)  # import openTSNE now raises ImportError
    with pytest.raises(ImportError, match="openTSNE"):
        embed.tsne(x, method="fft")


# --- thumbnails and figures ---------------------------------------------------------------------


def test_thumbnail_grid_reads_only_shown_images_in_order():
    imgs = np.random.default_rng(0).uniform(size=(50, 4, 6, 3)).astype(np.float32)
    lazy = LazyImages(imgs)
    cells = np.array([7, -1, 3, 40, -1, 9])
    canvas = embed.thumbnail_grid(lazy, cells, 2, 3)
    assert canvas.shape == (8, 18, 3) and canvas.dtype == np.float32
    np.testing.assert_array_equal(canvas[0:4, 0:6], imgs[7])
    np.testing.assert_array_equal(canvas[0:4, 12:18], imgs[3])
    np.testing.assert_array_equal(canvas[4:8, 0:6], imgs[40])
    np.testing.assert_array_equal(canvas[4:8, 12:18], imgs[9])
    assert (canvas[0:4, 6:12] == 1).all() and (canvas[4:8, 6:12] == 1).all()
    read = np.concatenate(lazy.reads)
    assert set(read.tolist()) <= {0, 3, 7, 9, 40}  # image 0 once, for the thumbnail shape
    small = embed.thumbnail_grid(imgs, cells, 2, 3, size=2)
    assert small.shape == (4, 6, 3)
    with pytest.raises(ValueError, match="cells"):
        embed.thumbnail_grid(imgs, cells[:5], 2, 3)


def test_embedding_figures_at_scale_with_lazy_images(tmp_path, monkeypatch):
    n = 3000  # above BIG: a 50x50 grid, every cell filled
    rng = np.random.default_rng(0)
    lazy = LazyImages(rng.uniform(size=(n, 8, 8, 1)).astype(np.float32))
    pts = _blobs(n, 1)
    titles = []
    real_save = embed.save_figure

    def save(fig, path, *a, **k):
        titles.append(fig.axes[0].get_title())
        return real_save(fig, path, *a, **k)

    monkeypatch.setattr(embed, "save_figure", save)
    y = embed.embedding_figures(
        None,
        None,
        tmp_path / "s.png",
        tmp_path / "g.png",
        points2d=pts,
        images=lazy,
        labels=rng.integers(10, size=n),
        classes=[str(i) for i in range(10)],
    )
    assert y.shape == (n, 2)
    assert titles == ["t-SNE (3 000 images)", "t-SNE grid (50x50 cells of 3 000 images, nearest point per cell)"]
    read = np.unique(np.concatenate(lazy.reads))
    assert len(read) <= 2501  # the shown thumbnails (and image 0 for the shape), not all 3000
    assert (tmp_path / "g.png").exists() and (tmp_path / "s.png").exists()

    titles.clear()
    embed.embedding_figures(
        None, None, tmp_path / "s2.png", tmp_path / "g2.png", points2d=pts[:100], images=lazy.arr[:100], grid=(5, 8)
    )
    assert titles[1] == "t-SNE grid (5x8 cells of 100 images, nearest point per cell)"
