"""Backward rules against literal NumPy, and the first attribution methods' defining properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import taps
from jaxviz.attribution import cam, grad_cam, guided_backprop, guided_grad_cam, saliency
from jaxviz.core import as_net, with_rule
from jaxviz.rules import (
    First,
    Path,
    Where,
    backprop_relu,
    composite,
    deconvnet_relu,
    guided_relu,
    relu_rule,
    sites,
)

try:
    from .model_calls import forward
    from .user_models import INPUT, UserNet, function_from_linen, nnx_from_linen, user_variables
except ImportError:
    from model_calls import forward
    from user_models import INPUT, UserNet, function_from_linen, nnx_from_linen, user_variables


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


@pytest.mark.parametrize(
    "rule,act", [("backprop", backprop_relu), ("deconvnet", deconvnet_relu), ("guided", guided_relu)]
)
def test_rules_match_literal_numpy(rule, act):
    rng = np.random.default_rng(0)
    x, w1, w2 = rng.standard_normal(5), rng.standard_normal((7, 5)), rng.standard_normal(7)
    g = jax.grad(lambda x: jnp.dot(w2, act(w1 @ x)))(jnp.asarray(x))
    np.testing.assert_allclose(g, _two_layer_reference(x, w1, w2, rule), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(act(jnp.asarray(w1 @ x)), np.maximum(w1 @ x, 0), rtol=1e-6)


@pytest.mark.slow
def test_custom_rule_in_one_function(shapesnet):
    model, params = shapesnet
    zero = relu_rule(lambda x, g: jnp.zeros_like(g), "zero")
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
    g, _, logits, _ = saliency(with_rule(model, zero), params, x, 3)
    assert float(jnp.abs(g).max()) == 0.0
    np.testing.assert_allclose(logits, forward(model, params, x), rtol=1e-6)  # forward unchanged


@pytest.mark.slow
def test_rule_on_chosen_layers_only(shapesnet):
    model, params = shapesnet
    x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
    g_all, _, _, _ = guided_backprop(model, params, x, 0)
    g_some, _, _, _ = guided_backprop(model, params, x, 0, layers=["relu4_2"])
    g_plain, _, _, _ = saliency(model, params, x, 0)
    assert not np.allclose(g_some, g_all) and not np.allclose(g_some, g_plain)
    with pytest.raises(ValueError, match="no ReLU .* under the chosen layers"):
        guided_backprop(model, params, x, 0, layers=["conv1_1"])


def _relu_rules(net, variables, shape):
    """{path of each ReLU site: name of the rule the net's composite puts there (None: none)}."""
    x = jnp.zeros((1, *shape))
    found = sites(lambda v, x: taps.run(net.with_rules(None), v, x)[0], variables, x)
    return {s.path: getattr(net.rules.rule_for(s), "name", None) for s, _ in found if s.kind == "relu"}


@pytest.mark.slow
def test_features_only_rule_leaves_classifier_relus(tiny_vgg):
    """Seed 000 applies guided ReLUs in `features` only: the group name picks the ReLUs before the head."""
    from jaxviz.attribution.gradients import with_relu_rule

    model, params = tiny_vgg
    net, _ = with_relu_rule(model, params, jnp.zeros((1, 32, 32, 3)), guided_relu, "features", "test")
    placed = _relu_rules(net, {"params": params}, (32, 32, 3))
    assert placed["relu5_1"] == "guided" and placed["relu6"] is None and placed["relu7"] is None


def test_every_relu_spelling_is_a_site():
    """nn.relu, jax.nn.relu and jnp.maximum(x, 0) in a user's net are all found, with their module paths."""
    v = user_variables()
    found = sites(lambda v, x: UserNet().apply(v, x), v, jnp.zeros((1, *INPUT)))
    relus = [s for s, _ in found if s.kind == "relu"]
    assert len(relus) == 6
    net = as_net(UserNet())
    paths = [
        s.path for s, _ in sites(lambda v, x: taps.run(net, v, x)[0], v, jnp.zeros((1, *INPUT))) if s.kind == "relu"
    ]
    assert paths == ["", "block", "block", "", "", ""]  # functional ReLUs run in the module that calls them
    assert {s.kind for s, _ in found} >= {"conv", "dense", "max_pool", "add", "relu"}


def test_composites_place_rules_by_kind_path_position_and_predicate():
    v = user_variables()
    net = as_net(UserNet())
    comp = composite(
        {
            First("relu"): backprop_relu,
            Path("block"): deconvnet_relu,
            Where(lambda s: s.index == 5, kind="relu"): guided_relu,
        }
    )
    placed = [r for r in _relu_rules(net.with_rules(comp), v, INPUT).values()]
    # paths repeat (three top-level ReLUs), so check by order through the sites list instead
    x = jnp.zeros((1, *INPUT))
    found = [s for s, _ in sites(lambda v, x: taps.run(net, v, x)[0], v, x) if s.kind == "relu"]
    names = [getattr(net.with_rules(comp).rules.rule_for(s), "name", None) for s in found]
    assert names == ["backprop", "deconvnet", "deconvnet", None, None, "guided"]
    assert placed  # the dict view collapses equal paths but still sees rules


@pytest.mark.slow
def test_rule_changes_the_backward_not_the_forward_on_any_model_kind():
    """A new rule, applied to a linen net, the same net in NNX and as a plain function: one answer."""
    v = user_variables()
    x = jax.random.normal(jax.random.key(0), (2, *INPUT))
    clipped = relu_rule(lambda x, g: jnp.where(x > 0, jnp.clip(g, -1e-3, 1e-3), 0), "clipped")
    nnx_net = nnx_from_linen(v)
    models = [(UserNet(), v), (nnx_net, nnx_net), (function_from_linen(v), None)]
    results = [saliency(with_rule(m, clipped), var, x, 1) for m, var in models]
    plain = saliency(UserNet(), v, x, 1)
    for r in results:
        np.testing.assert_allclose(r.out, plain.out, rtol=1e-5, atol=1e-6)  # same forward
        np.testing.assert_allclose(r.maps, results[0].maps, rtol=1e-4, atol=1e-6)
    assert not np.allclose(results[0].maps, plain.maps, atol=1e-7)  # another backward


def test_equal_rules_share_one_compilation():
    from jaxviz.attribution.engine import TRACES, compiled

    v = user_variables()
    x = jnp.ones((1, *INPUT))
    clip = lambda x, g: jnp.clip(g, -1, 1)  # noqa: E731
    a = compiled("saliency", with_rule(UserNet(), relu_rule(clip, "c")))
    b = compiled("saliency", with_rule(UserNet(), relu_rule(clip, "c")))
    assert a is b
    before = sum(TRACES.values())
    a(v, x, 0), b(v, x, 0)
    assert sum(TRACES.values()) == before + 1


@pytest.mark.slow
def test_cam_equals_grad_cam_on_gap_net(shapesnet):
    """Seed 004: on a GAP network Grad-CAM's weights are the head weights / (h·w)."""
    model, params = shapesnet
    x = jax.random.uniform(jax.random.key(2), (3, 64, 64, 3))
    c, _, _, _ = cam(model, params, x, [1, 5, 9])
    g, _, _, _ = grad_cam(model, params, x, [1, 5, 9])
    np.testing.assert_allclose(c, g, atol=1e-5)
    assert float(c.max()) == pytest.approx(1.0, abs=1e-5)


def test_cam_refuses_non_gap_head(tiny_vgg):
    model, params = tiny_vgg
    with pytest.raises(ValueError, match="global-average-pooling"):
        cam(model, params, jnp.ones((1, 32, 32, 3)))


@pytest.mark.slow
def test_guided_grad_cam_is_product(shapesnet):
    model, params = shapesnet
    x = jax.random.uniform(jax.random.key(3), (2, 64, 64, 3))
    ggc, classes, _, _ = guided_grad_cam(model, params, x)
    gb, _, _, _ = guided_backprop(model, params, x, classes)
    gc, _, _, _ = grad_cam(model, params, x, classes)
    np.testing.assert_allclose(ggc, gb * gc[..., None], rtol=1e-5, atol=1e-8)


@pytest.mark.slow
def test_rules_refuse_non_relu_models():
    import jax.numpy as jnp

    from jaxviz.models import LeNet5

    m = LeNet5()
    p = m.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    with pytest.raises(ValueError, match="has no ReLU"):
        guided_backprop(m, p, jnp.zeros((1, 28, 28, 1)), 0)
    g, _, _, _ = saliency(m, p, jnp.ones((1, 28, 28, 1)), 0)  # plain gradients still work
    assert float(jnp.abs(g).max()) > 0
