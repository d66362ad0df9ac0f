"""The PyTorch peer (`jaxviz.torch_peer.to_torch`) computes what the Flax model computes."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxviz.models import VGG, LeNet5, ShapesNet  # noqa: E402
from jaxviz.rules import relu_rule  # noqa: E402
from jaxviz.taps import activations  # noqa: E402
from jaxviz.torch_peer import _classes, nchw_to_nhwc, nhwc_to_nchw, to_torch  # noqa: E402

TINY_VGG = dict(blocks=(1, 1, 1, 1, 1), widths=(8, 16, 16, 32, 32), hidden=64, num_classes=7)

# (id, model, input shape): VGG at 96x96 (pool5 3x3 → 7x7 bins overlap) and at 80x112 (pool5 2x3,
# uneven adaptive-pool bins in each direction); LeNet with its tanh and zero padding.
CASES = [
    ("shapesnet", ShapesNet(), (2, 64, 64, 3)),
    ("shapesnet_gmp", ShapesNet(pool="gmp", widths=((8,), (16,))), (2, 16, 16, 3)),
    ("lenet5", LeNet5(), (3, 28, 28, 1)),
    ("tiny_vgg_96", VGG(**TINY_VGG), (2, 96, 96, 3)),
    ("tiny_vgg_80x112", VGG(**TINY_VGG), (2, 80, 112, 3)),
]


def random_params(model, shape, seed=0):
    """Random params from the shapes alone (no compiled init): N(0, 1/fan_in) kernels, small biases."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))["params"]
    rng = np.random.default_rng(seed)

    def draw(path, s):
        if path[-1].key == "kernel":
            return jnp.asarray(rng.normal(0, 1 / np.sqrt(np.prod(s.shape[:-1])), s.shape), jnp.float32)
        return jnp.asarray(rng.normal(0, 0.1, s.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def case(request):
    _, model, shape = request.param
    params = random_params(model, shape, seed=3)
    x = jax.random.normal(jax.random.key(4), shape)
    return model, params, x, to_torch(model, params)


@pytest.mark.slow
def test_logits_match(case):
    model, params, x, peer = case
    want = jax.jit(lambda p, x: model.apply({"params": p}, x))(params, x)
    with torch.no_grad():
        got = peer(nhwc_to_nchw(x)).numpy()
    assert got.shape == want.shape
    assert _rel(got, want) < 1e-4


def test_every_intermediate_activation_matches(case):
    model, params, x, peer = case
    names = [layer.name for layer in model.layers()]
    acts = jax.jit(lambda p, x: activations(model, p, x, names))(params, x)
    xt = nhwc_to_nchw(x)
    for name in names:
        with torch.no_grad():
            got = nchw_to_nhwc(peer(xt, stop_at=name))
        assert got.shape == acts[name].shape, name
        assert _rel(got, acts[name]) < 1e-4, name


@pytest.fixture(scope="module")
def tiny_vgg():
    model = VGG(**TINY_VGG)
    return model, random_params(model, (1, 64, 64, 3), seed=1)


@pytest.fixture(scope="module")
def shapesnet():
    model = ShapesNet()
    return model, random_params(model, (1, 64, 64, 3), seed=2)


def test_layers_by_semantic_name_and_alias(tiny_vgg):
    model, params = tiny_vgg
    peer = to_torch(model, params)
    assert peer.layer("relu5_1") is peer.relu5_1
    assert peer.layer("features.0") is peer.conv1_1  # torchvision alias
    assert peer.layer(-1) is peer.fc8
    assert isinstance(peer.relu5_1, torch.nn.ReLU)
    assert isinstance(peer.avgpool, torch.nn.AdaptiveAvgPool2d)
    assert not peer.training  # eval mode: dropout off
    # every activation is its own module, so Captum's per-module hooks touch one layer each
    relus = [m for m in peer.modules() if isinstance(m, torch.nn.ReLU)]
    assert len({id(m) for m in relus}) == len([layer for layer in model.layers() if layer.kind == "act"])


def test_weights_are_converted_not_shared(tiny_vgg):
    model, params = tiny_vgg
    peer = to_torch(model, params)
    np.testing.assert_array_equal(
        peer.conv1_1.weight.detach().numpy(), np.asarray(params["conv1_1"]["kernel"]).transpose(3, 2, 0, 1)
    )
    np.testing.assert_array_equal(peer.fc8.weight.detach().numpy(), np.asarray(params["fc8"]["kernel"]).T)


def test_activation_kinds(shapesnet):
    model, params = shapesnet
    mine = relu_rule(lambda x, g: g, "straight_through")  # any rule: forward is still ReLU
    assert isinstance(to_torch(model.clone(act=mine), params).relu4_2, torch.nn.ReLU)
    assert isinstance(to_torch(model.clone(act=jax.nn.sigmoid), params).relu1_1, torch.nn.Sigmoid)
    assert isinstance(to_torch(LeNet5(), random_params(LeNet5(), (1, 28, 28, 1))).act1, torch.nn.Tanh)
    with pytest.raises(ValueError, match="no torch equivalent"):
        to_torch(model.clone(act=jax.nn.gelu), params)


def test_layout_helpers_round_trip():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    t = nhwc_to_nchw(x)
    assert tuple(t.shape) == (2, 5, 3, 4) and t.dtype == torch.float32
    np.testing.assert_array_equal(nchw_to_nhwc(t), x)
    np.testing.assert_array_equal(nhwc_to_nchw(jnp.asarray(x)).numpy(), t.numpy())
    assert nhwc_to_nchw(x.astype(np.float64)).dtype == torch.float64  # exact comparisons stay exact
    assert nhwc_to_nchw(x.astype(np.int32)).dtype == torch.float32


def test_missing_torch_says_how_to_install(monkeypatch, shapesnet):
    model, params = shapesnet
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    _classes.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"pip install 'jaxviz-cnn\[torch\]'"):
            to_torch(model, params)
    finally:
        _classes.cache_clear()
