"""Inspection figures: filter grids, feature maps, nearest neighbours, t-SNE and its grid."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import jaxviz
from jaxviz.data.datasets import load_dataset
from jaxviz.inspect import embed, filters, neighbours
from jaxviz.models.base import LayerError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def shapes_lm():
    return jaxviz.load()


@pytest.fixture(scope="module")
def small_shapes():
    return load_dataset("shapes", n=60, size=32, seed=3)


def _is_png(path) -> bool:
    return path.exists() and path.read_bytes()[:8] == PNG_MAGIC


# --- nearest neighbours ------------------------------------------------------------------


def test_exact_copy_is_first_neighbour_at_distance_zero(small_shapes):
    pixels = small_shapes.images.reshape(len(small_shapes), -1)
    q = 17
    db = np.concatenate([pixels[:q], pixels[q + 1 :], pixels[q : q + 1]])  # the copy goes last
    idx, dist = neighbours.nearest_neighbours(pixels[q : q + 1], db, 3)
    assert idx[0, 0] == len(db) - 1
    assert dist[0, 0] == pytest.approx(0.0, abs=1e-5)
    assert dist[0, 1] > 1e-3


def test_chunking_does_not_change_the_answer():
    rng = np.random.default_rng(0)
    q, db = rng.normal(size=(37, 12)), rng.normal(size=(50, 12))
    a = neighbours.nearest_neighbours(q, db, 5, chunk=4)
    b = neighbours.nearest_neighbours(q, db, 5, chunk=1000)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    brute = np.argsort(((q[:, None] - db[None]) ** 2).sum(-1), axis=1)[:, :5]
    np.testing.assert_array_equal(a[0], brute)


def test_cosine_and_euclidean_on_normalized_features_agree_in_order():
    rng = np.random.default_rng(1)
    q, db = rng.normal(size=(20, 16)), rng.normal(size=(80, 16)) * rng.uniform(0.1, 10, size=(80, 1))
    cos_idx, cos_d = neighbours.nearest_neighbours(q, db, 10, metric="cosine")
    euc_idx, euc_d = neighbours.nearest_neighbours(q, db, 10, normalize_features=True)
    np.testing.assert_array_equal(cos_idx, euc_idx)
    np.testing.assert_allclose(euc_d**2, 2 * cos_d, atol=1e-5)  # |a-b|² = 2(1 - cos) for unit vectors
    raw_idx, _ = neighbours.nearest_neighbours(q, db, 10)
    assert not np.array_equal(raw_idx, cos_idx)  # the scaling matters without normalization


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="metric"):
        neighbours.nearest_neighbours(np.zeros((1, 2)), np.zeros((3, 2)), 1, metric="manhattan")


def test_neighbours_figure_rates_in_unit_interval(tmp_path, small_shapes):
    lm = jaxviz.load("shapesnet", random_init=True)
    path = tmp_path / "nn.png"
    rates = neighbours.neighbours_figure(small_shapes, [0, 5], None, 4, path, lm, "relu3_2")
    assert set(rates) == {"pixel", "feature"}
    assert all(0.0 <= r <= 1.0 for r in rates.values())
    assert _is_png(path)


def test_trained_features_group_shapes_better_than_pixels(tmp_path, shapes_lm):
    ds = load_dataset("shapes", n=200, size=64, seed=1)
    feats = neighbours.layer_features(shapes_lm, ds.images, "gap")
    assert feats.shape == (200, 128)
    rates = neighbours.neighbours_figure(ds, [0, 1], feats, 5, tmp_path / "nn.png", shapes_lm, "gap")
    # measured: pixels ≈ 0.10 (chance for 10 classes), gap features ≈ 0.8
    assert rates["feature"] >= rates["pixel"]
    assert rates["feature"] > 0.5


def test_layer_features_pools_spatial_outputs(shapes_lm, small_shapes):
    f = neighbours.layer_features(shapes_lm, small_shapes.images[:5], "relu4_2", batch=2)
    a = jaxviz.taps.activations(
        shapes_lm.model, shapes_lm.params, neighbours.model_input(shapes_lm, small_shapes.images[:5]), ["relu4_2"]
    )["relu4_2"]
    np.testing.assert_allclose(f, np.asarray(a).mean(axis=(1, 2)), rtol=1e-5, atol=1e-5)


# --- grid assignment and t-SNE -----------------------------------------------------------


def test_grid_assignment_is_a_permutation_of_cells():
    pts = np.random.default_rng(2).normal(size=(23, 2))
    cells = embed.grid_assignment(pts, 5, 5)
    assert cells.shape == (23,)
    assert len(set(cells.tolist())) == 23
    assert cells.min() >= 0 and cells.max() < 25


def test_grid_assignment_is_optimal_on_a_tiny_case():
    pts = np.random.default_rng(3).uniform(size=(5, 2))
    rows, cols = 2, 3
    cells = embed.grid_assignment(pts, rows, cols)
    # the same scaling as documented: x to [0, cols-1], y to [0, rows-1] with row 0 at the top
    lo, hi = pts.min(0), pts.max(0)
    u = (pts - lo) / (hi - lo)
    scaled = np.stack([u[:, 0] * (cols - 1), (1 - u[:, 1]) * (rows - 1)], 1)
    grid = np.array([[c, r] for r in range(rows) for c in range(cols)], float)

    def cost(assign):
        return sum(((scaled[i] - grid[a]) ** 2).sum() for i, a in enumerate(assign))

    best = min(cost(p) for p in itertools.permutations(range(rows * cols), len(pts)))
    assert cost(cells) == pytest.approx(best)


def test_grid_assignment_needs_enough_cells():
    with pytest.raises(ValueError, match="cells"):
        embed.grid_assignment(np.zeros((7, 2)), 2, 3)


def test_tsne_shape_and_determinism():
    x = np.random.default_rng(4).normal(size=(40, 8)).astype(np.float32)
    a = embed.tsne(x, seed=0, perplexity=10)
    b = embed.tsne(x, seed=0, perplexity=10)
    assert a.shape == (40, 2)
    np.testing.assert_array_equal(a, b)


def test_embedding_figures(tmp_path, small_shapes):
    feats = small_shapes.images.reshape(len(small_shapes), -1)[:, ::7]
    y = embed.embedding_figures(small_shapes, feats, tmp_path / "scatter.png", tmp_path / "grid.png", perplexity=10)
    assert y.shape == (len(small_shapes), 2)
    assert _is_png(tmp_path / "scatter.png") and _is_png(tmp_path / "grid.png")


# --- filters and feature maps ------------------------------------------------------------


def test_filter_grid_png_grows_with_filters(tmp_path):
    from PIL import Image

    k = np.random.default_rng(5).normal(size=(3, 3, 3, 64)).astype(np.float32)
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    filters.filter_grid(k[..., :4], small)
    filters.filter_grid(k, big)
    assert _is_png(small) and _is_png(big)
    ws, hs = Image.open(small).size
    wb, hb = Image.open(big).size
    assert wb * hb > ws * hs
    assert big.stat().st_size > small.stat().st_size


@pytest.mark.parametrize("cin", [1, 16])
def test_filter_grid_grayscale_and_multichannel(tmp_path, cin):
    k = np.random.default_rng(6).normal(size=(5, 5, cin, 6)).astype(np.float32)
    path = tmp_path / f"k{cin}.png"
    filters.filter_grid(k, path, title="t", in_channels=4)
    assert _is_png(path)


def test_layer_filters_and_non_conv_error(tmp_path, shapes_lm):
    path = tmp_path / "conv1.png"
    filters.layer_filters(shapes_lm, "conv1_1", path)
    assert _is_png(path)
    with pytest.raises(LayerError) as err:
        filters.layer_filters(shapes_lm, "fc", tmp_path / "fc.png")
    msg = str(err.value)
    assert "not a conv layer" in msg and "conv1_1" in msg and "conv4_2" in msg
    assert not (tmp_path / "fc.png").exists()


def test_lenet_first_layer_filters(tmp_path):
    lm = jaxviz.load("lenet5", random_init=True)
    filters.layer_filters(lm, "conv1", tmp_path / "lenet.png")
    assert _is_png(tmp_path / "lenet.png")


def test_feature_maps_png(tmp_path, shapes_lm, small_shapes):
    path = tmp_path / "maps.png"
    filters.feature_maps(shapes_lm, small_shapes.images[0], "relu2_1", path, max_maps=16)
    assert _is_png(path)
    with pytest.raises(ValueError, match="spatial"):
        filters.feature_maps(shapes_lm, small_shapes.images[0], "gap", tmp_path / "gap.png")
