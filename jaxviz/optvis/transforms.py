"""Transforms applied inside the loss, so the image must work under small random changes
(Mordvintsev et al. 2015: jitter; Olah et al. 2017: pad, jitter, scale, rotate).

A transform is a pure function `(key, img) -> img` on `(B, H, W, 3)`, with its randomness from
the explicit `key`; `compose` chains them, splitting the key. One key per unit and step: all `B`
images of a unit move together. Output shapes are static (jit): `jitter` crops by `d` pixels,
`pad` grows the image, `scale`/`rotate` resample at the same size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Transform = Callable[[jax.Array, jax.Array], jax.Array]


def compose(*transforms: Transform) -> Transform:
    """Apply `transforms` in order, each with its own key split from `key`."""

    def fn(key, img):
        for t, k in zip(transforms, jax.random.split(key, max(len(transforms), 1))):
            img = t(k, img)
        return img

    return fn


def identity(key, img):
    return img


def jitter(d: int) -> Transform:
    """A random crop of `(H−d, W−d)` (Lucid's jitter): the image shifts by up to `d` pixels."""

    def fn(key, img):
        if d <= 0:
            return img
        oy, ox = jax.random.randint(key, (2,), 0, d + 1)
        b, h, w, c = img.shape
        return jax.lax.dynamic_slice(img, (0, oy, ox, 0), (b, h - d, w - d, c))

    return fn


def roll(d: int) -> Transform:
    """Circular shift by up to ±`d` pixels in y and x (seed 003 / Google's DeepDream jitter)."""

    def fn(key, img):
        s = jax.random.randint(key, (2,), -d, d + 1)
        return jnp.roll(jnp.roll(img, s[0], axis=1), s[1], axis=2)

    return fn


def pad(width: int, value: float = 0.5) -> Transform:
    """Constant padding (mid-grey by default) so that jitter and rotation don't favour the border."""
    return lambda key, img: jnp.pad(img, ((0, 0), (width, width), (width, width), (0, 0)), constant_values=value)


def scale(factors: Sequence[float]) -> Transform:
    """Zoom about the centre by a factor drawn uniformly from `factors`; same size out (reflected border)."""
    f = jnp.asarray(np.asarray(factors, np.float32))
    return lambda key, img: _affine(img, jax.random.choice(key, f), 0.0)


def rotate(degrees: Sequence[float]) -> Transform:
    """Rotate about the centre by an angle (degrees, clockwise as displayed) drawn uniformly from `degrees`."""
    a = jnp.asarray(np.deg2rad(np.asarray(degrees, np.float32)))
    return lambda key, img: _affine(img, 1.0, jax.random.choice(key, a))


def _affine(img: jax.Array, zoom, angle) -> jax.Array:
    """Bilinear resampling of `(B, H, W, C)` under zoom and rotation about the centre."""
    b, h, w, c = img.shape
    yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    # Inverse map: output pixel p samples the input at R(−θ)·(p − c)/zoom + c.
    dy, dx = (yy - cy) / zoom, (xx - cx) / zoom
    sy = cos * dy - sin * dx + cy
    sx = sin * dy + cos * dx + cx

    def one(channel):
        return jax.scipy.ndimage.map_coordinates(channel, [sy, sx], order=1, mode="reflect")

    flat = jnp.transpose(img, (0, 3, 1, 2)).reshape(b * c, h, w)
    out = jax.vmap(one)(flat)
    return jnp.transpose(out.reshape(b, c, h, w), (0, 2, 3, 1))


def standard(size: int) -> Transform:
    """Lucid's `standard_transforms`, scaled to the image side `size` (224 → pad 12, jitter 8, ...)."""
    k = max(size / 224.0, 0.25)
    p, j1, j2 = max(1, round(12 * k)), max(1, round(8 * k)), max(1, round(4 * k))
    return compose(
        pad(p), jitter(j1), scale([1 + (i - 5) / 50 for i in range(11)]), rotate(list(range(-10, 11))), jitter(j2)
    )


def make_transforms(spec: str | None, size: int) -> Transform | None:
    """Transforms by name: None/'none', 'standard' (Lucid's set), 'jitter:D', 'roll:D', joined by '+'."""
    if spec in (None, "", "none"):
        return None
    parts = []
    for item in spec.split("+"):
        name, _, arg = item.partition(":")
        if name == "standard":
            parts.append(standard(size))
        elif name in ("jitter", "roll", "pad") and arg.isdigit():
            parts.append({"jitter": jitter, "roll": roll, "pad": pad}[name](int(arg)))
        else:
            raise ValueError(f"unknown transform {item!r}: use standard, jitter:D, roll:D, pad:D joined by '+'")
    return compose(*parts)


__all__ = [
    "Transform",
    "compose",
    "identity",
    "jitter",
    "make_transforms",
    "pad",
    "roll",
    "rotate",
    "scale",
    "standard",
]
