"""Slow, literal reference implementations of the attribution methods, for tests/test_methods.py.

Plain Python loops over images, samples, patches and channels; one image per model call; NumPy
for the formulas and for bilinear upsampling. Only the model's forward pass and `jax.grad` of a
single image's score come from JAX — none of the code under test is used.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

try:
    from .model_calls import forward
except ImportError:
    from model_calls import forward

# --- model access, one image at a time -------------------------------------------------------


def logits_fn(model, params, stop=None):
    """image (H, W, C) → output vector/map of one image at layer `stop` (None = logits)."""
    return jax.jit(lambda xi: forward(model, params, xi[None], stop_at=stop)[0])


def grad_fn(model, params, pick):
    """image (H, W, C) → ∂ pick(output of that image at the logits) / ∂ image."""
    return jax.jit(jax.grad(lambda xi, c: pick(forward(model, params, xi[None])[0], c)))


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --- SmoothGrad ----------------------------------------------------------------------------


def smoothgrad(model, params, x, classes, n, level, key, variant):
    """Image i, sample s: noise ~ N(0, σ_i²) from split(fold_in(key, i), n)[s], σ_i = level·(max−min)."""
    grad = grad_fn(model, params, lambda o, c: o[c])
    x = np.asarray(x)
    maps = []
    for i in range(x.shape[0]):
        sigma = level * (x[i].max() - x[i].min())
        keys = jax.random.split(jax.random.fold_in(key, i), n)
        gs = []
        for s in range(n):
            noise = np.asarray(jax.random.normal(keys[s], x.shape[1:], jnp.float32))
            gs.append(np.asarray(grad(jnp.asarray(x[i] + sigma * noise), int(classes[i])), np.float64))
        gs = np.stack(gs)
        if variant == "mean":
            maps.append(gs.mean(0))
        elif variant == "squared":
            maps.append((gs**2).mean(0))
        else:
            maps.append(((gs - gs.mean(0)) ** 2).mean(0))
    return np.stack(maps)


# --- Integrated Gradients ------------------------------------------------------------------


def integrated_gradients_trapezoid(model, params, x, x0, classes, steps):
    """(x − x0) · trapezoid rule over `steps` evenly spaced points from x0 to x, one gradient at a time."""
    grad = grad_fn(model, params, lambda o, c: o[c])
    x, x0 = np.asarray(x, np.float64), np.asarray(x0, np.float64)
    maps = []
    for i in range(x.shape[0]):
        gs = [
            np.asarray(
                grad(jnp.asarray(x0[i] + s / (steps - 1) * (x[i] - x0[i]), jnp.float32), int(classes[i])), np.float64
            )
            for s in range(steps)
        ]
        integral = sum((gs[s] + gs[s + 1]) / 2 for s in range(steps - 1)) / (steps - 1)
        maps.append((x[i] - x0[i]) * integral)
    return np.stack(maps)


# --- occlusion -----------------------------------------------------------------------------


def occlusion(model, params, x, classes, patch, stride, fill, prob=True):
    """Occlude one window at a time (starts 0, stride, ..., plus one at the border if needed)."""
    f = logits_fn(model, params)
    x = np.asarray(x)
    n, h, w, _ = x.shape
    starts = lambda size: sorted(set(list(range(0, size - patch + 1, stride)) + [size - patch]))
    maps = np.zeros((n, h, w))
    for i in range(n):
        c = int(classes[i])
        value = lambda img, c=c: (softmax(f(jnp.asarray(img))) if prob else np.asarray(f(jnp.asarray(img))))[c]
        clean = value(x[i])
        total, count = np.zeros((h, w)), np.zeros((h, w))
        for y0 in starts(h):
            for x0 in starts(w):
                img = x[i].copy()
                img[y0 : y0 + patch, x0 : x0 + patch, :] = fill
                total[y0 : y0 + patch, x0 : x0 + patch] += clean - value(img)
                count[y0 : y0 + patch, x0 : x0 + patch] += 1
        maps[i] = total / count
    return maps


# --- CAM family ----------------------------------------------------------------------------


def upsample_bilinear(m, hw):
    """Bilinear upsampling `(N, h, w)` → `(N, H, W)`, half-pixel centers, edges clamped."""

    def axis_weights(n_in, n_out):
        mat = np.zeros((n_out, n_in))
        for o in range(n_out):
            src = (o + 0.5) * n_in / n_out - 0.5
            src = min(max(src, 0.0), n_in - 1.0)
            lo = int(np.floor(src))
            hi = min(lo + 1, n_in - 1)
            mat[o, lo] += 1 - (src - lo)
            mat[o, hi] += src - lo
        return mat

    rows, cols = axis_weights(m.shape[1], hw[0]), axis_weights(m.shape[2], hw[1])
    return np.einsum("Hh,nhw,Ww->nHW", rows, np.asarray(m, np.float64), cols)


def finish_cam(m, hw):
    """ReLU, upsample, divide by the per-image maximum (Grad-CAM's order)."""
    m = upsample_bilinear(np.maximum(m, 0), hw)
    return m / (m.max(axis=(1, 2), keepdims=True) + 1e-12)


def grad_cam_pp(a, g):
    """Grad-CAM++ weights from activations and gradients `(N, h, w, K)`, one channel at a time."""
    a, g = np.asarray(a, np.float64), np.asarray(g, np.float64)
    n, h, w, k = a.shape
    cams = np.zeros((n, h, w))
    for i in range(n):
        for c in range(k):
            s = a[i, :, :, c].sum()
            weight = 0.0
            for y in range(h):
                for x in range(w):
                    gij = g[i, y, x, c]
                    if gij != 0:
                        alpha = gij**2 / (2 * gij**2 + s * gij**3)
                        weight += alpha * max(gij, 0)
            cams[i] += weight * a[i, :, :, c]
    return cams


def layer_cam(a, g):
    return np.sum(np.maximum(np.asarray(g, np.float64), 0) * np.asarray(a, np.float64), axis=-1)


def score_cam(model, params, x, a, classes):
    """Loop over images and channels: mask the input; the class's softmax probability weighs the channel."""
    f = logits_fn(model, params)
    x, a = np.asarray(x), np.asarray(a)
    n, k = a.shape[0], a.shape[-1]
    cams = np.zeros(a.shape[:3])
    for i in range(n):
        scores = np.zeros(k)  # one weight per channel
        for c in range(k):
            m = upsample_bilinear(a[i : i + 1, :, :, c], x.shape[1:3])[0]
            if m.max() > m.min():
                m = (m - m.min()) / (m.max() - m.min())
            else:
                m = np.zeros_like(m)
            scores[c] = softmax(f(jnp.asarray(x[i] * m[:, :, None], jnp.float32)))[int(classes[i])]
        for c in range(k):
            cams[i] += scores[c] * a[i, :, :, c]
    return cams


def cam_weighted_sum(a, kernel, classes):
    """Σ_k w_k^c A^k with the dense head's kernel `(K, classes)`."""
    a, kernel = np.asarray(a, np.float64), np.asarray(kernel, np.float64)
    return np.stack([np.tensordot(a[i], kernel[:, int(c)], axes=([2], [0])) for i, c in enumerate(classes)])


# --- FullGrad ------------------------------------------------------------------------------


def minmax(t):
    """Per-image min-max scaling to [0, 1] over all remaining axes."""
    t = np.asarray(t, np.float64)
    out = np.zeros_like(t)
    for i in range(t.shape[0]):
        lo, hi = t[i].min(), t[i].max()
        if hi > lo:
            out[i] = (t[i] - lo) / (hi - lo)
    return out


def fullgrad_map(input_term, bias_terms, hw):
    """ψ = |·|, min-max per image, upsample, sum channels; sum the terms; min-max the sum."""
    m = minmax(np.abs(input_term)).sum(-1)
    for t in bias_terms:
        m = m + upsample_bilinear(minmax(np.abs(t)).sum(-1), hw)
    return minmax(m)
