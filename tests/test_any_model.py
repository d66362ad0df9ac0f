"""Methods on every kind of model: the zoo (random weights, small inputs), a user's own linen CNN
(BatchNorm, residual add, concat, functional ReLUs), the same net in NNX, and a plain function.

For each model all methods run in one compiled call (`fused_compiled` with every name; the
non-fusable ones run unchanged inside it), then again on the batch reversed: an image's maps
must not depend on its neighbours or position (per-image keys for the sampling methods), and the
second call must not retrace.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz.attribution import METHODS
from jaxviz.attribution.engine import method_options
from jaxviz.attribution.fused import TRACES, fused_compiled
from jaxviz.bench import random_params
from jaxviz.core import LayerError
from jaxviz.models import DEFAULT_INPUT, TORCHVISION_ARCHS, build
from jaxviz.models.densenet import DenseNet
from jaxviz.models.resnet import ResNet

try:
    from .user_models import INPUT, UserNet, function_from_linen, nnx_from_linen, user_variables
except ImportError:
    from user_models import INPUT, UserNet, function_from_linen, nnx_from_linen, user_variables

OPTIONS = {"n": 2, "steps": 3, "patch": 16, "stride": 16, "chunk": None}
# How far float32 rounding alone moves a map (relative to its max) when XLA:CPU's convolutions see an
# image at another batch position. The deconvnet and guided rules (a ReLU of the backward signal) turn
# rounding into sign flips: on GoogLeNet the batch-order differences are 0.40% (deconvnet) and 0.068%
# (guided), as large as float32 against float64 on the same weights (0.39%, 0.068%). FullGrad
# min-max-normalizes each bias-gradient map, nearly constant ones included: 2.5% both ways. Mixing
# images up would differ by O(1).
ROUNDING = {**dict.fromkeys(("deconvnet", "guided_backprop", "guided_grad_cam"), 1e-2), "fullgrad": 5e-2}
LAYERED = ("cam", "cam_gmp", "grad_cam", "guided_grad_cam", "grad_cam_pp", "score_cam", "layer_cam", "fullgrad")
# the smallest input each architecture takes (AlexNet's and GoogLeNet's stems need 63+ pixels)
ZOO_INPUT = {"alexnet": 64, "googlenet": 64, "squeezenet1_0": 64, "squeezenet1_1": 64}
# DenseNet-121's module classes with two layers per dense block instead of 6-12-24-16, ResNet-18's with
# one basic block per stage instead of two (their ports are checked against torchvision in
# test_zoo.py): the same concats, transitions, residual adds and downsampling shortcuts, a fraction of
# the compile
SMALLER = {"densenet121": lambda: DenseNet(blocks=(2, 2, 2, 2)), "resnet18": lambda: ResNet(blocks=(1, 1, 1, 1))}


def _check_all_methods(model, variables, x, names):
    """All `names` in one call, then on the reversed batch: same maps per image, no retrace."""
    n = x.shape[0]
    keys = _keys(x)
    accepted = {o for n in names for o in method_options(n)}
    explain = fused_compiled(names, model, **{k: v for k, v in OPTIONS.items() if k in accepted})
    first = explain(variables, x, None, keys)
    traces = sum(TRACES.values())
    rev = np.arange(n)[::-1]
    second = explain(variables, x[rev], None, keys[rev])
    assert sum(TRACES.values()) == traces, "the second call retraced"
    for name in names:
        a, b = np.asarray(first[name].maps), np.asarray(second[name].maps)[rev]
        assert a.shape[0] == n and np.all(np.isfinite(a)), name
        assert a.shape[1:3] == x.shape[1:3], name
        scale = max(np.abs(a).max(), 1e-30)
        assert np.abs(a - b).max() <= ROUNDING.get(name, 1e-4) * scale, f"{name}: maps depend on the batch"
        np.testing.assert_array_equal(first[name].index, np.asarray(second[name].index)[rev])
    return first


GRADIENT_AND_CAM = [
    "saliency",
    "gradient_x_input",
    "deconvnet",
    "guided_backprop",
    "cam",
    "grad_cam",
    "guided_grad_cam",
    "grad_cam_pp",
    "layer_cam",
    "fullgrad",
]
EVERY = [m for m in METHODS if m != "cam_gmp"]  # the zoo's heads average-pool (or flatten)
# Every method on light nets of two families; the gradient and CAM methods on one architecture of
# every family (plain and BN VGG, AlexNet, SqueezeNet's Fire concats, ResNet's basic and bottleneck
# blocks, GoogLeNet's inception concats, DenseNet's dense concats, the sequential VGG16). The deeper
# siblings (vgg13/16_bn/19_bn, resnet34/101/152, vgg19) are the same module classes repeated: their
# ports are checked against torchvision in test_zoo.py. JAXVIZ_FULL_MATRIX=1 runs every method on all.
MATRIX = {
    "resnet18": EVERY,
    "squeezenet1_1": EVERY,
    **{
        a: GRADIENT_AND_CAM
        for a in ("alexnet", "vgg11", "vgg11_bn", "squeezenet1_0", "resnet50", "googlenet", "densenet121", "vgg16")
    },
}
if os.environ.get("JAXVIZ_FULL_MATRIX"):
    MATRIX = {a: EVERY for a in (*TORCHVISION_ARCHS, "vgg16", "vgg19")}
    SMALLER = {}


# Compile-bound: unoptimized (the suite's default) is faster, e.g. GoogLeNet 38 s against 49 s optimized.
# ResNet-18's every-method run executes Score-CAM's 512 masked forward passes per image: 95 s against
# 54 s optimized, so it compiles optimized. The matrix: 245 s all optimized, 182 s now.
RUNTIME_BOUND = {"resnet18"}


@pytest.mark.parametrize(
    "arch", [pytest.param(a, marks=pytest.mark.optimized) if a in RUNTIME_BOUND else a for a in MATRIX]
)
@pytest.mark.slow
def test_methods_on_zoo_architectures(arch):
    model = SMALLER[arch]() if arch in SMALLER else build(arch)
    size = ZOO_INPUT.get(arch, 32)
    shape = (size, size, DEFAULT_INPUT[arch][2])
    variables = random_params(model, shape, seed=1)
    x = jax.random.normal(jax.random.key(2), (2, *shape))
    names = MATRIX[arch]
    head = getattr(model, "head", None)
    if (head() if callable(head) else head) == "other":  # a flatten → dense head: CAM does not apply
        with pytest.raises(ValueError, match="global-average-pooling head"):
            METHODS["cam"](model, variables, x)
        names = [n for n in names if n != "cam"]
    res = _check_all_methods(model, variables, x, names)
    assert res["saliency"].out.shape == (2, 1000)


@pytest.fixture(scope="module")
def user_inputs():
    return user_variables(), jax.random.normal(jax.random.key(3), (3, *INPUT))


@pytest.fixture(scope="module")
def user(user_inputs):
    v, x = user_inputs
    return v, x, _check_all_methods(UserNet(), v, x, list(METHODS))  # the linen net: the reference


def _keys(x):
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(x.shape[0]))


@pytest.mark.parametrize("kind", ["linen", "nnx", "function"])
@pytest.mark.slow
def test_every_method_on_a_user_network(user, kind):
    """The linen net, the same net in NNX, and as a plain function: every method runs, and as one
    network they give the same maps."""
    v, x, ref = user
    if kind == "linen":
        return  # checked by the fixture itself
    names = list(METHODS)
    if kind == "nnx":
        model = variables = nnx_from_linen(v)
    else:  # no named layers: the CAM family and FullGrad refuse clearly
        model, variables = function_from_linen(v), None
        for name in LAYERED:
            with pytest.raises(LayerError, match="plain function"):
                METHODS[name](model, None, x)
        names = [m for m in names if m not in LAYERED]
    res = _check_all_methods(model, variables, x, names)
    for name in names:
        np.testing.assert_allclose(
            res[name].maps, ref[name].maps, rtol=1e-4, atol=1e-5 * float(np.abs(ref[name].maps).max()), err_msg=name
        )


def test_layers_by_module_path_on_a_user_network(user_inputs):
    from jaxviz import taps
    from jaxviz.attribution import Unit, grad_cam

    v, x = user_inputs
    names = taps.layer_names(UserNet(), v, INPUT)
    assert names[:4] == ["stem", "block.conv", "block.bn", "block.conv2"] and "block" in names and "head" in names
    assert taps.default_cam_layer(UserNet(), v, INPUT) == "top"
    m = grad_cam(UserNet(), v, x, Unit("top", 2), layer="block")
    assert m.maps.shape == (3, *INPUT[:2]) and np.all(np.asarray(m.index) == 2)
    with pytest.raises(LayerError, match="Did you mean block.conv"):
        grad_cam(UserNet(), v, x, layer="block.conv3")
