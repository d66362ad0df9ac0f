"""Tests for the synthetic shapes dataset (jaxviz/data/shapes.py)."""

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion

from jaxviz.data import shapes

N = 30


@pytest.fixture(scope="module")
def batch():
    return shapes.generate(N, seed=0)


@pytest.fixture(scope="module")
def examples():
    return [shapes.render(i, seed=1, distractors=(2, 2)) for i in range(60)]


def test_classes():
    assert len(shapes.CLASSES) >= 8
    assert len(set(shapes.CLASSES)) == len(shapes.CLASSES) == shapes.num_classes


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_and_dtypes(size):
    b = shapes.generate(7, size=size, seed=2)
    assert isinstance(b, shapes.ShapesBatch)
    assert b.images.shape == (7, size, size, 3) and b.images.dtype == np.float32
    assert b.labels.shape == (7,) and b.labels.dtype == np.int32
    assert b.masks.shape == (7, size, size) and b.masks.dtype == bool
    assert b.boxes.shape == (7, 4) and b.boxes.dtype == np.int32
    assert ((b.labels >= 0) & (b.labels < shapes.num_classes)).all()


def test_values_in_unit_interval(batch):
    assert np.isfinite(batch.images).all()
    assert batch.images.min() >= 0.0 and batch.images.max() <= 1.0
    assert batch.images.std() > 0.05  # not a blank image


def test_images_in_a_batch_differ(batch):
    corners = batch.images[:, 0, 0]
    assert len(np.unique(corners, axis=0)) == N
    assert len(np.unique(batch.boxes, axis=0)) > N // 2


def test_same_seed_is_deterministic(batch):
    again = shapes.generate(N, seed=0)
    for a, b in zip(batch, again):
        np.testing.assert_array_equal(a, b)


def test_different_seed_differs(batch):
    other = shapes.generate(N, seed=1)
    assert not np.array_equal(batch.images, other.images)
    assert not np.array_equal(batch.masks, other.masks)
    assert not np.array_equal(batch.labels, other.labels)


def test_prefix_stable(batch):
    short = shapes.generate(10, seed=0)
    for a, b in zip(short, batch):
        np.testing.assert_array_equal(a, b[:10])


def test_generate_matches_render(batch):
    ex = shapes.render(17, seed=0)
    np.testing.assert_array_equal(ex.image, batch.images[17])
    np.testing.assert_array_equal(ex.mask, batch.masks[17])
    assert ex.label == batch.labels[17] == shapes.label_of(17, seed=0)


@pytest.mark.parametrize("n", [10 * shapes.num_classes, 10 * shapes.num_classes + 7])
def test_labels_balanced(n):
    labels = np.array([shapes.label_of(i, seed=5) for i in range(n)])
    counts = np.bincount(labels, minlength=shapes.num_classes)
    assert counts.max() - counts.min() <= 1


def test_labels_are_shuffled():
    labels = [shapes.label_of(i, seed=0) for i in range(3 * shapes.num_classes)]
    assert labels != list(range(shapes.num_classes)) * 3


def test_mask_nonempty_and_inside_box(batch):
    for mask, (x0, y0, x1, y1) in zip(batch.masks, batch.boxes):
        assert mask.sum() >= 20
        assert 0 <= x0 < x1 <= mask.shape[1] and 0 <= y0 < y1 <= mask.shape[0]
        inside = np.zeros_like(mask)
        inside[y0:y1, x0:x1] = True
        assert not (mask & ~inside).any()
        # The box is tight: every edge row/column touches the mask.
        assert mask[y0].any() and mask[y1 - 1].any()
        assert mask[:, x0].any() and mask[:, x1 - 1].any()


def test_target_size_range(batch):
    side = np.maximum(batch.boxes[:, 2] - batch.boxes[:, 0], batch.boxes[:, 3] - batch.boxes[:, 1])
    assert side.min() >= 0.15 * 64 and side.max() <= 0.65 * 64


def test_mask_pixels_have_target_colour(examples):
    for ex in examples:
        # Two erosions skip anti-aliased edges, concave corners and the heart's cusp.
        core = binary_erosion(ex.mask, iterations=2)
        assert core.sum() > 0
        np.testing.assert_allclose(ex.image[core], np.broadcast_to(ex.color, ex.image[core].shape), atol=0.1)


def test_target_contrasts_with_surroundings(examples):
    for ex in examples:
        around = binary_dilation(ex.mask, iterations=3) & ~binary_dilation(ex.mask, iterations=1)
        around &= ~ex.distractor_mask
        dist = np.linalg.norm(ex.image[around] - ex.color, axis=-1)
        assert np.percentile(dist, 5) > 0.2


def test_distractors_never_touch_target(examples):
    drawn = [ex.distractor_mask.any() for ex in examples]
    assert np.mean(drawn) > 0.5  # distractors=(2, 2) mostly fit
    for ex in examples:
        near_target = binary_dilation(ex.mask, iterations=1)
        assert not (near_target & ex.distractor_mask).any()


def test_no_distractors_option():
    for i in range(10):
        assert not shapes.render(i, seed=0, distractors=(0, 0)).distractor_mask.any()


def test_target_is_the_largest_shape(examples):
    from scipy.ndimage import label as connected

    for ex in examples:
        parts, count = connected(ex.distractor_mask)
        for k in range(1, count + 1):
            assert (parts == k).sum() < ex.mask.sum()


def test_no_clutter_background_is_flat():
    ex = shapes.render(3, seed=0, distractors=(0, 0), clutter=False)
    background = ex.image[~binary_dilation(ex.mask, iterations=2)]
    assert background.std(axis=0).max() < 0.03  # pixel noise only


def test_cli_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "grid.png"
    shapes._main(["--out", str(out), "--n", "4"])
    assert out.stat().st_size > 1000


def test_write_array_is_generate_in_uint8_and_reused(tmp_path):
    path = tmp_path / "s.npy"
    a = shapes.write_array(path, 23, size=24, seed=4, workers=2, progress=False)
    ref = shapes.generate(23, size=24, seed=4).images
    assert a.shape == (23, 24, 24, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, (ref * 255 + 0.5).astype(np.uint8))
    stamp = path.stat().st_mtime_ns
    assert shapes.write_array(path, 23, size=24, seed=4).shape == (23, 24, 24, 3) and path.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("*.tmp*"))
