"""LRP: each rule against its formula written out in NumPy on one dense layer, conservation, BatchNorm
merged into the layer before it, and every zennit composite against zennit on torchvision's VGG11 (with
a narrow classifier) and ResNet-18 with the same weights, in float64 (small and fast; VGG16 and
ResNet-50 were checked by hand with the same code, see the README).

zennit's BatchNorm canonizer keeps the merged BatchNorm's ε, so its canonized model scales every
merged BatchNorm output by 1/√(1+ε) (its forward pass is not the original's: ~2.6e-4 on ResNet-50's
logits). jaxviz merges exactly; the comparison sets that ε to 0 inside zennit's context.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz.attribution import lrp, saliency
from jaxviz.rules import lrp as L
from jaxviz.rules.composite import Composite, FirstLayer, Kind

EPS = 1e-6


def _stab(z, e=EPS):
    return z + np.where(z >= 0, e, -e)


class Dense2(nn.Module):
    """x → dense(4) → relu → dense(3): the rule under test sits on the first layer."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, name="out")(nn.relu(nn.Dense(4, name="hidden")(x.reshape(x.shape[0], -1))))


@pytest.fixture(scope="module")
def dense():
    rng = np.random.default_rng(0)
    v = {
        "params": {
            "hidden": {"kernel": rng.standard_normal((6, 4)), "bias": rng.standard_normal(4) * 0.3},
            "out": {"kernel": rng.standard_normal((4, 3)), "bias": np.zeros(3)},
        }
    }
    x = rng.standard_normal((2, 1, 2, 3))
    return v, x


def _relevance_in(rule, v, x, target=1):
    """The input relevance with `rule` on the first layer and LRP-0 on the (bias-free) output layer."""
    comp = Composite(((Kind("relu"), L.pass_relu), (FirstLayer(0), rule), (Kind("dense"), L.Epsilon(0.0))))
    with jax.enable_x64(True):
        vv = jax.tree_util.tree_map(jnp.asarray, v)
        r = lrp(Dense2(), vv, jnp.asarray(x), jnp.asarray([target] * len(x)), composite=comp).maps
    return np.asarray(r).reshape(len(x), -1)


def _upper(v, x, target=1):
    """The relevance arriving at the first layer's output (LRP-0 of the output layer, through a passing
    ReLU): R_j = a_j w_jt / z_t, a = relu(x W + b)."""
    w, b = v["params"]["hidden"]["kernel"], v["params"]["hidden"]["bias"]
    a = np.maximum(x.reshape(len(x), -1) @ w + b, 0)
    wo = v["params"]["out"]["kernel"][:, target]
    return a * wo / _stab(a @ wo, 0.0)[:, None]


def _z(xi, w, b=0.0):
    return xi @ w + b


@pytest.mark.parametrize("name", ["epsilon", "zplus", "gamma", "alpha_beta", "zbox", "flat", "wsquare"])
def test_rule_equals_its_formula(dense, name):
    v, x = dense
    w, b = v["params"]["hidden"]["kernel"], v["params"]["hidden"]["bias"]
    xs = x.reshape(len(x), -1)
    g = _upper(v, x)
    P, N = (lambda a: np.maximum(a, 0)), (lambda a: np.minimum(a, 0))
    if name == "epsilon":
        rule, want = L.Epsilon(0.01), xs * ((g / _stab(_z(xs, w, b), 0.01)) @ w.T)
    elif name == "zplus":
        rule = L.ZPlus()
        h = g / _stab(_z(P(xs), P(w), P(b)) + _z(N(xs), N(w)))
        want = P(xs) * (h @ P(w).T) + N(xs) * (h @ N(w).T)
    elif name == "gamma":
        rule, gm = L.Gamma(0.5), 0.5
        up, down = w + gm * P(w), w + gm * N(w)
        z = _z(xs, w, b)
        hp = (z > 0) * g / _stab(_z(P(xs), up, b + gm * P(b)) + _z(N(xs), down))
        hn = (z < 0) * g / _stab(_z(P(xs), down, b + gm * N(b)) + _z(N(xs), up))
        want = P(xs) * (hp @ up.T) + N(xs) * (hp @ down.T) + P(xs) * (hn @ down.T) + N(xs) * (hn @ up.T)
    elif name == "alpha_beta":
        rule = L.AlphaBeta(2.0, 1.0)
        hp = g / _stab(_z(P(xs), P(w), P(b)) + _z(N(xs), N(w)))
        hn = g / _stab(_z(P(xs), N(w), N(b)) + _z(N(xs), P(w)))
        want = 2 * (P(xs) * (hp @ P(w).T) + N(xs) * (hp @ N(w).T)) - (P(xs) * (hn @ N(w).T) + N(xs) * (hn @ P(w).T))
    elif name == "zbox":
        rule, lo, hi = L.ZBox(-1.5, 2.0), np.full_like(xs, -1.5), np.full_like(xs, 2.0)
        h = g / _stab(_z(xs, w, b) - _z(lo, P(w), P(b)) - _z(hi, N(w), N(b)))
        want = xs * (h @ w.T) - lo * (h @ P(w).T) - hi * (h @ N(w).T)
    elif name == "flat":
        rule, ones = L.Flat(), np.ones_like(w)
        want = (g / _stab(np.ones_like(xs) @ ones)) @ ones.T
    else:
        rule = L.WSquare()
        want = (g / _stab(np.ones_like(xs) @ w**2 + b**2)) @ (w**2).T
    np.testing.assert_allclose(_relevance_in(rule, v, x), want, rtol=1e-10, atol=1e-12)


def test_alpha_beta_refuses_unbalanced_parameters():
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        L.AlphaBeta(2.0, 2.0)


class BiasFreeNet(nn.Module):
    """conv → relu → max-pool → conv → relu → mean → dense, with a residual sum: no biases anywhere."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(6, (3, 3), use_bias=False)(x))
        h = nn.max_pool(h, (2, 2), (2, 2))
        h = nn.relu(h + nn.relu(nn.Conv(6, (3, 3), use_bias=False)(h)))
        return nn.Dense(5, use_bias=False)(jnp.mean(h, axis=(1, 2)))


@pytest.mark.parametrize("composite", ["epsilon_plus", "epsilon_alpha2_beta1"])
@pytest.mark.slow
def test_conserving_rules_conserve_relevance(composite):
    """z⁺ and α2β1 convolutions, ε→0 dense, norm pools and sums on a bias-free net: Σ R_in = R_out = 1."""
    model = BiasFreeNet()
    x = jax.random.normal(jax.random.key(1), (3, 12, 12, 2))
    with jax.enable_x64(True):
        x = x.astype(jnp.float64)
        v = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), model.init(jax.random.key(0), x))
        r = lrp(model, v, x, jnp.asarray([0, 2, 4]), composite=composite, epsilon=1e-12, stabilizer=1e-12).maps
    np.testing.assert_allclose(np.asarray(r).sum(axis=(1, 2, 3)), 1.0, rtol=1e-8)


class ConvBN(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.BatchNorm(use_running_average=True)(nn.Conv(4, (3, 3))(x)))
        return nn.Dense(3)(jnp.mean(h, axis=(1, 2)))


class ConvMerged(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, name="Dense_0")(jnp.mean(nn.relu(nn.Conv(4, (3, 3), name="Conv_0")(x)), axis=(1, 2)))


@pytest.mark.slow
def test_batchnorm_is_merged_into_the_conv_before_it():
    """LRP on conv → BatchNorm equals LRP on the one conv with the BatchNorm folded in by hand, and the
    forward pass (logits) is the original's."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 8, 3))
    with jax.enable_x64(True):
        v = ConvBN().init(jax.random.key(0), jnp.asarray(x))
        stats = {"mean": jnp.asarray(rng.standard_normal(4)), "var": jnp.asarray(rng.uniform(0.5, 2, 4))}
        bn = {"scale": jnp.asarray(rng.standard_normal(4)), "bias": jnp.asarray(rng.standard_normal(4))}
        v = {"params": {**v["params"], "BatchNorm_0": bn}, "batch_stats": {"BatchNorm_0": stats}}
        s = bn["scale"] / jnp.sqrt(stats["var"] + 1e-5)
        conv = v["params"]["Conv_0"]
        merged = {
            "params": {
                "Conv_0": {
                    "kernel": conv["kernel"] * s.reshape(1, 1, 1, 4),
                    "bias": (conv["bias"] - stats["mean"]) * s + bn["bias"],
                },
                "Dense_0": v["params"]["Dense_0"],
            }
        }
        t = jnp.asarray([0, 2])
        for name in ("epsilon_plus", "epsilon_gamma_box"):
            a = lrp(ConvBN(), v, jnp.asarray(x), t, composite=name, low=-3.0, high=3.0)
            b = lrp(ConvMerged(), merged, jnp.asarray(x), t, composite=name, low=-3.0, high=3.0)
            np.testing.assert_allclose(np.asarray(a.maps), np.asarray(b.maps), rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(a.out), np.asarray(ConvBN().apply(v, jnp.asarray(x))))


@pytest.mark.slow
def test_logit_start_scales_by_the_target_logit(dense):
    v, x = dense
    comp = "epsilon_plus"
    one = lrp(Dense2(), v, jnp.asarray(x, jnp.float32), 1, composite=comp)
    logit = lrp(Dense2(), v, jnp.asarray(x, jnp.float32), 1, composite=comp, start="logit")
    np.testing.assert_allclose(
        np.asarray(logit.maps), np.asarray(one.maps) * np.asarray(one.out[:, 1]).reshape(-1, 1, 1, 1), rtol=1e-6
    )


def test_unknown_composite_and_missing_box_are_refused():
    x = jnp.zeros((1, 1, 2, 3))
    v = Dense2().init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="unknown LRP composite 'eps'"):
        lrp(Dense2(), v, x, composite="eps")
    with pytest.raises(ValueError, match="epsilon_gamma_box needs the input bounds"):
        lrp(Dense2(), v, x, composite="epsilon_gamma_box")


@pytest.mark.slow
def test_a_researchers_own_rule_in_a_composite():
    """A new conv rule in a few lines (here: LRP-0 written as a function) equals the built-in ε=0."""
    mine = L.linear_rule(
        lambda layer, g: layer.x * layer.back(layer.w, g / L.stabilize(layer.out(layer.x, layer.w, layer.b), 0.0)),
        "lrp0",
    )
    model = BiasFreeNet()
    x = jax.random.normal(jax.random.key(1), (2, 12, 12, 2))
    v = model.init(jax.random.key(0), x)
    base = ((Kind("relu"), L.pass_relu), (Kind("pool"), L.Norm()), (Kind("add"), L.Norm()))
    a = lrp(model, v, x, 1, composite=Composite(base + ((Kind("conv"), mine), (Kind("dense"), L.Epsilon()))))
    b = lrp(model, v, x, 1, composite=Composite(base + ((Kind("conv"), L.Epsilon(0.0)), (Kind("dense"), L.Epsilon()))))
    np.testing.assert_allclose(np.asarray(a.maps), np.asarray(b.maps), rtol=1e-6, atol=1e-9)
    assert not np.allclose(np.asarray(a.maps), np.asarray(saliency(model, v, x, 1).maps))


# --- zennit on torchvision's models, same weights, float64 ----------------------------------------

ZENNIT = ["epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat"]
LOW, HIGH = -2.0, 2.5


SIZE = 32
# VGG-11 with a 64-wide classifier (torchvision's: 4096): the same layers, rules and flatten order, but
# its first dense layer holds 1.6M weights instead of 103M. In float64 every rule pass over those 103M
# (w⁺, w⁻, w + γw⁺, ... each a new 0.8 GB array) cost 30-50 s per composite; now a few seconds.
VGG_HIDDEN = 64


def _narrow_vgg_peer(arch, variables, dtype):
    """torchvision's VGG with its classifier's hidden layers `VGG_HIDDEN` wide, carrying `variables`
    (converted here: `torchvision_peer` knows only torchvision's own shapes)."""
    import torch

    from jaxviz.torchvision_peer import import_torchvision

    state = {}
    for part, layers in variables["params"].items():
        for name, p in layers.items():
            k = np.asarray(p["kernel"])
            if k.ndim == 4:  # (kh, kw, in, out) → (out, in, kh, kw)
                k = k.transpose(3, 2, 0, 1)
            else:  # (in, out) → (out, in); the first dense layer's inputs from (h, w, c) to torch's (c, h, w)
                k = (k.reshape(7, 7, 512, -1).transpose(2, 0, 1, 3).reshape(512 * 49, -1) if name == "0" else k).T
            state[f"{part}.{name}.weight"] = torch.from_numpy(np.ascontiguousarray(k)).to(dtype)
            state[f"{part}.{name}.bias"] = torch.from_numpy(np.asarray(p["bias"])).to(dtype)
    with torch.device("meta"):
        peer = getattr(import_torchvision().models, arch)()
        for i, (n_in, n_out) in {
            0: (512 * 7 * 7, VGG_HIDDEN),
            3: (VGG_HIDDEN, VGG_HIDDEN),
            6: (VGG_HIDDEN, 1000),
        }.items():
            peer.classifier[i] = torch.nn.Linear(n_in, n_out)
    peer.load_state_dict(state, strict=True, assign=True)
    return peer.to(dtype).eval()


@pytest.fixture(scope="module", params=["vgg11", "resnet18"])
def zoo(request):
    torch = pytest.importorskip("torch")
    from jaxviz.bench import random_params
    from jaxviz.models import build
    from jaxviz.torchvision_peer import import_torchvision, torchvision_model

    import_torchvision()  # before zennit, which imports torchvision
    pytest.importorskip("zennit")
    vgg = request.param.startswith("vgg")
    model = build(request.param, hidden=VGG_HIDDEN) if vgg else build(request.param)
    v = random_params(model, (SIZE, SIZE, 3), seed=2)
    peer = (_narrow_vgg_peer if vgg else torchvision_model)(request.param, v, dtype=torch.float64)
    for m in peer.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    return request.param, model, v, peer


@pytest.mark.parametrize("name", ZENNIT)
@pytest.mark.slow
@pytest.mark.optimized  # float64 runs: slower unoptimized
def test_composite_equals_zennit_in_float64(zoo, name):
    from jaxviz.bench import zennit_lrp
    from jaxviz.torch_peer import nchw_to_nhwc, nhwc_to_nchw

    arch, model, v, peer = zoo
    x = np.random.default_rng(5).standard_normal((2, SIZE, SIZE, 3))
    targets = [1, 3]
    options = {"composite": name, "low": LOW, "high": HIGH}
    want = nchw_to_nhwc(zennit_lrp(peer, options, exact_norm=True)(nhwc_to_nchw(x).double(), targets).detach())
    with jax.enable_x64(True):
        v64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), v)
        got = np.asarray(lrp(model, v64, jnp.asarray(x), jnp.asarray(targets), **options).maps)
    assert np.abs(want).max() > 0
    assert np.abs(got - want).max() <= 1e-9 * np.abs(want).max(), np.abs(got - want).max() / np.abs(want).max()
    assert all(m.eps == 1e-5 for m in peer.modules() if hasattr(m, "running_var"))  # zennit's merge undone


@pytest.mark.slow
def test_a_study_holds_lrp_composites_as_method_variants():
    """`lrp:epsilon_gamma_box` in a batch job or a study's methods is lrp with that composite (box bounds
    from the model's preprocessing) beside plain `lrp`; a variant's unknown option is refused by name."""
    from jaxviz.batch import bind_methods
    from jaxviz.data.preprocess import input_bounds
    from jaxviz.evaluation.experiment import validate_config
    from jaxviz.models.loading import load

    lm = load("shapesnet", random_init=True)
    x = jax.random.normal(jax.random.key(1), (2, *lm.input_shape))
    ids = jnp.arange(2)
    fns = bind_methods(lm, ["lrp", "lrp:epsilon_gamma_box", "lrp:composite=epsilon_plus,epsilon=0.1"])
    box = lrp(lm.model, lm.variables, x, None, composite="epsilon_gamma_box", **input_bounds(lm.preprocessing))
    np.testing.assert_allclose(
        np.asarray(fns["lrp:epsilon_gamma_box"](x, ids)[0]), np.asarray(box.maps), rtol=1e-5, atol=1e-8
    )
    plus = lrp(lm.model, lm.variables, x, None, composite="epsilon_plus", epsilon=0.1)
    np.testing.assert_allclose(
        np.asarray(fns["lrp:composite=epsilon_plus,epsilon=0.1"](x, ids)[0]),
        np.asarray(plus.maps),
        rtol=1e-5,
        atol=1e-8,
    )
    assert not np.allclose(np.asarray(fns["lrp"](x, ids)[0]), np.asarray(box.maps))
    assert fns["lrp:epsilon_gamma_box"].settings["options"]["composite"] == "epsilon_gamma_box"
    assert validate_config({"methods": ["saliency", "lrp:epsilon_gamma_box"]})["methods"][1] == "lrp:epsilon_gamma_box"
    with pytest.raises(ValueError, match="no chosen method takes 'gama'.*lrp: composite"):
        validate_config({"methods": ["lrp:gama=0.5"]})


def test_relevance_view_is_red_for_positive_blue_for_negative_white_for_zero():
    from jaxviz.plot import SIGNED_VIEWS, relevance_view

    r = np.zeros((1, 1, 3, 3), np.float32)
    r[0, 0, 0], r[0, 0, 1] = 2.0, -2.0  # channels are summed: +6, −6, 0
    rgb = relevance_view(r)[0, 0]
    assert rgb[0, 0] > 0.45 and rgb[0, 1:].max() < 0.05  # red
    assert rgb[1, 2] > 0.45 and rgb[1, :2].max() < 0.05  # blue
    np.testing.assert_allclose(rgb[2], 1.0, atol=0.02)  # white
    assert "lrp" in SIGNED_VIEWS


@pytest.mark.slow
def test_batch_jobs_run_lrp_in_the_fused_call_with_the_bundle():
    """Beside two fusable methods, `lrp` runs inside their fused call (one forward pass for all: XLA's
    CSE), with the box of epsilon_gamma_box from the preprocessing; its maps are lrp's own."""
    from jaxviz.attribution import fused
    from jaxviz.batch import bind_methods
    from jaxviz.data.preprocess import input_bounds
    from jaxviz.models.loading import load

    lm = load("shapesnet", random_init=True)
    x = jax.random.normal(jax.random.key(2), (2, *lm.input_shape))
    before = sum(n for (names, _), n in fused.TRACES.items() if "lrp" in names)
    fns = bind_methods(lm, ["saliency", "guided_backprop", "lrp"], options={"composite": "epsilon_gamma_box"})
    got = fns["lrp"](x, jnp.arange(2))[0]
    assert sum(n for (names, _), n in fused.TRACES.items() if "lrp" in names) == before + 1
    want = lrp(lm.model, lm.variables, x, None, composite="epsilon_gamma_box", **input_bounds(lm.preprocessing))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want.maps), rtol=1e-5, atol=1e-8)


@pytest.mark.slow
def test_tanh_passes_relevance_and_lenet_equals_zennit():
    """LeNet-5's tanh and a sigmoid are "activation" sites: relevance passes through them (zennit's
    Pass), so LRP-0 on a bias-free tanh/sigmoid net conserves it; LeNet-5 under epsilon_plus equals zennit
    on its torch twin in float64."""
    from jaxviz.bench import random_params
    from jaxviz.models import build

    class Squash(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.tanh(nn.Dense(6, use_bias=False)(x.reshape(len(x), -1)))
            return nn.Dense(3, use_bias=False)(jax.nn.sigmoid(nn.Dense(5, use_bias=False)(x)))

    x = jax.random.normal(jax.random.key(3), (4, 2, 2, 1))
    net = Squash()
    v = net.init(jax.random.key(4), x)
    lrp0 = Composite(((Kind("dense"), L.Epsilon(0.0)), (Kind("activation"), L.Pass()), (Kind("relu"), L.pass_relu)))
    maps = lrp(net, v, x, 1, composite=lrp0).maps
    np.testing.assert_allclose(np.asarray(maps.sum(axis=(1, 2, 3))), 1.0, rtol=1e-4)

    torch = pytest.importorskip("torch")
    from jaxviz.torch_peer import nchw_to_nhwc, nhwc_to_nchw, to_torch
    from jaxviz.torchvision_peer import import_torchvision

    import_torchvision()
    pytest.importorskip("zennit")
    import zennit.composites as zc
    from zennit.attribution import Gradient

    model = build("lenet5")
    v = random_params(model, (28, 28, 1), seed=1)
    peer = to_torch(model, v["params"]).double()
    x = np.random.default_rng(6).standard_normal((2, 28, 28, 1))
    with Gradient(peer, zc.EpsilonPlus()) as attributor:
        _, rel = attributor(nhwc_to_nchw(x).double().requires_grad_(), torch.eye(10, dtype=torch.float64)[[2, 7]])
    want = nchw_to_nhwc(rel.detach())
    with jax.enable_x64(True):
        v64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), v)
        got = np.asarray(lrp(model, v64, jnp.asarray(x), jnp.asarray([2, 7]), composite="epsilon_plus").maps)
    assert np.abs(got - want).max() <= 1e-9 * np.abs(want).max(), np.abs(got - want).max() / np.abs(want).max()
