"""Models: naming, arbitrary sizes, taps (outputs, replacements) and gradients at named layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz.models import VGG16, VGG19, LayerError, LeNet5, adaptive_avg_pool, build
from jaxviz.taps import layer_table

try:
    from .model_calls import activations, forward, from_layer, layer_gradient
except ImportError:
    from model_calls import activations, forward, from_layer, layer_gradient


def _adaptive_avg_reference(x, o):
    """Literal torch AdaptiveAvgPool2d semantics, one bin at a time."""
    n, h, w, c = x.shape
    out = np.zeros((n, o, o, c), np.float64)
    for i in range(o):
        for j in range(o):
            h0, h1 = (i * h) // o, int(np.ceil((i + 1) * h / o))
            w0, w1 = (j * w) // o, int(np.ceil((j + 1) * w / o))
            out[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("hw", [(7, 7), (10, 13), (14, 14), (3, 5), (1, 1)])
def test_adaptive_avg_pool_matches_torch_semantics(hw):
    x = np.random.default_rng(0).standard_normal((2, *hw, 3)).astype(np.float32)
    np.testing.assert_allclose(
        adaptive_avg_pool(jnp.asarray(x), (7, 7)), _adaptive_avg_reference(x, 7), rtol=1e-5, atol=1e-6
    )


def test_vgg_layer_names_both_schemes():
    m = VGG16()
    assert m.resolve("features.28") == m.resolve("conv5_3")
    assert m.layer("features.29").name == "relu5_3"
    assert m.layer("features.30").name == "pool5"
    assert m.layer("classifier.0").name == "fc6"
    assert m.layer("classifier.6").name == "fc8"
    assert len([layer for layer in m.layers() if layer.kind == "conv"]) == 13
    v19 = VGG19()
    assert len([layer for layer in v19.layers() if layer.kind == "conv"]) == 16
    assert v19.layer("features.34").name == "conv5_4" and v19.layer("features.36").name == "pool5"


def test_unknown_layer_error_suggests_names():
    with pytest.raises(LayerError, match="conv5_3"):
        VGG16().resolve("conv5_33")


def test_layer_table_vgg16_shapes_and_params():
    rows = {r["name"]: r for r in layer_table(VGG16(), None, (224, 224, 3))}
    assert rows["conv1_1"]["shape"] == [224, 224, 64]
    assert rows["pool5"]["shape"] == [7, 7, 512]
    assert rows["fc6"]["params"] == 25088 * 4096 + 4096
    assert sum(r["params"] for r in rows.values()) == 138_357_544  # torchvision's VGG16 count


@pytest.mark.parametrize("hw", [(32, 32), (64, 96), (50, 77)])
@pytest.mark.slow
def test_any_input_size(tiny_vgg, hw):
    model, params = tiny_vgg
    x = jnp.ones((2, *hw, 3))
    assert forward(model, params, x).shape == (2, 7)
    assert activations(model, params, x, ["avgpool"])["avgpool"].shape == (2, 7, 7, 32)


@pytest.mark.slow
def test_shapesnet_any_size(shapesnet):
    model, params = shapesnet
    for hw in [(64, 64), (48, 80), (128, 128)]:
        assert forward(model, params, jnp.zeros((1, *hw, 3))).shape == (1, 10)


def test_lenet_shapes():
    for arch in ["lenet5", "lenet5_3x3"]:
        m = build(arch)
        p = m.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
        assert forward(m, p, jnp.zeros((3, 28, 28, 1))).shape == (3, 10)
    assert LeNet5().layer("fc_in").name == "fc1"


@pytest.mark.slow
def test_layer_outputs_and_running_from_a_layer(tiny_vgg):
    """A layer's output (`stop`), and the net run from that output on (`replace`), give the logits back."""
    model, params = tiny_vgg
    x = jax.random.normal(jax.random.key(2), (2, 64, 64, 3))
    full = forward(model, params, x)
    for layer in ["relu1_1", "pool3", "features.10", "fc6", "relu7"]:
        a = forward(model, params, x, stop_at=layer)
        np.testing.assert_allclose(a, activations(model, params, x, [layer])[layer], rtol=1e-6)
        np.testing.assert_allclose(from_layer(model, params, a, layer, x.shape[1:]), full, rtol=2e-5, atol=1e-5)


def test_activations_keep_caller_names(tiny_vgg):
    model, params = tiny_vgg
    acts = activations(model, params, jnp.ones((1, 64, 64, 3)), ["features.0", "pool1", "fc8"])
    assert set(acts) == {"features.0", "pool1", "fc8"}
    assert acts["features.0"].shape == (1, 64, 64, 8) and acts["fc8"].shape == (1, 7)


@pytest.mark.slow
def test_layer_gradient_matches_finite_differences(shapesnet):
    model, params = shapesnet
    x = jax.random.uniform(jax.random.key(3), (2, 32, 32, 3))
    scalar = lambda y: y[:, 4] - 0.5 * y[:, 1]  # noqa: E731
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), params)
        x64 = jnp.asarray(x, jnp.float64)
        a, g = layer_gradient(model, p64, x64, "relu3_1", scalar)
        d = jax.random.normal(jax.random.key(4), a.shape, jnp.float64)
        eps = 1e-6
        tail = lambda a: scalar(from_layer(model, p64, a, "relu3_1", x.shape[1:]))  # noqa: E731
        fd = (tail(a + eps * d) - tail(a - eps * d)) / (2 * eps)
        np.testing.assert_allclose(jnp.sum(g * d, axis=(1, 2, 3)), fd, rtol=1e-5)


@pytest.mark.slow
def test_layer_gradient_per_image_independent(shapesnet):
    model, params = shapesnet
    x = jax.random.uniform(jax.random.key(5), (3, 32, 32, 3))
    _, g_batch = layer_gradient(model, params, x, "relu2_1", lambda y: y[:, 0])
    _, g_one = layer_gradient(model, params, x[1:2], "relu2_1", lambda y: y[:, 0])
    np.testing.assert_allclose(g_batch[1:2], g_one, rtol=1e-5, atol=1e-7)


def test_unknown_layer_lists_the_model_layers(tiny_vgg):
    model, params = tiny_vgg
    with pytest.raises(LayerError, match="Did you mean relu5_1.*Layers: conv1_1, relu1_1"):
        forward(model, params, jnp.ones((1, 64, 64, 3)), stop_at="relu5_11")
