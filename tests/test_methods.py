"""SmoothGrad, Integrated Gradients, Grad-CAM++, Score-CAM, LayerCAM, CAM-GMP, occlusion and FullGrad
against the slow literal versions in `reference_methods.py`, plus their defining properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from jaxviz.attribution import Unit, saliency
from jaxviz.attribution.cam import cam_gmp
from jaxviz.attribution.cam_variants import grad_cam_pp, layer_cam, score_cam
from jaxviz.attribution.fullgrad import fullgrad, fullgrad_terms
from jaxviz.attribution.integrated import integrated_gradients, make_baseline
from jaxviz.attribution.occlusion import occlusion
from jaxviz.attribution.smoothgrad import smoothgrad
from jaxviz.models import ShapesNet

try:  # tests/ may or may not be a package
    from . import reference_methods as ref
    from .model_calls import activations, forward, from_layer, layer_gradient
except ImportError:
    import reference_methods as ref
    from model_calls import activations, forward, from_layer, layer_gradient

CLASSES = np.array([2, 7])


@pytest.fixture(scope="module")
def x():
    return jax.random.uniform(jax.random.key(10), (2, 32, 32, 3), minval=-1.0, maxval=1.0)


def _pick(classes):
    return lambda out: out[jnp.arange(out.shape[0]), jnp.asarray(classes)]


# --- SmoothGrad ------------------------------------------------------------------------------


@pytest.mark.slow
def test_smoothgrad_level_zero_is_saliency(shapesnet, x):
    model, params = shapesnet
    sg, index, out, _ = smoothgrad(model, params, x, CLASSES, n=5, level=0.0, key=jax.random.key(0))
    g, _, logits, _ = saliency(model, params, x, CLASSES)
    np.testing.assert_allclose(sg, g, rtol=1e-5, atol=1e-5 * float(jnp.abs(g).max()))
    np.testing.assert_array_equal(index, CLASSES)
    np.testing.assert_allclose(out, logits, rtol=1e-6)


@pytest.fixture(scope="module")
def smoothgrad_reference(shapesnet, x):
    model, params = shapesnet
    return {
        v: ref.smoothgrad(model, params, x, CLASSES, 5, 0.2, jax.random.key(4), v)
        for v in ("mean", "squared", "vargrad")
    }


@pytest.mark.parametrize("variant,chunk", [("mean", None), ("squared", 2), ("vargrad", 3)])
@pytest.mark.slow
def test_smoothgrad_matches_loop(shapesnet, x, smoothgrad_reference, variant, chunk):
    """Chunks of 2 and 3 over 5 samples leave remainders; every chunking must match the same loop."""
    model, params = shapesnet
    sg, _, _, _ = smoothgrad(
        model, params, x, CLASSES, n=5, level=0.2, variant=variant, key=jax.random.key(4), chunk=chunk
    )
    want = smoothgrad_reference[variant]
    np.testing.assert_allclose(sg, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


# --- Integrated Gradients --------------------------------------------------------------------


@pytest.mark.slow
def test_integrated_gradients_completeness(shapesnet, x):
    model, params = shapesnet
    maps, _, logits, extras = integrated_gradients(model, params, x, CLASSES, steps=200, chunk=50)
    err = extras["completeness"]
    assert err.shape == (2,) and float(err.max()) < 0.01
    # the reported error is the documented quantity
    gap = logits[jnp.arange(2), CLASSES] - forward(model, params, jnp.zeros_like(x))[jnp.arange(2), CLASSES]
    np.testing.assert_allclose(err, jnp.abs(maps.sum((1, 2, 3)) - gap) / jnp.abs(gap), rtol=1e-4)


@pytest.mark.slow
def test_integrated_gradients_matches_loop(shapesnet, x):
    model, params = shapesnet
    x0 = jnp.broadcast_to(jnp.array([-0.5, 0.1, 0.3]), x.shape)
    maps, index, _, _ = integrated_gradients(model, params, x, CLASSES, steps=6, baseline=x0, chunk=4)
    want = ref.integrated_gradients_trapezoid(model, params, x, x0, CLASSES, 6)
    np.testing.assert_allclose(maps, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    np.testing.assert_array_equal(index, CLASSES)


def test_baselines(x):
    zeros = make_baseline(x, "zeros")
    assert zeros.shape == x.shape and float(jnp.abs(zeros).max()) == 0
    black = make_baseline(x, jnp.array([-2.0, -1.9, -1.8]))
    assert black.shape == x.shape and float(black[1, 5, 7, 2]) == pytest.approx(-1.8)
    u = make_baseline(x, "uniform", key=jax.random.key(0))
    assert u.shape == x.shape
    for i in range(2):
        assert float(x[i].min()) <= float(u[i].min()) and float(u[i].max()) <= float(x[i].max())
    blur = make_baseline(x, "blur", blur_sigma=2.5)
    want = scipy.ndimage.gaussian_filter(np.asarray(x, np.float64), sigma=(0, 2.5, 2.5, 0), mode="reflect")
    np.testing.assert_allclose(blur, want, atol=1e-5)


# --- Unit targets and bad options --------------------------------------------------------------


@pytest.mark.slow
def test_sample_methods_explain_units(shapesnet, x):
    model, params = shapesnet
    unit = Unit("relu3_1", 5)
    sg, index, out, _ = smoothgrad(model, params, x, unit, n=2, key=jax.random.key(0))
    ig, index2, out2, extras = integrated_gradients(model, params, x, unit, steps=4, baseline="blur")
    err = extras["completeness"]
    for maps in (sg, ig):
        assert maps.shape == x.shape
        assert all(float(jnp.abs(m).max()) > 0 for m in maps)
    assert out.shape == out2.shape == (2, 8, 8, 64) and err.shape == (2,)
    np.testing.assert_array_equal(index, [5, 5])
    np.testing.assert_array_equal(index2, [5, 5])


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda m, p, x: smoothgrad(m, p, x, n=2, level=-0.1, key=jax.random.key(0)), "level must be >= 0"),
        (lambda m, p, x: smoothgrad(m, p, x, n=0, key=jax.random.key(0)), "n >= 1"),
        (
            lambda m, p, x: smoothgrad(m, p, x, n=2, variant="median", key=jax.random.key(0)),
            "unknown smoothgrad variant",
        ),
        (lambda m, p, x: integrated_gradients(m, p, x, steps=0), "steps >= 1"),
        (lambda m, p, x: integrated_gradients(m, p, x, steps=1), "needs steps >= 2"),
        (lambda m, p, x: integrated_gradients(m, p, x, steps=4, method="simpson"), "unknown integration method"),
        (lambda m, p, x: integrated_gradients(m, p, x, steps=4, baseline="uniform"), "needs a PRNG key"),
        (lambda m, p, x: integrated_gradients(m, p, x, steps=4, baseline="black"), "unknown baseline"),
        (lambda m, p, x: integrated_gradients(m, p, x, steps=4, baseline=jnp.zeros(5)), "does not broadcast"),
        (lambda m, p, x: occlusion(m, p, x, patch=40), "larger than the 32x32 image"),
        (lambda m, p, x: occlusion(m, p, x, stride=0), "stride must be a positive int"),
        (lambda m, p, x: score_cam(m, p, x, chunk=0), "chunk must be"),
        (lambda m, p, x: cam_gmp(m, p, x), "global-max-pooling head"),
    ],
)
def test_bad_options_raise(shapesnet, x, call, message):
    model, params = shapesnet
    with pytest.raises(ValueError, match=message):
        call(model, params, x)


# --- occlusion -------------------------------------------------------------------------------


@pytest.mark.slow
def test_occlusion_matches_loop(shapesnet, x):
    """stride 5 leaves (32 − 8) % 5 != 0: the last window is aligned to the border."""
    model, params = shapesnet
    fill = 0.25
    maps, index, _, _ = occlusion(model, params, x, CLASSES, patch=8, stride=5, fill=fill, chunk=7)
    want = ref.occlusion(model, params, x, CLASSES, 8, 5, fill)
    np.testing.assert_allclose(maps, want, rtol=1e-4, atol=1e-6)
    whole, _, _, _ = occlusion(model, params, x, CLASSES, patch=8, stride=5, fill=fill, chunk=None)
    np.testing.assert_allclose(whole, maps, rtol=1e-5, atol=1e-7)  # other batch shapes: other conv rounding
    raw, _, _, _ = occlusion(model, params, x, CLASSES, patch=8, stride=5, fill=fill, prob=False, chunk=None)
    np.testing.assert_allclose(
        raw, ref.occlusion(model, params, x, CLASSES, 8, 5, fill, prob=False), rtol=1e-4, atol=1e-5
    )


# --- CAM family ------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [None, "relu3_2"])
@pytest.mark.slow
def test_grad_cam_pp_and_layer_cam_match_formulas(shapesnet, x, layer):
    model, params = shapesnet
    name = layer or "relu4_2"
    a, g = layer_gradient(model, params, x, name, _pick(CLASSES))
    pp, index, _, _ = grad_cam_pp(model, params, x, CLASSES, layer=layer)
    np.testing.assert_allclose(pp, ref.finish_cam(ref.grad_cam_pp(a, g), x.shape[1:3]), atol=1e-5)
    lc, _, _, _ = layer_cam(model, params, x, CLASSES, layer=layer)
    np.testing.assert_allclose(lc, ref.finish_cam(ref.layer_cam(a, g), x.shape[1:3]), atol=1e-5)
    np.testing.assert_array_equal(index, CLASSES)
    for m in (pp, lc):
        assert m.shape == (2, 32, 32) and float(m.min()) >= 0
        np.testing.assert_allclose(m.max(axis=(1, 2)), 1.0, atol=1e-5)


@pytest.mark.slow
def test_score_cam_matches_loop(shapesnet, x):
    model, params = shapesnet
    a = activations(model, params, x, ["relu2_1"])["relu2_1"]  # 32 channels
    sc, _, _, _ = score_cam(model, params, x, CLASSES, layer="relu2_1", chunk=5)
    want = ref.finish_cam(ref.score_cam(model, params, x, a, CLASSES), x.shape[1:3])
    np.testing.assert_allclose(sc, want, atol=1e-4)
    whole, _, _, _ = score_cam(model, params, x, CLASSES, layer="relu2_1", chunk=None)
    np.testing.assert_allclose(whole, sc, atol=1e-6)


def test_cam_gmp_matches_formula(x):
    model = ShapesNet(pool="gmp")
    params = model.init(jax.random.key(5), jnp.zeros((1, 32, 32, 3)))["params"]
    assert model.layers()[-2].name == "gmp"
    a = activations(model, params, x, ["relu4_2"])["relu4_2"]
    np.testing.assert_allclose(
        from_layer(model, params, a, "relu4_2", x.shape[1:]),
        jnp.max(a, axis=(1, 2)) @ params["fc"]["kernel"] + params["fc"]["bias"][None],
        rtol=1e-5,
        atol=1e-6,
    )
    m, index, logits, _ = cam_gmp(model, params, x, CLASSES)
    want = ref.finish_cam(ref.cam_weighted_sum(a, params["fc"]["kernel"], CLASSES), x.shape[1:3])
    np.testing.assert_allclose(m, want, atol=1e-5)
    np.testing.assert_array_equal(index, CLASSES)
    with pytest.raises(ValueError, match="explains classes"):
        cam_gmp(model, params, x, Unit("relu4_2", 0))


# --- FullGrad --------------------------------------------------------------------------------


@pytest.mark.slow
def test_fullgrad_bias_terms_are_layer_gradients(shapesnet, x):
    model, params = shapesnet
    input_term, terms, sel, _ = fullgrad_terms(model, params, x, CLASSES)
    convs = [layer.name for layer in model.layers() if layer.kind == "conv"]
    assert list(terms) == convs
    g, _, _, _ = saliency(model, params, x, CLASSES)
    np.testing.assert_allclose(input_term, g * x, rtol=1e-5, atol=1e-8)
    bias_terms = []
    for name in convs:
        _, dz = layer_gradient(model, params, x, name, _pick(CLASSES))
        want = np.asarray(dz) * np.asarray(params[name]["bias"])[None, None, None, :]
        scale = np.abs(want).max()
        np.testing.assert_allclose(terms[name], want, rtol=1e-4, atol=1e-5 * scale, err_msg=name)
        bias_terms.append(want)
    maps, index, _, _ = fullgrad(model, params, x, CLASSES)
    np.testing.assert_allclose(maps, ref.fullgrad_map(g * x, bias_terms, x.shape[1:3]), atol=1e-4)
    np.testing.assert_array_equal(index, CLASSES)


@pytest.mark.parametrize(
    "which,target", [("shapesnet", None), ("tiny_vgg", 3), ("shapesnet", Unit("relu3_1", 5, 2, 3))]
)
@pytest.mark.slow
def test_fullgrad_completeness(request, x, which, target):
    """ReLU nets are piecewise linear: y = Σ ∇x·x + Σ_layers Σ ∇z_l·b_l, dense biases included."""
    model, params = request.getfixturevalue(which)
    input_term, terms, sel, out = fullgrad_terms(model, params, x, target, dense=True)
    kinds = {layer.name: layer.kind for layer in model.layers()}
    if target is None:
        assert any(kinds[n] == "dense" for n in terms)
    total = input_term.sum((1, 2, 3)) + sum(t.reshape(t.shape[0], -1).sum(1) for t in terms.values())
    if isinstance(target, Unit):
        y = out[jnp.arange(2), sel.pos[:, 0], sel.pos[:, 1], sel.index]
    else:
        y = out[jnp.arange(2), sel.index]
    np.testing.assert_allclose(total, y, rtol=1e-4, atol=1e-5 * float(jnp.abs(y).max()))


# --- batch independence of the deterministic methods ------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        lambda m, p, x: integrated_gradients(m, p, x, steps=4)[0],
        lambda m, p, x: occlusion(m, p, x, patch=8, stride=8)[0],
        lambda m, p, x: grad_cam_pp(m, p, x)[0],
        lambda m, p, x: score_cam(m, p, x, layer="relu3_2", chunk=16)[0],
        lambda m, p, x: fullgrad(m, p, x)[0],
    ],
    ids=["integrated_gradients", "occlusion", "grad_cam_pp", "score_cam", "fullgrad"],
)
@pytest.mark.slow
def test_batch_independence(shapesnet, x, method):
    model, params = shapesnet
    both = method(model, params, x)
    alone = method(model, params, x[1:])
    np.testing.assert_allclose(
        both[1], alone[0], rtol=1e-4, atol=1e-4 * float(jnp.abs(alone).max())
    )  # float32 conv rounding differs by batch size
