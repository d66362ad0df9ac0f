"""Gradient methods through a tiny CNN against a literal NumPy forward/backward (loops, no autodiff).

conv 3x3 (pad 1) → ReLU → 2x2 max-pool → flatten (H, W, C) → dense. The NumPy backward routes
the gradient through the pool's switches and applies each ReLU rule by its seed formula.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz.attribution import (
    deconvnet,
    grad_cam,
    guided_backprop,
    guided_grad_cam,
    saliency,
)
from jaxviz.models.base import ACT, CONV, DENSE, FLATTEN, POOL, Layer, SequentialNet


class Tiny(SequentialNet):
    def layers(self):
        return (
            Layer("conv1", CONV, 4, kernel=3, padding=1),
            Layer("relu1", ACT),
            Layer("pool1", POOL, 2),
            Layer("flatten", FLATTEN),
            Layer("fc", DENSE, 3),
        )


def _numpy_forward(x, p):
    k, b = p["conv1"]["kernel"], p["conv1"]["bias"]
    h, w, _ = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    z = np.zeros((h, w, k.shape[3]))
    for y in range(h):
        for xx in range(w):
            for o in range(k.shape[3]):
                z[y, xx, o] = np.sum(xp[y : y + 3, xx : xx + 3, :] * k[:, :, :, o]) + b[o]
    f = np.maximum(z, 0)
    pooled = np.zeros((h // 2, w // 2, f.shape[2]))
    switch = {}
    for y in range(h // 2):
        for xx in range(w // 2):
            for o in range(f.shape[2]):
                win = f[2 * y : 2 * y + 2, 2 * xx : 2 * xx + 2, o]
                dy, dx = np.unravel_index(np.argmax(win), win.shape)
                pooled[y, xx, o] = win[dy, dx]
                switch[y, xx, o] = (2 * y + dy, 2 * xx + dx)
    logits = pooled.reshape(-1) @ p["fc"]["kernel"] + p["fc"]["bias"]
    return z, f, pooled, switch, logits


def _numpy_backward(x, p, c, rule):
    """Returns (input gradient, gradient at relu1's output) for class c with a ReLU rule."""
    z, f, pooled, switch, _ = _numpy_forward(x, p)
    dpooled = p["fc"]["kernel"][:, c].reshape(pooled.shape)
    df = np.zeros_like(f)
    for (y, xx, o), (sy, sx) in switch.items():
        df[sy, sx, o] += dpooled[y, xx, o]
    if rule == "backprop":
        dz = (z > 0) * df
    elif rule == "deconvnet":
        dz = (df > 0) * df
    else:
        dz = (z > 0) * (df > 0) * df
    k = p["conv1"]["kernel"]
    h, w, _ = x.shape
    dxp = np.zeros((h + 2, w + 2, x.shape[2]))
    for y in range(h):
        for xx in range(w):
            for o in range(k.shape[3]):
                dxp[y : y + 3, xx : xx + 3, :] += dz[y, xx, o] * k[:, :, :, o]
    return dxp[1:-1, 1:-1], df, f


@pytest.fixture(scope="module")
def tiny():
    model = Tiny()
    params = model.init(jax.random.key(0), jnp.zeros((1, 6, 6, 2)))["params"]
    params = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), params)
    x = np.random.default_rng(1).standard_normal((3, 6, 6, 2))
    return model, params, x


@pytest.mark.parametrize("fn,rule", [(saliency, "backprop"), (deconvnet, "deconvnet"), (guided_backprop, "guided")])
@pytest.mark.slow
def test_gradient_methods_match_literal(tiny, fn, rule):
    model, params, x = tiny
    classes = [0, 2, 1]
    with jax.enable_x64(True):
        g, _, logits, _ = fn(model, params, jnp.asarray(x), classes)
    for i, c in enumerate(classes):
        np.testing.assert_allclose(logits[i], _numpy_forward(x[i], params)[4], rtol=1e-10)
        np.testing.assert_allclose(g[i], _numpy_backward(x[i], params, c, rule)[0], rtol=1e-9, atol=1e-12)


def test_grad_cam_and_guided_grad_cam_match_literal(tiny):
    model, params, x = tiny
    classes = [1, 1, 2]
    with jax.enable_x64(True):
        m, _, _, _ = grad_cam(model, params, jnp.asarray(x), classes, layer="relu1")
        ggc, _, _, _ = guided_grad_cam(model, params, jnp.asarray(x), classes, layer="relu1")
    for i, c in enumerate(classes):
        _, df, f = _numpy_backward(x[i], params, c, "backprop")
        cam = np.maximum(np.sum(df.mean(axis=(0, 1)) * f, axis=-1), 0)  # relu1 is input-sized: no upsampling
        cam = cam / (cam.max() + 1e-12)
        np.testing.assert_allclose(m[i], cam, rtol=1e-9, atol=1e-12)
        guided = _numpy_backward(x[i], params, c, "guided")[0]
        np.testing.assert_allclose(ggc[i], guided * cam[..., None], rtol=1e-9, atol=1e-12)
