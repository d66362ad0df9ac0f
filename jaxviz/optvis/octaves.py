"""Octaves: optimize at a small size, upscale, optimize again (seed 001's "upscaling steps";
Mordvintsev et al. 2015's DeepDream octaves, as in seed 003).

Two ways to carry the work between sizes:
- `upscale_octaves` (filter and layer visualization, seed 001): the whole image is upscaled and
  becomes the next octave's start; structure found at low resolution grows instead of repeating.
- `dream_octaves` (DeepDream): a pyramid of the photo; the *detail* added at one octave (dreamed
  minus original) is upscaled and added to the next octave's photo, so the photo stays sharp.

Both take `run(i, start) -> (images, losses)` that optimizes octave `i` from `start` `(U, B, h, w, 3)`;
each size compiles its own `Renderer` once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

RunOctave = Callable[[int, jax.Array], tuple[np.ndarray, np.ndarray]]


def octave_sizes(size: int, n: int, scale: float = 1.4, minimum: int = 8) -> list[int]:
    """`n` sides ending at `size`, each `scale` times the one before: e.g. (64, 3, 1.4) → [33, 46, 64]."""
    if n < 1:
        raise ValueError(f"octaves must be >= 1, got {n}")
    return [max(minimum, round(size / scale ** (n - 1 - i))) for i in range(n)]


def resize(images: jax.Array, size: int | tuple[int, int]) -> jax.Array:
    """Bilinear resize of `(..., h, w, 3)` to `size` (antialiased when shrinking)."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    return jax.image.resize(images, (*images.shape[:-3], *hw, images.shape[-1]), "linear")


def upscale_octaves(run: RunOctave, start: jax.Array, sizes: Sequence[int], *, progress: bool = False):
    """Optimize at `sizes[0]` from `start` `(U, B, h0, w0, 3)`, upscale the result to each next size
    and optimize again. Returns the final images and the losses of all octaves `(U, Σ steps)`."""
    img, losses = start, []
    for i, s in enumerate(tqdm(sizes, desc="octaves", disable=not progress, leave=False)):
        img = resize(jnp.asarray(img), s) if img.shape[-2] != s else jnp.asarray(img)
        img, loss = run(i, img)
        losses.append(np.asarray(loss))
    return np.asarray(img), np.concatenate(losses, axis=1)


def dream_octaves(run: RunOctave, photo: jax.Array, sizes: Sequence[int], *, progress: bool = False):
    """DeepDream over a pyramid of `photo` `(U, B, H, W, 3)`: detail dreamed at each octave is
    carried up and added to the next octave's photo. Returns the dreamed images at `sizes[-1]`
    and the losses `(U, Σ steps)`."""
    detail, losses, out = None, [], None
    for i, s in enumerate(tqdm(sizes, desc="octaves", disable=not progress, leave=False)):
        base = resize(jnp.asarray(photo), s)
        start = base if detail is None else jnp.clip(base + resize(detail, s), 0.0, 1.0)
        out, loss = run(i, start)
        detail = jnp.asarray(out) - base
        losses.append(np.asarray(loss))
    return np.asarray(out), np.concatenate(losses, axis=1)


__all__ = ["dream_octaves", "octave_sizes", "resize", "upscale_octaves"]
