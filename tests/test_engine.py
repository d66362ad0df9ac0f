"""Compiled methods: cached, no retrace on repeated shapes, batch invariant, clear errors."""

import jax
import numpy as np
import pytest

from jaxviz.attribution import Top, Unit
from jaxviz.attribution.engine import TRACES, compiled

CHEAP = ["saliency", "guided_backprop", "deconvnet", "grad_cam", "cam", "guided_grad_cam", "gradient_x_input"]


def _traces(method):
    return sum(v for (m, _), v in TRACES.items() if m == method)


@pytest.mark.parametrize("method", ["saliency", "grad_cam"])
@pytest.mark.slow
def test_same_shape_never_retraces(shapesnet, method):
    model, params = shapesnet
    fn = compiled(method, model)
    x = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3))
    fn(params, x, [1, 2, 3, 4])
    before = _traces(method)
    for t in ([0, 0, 0, 0], 5, np.array([9, 8, 7, 6])):  # other traced class targets: same program
        fn(params, x + 0.1, t)
    assert compiled(method, model) is fn  # cached
    assert _traces(method) == before
    fn(params, jax.random.uniform(jax.random.key(1), (2, 32, 32, 3)), 1)  # a new shape traces once
    assert _traces(method) == before + 1


@pytest.mark.parametrize("method", CHEAP)
@pytest.mark.slow
def test_batch_invariance(shapesnet, method):
    model, params = shapesnet
    fn = compiled(method, model)
    x = jax.random.uniform(jax.random.key(2), (4, 32, 32, 3))
    batch, idx, _ = fn(params, x, Top(2))[:3]
    alone, idx1, _ = fn(params, x[2:3], Top(2))[:3]
    assert int(idx[2]) == int(idx1[0])
    np.testing.assert_allclose(batch[2:3], alone, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_unit_target_guided_backprop(shapesnet):
    model, params = shapesnet
    fn = compiled("guided_backprop", model)
    x = jax.random.uniform(jax.random.key(3), (2, 32, 32, 3))
    g, idx, out, _ = fn(params, x, Unit("relu3_1", 5, 2, 3))
    assert out.shape == (2, 8, 8, 64) and list(idx) == [5, 5]
    # a unit at (2, 3) of an 8x8 map after two 2x pools sees a bounded window of the input
    nz = np.argwhere(np.abs(np.asarray(g[0])).sum(-1) > 0)
    if len(nz):
        assert nz[:, 0].max() < 32 and nz[:, 0].min() >= 0
        assert nz[:, 0].max() - nz[:, 0].min() < 20  # receptive field of relu3_1 is 18 px
    _, _, out2, _ = fn(params, x, Unit("relu3_1", 5))
    pos = np.unravel_index(np.argmax(np.asarray(out2[1, ..., 5])), (8, 8))
    assert np.asarray(out2[1, pos[0], pos[1], 5]) == np.asarray(out2[1, ..., 5]).max()


@pytest.mark.parametrize(
    "target,match",
    [
        (10, "out of range"),
        ([1, 2], "shape|broadcast"),
        (Unit("relu3_1", 999), "channel"),
        (Unit("nope", 1), "unknown layer"),
        (1.5, "class indices"),
    ],
)
def test_bad_targets_are_clear(shapesnet, target, match):
    model, params = shapesnet
    with pytest.raises((ValueError, KeyError), match=match):
        compiled("saliency", model)(params, np.zeros((3, 32, 32, 3), np.float32), target)


def test_unknown_method_and_option(shapesnet):
    model, _ = shapesnet
    with pytest.raises(ValueError, match="unknown method"):
        compiled("gradcam", model)
    with pytest.raises(ValueError, match="no option"):
        compiled("saliency", model, steps=3)


# --- throughput modes (issue 8) ---------------------------------------------------------------


def test_bfloat16_mode_runs_in_bf16_and_returns_float32(shapesnet):
    from jaxviz.attribution.engine import program_cost

    model, params = shapesnet
    x = jax.random.uniform(jax.random.key(4), (2, 32, 32, 3))
    fn = compiled("saliency", model, dtype="bfloat16")
    maps, idx, out, _ = fn(params, x, [1, 2])
    assert maps.dtype == np.float32 and out.dtype == np.float32 and list(idx) == [1, 2]
    text = fn.lower(params, x, [1, 2]).as_text()
    assert "bf16" in text and "convolution" in text
    assert "bf16" not in compiled("saliency", model).lower(params, x, [1, 2]).as_text()
    assert program_cost(fn, params, x, [1, 2])["flops"] > 0


@pytest.mark.slow
def test_deviation_bf16_embedded_model():
    """On the embedded (trained) model, bf16 maps rank pixels like float32 ones."""
    from jaxviz.data.preprocess import normalize
    from jaxviz.data.shapes import generate
    from jaxviz.metrics import deviation
    from jaxviz.models.loading import load

    lm = load()
    x = normalize(generate(4, size=64, seed=1).images, lm.preprocessing)
    for method in ("saliency", "grad_cam"):
        d = deviation(method, lm.model, lm.params, x)
        assert d["rank_corr_min"] > 0.9 and d["index_agree"] == 1.0, d
        assert 0 < d["rel_max"] < 0.5 and d["max_abs"] > 0  # bf16 does change the numbers
    same = deviation("saliency", lm.model, lm.params, x, dtype="float32", precision="highest")
    assert same["max_abs"] == 0 and same["rank_corr_min"] == pytest.approx(1.0)


def test_map_deviation_against_numpy():
    from scipy.stats import spearmanr

    from jaxviz.metrics import map_deviation

    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 5, 5))
    b = a + 0.3 * rng.standard_normal((3, 5, 5))
    d = map_deviation(a, b)
    assert d["max_abs"] == pytest.approx(np.abs(a - b).max())
    rhos = [spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(3)]
    assert d["rank_corr_mean"] == pytest.approx(np.mean(rhos)) and d["rank_corr_min"] == pytest.approx(min(rhos))


@pytest.mark.parametrize("options,match", [({"dtype": "int8"}, "dtype"), ({"precision": "fast"}, "precision")])
def test_bad_modes(shapesnet, options, match):
    model, _ = shapesnet
    with pytest.raises(ValueError, match=match):
        compiled("saliency", model, **options)


def test_precision_mode_is_traced_under_it(shapesnet):
    model, params = shapesnet
    x = np.zeros((1, 32, 32, 3), np.float32)
    text = compiled("saliency", model, precision="highest").lower(params, x, 0).as_text()
    assert "HIGHEST" in text
    assert "HIGHEST" not in compiled("saliency", model).lower(params, x, 0).as_text()
    from jaxviz.attribution.engine import PRECISIONS

    for name in PRECISIONS:  # every accepted name is one JAX knows
        assert compiled("saliency", model, precision=name).lower(params, x, 0) is not None
