"""Backward rules against literal NumPy, and the first attribution methods' defining properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz.attribution import cam, grad_cam, guided_backprop, guided_grad_cam, saliency
from jaxviz.models import forward
from jaxviz.rules import (
    backprop_relu,
    deconvnet_relu,
    guided_relu,
    relu_rule,
    with_rule,
)


def _two_layer_reference(x, w1, w2, rule):
    """y = w2 · act(w1 · x); gradient of y w.r.t. x with a literal ReLU backward rule."""
    f = w1 @ x
    r2 = w2.copy()  # dy/d act(f)
    if rule == "backprop":
        r1 = (f > 0) * r2
    elif rule == "deconvnet":
        r1 = (r2 > 0) * r2
    else:
        r1 = (f > 0) * (r2 > 0) * r2
    return w1.T @ r1


@pytest.mark.parametrize("rule,act", [("backprop", backprop_relu), ("deconvnet", deconvnet_relu),
                                      ("guided", guided_relu)])
def test_rules_match_literal_numpy(rule, act):
    rng = np.random.default_rng(0)
    x, w1, w2 = rng.standard_normal(5), rng.standard_normal((7, 5)), rng.standard_normal(7)
    g = jax.grad(lambda x: jnp.dot(w2, act(w1 @ x)))(jnp.asarray(x))
    np.testing.assert_allclose(g, _two_layer_reference(x, w1, w2, rule), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(act(jnp.asarray(w1 @ x)), np.maximum(w1 @ x, 0), rtol=1e-6)


def test_custom_rule_in_one_function(shapesnet):
    model, params = shapesnet
    zero = relu_rule(lambda x, g: jnp.zeros_like(g), "zero")
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
    g, _, logits = saliency(with_rule(model, zero), params, x, 3)
    assert float(jnp.abs(g).max()) == 0.0
    np.testing.assert_allclose(logits, forward(model, params, x), rtol=1e-6)  # forward unchanged


def test_rule_on_chosen_layers_only(shapesnet):
    model, params = shapesnet
    x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
    g_all, _, _ = guided_backprop(model, params, x, 0)
    g_some, _, _ = guided_backprop(model, params, x, 0, layers=["relu4_2"])
    g_plain, _, _ = saliency(model, params, x, 0)
    assert not np.allclose(g_some, g_all) and not np.allclose(g_some, g_plain)
    with pytest.raises(ValueError, match="not activation layers"):
        with_rule(model, guided_relu, ["conv1_1"])


def test_features_only_rule_leaves_classifier_relus(tiny_vgg):
    model, _ = tiny_vgg
    m = with_rule(model, guided_relu, "features")
    names = [n for n, _ in m.layer_acts]
    assert "relu5_1" in names and "relu6" not in names and "relu7" not in names


def test_cam_equals_grad_cam_on_gap_net(shapesnet):
    """Seed 004: on a GAP network Grad-CAM's weights are the head weights / (h·w)."""
    model, params = shapesnet
    x = jax.random.uniform(jax.random.key(2), (3, 64, 64, 3))
    c, _, _ = cam(model, params, x, [1, 5, 9])
    g, _, _ = grad_cam(model, params, x, [1, 5, 9])
    np.testing.assert_allclose(c, g, atol=1e-5)
    assert float(c.max()) == pytest.approx(1.0, abs=1e-5)


def test_cam_refuses_non_gap_head(tiny_vgg):
    model, params = tiny_vgg
    with pytest.raises(ValueError, match="global-average-pooling"):
        cam(model, params, jnp.ones((1, 32, 32, 3)))


def test_guided_grad_cam_is_product(shapesnet):
    model, params = shapesnet
    x = jax.random.uniform(jax.random.key(3), (2, 64, 64, 3))
    ggc, classes, _ = guided_grad_cam(model, params, x)
    gb, _, _ = guided_backprop(model, params, x, classes)
    gc, _, _ = grad_cam(model, params, x, classes)
    np.testing.assert_allclose(ggc, gb * gc[..., None], rtol=1e-5, atol=1e-8)


def test_rules_refuse_non_relu_models():
    import jax.numpy as jnp

    from jaxviz.models import LeNet5

    m = LeNet5()
    p = m.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    with pytest.raises(ValueError, match="tanh"):
        guided_backprop(m, p, jnp.zeros((1, 28, 28, 1)), 0)
    g, _, _ = saliency(m, p, jnp.ones((1, 28, 28, 1)), 0)  # plain gradients still work
    assert float(jnp.abs(g).max()) > 0
