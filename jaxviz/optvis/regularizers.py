"""Regularizers: penalties on the image itself, as `Objective`s to subtract.

They read `acts["image"]`, the `(B, H, W, 3)` image in [0, 1] before transforms, and return a
positive penalty, so a regularized objective reads like the paper:
`class_logit(c) - 1e-3 * l2() - 1e-2 * total_variation()` (Simonyan et al. 2014: L2;
Mahendran & Vedaldi 2015: total variation; Yosinski et al. 2015 and seed 003: blur).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .objectives import IMAGE, Objective


def l2(center: float = 0.5) -> Objective:
    """‖I − center‖² summed over pixels, mean over the batch (seed 003's R(I) = ‖I‖², measured from
    mid-grey because images live in [0, 1])."""
    return Objective(lambda a: jnp.mean(jnp.sum((a[IMAGE] - center) ** 2, axis=(1, 2, 3))), (), "L2")


def total_variation(beta: float = 2.0) -> Objective:
    """Σ (|∂x I|² + |∂y I|²)^(β/2) (Mahendran & Vedaldi 2015), mean over the batch."""

    def fn(a):
        img = a[IMAGE]
        dy = img[:, 1:, :-1] - img[:, :-1, :-1]
        dx = img[:, :-1, 1:] - img[:, :-1, :-1]
        return jnp.mean(jnp.sum((dx**2 + dy**2 + 1e-8) ** (beta / 2), axis=(1, 2, 3)))

    return Objective(fn, (), "TV")


def blur(sigma: float = 1.0) -> Objective:
    """½‖I − stop_gradient(blur(I))‖²: its gradient step moves the image towards its blurred self,
    i.e. Yosinski's "blur every step" inside the loss (Lucid's `blur_input_each_step`)."""

    def fn(a):
        img = a[IMAGE]
        target = jax.lax.stop_gradient(gaussian_blur(img, sigma))
        return 0.5 * jnp.mean(jnp.sum((img - target) ** 2, axis=(1, 2, 3)))

    return Objective(fn, (), f"blur({sigma:g})")


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalized 1-D Gaussian of radius ⌈3σ⌉."""
    r = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-r, r + 1, dtype=np.float32)
    k = np.exp(-0.5 * (t / max(sigma, 1e-6)) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(img: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur of `(B, H, W, C)` with reflected borders; same shape out."""
    k = jnp.asarray(gaussian_kernel(sigma))
    r = (k.shape[0] - 1) // 2
    c = img.shape[-1]
    x = jnp.pad(img, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect" if min(img.shape[1:3]) > r else "edge")
    dn = ("NHWC", "HWIO", "NHWC")
    ky = jnp.tile(k.reshape(-1, 1, 1, 1), (1, 1, 1, c))
    kx = jnp.tile(k.reshape(1, -1, 1, 1), (1, 1, 1, c))
    x = jax.lax.conv_general_dilated(x, ky, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=c)
    return jax.lax.conv_general_dilated(x, kx, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=c)


__all__ = ["blur", "gaussian_blur", "gaussian_kernel", "l2", "total_variation"]
