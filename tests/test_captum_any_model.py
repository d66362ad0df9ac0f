"""Saliency, guided backprop, deconvnet and Grad-CAM on networks jaxviz never saw as sequences —
a user's own net (BatchNorm, residual add, concat, functional ReLUs), torchvision's ResNet-50 and
SqueezeNet 1.0 — against Captum on the torch model with the same weights, in float64.

Float64 on both sides: in float32 the input gradients of deep random nets differ by ~1% between any
two implementations (rounding in different orders); in float64 they agree to ~1e-12.
Grad-CAM: Captum's LayerGradCam (ReLU'd) upsampled bilinearly and scaled to [0, 1] like ours.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ca = pytest.importorskip("captum.attr")

from jaxviz.attribution import deconvnet, grad_cam, guided_backprop, saliency  # noqa: E402
from jaxviz.bench import random_params  # noqa: E402
from jaxviz.models import build  # noqa: E402
from jaxviz.torch_peer import nchw_to_nhwc, nhwc_to_nchw  # noqa: E402

try:
    from .user_models import INPUT, UserNet, torch_user_net, user_variables
except ImportError:
    from user_models import INPUT, UserNet, torch_user_net, user_variables

pytestmark = pytest.mark.optimized  # float64 on real-size networks: slower unoptimized

TARGETS = [1, 3]
TOL = 1e-9


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _no_inplace(peer):
    for m in peer.modules():  # Captum's ReLU hooks cannot see through in-place ReLUs
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    return peer


def _user():
    v = user_variables(4)
    return UserNet(), v, _no_inplace(torch_user_net(v, torch.float64)), INPUT, "top", lambda p: p.top


def _zoo(arch, size, layer):
    from jaxviz.torchvision_peer import torchvision_model

    model = build(arch)
    v = random_params(model, (size, size, 3), seed=2)
    peer = _no_inplace(torchvision_model(arch, v, dtype=torch.float64))
    return model, v, peer, (size, size, 3), layer, lambda p: p.get_submodule(layer)


CASES = {
    "user_net": _user,
    "resnet50": lambda: _zoo("resnet50", 64, "layer4"),
    "squeezenet1_0": lambda: _zoo("squeezenet1_0", 64, "features"),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    model, v, peer, shape, layer, torch_layer = CASES[request.param]()
    x = np.random.default_rng(5).standard_normal((len(TARGETS), *shape))
    return model, v, peer, x, layer, torch_layer(peer)


def _explain(method, model, v, x, **options):
    """`method` on float64 `v` and `x`, compiled as one program (as `engine.compiled` runs methods):
    run eagerly, ResNet-50's forward pass compiles op by op, 3x slower (29 s against 9 s)."""
    fn = jax.jit(lambda v, x: method(model, v, x, jnp.asarray(TARGETS), **options))
    return fn(_f64(v), jnp.asarray(x))


def _close(got, want, tol=TOL):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    scale = np.abs(want).max()
    assert scale > 0, "reference is all zeros: the comparison would prove nothing"
    assert np.abs(got - want).max() <= tol * scale, np.abs(got - want).max() / scale


@pytest.mark.parametrize(
    "ours,theirs",
    [(saliency, "Saliency"), (guided_backprop, "GuidedBackprop"), (deconvnet, "Deconvolution")],
    ids=["saliency", "guided", "deconvnet"],
)
@pytest.mark.slow
def test_gradient_methods_equal_captum_in_float64(case, ours, theirs):
    model, v, peer, x, _, _ = case
    with jax.enable_x64(True):
        got = _explain(ours, model, v, x)
        np.testing.assert_allclose(got.out, peer(nhwc_to_nchw(x)).detach().numpy(), rtol=1e-10, atol=1e-10)
        kwargs = {"abs": False} if theirs == "Saliency" else {}
        want = getattr(ca, theirs)(peer).attribute(nhwc_to_nchw(x).requires_grad_(), target=TARGETS, **kwargs)
        _close(got.maps, nchw_to_nhwc(want.detach()))


@pytest.mark.slow
def test_grad_cam_equals_captum_in_float64(case):
    model, v, peer, x, layer, torch_layer = case
    with jax.enable_x64(True):
        got = _explain(grad_cam, model, v, x, layer=layer)
        m = ca.LayerGradCam(peer, torch_layer).attribute(nhwc_to_nchw(x), target=TARGETS, relu_attributions=True)
        m = ca.LayerAttribution.interpolate(m, x.shape[1:3], interpolate_mode="bilinear")
        m = (m / (m.amax(dim=(1, 2, 3), keepdim=True) + 1e-12))[:, 0]
        _close(got.maps, m.detach().numpy(), tol=1e-8)
