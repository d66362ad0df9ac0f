"""Optimization-based visualization (issue 5): objectives, params, transforms, the render loop, and
each seed's recipe on the embedded model (classes, filters, DeepDream, style, adversarial), CLI."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxviz.models import ShapesNet
from jaxviz.models.loading import load
from jaxviz.optvis import adversarial as A
from jaxviz.optvis import objectives as O
from jaxviz.optvis import param as P
from jaxviz.optvis import regularizers as R
from jaxviz.optvis import style as S
from jaxviz.optvis import transforms as T
from jaxviz.optvis import visualize as V
from jaxviz.optvis.optimizers import make_optimizer, torch_sgd
from jaxviz.optvis.render import Renderer, model_acts, unit_keys


@pytest.fixture(scope="module")
def lm():
    return load()  # the embedded shapesnet (trained)


@pytest.fixture(scope="module")
def tiny():
    """A narrow random ShapesNet: fast enough for exact comparisons of render runs."""
    model = ShapesNet(widths=((4,), (8,), (8,), (8,)))
    params = jax.jit(model.init)(jax.random.key(3), jnp.zeros((1, 16, 16, 3)))["params"]
    from jaxviz.data.preprocess import get_preprocessing

    return model, params, get_preprocessing("centered")


# --- objectives ----------------------------------------------------------------------------


def _acts():
    rng = np.random.default_rng(0)
    return {
        "conv": jnp.asarray(rng.normal(size=(2, 5, 6, 4)), jnp.float32),
        "logits": jnp.asarray(rng.normal(size=(2, 7)), jnp.float32),
        "image": jnp.asarray(rng.uniform(size=(2, 8, 8, 3)), jnp.float32),
    }


def test_objective_values_match_numpy():
    a = _acts()
    conv, logits = np.asarray(a["conv"]), np.asarray(a["logits"])
    assert np.isclose(O.class_logit(3)(a), logits[:, 3].mean())
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert np.isclose(O.class_log_prob(2)(a), logp[:, 2].mean(), atol=1e-6)
    assert np.isclose(O.channel("conv", 1)(a), conv[..., 1].mean())
    assert np.isclose(O.channel("conv", 1, "median")(a), np.median(conv[..., 1].reshape(2, -1), 1).mean())
    assert np.isclose(O.neuron("conv", 2)(a), conv[:, 2, 3, 2].mean())
    assert np.isclose(O.layer_mean("conv")(a), conv.mean())
    assert np.isclose(O.layer_norm("conv")(a), np.sqrt((conv.reshape(2, -1) ** 2).sum(1)).mean(), rtol=1e-5)


def test_objective_algebra():
    a = _acts()
    x, y = O.channel("conv", 0), O.class_logit(1)
    vx, vy = float(x(a)), float(y(a))
    assert np.isclose((2 * x + y - 1)(a), 2 * vx + vy - 1, rtol=1e-6)
    assert np.isclose((x - 0.5 * y)(a), vx - 0.5 * vy, rtol=1e-6)
    assert np.isclose((-x)(a), -vx) and np.isclose((x / 4)(a), vx / 4) and np.isclose((1 - x)(a), 1 - vx)
    assert np.isclose((x * y)(a), vx * vy, rtol=1e-6)
    assert set((x + y - R.l2()).layers) == {"conv", "logits"}
    assert np.isclose((x * jnp.float32(3.0))(a), 3 * vx, rtol=1e-6)  # traced-able scalar weights
    with pytest.raises(TypeError):
        x * np.ones(3)


def test_diversity_prefers_different_images():
    same = {"conv": jnp.ones((2, 3, 3, 4))}
    rng = np.random.default_rng(1)
    diff = {
        "conv": jnp.asarray(
            np.abs(rng.normal(size=(2, 3, 3, 4))) * np.array([1, 0, 1, 0] * 1)[None, None, None]
            + np.array([0, 0, 0, 0])[None, None, None],
            jnp.float32,
        )
    }
    diff["conv"] = diff["conv"].at[1].set(jnp.asarray(np.abs(rng.normal(size=(3, 3, 4))) * np.array([0, 1, 0, 1])))
    assert float(O.diversity("conv")(same)) == pytest.approx(-1.0, abs=1e-5)
    assert float(O.diversity("conv")(diff)) > -0.01


def test_style_costs_match_literal_sums():
    rng = np.random.default_rng(2)
    a_c, a_g, a_s = (rng.normal(size=(3, 4, 5)).astype(np.float32) for _ in range(3))
    n_h, n_w, n_c = a_g.shape
    jc = sum((a_c[i, j, k] - a_g[i, j, k]) ** 2 for i in range(n_h) for j in range(n_w) for k in range(n_c))
    assert np.isclose(S.content_cost(a_c, a_g), jc / (4 * n_h * n_w * n_c), rtol=1e-5)
    g = lambda a: np.array(
        [[sum(a[i, j, p] * a[i, j, q] for i in range(n_h) for j in range(n_w)) for q in range(n_c)] for p in range(n_c)]
    )
    np.testing.assert_allclose(S.gram(a_s), g(a_s), rtol=1e-5, atol=1e-5)
    js = ((g(a_s) - g(a_g)) ** 2).sum() / (4 * n_c**2 * (n_h * n_w) ** 2)
    assert np.isclose(S.style_cost(S.gram(a_s), a_g), js, rtol=1e-5)


# --- parameterizations, transforms, regularizers ----------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda s: P.pixel(s, valid="clip"),
        lambda s: P.pixel(s, valid="sigmoid"),
        lambda s: P.pixel(s, valid="sigmoid", decorrelate=True),
        lambda s: P.pixel(s, valid="none", decorrelate=True),
        lambda s: P.fourier(s),
        lambda s: P.fourier(s, decorrelate=False, valid="none", decay_power=1.5),
        lambda s: P.fourier((1, 15, 9, 3)),
    ],
)
@pytest.mark.slow
def test_param_round_trip(make):
    shape = (1, 12, 10, 3)
    p = make(shape)
    img = jax.random.uniform(jax.random.key(0), p.shape, minval=0.05, maxval=0.95)
    np.testing.assert_allclose(jax.jit(lambda x: p.to_image(p.from_image(x)))(img), img, atol=2e-4)
    out = jax.jit(lambda k: p.to_image(p.init(k)))(jax.random.key(1))
    assert out.shape == p.shape
    if "none" not in p.name:  # valid='none' is unconstrained on purpose
        assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_fourier_param_of_a_known_image():
    h, w = 16, 16
    xx = np.arange(w)[None, :, None]
    img = (0.5 + 0.2 * np.cos(2 * np.pi * 3 * xx / w)) * np.ones((1, h, w, 3))
    p = P.fourier((1, h, w, 3), decorrelate=False, valid="none")
    raw = np.asarray(p.from_image(jnp.asarray(img, jnp.float32)))
    mag = np.hypot(raw[0], raw[1])[0, 0]  # channel 0, (h, w//2+1)
    mag[0, 0] = 0  # the mean
    assert np.unravel_index(mag.argmax(), mag.shape) == (0, 3)
    assert mag.sum() == pytest.approx(mag[0, 3], rel=1e-3)  # nothing at other frequencies


def test_inits():
    g = P.grey(0.2, 0.3)(jax.random.key(0), (2, 4, 4, 3))
    assert np.allclose(g[..., 0], g[..., 1]) and 0.2 <= float(g.min()) and float(g.max()) <= 0.3
    u = P.uniform()(jax.random.key(0), (1, 8, 8, 3))
    assert 150 / 255 <= float(u.min()) and float(u.max()) <= 180 / 255


def test_transforms():
    img = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
    k = jax.random.key(5)
    run = lambda t, key=k: jax.jit(t)(key, img)
    assert run(T.jitter(4)).shape == (2, 12, 12, 3)
    rolled = run(T.roll(3))
    np.testing.assert_allclose(np.sort(np.asarray(rolled).ravel()), np.sort(np.asarray(img).ravel()))
    np.testing.assert_allclose(run(T.compose(T.rotate([0.0]), T.scale([1.0]))), img, atol=1e-5)
    r90 = run(T.rotate([90.0]))  # a quarter turn (clockwise as displayed) of a square image
    np.testing.assert_allclose(r90, np.rot90(np.asarray(img), -1, axes=(1, 2)), atol=1e-4)
    assert run(T.pad(2)).shape == (2, 20, 20, 3)
    t = jax.jit(T.standard(16))
    np.testing.assert_allclose(t(k, img), t(k, img))
    assert not np.allclose(t(k, img), t(jax.random.key(6), img))


def test_regularizers():
    const = {"image": jnp.full((1, 8, 8, 3), 0.7)}
    assert float(R.total_variation()(const)) < 1e-5 and float(R.blur()(const)) < 1e-10
    assert float(R.l2()(const)) == pytest.approx(8 * 8 * 3 * 0.04, rel=1e-5)
    noisy = {"image": jax.random.uniform(jax.random.key(0), (1, 8, 8, 3))}
    assert float(R.total_variation()(noisy)) > 1 and float(R.blur()(noisy)) > 0.1
    assert R.gaussian_kernel(1.5).sum() == pytest.approx(1.0)


# --- the render loop --------------------------------------------------------------------------------


def _renderer(tiny, **kw):
    model, params, pp = tiny
    return Renderer(
        model,
        params,
        pp,
        lambda c: O.channel("relu3_1", c) - 0.01 * R.l2(),
        P.pixel((1, 16, 16, 3)),
        optax.adam(0.05),
        transforms=T.compose(T.jitter(2), T.roll(1)),
        **kw,
    )


@pytest.mark.slow
def test_vmapped_units_equal_single_runs_and_no_retrace(tiny):
    r = _renderer(tiny, chunk=3)
    keys, units = unit_keys(0, 3), jnp.arange(3)
    many = r.run(keys, units, 6)
    assert r.traces == 1  # 2 chunks of 3 steps: one compilation
    singles = [r.run(keys[i : i + 1], units[i : i + 1], 6) for i in range(3)]
    assert r.traces == 2  # U=1 compiles once and is reused for every unit
    np.testing.assert_allclose(many.images, np.concatenate([s.images for s in singles]), atol=1e-5)
    np.testing.assert_allclose(many.losses, np.concatenate([s.losses for s in singles]), rtol=1e-4, atol=1e-5)
    again = r.run(keys, units, 6)
    assert r.traces == 2
    np.testing.assert_array_equal(again.images, many.images)
    one_chunk = _renderer(tiny, chunk=6).run(keys, units, 6)  # chunking doesn't change results
    np.testing.assert_allclose(one_chunk.images, many.images, atol=1e-5)


def test_sgd_matches_torch_weight_decay_and_momentum():
    torch = pytest.importorskip("torch")
    x0 = np.array([1.0, -2.0, 0.5], np.float32)
    grad = lambda x: 2 * x + 1
    t = torch.tensor(x0.copy(), requires_grad=True)
    opt = torch.optim.SGD([t], lr=0.1, momentum=0.9, weight_decay=0.01)
    ox = jnp.asarray(x0)
    tx = torch_sgd(0.1, 0.9, 0.01)
    state = tx.init(ox)
    for _ in range(5):
        opt.zero_grad()
        (t**2 + t).sum().backward()
        opt.step()
        upd, state = tx.update(grad(ox), state, ox)
        ox = optax.apply_updates(ox, upd)
    np.testing.assert_allclose(ox, t.detach().numpy(), rtol=1e-5)


@pytest.mark.slow
def test_model_acts_logits_on_any_model(tiny):
    model, params, pp = tiny
    img = jnp.full((1, 16, 16, 3), 0.5)
    acts = jax.jit(lambda x: model_acts(model, params, pp, x, ("logits", "relu2_1")))(img)
    from jaxviz.data.preprocess import normalize

    np.testing.assert_allclose(acts["logits"], model.apply({"params": params}, normalize(img, pp)), rtol=1e-5)
    from jaxviz.models import VGG

    vgg = VGG(blocks=(1, 1), widths=(4, 4), hidden=8, num_classes=3)
    vp = jax.jit(vgg.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    out = jax.eval_shape(lambda p, x: model_acts(vgg, p, pp, x, ("logits",)), vp, jnp.zeros((1, 32, 32, 3)))
    assert out["logits"].shape == (1, 3)  # fc8, found as "logits" though VGG has no layer of that name


# --- each seed's recipe on the embedded model -----------------------------------------------------------


@pytest.mark.slow
def test_class_model_reaches_each_target(lm):
    classes = [0, 3, 6]
    v = V.class_model(lm, classes, steps=30)
    start, end = np.array(v.extra["logit_start"]), np.array(v.extra["logit_end"])
    assert np.all(end > start + 100), (start, end)
    rec = v.extra["reclassification"]
    assert [r["predicted"] for r in rec] == classes
    assert all(r["target_probability"] > 0.9 for r in rec)
    assert v.images.shape == (3, 1, 64, 64, 3) and v.images.min() >= 0 and v.images.max() <= 1


@pytest.mark.slow
def test_filter_visualization_raises_its_channel_most(lm):
    chans = [0, 1, 2, 3]
    v = V.filters(lm, "relu3_1", chans, steps=24)
    m = np.array(v.extra["channel_means"])[:, chans]  # (image i, channel c)
    for i in range(4):  # image i excites channel i more than the other filters' images do
        assert m[i, i] > np.delete(m[:, i], i).max(), m
    assert np.all(np.array(v.extra["target_activation_end"]) > 10 * np.array(v.extra["target_activation_start"]))


@pytest.mark.slow
def test_deepdream_raises_layer_norm(lm):
    from jaxviz.data.shapes import generate

    photo = generate(1, seed=7).images
    v = V.dream(lm, photo, ["relu3_1"], octaves=2, steps=6)
    assert v.extra["norm_end"][0] > 1.2 * v.extra["norm_start"][0]
    assert np.abs(v.images[0, 0] - photo[0]).mean() < 0.2  # still the photo, dreamed on


@pytest.mark.slow
def test_style_transfer_lowers_style_cost_keeps_content(lm):
    from jaxviz.optvis.cli import sample_photos

    photos = sample_photos()  # scikit-learn's china and flower photos
    if photos is None:
        pytest.skip("scikit-learn is not installed")
    v = V.style_transfer(lm, photos[0], photos[[1, 0]], steps=24, size=48)
    e = v.extra
    assert v.images.shape[0] == 2  # two styles, one call
    for i in range(1):  # style 1 is the content photo itself
        assert e["style_cost_end"][i] < 0.5 * e["style_cost_start"][i]
        # bounded: the result stays much closer to the content than the style image itself is
        assert e["content_cost_end"][i] < 0.5 * e["content_cost_style_image"][i]


def test_adversarial_reaches_target_within_linf(lm):
    from jaxviz.data.shapes import generate

    b = generate(2, seed=11)
    targets = [(int(c) + 3) % 10 for c in b.labels]
    eps = 8 / 255
    v = V.adversarial(lm, b.images, targets, eps=eps, steps=40)
    for r, x0, x in zip(v.extra["reclassification"], b.images, v.images[:, 0]):
        assert r["predicted"] == r["target"] and r["success"]
        assert np.abs(x - x0).max() <= eps + 1e-6 and r["linf"] <= eps + 1e-6
        assert 0 < r["steps"] < 40  # stopped once the model said the target


def test_fgsm_sign_and_size(tiny):
    model, params, pp = tiny
    x = jax.random.uniform(jax.random.key(2), (2, 16, 16, 3), minval=0.2, maxval=0.8)
    y = jnp.array([1, 4])
    eps = 0.03
    from jaxviz.data.preprocess import normalize

    def ce(x):
        lp = jax.nn.log_softmax(model.apply({"params": params}, normalize(x, pp)))
        return -(lp[0, 1] + lp[1, 4])

    g = np.asarray(jax.jit(jax.grad(ce))(x))
    fgsm = jax.jit(A.fgsm, static_argnums=(0, 2), static_argnames="targeted")
    adv = np.asarray(fgsm(model, params, pp, x, y, eps))
    d = adv - np.asarray(x)
    np.testing.assert_allclose(d, eps * np.sign(g), atol=1e-6)
    adv_t = np.asarray(fgsm(model, params, pp, x, y, eps, targeted=True))
    np.testing.assert_allclose(adv_t - np.asarray(x), -eps * np.sign(g), atol=1e-6)


def test_presets_and_model_defaults():
    from jaxviz.models import VGG16
    from jaxviz.optvis.presets import PRESETS, hparams, style_layers

    for kind, name in PRESETS:
        hp = hparams(kind, name)
        make_optimizer(hp.get("optimizer", "adam"), hp["lr"])
    from types import SimpleNamespace

    def lm(model):
        return SimpleNamespace(model=model, variables=None, input_shape=(64, 64, 3), name=type(model).__name__)

    assert style_layers(lm(VGG16())) == ("relu4_2", ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"))
    assert style_layers(lm(ShapesNet())) == ("relu3_2", ("relu1_1", "relu2_1", "relu3_1", "relu4_1"))
    with pytest.raises(ValueError, match="unknown preset"):
        hparams("class", "nope")
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        hparams("class", None, learning_rate=1)


def test_parse_indices(lm):
    from jaxviz.optvis.cli import parse_indices

    assert parse_indices(["0-2", "5", "star,ring"], 10, "class", lm.labels) == [0, 1, 2, 5, 3, 5]
    assert parse_indices(None, 10, "class") is None
    with pytest.raises(ValueError, match="out of range"):
        parse_indices(["12"], 10, "class", lm.labels)
    with pytest.raises(ValueError):
        parse_indices(["zebra"], 10, "class", lm.labels)


@pytest.mark.slow
def test_cli_writes_png_npy_json(tmp_path):
    import jaxviz.cli as C

    rc = C.main(
        ["visualize", "class", "--class", "star", "--class", "0", "--steps", "4", "--out", str(tmp_path), "--quiet"]
    )
    assert rc == 0
    meta = json.loads((tmp_path / "class_simonyan.json").read_text())
    assert meta["preset"] == "simonyan" and meta["hparams"]["steps"] == 4 and meta["hparams"]["momentum"] == 0.9
    assert meta["units"] == ["star", "circle"] and len(meta["loss_curves"]) == 2 and len(meta["loss_curves"][0]) == 4
    assert len(meta["final_target_probability"]) == 2
    assert np.load(tmp_path / "class_simonyan.npy").shape == (2, 1, 64, 64, 3)
    assert (tmp_path / "class_simonyan.png").stat().st_size > 1000
    assert C.main(["visualize", "filter", "--channel", "99", "--out", str(tmp_path), "--quiet"]) == 2
