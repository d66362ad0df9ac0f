"""Many methods from one forward pass: equal to the methods run one by one, cheaper in FLOPs, no retrace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz.attribution import METHODS, Top, Unit
from jaxviz.attribution.cam import upsample_normalize
from jaxviz.attribution.engine import compiled, program_cost
from jaxviz.attribution.fused import (
    BUNDLE_002,
    FUSABLE,
    TRACES,
    fused_compiled,
)
from jaxviz.bench import random_params
from jaxviz.models import VGG, ShapesNet, pool

TOL = 1e-5  # max |fused − alone| ≤ TOL · max |alone|: the same operations, in the same order


def _close(got, want, tol=TOL):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    scale = np.abs(want).max()
    assert scale > 0, "reference is all zeros: the comparison would prove nothing"
    assert np.abs(got - want).max() <= tol * scale


@pytest.fixture(scope="module")
def shapes_he():
    """ShapesNet with He-normal kernels and nonzero biases: every ReLU rule changes the maps."""
    model = ShapesNet()
    return model, random_params(model, (32, 32, 3), seed=5)


def _check_equal(model, params, x, target, names, key=None, **options):
    """The compiled bundle against each method's own function, run alone (eagerly: the same function
    `engine.compiled` jits; eager op-by-op runs share their kernels between tests, so this stays fast)."""
    fused = fused_compiled(names, model, **options)(params, x, target, key)
    assert list(fused) == list(names)
    for name in names:
        accepted = {k: v for k, v in options.items() if k in _accepts(name)}
        extra = {"key": key} if name == "smoothgrad" else {}
        alone = METHODS[name](model, params, x, target, **accepted, **extra)
        assert len(fused[name]) == len(alone)
        _close(fused[name][0], alone[0])
        np.testing.assert_array_equal(fused[name][1], alone[1])
        _close(fused[name][2], alone[2])
    return fused


def _accepts(name):
    from jaxviz.attribution.engine import method_options

    return method_options(name)


@pytest.mark.parametrize("target", [[1, 4, 7], Top(2)], ids=["classes", "top2"])
@pytest.mark.slow
def test_equals_one_by_one_shapesnet(shapes_he, target):
    model, params = shapes_he
    x = jax.random.normal(jax.random.key(7), (3, 32, 32, 3))
    res = _check_equal(model, params, x, target, FUSABLE)
    # the rules really differ here, so equality above is not vacuous
    assert np.abs(np.asarray(res["guided_backprop"][0]) - np.asarray(res["saliency"][0])).max() > 0
    assert np.abs(np.asarray(res["deconvnet"][0]) - np.asarray(res["guided_backprop"][0])).max() > 0


@pytest.mark.slow
def test_cam_methods_alone_walk_only_to_their_layer(shapes_he):
    """Without an input-gradient method the plain walk stops at the Grad-CAM layer."""
    model, params = shapes_he
    x = jax.random.normal(jax.random.key(7), (3, 32, 32, 3))
    _check_equal(model, params, x, [1, 4, 7], ["grad_cam", "cam"])
    _check_equal(model, params, x, [1, 4, 7], ["guided_grad_cam", "grad_cam"], layer="relu2_1")


@pytest.mark.parametrize("target", [Unit("relu3_1", 5), Unit("relu4_2", 3, 1, 1)], ids=["unit", "unit_yx"])
@pytest.mark.slow
def test_equals_one_by_one_unit_targets(shapes_he, target):
    model, params = shapes_he
    x = jax.random.normal(jax.random.key(8), (3, 32, 32, 3))
    names = [n for n in FUSABLE if n != "cam"]  # CAM explains classes only
    _check_equal(model, params, x, target, names, layer="relu2_1")


@pytest.mark.slow
def test_equals_one_by_one_tiny_vgg_with_options():
    """VGG16's layer kinds (flatten → dense head, five pools), options routed per method."""
    model = VGG(blocks=(1, 1, 1, 1, 1), widths=(8, 16, 16, 32, 32), hidden=64, num_classes=7)
    params = random_params(model, (64, 64, 3), seed=2)
    x = jax.random.normal(jax.random.key(9), (2, 64, 64, 3))
    names = ["saliency", "guided_backprop", "grad_cam", "guided_grad_cam", "deconvnet"]
    _check_equal(model, params, x, [3, 5], names, layer="relu4_1", layers="features")


def test_cam_norm_minmax_is_seed002s_scaling_fused_and_alone(shapes_he):
    """cam_norm="minmax" (seed 002: − min, then ÷ max) is the "max" map rescaled to span [0, 1]."""
    model, params = shapes_he
    x = jax.random.normal(jax.random.key(3), (3, 32, 32, 3))
    fused = _check_equal(
        model, params, x, [1, 4, 7], ["grad_cam", "guided_grad_cam", "guided_backprop"], cam_norm="minmax"
    )
    _close(
        fused["guided_grad_cam"].maps,
        np.asarray(fused["guided_backprop"].maps) * np.asarray(fused["grad_cam"].maps)[..., None],
    )
    # the scaling itself, on a CAM that is positive everywhere (a random net's CAM touches 0 after ReLU)
    cam = 0.5 + jax.random.uniform(jax.random.key(1), (2, 4, 5))
    by_max = np.asarray(upsample_normalize(cam, (16, 20)), np.float64)
    lo = by_max.min(axis=(1, 2), keepdims=True)
    assert (lo > 0.2).all()
    _close(upsample_normalize(cam, (16, 20), "minmax"), (by_max - lo) / (1 - lo))
    with pytest.raises(ValueError, match="cam_norm must be one of max, minmax"):
        METHODS["grad_cam"](model, params, x, 1, cam_norm="min")


def test_other_methods_run_in_the_same_call(shapes_he):
    """A name outside FUSABLE (SmoothGrad) runs its own passes in the bundle's compiled call, with its options."""
    model, params = shapes_he
    x = jax.random.normal(jax.random.key(7), (3, 32, 32, 3))
    key = jax.random.key(4)
    res = fused_compiled(["smoothgrad", "saliency"], model, n=2, chunk=1)(params, x, [1, 4, 7], key)
    assert list(res) == ["smoothgrad", "saliency"]
    alone = compiled("smoothgrad", model, n=2, chunk=1)(params, x, [1, 4, 7], key)
    _close(res["smoothgrad"][0], alone[0])
    assert np.abs(np.asarray(res["smoothgrad"][0]) - np.asarray(res["saliency"][0])).max() > 0


def test_cam_for_unit_target_is_refused(shapes_he):
    model, params = shapes_he
    with pytest.raises(ValueError, match="CAM explains classes"):
        fused_compiled(["saliency", "cam"], model)(params, np.zeros((1, 32, 32, 3), np.float32), Unit("relu3_1", 1))


@pytest.mark.slow
def test_bundle_costs_one_forward_three_backward(shapes_he):
    model, params = shapes_he
    x = np.zeros((4, 32, 32, 3), np.float32)
    t = np.arange(4)
    forward = program_cost(compiled("saliency", model), params, x, t)["flops"] / 2  # saliency = forward + backward
    alone = sum(program_cost(compiled(n, model), params, x, t)["flops"] for n in BUNDLE_002)
    bundle = program_cost(fused_compiled(BUNDLE_002, model), params, x, t)["flops"]
    assert bundle / forward == pytest.approx(4.0, abs=0.15)  # 1 forward + 3 backward (each ≈ a forward)
    assert alone / forward > 8.5  # the five run alone: 4 saliency-like passes + Grad-CAM's forward
    assert bundle < 0.5 * alone


def test_cached_and_no_retrace(shapes_he):
    model, params = shapes_he
    fn = fused_compiled(BUNDLE_002, model)
    assert fused_compiled(list(BUNDLE_002), model) is fn
    x = np.ones((2, 32, 32, 3), np.float32)
    fn(params, x, [1, 2])
    count = sum(TRACES.values())
    for t in ([3, 4], 5, np.array([0, 9])):
        fn(params, x * 0.5, t)
    assert sum(TRACES.values()) == count


def test_errors(shapes_he):
    model, params = shapes_he
    with pytest.raises(ValueError, match="unknown method"):
        fused_compiled(["saliency", "gradcam"], model)
    with pytest.raises(ValueError, match="takes option"):
        fused_compiled(["saliency"], model, steps=3)
    with pytest.raises(ValueError, match="must come before"):
        fused_compiled(["grad_cam"], model)(params, np.zeros((1, 32, 32, 3), np.float32), Unit("relu3_1", 1))
    with pytest.raises(ValueError, match="key"):
        fused_compiled(["saliency", "smoothgrad"], model)(params, np.zeros((1, 32, 32, 3), np.float32))


def test_bfloat16_bundle_returns_float32_close_to_float32(shapes_he):
    model, params = shapes_he
    x = jax.random.normal(jax.random.key(3), (2, 32, 32, 3))
    ref = fused_compiled(BUNDLE_002, model)(params, x, [1, 2])
    low = fused_compiled(BUNDLE_002, model, dtype="bfloat16")(params, x, [1, 2])
    for name in BUNDLE_002:
        assert low[name][0].dtype == np.float32 and low[name][2].dtype == np.float32
        a, b = np.asarray(ref[name][0]).ravel(), np.asarray(low[name][0]).ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.9, name


@pytest.mark.parametrize(
    "shape,window,strides,padding",
    [
        ((2, 8, 8, 3), (2, 2), (2, 2), ((0, 0), (0, 0))),  # VGG's pools: windows tile the input
        ((2, 7, 11, 2), (3, 3), (3, 3), ((0, 0), (0, 0))),  # trailing rows and columns no window reads
        ((2, 15, 16, 2), (3, 3), (2, 2), ((1, 1), (1, 2))),  # ResNet's stem pool: overlapping, padded
        ((1, 9, 9, 2), (3, 3), (1, 1), ((1, 1), (1, 1))),
    ],
)  # GoogLeNet's stride-1 branch pool
@pytest.mark.slow
def test_max_pool_vjp_equals_select_and_scatter_with_ties(shape, window, strides, padding):
    """The fast backward sends each window's cotangent where XLA's select-and-scatter does: bit for
    bit where windows tile the input, up to the order of the sums where they overlap."""
    from jax import lax

    x = jnp.round(jnp.maximum(jax.random.normal(jax.random.key(0), shape), 0) * 2) / 2  # many tied windows
    pads = ((0, 0), *padding, (0, 0))
    y = lax.reduce_window(x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1), pads)
    np.testing.assert_array_equal(pool.max_pool(x, window, strides, padding), y)
    g = jax.random.normal(jax.random.key(1), y.shape)
    (want,) = jax.vjp(lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1), pads), x)[1](
        g
    )
    (got,) = jax.vjp(lambda x: pool.max_pool(x, window, strides, padding), x)[1](g)
    if window == strides:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
