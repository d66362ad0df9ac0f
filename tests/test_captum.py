"""Our methods against Captum's on the same weights (via `jaxviz.torch_peer`) and the same inputs.

ShapesNet with random params, three 32x32 images, one class per image. Agreement is to ~1e-4
relative (float32, max-abs scaled). Differences by design, checked as such:
- Captum's `riemann_trapezoid` weights sum to (n−1)/n (step 1/n, ends halved, on n nodes of
  `linspace(0, 1, n)`); ours are the trapezoid rule on those nodes (step 1/(n−1), sum 1). Ours
  equal Captum's × n/(n−1); the other four rules agree exactly.
- Captum's Grad-CAM applies ReLU before upsampling and does not normalize; ours upsample, ReLU,
  and scale to [0, 1] (`cam.upsample_normalize`). Compared at layer resolution, and end to end
  by feeding Captum's un-ReLU'd map through the same bilinear / ReLU / normalize steps
  (`F.interpolate(mode="bilinear")` ≡ `jax.image.resize(..., "bilinear")` when upsampling).
- Captum's GuidedGradCam upsamples with "nearest" by default and does not normalize: compared at
  a layer at input resolution (`relu1_1`), where upsampling is the identity, up to our per-image
  normalization constant.
- Occlusion: Captum and ours both average the drop over covering windows; when (H − patch) is not
  a multiple of the stride Captum's last window hangs over the border (cropped) and ours is moved
  inside it — the sizes here divide evenly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

from jaxviz.attribution import METHODS  # noqa: E402
from jaxviz.attribution.engine import compiled  # noqa: E402
from jaxviz.attribution.integrated import integrated_gradients  # noqa: E402
from jaxviz.bench import random_params  # noqa: E402
from jaxviz.models import ShapesNet  # noqa: E402
from jaxviz.torch_peer import nchw_to_nhwc, nhwc_to_nchw, to_torch  # noqa: E402

try:
    from .model_calls import layer_gradient
except ImportError:
    from model_calls import layer_gradient

TARGETS = [1, 4, 7]
LAYER = "relu4_2"  # ShapesNet's last conv activation (Grad-CAM's default)
TOL = 1e-4


def _close(got, want, tol=TOL):
    """max |got − want| ≤ tol · max |want| (float32 sums in different orders)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = np.abs(want).max()
    assert scale > 0, "reference is all zeros: the comparison would prove nothing"
    err = np.abs(got - want).max() / scale
    assert err <= tol, f"relative max error {err:.3g} > {tol}"


@pytest.fixture(scope="module")
def setup():
    model = ShapesNet()
    params = random_params(model, (32, 32, 3), seed=5)  # He-normal kernels, nonzero biases
    x = jax.random.normal(jax.random.key(7), (len(TARGETS), 32, 32, 3))
    peer = to_torch(model, params)
    return model, params, x, peer, nhwc_to_nchw(x)


def _ours(name, model, params, x, **options):
    return compiled(name, model, **options)(params, x, np.array(TARGETS), key=jax.random.key(0))


@pytest.mark.parametrize(
    "method,captum_cls,kwargs",
    [
        ("saliency", "Saliency", {"abs": False}),
        ("gradient_x_input", "InputXGradient", {}),
        ("deconvnet", "Deconvolution", {}),
        ("guided_backprop", "GuidedBackprop", {}),
    ],
)
@pytest.mark.slow
def test_gradient_methods(setup, method, captum_cls, kwargs):
    """Captum's Deconvolution / GuidedBackprop override the backward of every nn.ReLU — as ours
    replace every ReLU's (the peer has one nn.ReLU per activation layer)."""
    model, params, x, peer, xt = setup
    want = getattr(captum_attr, captum_cls)(peer).attribute(xt, target=TARGETS, **kwargs)
    maps, index, _, _ = _ours(method, model, params, x)
    np.testing.assert_array_equal(index, TARGETS)
    _close(maps, nchw_to_nhwc(want))


def test_guided_backprop_differs_from_saliency(setup):
    """Guards the test above: a rule that was silently not applied would still 'match' saliency."""
    model, params, x, _, _ = setup
    g, _, _, _ = _ours("saliency", model, params, x)
    gb, _, _, _ = _ours("guided_backprop", model, params, x)
    assert np.abs(np.asarray(g) - np.asarray(gb)).max() > 1e-2 * np.abs(np.asarray(g)).max()


@pytest.fixture(scope="module")
def setup64(setup):
    """The same model, weights and images in float64 (see `test_integrated_gradients`)."""
    model, params, x, peer, xt = setup
    params64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    return model, params64, np.asarray(x, np.float64), to_torch(model, params).double(), xt.double()


@pytest.mark.parametrize(
    "baseline,rule",
    [
        *[
            ("zeros", r)
            for r in ("riemann_left", "riemann_right", "riemann_middle", "gausslegendre", "riemann_trapezoid")
        ],
        (-0.5, "riemann_right"),
        (-0.5, "riemann_trapezoid"),
        ("image", "gausslegendre"),
    ],
)
@pytest.mark.optimized  # float64 / real-size runs: slower unoptimized
@pytest.mark.slow
def test_integrated_gradients(setup64, baseline, rule):
    """In float64, so that the path's dozens of gradients never straddle a max-pool tie or a ReLU
    kink that float32 rounding (or Captum's float32 `linspace` nodes) would put on the other side —
    on ShapesNet at float32 about one IG in ten flips a switch somewhere and differs by ~0.5%."""
    model, params, x, peer, xt = setup64
    steps = 12
    if baseline == "image":
        base = np.asarray(jax.random.uniform(jax.random.key(9), x.shape, minval=-1.0, maxval=1.0), np.float64)
        base_t = nhwc_to_nchw(base)
        assert base_t.dtype == torch.float64
    else:
        base = base_t = 0.0 if baseline == "zeros" else baseline
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # Captum builds its nodes with torch.linspace
    try:
        want = captum_attr.IntegratedGradients(peer).attribute(
            xt, baselines=base_t, target=TARGETS, n_steps=steps, method=rule
        )
    finally:
        torch.set_default_dtype(dtype)
    want = nchw_to_nhwc(want)
    # `compiled("integrated_gradients", model, method=...)` collides with compiled's own first
    # parameter name, so the quadrature rule is passed to the method function directly.
    with jax.enable_x64(True):
        ig = jax.jit(
            lambda p, x: integrated_gradients(
                model,
                p,
                x,
                jnp.asarray(TARGETS),
                steps=steps,
                method=rule,
                baseline=baseline if baseline == "zeros" else jnp.asarray(base),
            )
        )
        maps, _, _, _ = ig(params, x)
        maps = np.asarray(maps)
    assert maps.dtype == np.float64
    if rule == "riemann_trapezoid":  # Captum's trapezoid weights sum to (n−1)/n, ours to 1
        assert np.abs(maps - want).max() > 1e-3 * np.abs(want).max()
        want = want * steps / (steps - 1)
    _close(maps, want, tol=1e-6)  # not ~1e-12: Captum casts the quadrature weights to float32


def _captum_layer_gradcam(peer, xt, layer, relu):
    return captum_attr.LayerGradCam(peer, peer.layer(layer)).attribute(
        xt, target=TARGETS, relu_attributions=relu
    )  # (N, 1, h, w)


def test_grad_cam_at_layer_resolution(setup):
    """Captum's LayerGradCam (ReLU'd) = ReLU(Σ_k α_k A^k) built from our `layer_gradient`."""
    model, params, x, peer, xt = setup
    want = _captum_layer_gradcam(peer, xt, LAYER, relu=True)[:, 0].detach().numpy()
    t = jnp.asarray(TARGETS)
    a, da = layer_gradient(model, params, x, LAYER, lambda out: out[jnp.arange(out.shape[0]), t])
    alpha = jnp.mean(da, axis=(1, 2), keepdims=True)
    _close(jnp.maximum(jnp.sum(alpha * a, axis=-1), 0), want)


def test_grad_cam_end_to_end(setup):
    """Our grad_cam = normalize(bilinear upsample(ReLU(Σ α_k A^k))) with Captum's map and upsampler."""
    model, params, x, peer, xt = setup
    m = _captum_layer_gradcam(peer, xt, LAYER, relu=True)
    up = captum_attr.LayerAttribution.interpolate(m, tuple(xt.shape[2:]), interpolate_mode="bilinear")
    up = up[:, 0].detach().numpy()
    want = up / (up.max(axis=(1, 2), keepdims=True) + 1e-12)
    maps, index, _, _ = _ours("grad_cam", model, params, x)
    assert maps.shape == x.shape[:3]
    np.testing.assert_array_equal(index, TARGETS)
    _close(maps, want)


def test_guided_grad_cam_at_input_resolution(setup):
    """At `relu1_1` (32x32, no upsampling): Captum's GuidedGradCam = ours × max of the ReLU'd map."""
    model, params, x, peer, xt = setup
    layer = "relu1_1"
    want = captum_attr.GuidedGradCam(peer, peer.layer(layer)).attribute(xt, target=TARGETS)
    cam_max = _captum_layer_gradcam(peer, xt, layer, relu=True).amax(dim=(1, 2, 3)).detach().numpy()
    maps, _, _, _ = _ours("guided_grad_cam", model, params, x, layer=layer)
    _close(np.asarray(maps) * cam_max[:, None, None, None], nchw_to_nhwc(want))


@pytest.mark.parametrize("prob,fill", [(True, 0.0), (False, 0.5)])
def test_occlusion(setup, prob, fill):
    model, params, x, peer, xt = setup
    patch, stride = 8, 4  # (32 − 8) % 4 == 0: no border window
    forward = (lambda z: torch.softmax(peer(z), dim=-1)) if prob else peer
    c = xt.shape[1]
    want = (
        captum_attr.Occlusion(forward)
        .attribute(
            xt,
            sliding_window_shapes=(c, patch, patch),
            strides=(c, stride, stride),
            baselines=fill,
            target=TARGETS,
            perturbations_per_eval=16,
        )
        .detach()
        .numpy()
    )
    np.testing.assert_array_equal(want, np.repeat(want[:, :1], c, axis=1))  # one window spans all channels
    maps, _, _, _ = _ours("occlusion", model, params, x, patch=patch, stride=stride, fill=fill, prob=prob)
    _close(maps, want[:, 0])


def test_smoothgrad_zero_noise(setup):
    """With no noise, NoiseTunnel(Saliency) and our SmoothGrad / SmoothGrad² / VarGrad are the
    gradient, its square and zero (one compiled function for the three variants)."""
    model, params, x, peer, xt = setup
    names = ("smoothgrad", "smoothgrad_squared", "vargrad")
    ours = jax.jit(
        lambda p, x: [
            METHODS[m](model, p, x, jnp.asarray(TARGETS), n=4, level=0.0, key=jax.random.key(0))[0] for m in names
        ]
    )(params, x)
    nt = captum_attr.NoiseTunnel(captum_attr.Saliency(peer))
    want = {
        t: nchw_to_nhwc(nt.attribute(xt, nt_type=t, nt_samples=4, stdevs=0.0, target=TARGETS, abs=False))
        for t in ("smoothgrad", "smoothgrad_sq", "vargrad")
    }
    _close(ours[0], want["smoothgrad"])
    _close(ours[1], want["smoothgrad_sq"])
    scale = float(np.abs(want["smoothgrad"]).max()) ** 2
    assert np.abs(np.asarray(ours[2])).max() <= 1e-6 * scale
    assert np.abs(want["vargrad"]).max() <= 1e-6 * scale
