"""Metrics checked against cases computed by hand (and SciPy / scikit-image where they exist)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import spearmanr

from jaxviz import relu_rule, with_rule
from jaxviz.attribution.gradients import input_gradient
from jaxviz.metrics import (
    CHANNELS,
    auc,
    cascading_randomization,
    channel_sum,
    deletion_insertion,
    dilate_masks,
    dilation_radius,
    energy_concentration,
    make_baseline,
    map_maxima,
    pixel_energy,
    pixel_order,
    plot_randomization_maps,
    plot_similarity_bars,
    plot_similarity_curves,
    pointing_game,
    random_input_check,
    randomization_order,
    randomize_params,
    rank_average,
    records,
    spearman,
    ssim,
    summary,
)
from jaxviz.models import ShapesNet


def square_mask(n=1, size=40, top=10, side=10):
    m = np.zeros((n, size, size), bool)
    m[:, top : top + side, top : top + side] = True
    return m


# --------------------------------------------------------------------------- energy concentration


def test_map_inside_mask_gives_p_one():
    m = square_mask()
    maps = np.zeros((1, 40, 40, 3), np.float32)
    maps[0, 12:18, 12:18] = 0.7
    for dilation in (0.0, 0.2):
        r = energy_concentration(maps, m, dilation=dilation)
        np.testing.assert_allclose(r.P, [1.0])
        np.testing.assert_allclose(r.E, r.E_total)
        np.testing.assert_allclose(r.E_total, [36 * 3 * 0.7**2], rtol=1e-6)  # Σ over pixels and channels


def test_uniform_map_gives_mask_area_fraction():
    m = square_mask()
    maps = np.full((1, 40, 40), 2.0)
    np.testing.assert_allclose(energy_concentration(maps, m, dilation=0).P, [100 / 1600])
    # 20 % of a 10-px square: r = 0.2·10/2 = 1 px → square 12×12, disc 10×10 + 4 sides of 10
    np.testing.assert_allclose(energy_concentration(maps, m, dilation=0.2, shape="square").P, [144 / 1600])
    np.testing.assert_allclose(energy_concentration(maps, m, dilation=0.2).P, [140 / 1600])


def test_zero_map_gives_p_zero_and_batch_is_per_image():
    m = square_mask(2)
    maps = np.zeros((2, 40, 40))
    maps[1] = 1.0
    r = energy_concentration(jnp.asarray(maps), m, dilation=0)
    np.testing.assert_allclose(r.P, [0.0, 100 / 1600])
    np.testing.assert_allclose(r.E_total, [0.0, 1600.0])


def test_energy_is_the_summed_squares_of_every_value_by_default():
    """Seed 002's E_total = Σ_{x,y} |I(x, y)|², |·|² the squared norm over channels, by hand."""
    m = square_mask()
    maps = np.zeros((1, 40, 40, 3))
    maps[0, 0, 0] = (1.0, -1.0, 0.0)  # outside the mask: 1 + 1 + 0 = 2 (not 0)
    maps[0, 15, 15] = (1.0, 2.0, 0.5)  # inside: 1 + 4 + 0.25 = 5.25
    maps[0, 39, 20] = (0.0, 0.0, -3.0)  # outside: 9
    r = energy_concentration(maps, m, dilation=0)
    np.testing.assert_allclose((r.E, r.E_total, r.P), ([5.25], [16.25], [5.25 / 16.25]))
    np.testing.assert_allclose(pixel_energy(maps)[0, 0, 0], 2.0)
    # the pointing game's maximum is the same energy's: the (0, 0, -3) pixel, outside the mask
    assert map_maxima(maps).tolist() == [[39, 20]]
    assert not pointing_game(maps, m, tolerance=0)[0]


def test_sum_reduction_sums_channels_with_sign_before_squaring():
    m = square_mask()
    maps = np.zeros((1, 40, 40, 3))
    maps[0, 0, 0] = (1.0, -1.0, 0.0)  # outside the mask, cancels: no energy
    maps[0, 15, 15] = (1.0, 2.0, 0.5)  # inside: (3.5)² = 12.25
    r = energy_concentration(maps, m, dilation=0, channels="sum")
    np.testing.assert_allclose((r.P, r.E, r.E_total), ([1.0], [12.25], [12.25]))
    np.testing.assert_allclose(channel_sum(maps)[0, 15, 15], 3.5)
    assert pointing_game(maps, m, tolerance=0, channels="sum")[0]
    # a map without channels is the same under both reductions
    plain = maps.sum(-1)
    for channels in CHANNELS:
        np.testing.assert_allclose(energy_concentration(plain, m, dilation=0, channels=channels).E_total, [12.25])
    with pytest.raises(ValueError, match="channels must be one of energy, sum"):
        energy_concentration(maps, m, channels="abs")


def test_energy_rejects_mismatched_masks():
    with pytest.raises(ValueError, match="masks shape"):
        energy_concentration(np.zeros((2, 8, 8)), np.zeros((2, 8, 9), bool))
    with pytest.raises(ValueError, match="maps must be"):
        energy_concentration(np.zeros((8, 8)), np.zeros((1, 8, 8), bool))


# --------------------------------------------------------------------------- dilation


def test_dilation_grows_square_by_stated_amount():
    m = square_mask()
    np.testing.assert_allclose(dilation_radius(m, 0.6), [3.0])  # 0.6 · √100 / 2
    sq = dilate_masks(m, 0.6, shape="square")[0]
    expected = np.zeros((40, 40), bool)
    expected[7:23, 7:23] = True  # side 10 + 2·3
    np.testing.assert_array_equal(sq, expected)
    disc = dilate_masks(m, 0.6)[0]
    # 100 + 4 sides of 3×10 + per corner the (dx, dy) ≥ 1 with dx² + dy² ≤ 9: (1,1) (1,2) (2,1) (2,2)
    assert disc.sum() == 100 + 120 + 4 * 4
    assert disc[7, 15] and not disc[6, 15] and disc[8, 8] and not disc[7, 8]


def test_dilation_matches_distance_transform_and_edges():
    rng = np.random.default_rng(0)
    masks = ndimage.gaussian_filter(rng.random((4, 30, 37)), 2) > 0.52
    masks[3] = False  # empty stays empty
    masks[2, :3, :3] = True  # touches the border
    for shape, metric in (("disc", None), ("square", "chessboard")):
        out = dilate_masks(masks, 0.35, shape=shape)
        for m, o, r in zip(masks, out, dilation_radius(masks, 0.35)):
            if not m.any():
                assert not o.any()
                continue
            d = (
                ndimage.distance_transform_edt(~m)
                if metric is None
                else ndimage.distance_transform_cdt(~m, metric=metric)
            )
            np.testing.assert_array_equal(o, d <= r + 1e-9)
    np.testing.assert_array_equal(dilate_masks(masks, 0.0), masks)
    with pytest.raises(ValueError, match="fraction"):
        dilate_masks(masks, -0.1)


# --------------------------------------------------------------------------- pointing game


def test_pointing_game_hit_miss_and_tolerance_boundary():
    mask = np.zeros((1, 60, 60), bool)
    mask[0, 10, 10] = True

    def point_at(r, c, sign=1.0):
        m = np.zeros((1, 60, 60, 3))
        m[0, r, c] = sign * np.array([0.5, 0.5, 0.0])
        return m

    assert pointing_game(point_at(10, 10), mask, tolerance=0)[0]
    assert pointing_game(point_at(10, 25), mask)[0]  # distance 15: on the boundary
    assert not pointing_game(point_at(10, 25), mask, tolerance=14)[0]
    assert pointing_game(point_at(19, 22), mask)[0]  # √(9² + 12²) = 15
    assert not pointing_game(point_at(19, 23), mask)[0]  # √(81 + 169) ≈ 15.8
    assert pointing_game(point_at(12, 12, sign=-1.0), mask, tolerance=3)[0]  # |sum|: a negative peak counts
    np.testing.assert_array_equal(map_maxima(point_at(19, 23)), [[19, 23]])
    both = np.concatenate([point_at(10, 12), point_at(40, 40)])
    np.testing.assert_array_equal(pointing_game(both, np.repeat(mask, 2, 0), tolerance=5), [True, False])
    assert not pointing_game(point_at(10, 10), np.zeros_like(mask))[0]  # no object: always a miss


# --------------------------------------------------------------------------- deletion / insertion


def masked_mean_model(mask):
    """Class 0 scores the mean of channel 0 over `mask` (class 1 always 0)."""

    def model_fn(x):
        x = np.asarray(x, np.float64)
        return np.stack([x[..., 0][:, mask].mean(axis=1), np.zeros(len(x))], axis=1)

    return model_fn


@pytest.fixture
def stripe_case():
    mask = np.zeros((10, 10), bool)
    mask[:2] = True  # 20 of 100 pixels
    image = np.repeat(mask[None, :, :, None].astype(np.float32), 3, axis=-1)
    return mask, image


def test_deletion_ideal_below_random_below_worst(stripe_case):
    mask, image = stripe_case
    f = masked_mean_model(mask)
    kw = {"steps": 10, "baseline": "constant", "chunk": 8}
    ideal = deletion_insertion(f, image, mask[None] * 1.0, np.array([0]), **kw)
    worst = deletion_insertion(f, image, (~mask)[None] * 1.0, np.array([0]), **kw)
    rand = deletion_insertion(
        f, np.repeat(image, 8, 0), np.random.default_rng(0).random((8, 10, 10)), np.zeros(8, int), **kw
    )
    np.testing.assert_allclose(ideal.curves, [[1, 0.5, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_allclose(ideal.auc, [0.1])  # (1.5 − 0.5) / 10
    np.testing.assert_allclose(worst.auc, [0.9])  # (9.5 − 0.5) / 10
    assert 0.1 < rand.auc.mean() < 0.9 and 0.35 < rand.auc.mean() < 0.65  # ≈ 0.5 for a random order
    np.testing.assert_allclose(ideal.fractions, np.linspace(0, 1, 11))


def test_insertion_is_the_reverse(stripe_case):
    mask, image = stripe_case
    f = masked_mean_model(mask)
    kw = {"mode": "insertion", "steps": 10, "baseline": "constant", "chunk": 8}
    ideal = deletion_insertion(f, image, mask[None] * 1.0, np.array([0]), **kw)
    worst = deletion_insertion(f, image, (~mask)[None] * 1.0, np.array([0]), **kw)
    np.testing.assert_allclose(ideal.curves, [[0, 0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1]])
    np.testing.assert_allclose((ideal.auc, worst.auc), ([0.9], [0.1]))


def test_deletion_batching_and_chunking_invariance(stripe_case):
    mask, _image = stripe_case
    f = masked_mean_model(mask)
    rng = np.random.default_rng(1)
    images = rng.random((5, 10, 10, 3)).astype(np.float32)
    maps = rng.random((5, 10, 10, 3))
    targets = np.array([0, 1, 0, 0, 1])
    ref = deletion_insertion(f, images, maps, targets, steps=7, baseline="blur", sigma=1.0, chunk=64)
    for chunk in (1, 3, 8):
        np.testing.assert_allclose(
            deletion_insertion(f, images, maps, targets, steps=7, baseline="blur", sigma=1.0, chunk=chunk).curves,
            ref.curves,
            rtol=1e-12,
        )
    one_by_one = np.concatenate(
        [
            deletion_insertion(
                f, images[i : i + 1], maps[i : i + 1], targets[i : i + 1], steps=7, baseline="blur", sigma=1.0, chunk=5
            ).curves
            for i in range(5)
        ]
    )
    np.testing.assert_allclose(one_by_one, ref.curves, rtol=1e-12)
    np.testing.assert_allclose(ref.auc, auc(ref.curves))
    np.testing.assert_array_equal(ref.curves[[1, 4]], 0.0)  # class 1 scores 0 throughout


def test_deletion_with_jitted_model_calls_fixed_batch(stripe_case):
    mask, image = stripe_case
    seen = set()

    def model_fn(x):
        seen.add(x.shape[0])
        return jnp.stack([jnp.mean(x[..., 0] * mask, axis=(1, 2)), jnp.zeros(x.shape[0])], axis=1)

    r = deletion_insertion(
        model_fn,
        np.repeat(image, 3, 0),
        np.random.default_rng(2).random((3, 10, 10)),
        np.zeros(3, int),
        steps=5,
        chunk=4,
        softmax=True,
    )
    assert seen == {4}
    assert np.all((r.curves > 0) & (r.curves < 1))  # softmax probabilities


def test_baselines_and_order():
    img = np.full((2, 12, 12, 3), 0.3, np.float32)
    np.testing.assert_allclose(make_baseline(img, "blur", sigma=3.0), 0.3, rtol=1e-6)  # blur keeps a constant
    np.testing.assert_array_equal(make_baseline(img, "constant", value=-1.0), -1.0)
    np.testing.assert_array_equal(make_baseline(img, np.array([0.0, 1.0, 2.0]))[1, 5, 5], [0, 1, 2])
    with pytest.raises(ValueError, match="broadcast"):
        make_baseline(img, np.zeros(4))
    ranks = pixel_order(np.array([[[0.1, -0.9], [0.5, 0.5]]]))
    np.testing.assert_array_equal(ranks, [[[2, 3], [0, 1]]])  # ties: row-major
    np.testing.assert_array_equal(
        pixel_order(np.array([[[0.1, -0.9], [0.5, 0.5]]]), order_by="abs"), [[[3, 0], [1, 2]]]
    )


# --------------------------------------------------------------------------- similarity


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(3)
    a = np.round(rng.normal(size=(4, 9, 11)) * 2)
    b = a + np.round(rng.normal(size=a.shape))
    for absolute in (False, True):
        expected = [
            spearmanr(np.abs(x).ravel() if absolute else x.ravel(), np.abs(y).ravel() if absolute else y.ravel())[0]
            for x, y in zip(a, b)
        ]
        np.testing.assert_allclose(spearman(a, b, absolute=absolute), expected, rtol=1e-12)
    np.testing.assert_array_equal(rank_average(np.array([[3.0, 1.0, 3.0, 2.0]])), [[3.5, 1.0, 3.5, 2.0]])
    assert np.isnan(spearman(np.ones((1, 5)), np.arange(5.0)[None]))[0]


def test_ssim_hand_cases():
    rng = np.random.default_rng(4)
    a = rng.random((2, 16, 16))
    np.testing.assert_allclose(ssim(a, a), 1.0)
    zeros, ones = np.zeros((1, 16, 16)), np.ones((1, 16, 16))
    c1 = (0.01 * 1.0) ** 2  # μ: 0 vs 1, no variance
    np.testing.assert_allclose(ssim(zeros, ones), c1 / (1 + c1))
    np.testing.assert_allclose(ssim(zeros, ones, window="uniform"), c1 / (1 + c1))


def test_ssim_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(5)
    a = rng.random((3, 20, 23))
    b = np.clip(a + 0.3 * rng.normal(size=a.shape), 0, 1)
    np.testing.assert_allclose(
        ssim(a, b, window="uniform"),
        [metrics.structural_similarity(x, y, data_range=1.0) for x, y in zip(a, b)],
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        ssim(a, b),
        [
            metrics.structural_similarity(
                x, y, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
            for x, y in zip(a, b)
        ],
        rtol=1e-10,
    )


# --------------------------------------------------------------------------- randomization checks


@pytest.fixture(scope="module")
def tiny():
    model = ShapesNet(widths=((4,), (8,)), num_classes=3)
    params = model.init(jax.random.key(7), jnp.zeros((1, 16, 16, 3)))["params"]
    x = np.asarray(jax.random.normal(jax.random.key(8), (4, 16, 16, 3)), np.float32)
    return model, params, x


@pytest.mark.slow
def test_randomization_order_and_params(tiny):
    model, params, _ = tiny
    assert randomization_order(model, params) == ("fc", "conv2_1", "conv1_1")
    fresh = jax.tree_util.tree_map(jnp.zeros_like, params)
    p = randomize_params(params, fresh, ["fc", "conv2_1"])
    assert not np.any(p["fc"]["kernel"]) and p["conv1_1"] is params["conv1_1"]
    with pytest.raises(ValueError, match="hold no parameters"):
        randomize_params(params, fresh, ["relu1_1"])


@pytest.mark.slow
def test_cascading_steps_reproducible_from_seed(tiny):
    model, params, x = tiny
    run = {"targets": np.array([0, 1, 2, 0]), "progress": False, "batch_size": 4, "keep": 2}
    r1 = cascading_randomization(model, params, x, ["saliency", "grad_cam"], seed=3, **run)
    r2 = cascading_randomization(model, params, x, ["saliency", "grad_cam"], seed=3, **run)
    r3 = cascading_randomization(model, params, x, ["saliency"], seed=4, **run)
    assert r1.steps == ("fc", "conv2_1", "conv1_1") and r1.spearman_abs.shape == (2, 3, 4)
    for metric in ("spearman_abs", "spearman", "ssim"):
        np.testing.assert_array_equal(getattr(r1, metric), getattr(r2, metric))
    assert not np.allclose(r1.spearman[:1], r3.spearman, equal_nan=True)
    assert r1.examples["saliency"].shape == (4, 2, 16, 16)
    rows = records(r1)
    assert len(rows) == 2 * 3 * 4 and {"method", "layer", "image", "spearman_abs", "ssim"} <= set(rows[0])
    ind = cascading_randomization(model, params, x, ["saliency"], seed=3, mode="independent", **run)
    np.testing.assert_array_equal(ind.spearman[0, 0], r1.spearman[0, 0])  # step 1 is the same layer (fc)


def test_randomizing_all_layers_decorrelates_gradients():
    from jaxviz.models.loading import load

    lm = load()
    r = random_input_check(
        lm.model, lm.params, ["saliency"], n=8, shape=(32, 32, 3), seed=0, progress=False, batch_size=8
    )
    assert r.steps == ("all",)
    assert abs(np.nanmean(r.spearman[0, 0])) < 0.1  # signed maps: no rank agreement
    assert np.nanmean(r.spearman_abs[0, 0]) < 0.3
    noise = np.asarray(jax.random.normal(jax.random.key(1), (8, 32, 32, 3)), np.float32)
    top = cascading_randomization(
        lm.model, lm.params, noise, ["saliency"], r.targets, seed=0, progress=False, batch_size=8
    )
    curve = np.nanmean(top.spearman_abs[0], axis=1)
    assert curve[0] > 0.5 > curve[-1]  # only fc randomized: still similar


@pytest.mark.slow
def test_a_new_backward_rule_is_scored_with_the_same_code(tiny, tmp_path):
    """A researcher's rule (here: plain backprop written as a relu_rule) gives the same numbers as saliency."""
    model, params, x = tiny
    my_relu = relu_rule(lambda f, g: jnp.where(f > 0, g, 0.0), "my_backprop")

    def my_method(p, x, target, key):
        return input_gradient(with_rule(model, my_relu), p, x, target)[0]

    targets = np.array([0, 1, 2, 0])
    mine = np.asarray(jax.jit(my_method)(params, x, targets, None))
    ref = np.asarray(input_gradient(model, params, x, targets)[0])
    masks = square_mask(4, size=16, top=4, side=6)
    np.testing.assert_allclose(energy_concentration(mine, masks).P, energy_concentration(ref, masks).P, rtol=1e-5)
    np.testing.assert_array_equal(pointing_game(mine, masks), pointing_game(ref, masks))

    f = jax.jit(lambda z: model.apply({"params": params}, z))

    np.testing.assert_allclose(
        deletion_insertion(f, x, mine, targets, steps=8, chunk=36).auc,
        deletion_insertion(f, x, ref, targets, steps=8, chunk=36).auc,
        rtol=1e-5,
    )
    r = cascading_randomization(
        model, params, x, {"mine": my_method, "saliency": "saliency"}, targets, progress=False, batch_size=4
    )
    np.testing.assert_allclose(r.spearman_abs[0], r.spearman_abs[1], atol=1e-6)
    table = summary(r)
    assert set(table["ssim"]) == {"mine", "saliency"}
    for fn, name in (
        (plot_similarity_curves, "curves.png"),
        (plot_similarity_bars, "bars.png"),
        (plot_randomization_maps, "maps.png"),
    ):
        path = fn(r, tmp_path / name)
        assert path.stat().st_size > 5000
