"""Parameterizations: how the optimized numbers become an image (Lucid's `param/`, functional).

A `Param` is a pair of pure functions, `init(key) -> raw` and `to_image(raw) -> (B, H, W, 3)` in
[0, 1], plus `from_image` (its inverse, where one exists: octaves restart from an upscaled
image, DeepDream and adversarial runs start from a photo) and `project` (applied to `raw` after
every optimizer step: clipping to the valid range). The optimizer only ever sees `raw`.

- `pixel`: raw pixels; valid range by clipping after each step (projected gradient) or a sigmoid.
- `fourier`: a scaled spectrum, 1/f^decay, so low frequencies move first (Olah et al. 2017).
- `decorrelate=True` (both): raw colours live in a decorrelated colour basis (the square root of
  ImageNet's colour covariance, Lucid's `color_correlation_svd_sqrt`).
Inits are functions `(key, shape) -> image in [0, 1]`: `uniform(lo, hi)` (seed 000: 150/255–180/255),
`grey(lo, hi)` (seed 001: grayscale noise), or `constant_image(img)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Shape = tuple[int, int, int, int]  # (B, H, W, 3)
Init = Callable[[jax.Array, Shape], jax.Array]

# Square root of ImageNet's RGB covariance (Lucid), columns normalized by the largest column norm.
_COLOR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
COLOR_MATRIX = _COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))
_FOURIER_MAGIC = 4.0  # Lucid's fft_image divides by 4 so that sd=0.01 gives a grey-ish start


class Param(NamedTuple):
    """`init(key) -> raw`; `to_image(raw) -> (B, H, W, 3)` in [0, 1]; optional `from_image` (inverse)
    and `project(raw) -> raw` (run after each step). `shape` is the image shape `(B, H, W, 3)`."""

    init: Callable[[jax.Array], jax.Array]
    to_image: Callable[[jax.Array], jax.Array]
    from_image: Callable[[jax.Array], jax.Array] | None
    project: Callable[[jax.Array], jax.Array] | None
    shape: Shape
    name: str


# --- inits ---------------------------------------------------------------------------------


def uniform(lo: float = 150 / 255, hi: float = 180 / 255) -> Init:
    """Each pixel and channel uniform in [lo, hi] (seed 000: np.random.uniform(150, 180)/255)."""
    return lambda key, shape: jax.random.uniform(key, shape, jnp.float32, lo, hi)


def grey(lo: float = 0.4, hi: float = 0.6) -> Init:
    """Grayscale noise: one uniform value per pixel, equal in R, G, B (seed 001's start)."""
    return lambda key, shape: jnp.tile(
        jax.random.uniform(key, (*shape[:-1], 1), jnp.float32, lo, hi), (1, 1, 1, shape[-1])
    )


def constant_image(img) -> Init:
    """Always `img` `(H, W, 3)` or `(B, H, W, 3)` in [0, 1], broadcast to the batch."""
    arr = jnp.asarray(img, jnp.float32)
    return lambda key, shape: jnp.broadcast_to(arr.reshape((-1, *shape[1:])), shape)


# --- colour and range ------------------------------------------------------------------------


def _to_rgb(t: jax.Array, decorrelate: bool) -> jax.Array:
    return jnp.einsum("...c,dc->...d", t, jnp.asarray(COLOR_MATRIX)) if decorrelate else t


def _from_rgb(t: jax.Array, decorrelate: bool) -> jax.Array:
    return jnp.einsum("...c,dc->...d", t, jnp.asarray(np.linalg.inv(COLOR_MATRIX))) if decorrelate else t


def _valid(t: jax.Array, valid: str) -> jax.Array:
    return jax.nn.sigmoid(t) if valid == "sigmoid" else t


def _invalid(img: jax.Array, valid: str) -> jax.Array:
    if valid == "sigmoid":
        p = jnp.clip(img, 1e-4, 1 - 1e-4)
        return jnp.log(p) - jnp.log1p(-p)
    return img


def _check_valid(valid: str) -> None:
    if valid not in ("sigmoid", "clip", "none"):
        raise ValueError(f"valid must be 'sigmoid', 'clip' or 'none', got {valid!r}")


# --- parameterizations -------------------------------------------------------------------------


def pixel(shape: Shape, init: Init | None = None, *, valid: str = "clip", decorrelate: bool = False) -> Param:
    """Raw pixels. `valid`: 'clip' (project into [0, 1] after each step; seed 000 optimizes the
    image itself), 'sigmoid' (raw is the logit of the image), or 'none' (unconstrained).
    With `decorrelate`, raw holds decorrelated colours (clip then happens in RGB, in `to_image`)."""
    _check_valid(valid)
    init = init or uniform(0.4, 0.6)

    def to_image(raw):
        img = _valid(_to_rgb(raw, decorrelate), valid)
        return jnp.clip(img, 0, 1) if (valid == "clip" and decorrelate) else img

    def from_image(img):
        return _from_rgb(_invalid(img, valid), decorrelate)

    project = (lambda raw: jnp.clip(raw, 0.0, 1.0)) if (valid == "clip" and not decorrelate) else None
    name = f"pixel({valid}{', decorrelated' if decorrelate else ''})"
    return Param(lambda key: from_image(init(key, shape)), to_image, from_image, project, tuple(shape), name)


def rfft2_freqs(h: int, w: int) -> np.ndarray:
    """|f| of each coefficient of `rfft2` on an `(h, w)` image, `(h, w//2 + 1)`."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy).astype(np.float32)


def fourier(
    shape: Shape,
    *,
    decay_power: float = 1.0,
    sd: float = 0.01,
    decorrelate: bool = True,
    valid: str = "sigmoid",
    init: Init | None = None,
) -> Param:
    """A spectrum scaled by 1/max(|f|, 1/max(H,W))^decay · √(H·W) (Lucid's `fft_image`).

    raw is `(2, B, 3, H, W//2+1)` (real and imaginary parts). `init=None` draws the spectrum from
    N(0, sd²) as Lucid does; an image `init` is inverted exactly (`from_image`)."""
    _check_valid(valid)
    b, h, w, c = shape
    scale = 1.0 / np.maximum(rfft2_freqs(h, w), 1.0 / max(h, w)) ** decay_power
    scale = jnp.asarray((scale * np.sqrt(h * w)).reshape(1, 1, h, w // 2 + 1), jnp.float32)  # (B, C, h, w//2+1)

    def to_image(raw):
        spectrum = jax.lax.complex(raw[0], raw[1]) * scale
        t = jnp.fft.irfft2(spectrum, s=(h, w)) / _FOURIER_MAGIC  # (B, C, H, W)
        t = _to_rgb(jnp.transpose(t, (0, 2, 3, 1)), decorrelate)
        img = _valid(t, valid)
        return jnp.clip(img, 0, 1) if valid == "clip" else img

    def from_image(img):
        t = _from_rgb(_invalid(img, valid), decorrelate)
        spectrum = jnp.fft.rfft2(jnp.transpose(t, (0, 3, 1, 2)) * _FOURIER_MAGIC, s=(h, w)) / scale
        return jnp.stack([spectrum.real, spectrum.imag]).astype(jnp.float32)

    def init_raw(key):
        if init is not None:
            return from_image(init(key, shape))
        return sd * jax.random.normal(key, (2, b, c, h, w // 2 + 1), jnp.float32)

    name = f"fourier(decay {decay_power:g}, {valid}{', decorrelated' if decorrelate else ''})"
    return Param(init_raw, to_image, from_image, None, tuple(shape), name)


def make_param(
    kind: str,
    shape: Shape,
    init: Init | None = None,
    *,
    valid: str | None = None,
    decorrelate: bool = False,
    decay_power: float = 1.0,
) -> Param:
    """`pixel` or `fourier` by name (what presets and the CLI use)."""
    if kind == "pixel":
        return pixel(shape, init, valid=valid or "clip", decorrelate=decorrelate)
    if kind == "fourier":
        return fourier(shape, init=init, valid=valid or "sigmoid", decorrelate=decorrelate, decay_power=decay_power)
    raise ValueError(f"unknown parameterization {kind!r}: use 'pixel' or 'fourier'")


__all__ = [
    "COLOR_MATRIX",
    "Param",
    "constant_image",
    "fourier",
    "grey",
    "make_param",
    "pixel",
    "rfft2_freqs",
    "uniform",
]
