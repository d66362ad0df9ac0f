"""Deletion and insertion curves and their AUC (Petsiuk, Das & Saenko, "RISE", BMVC 2018).

Deletion: starting from the image, pixels are replaced by a baseline in order of decreasing
importance (the map's most important pixels first) and the model's score of the target class
is recorded after each step; a good map makes the score fall fast (low AUC). Insertion: starting
from the baseline (RISE: a blurred copy), pixels of the image are put back in the same order;
a good map makes the score rise fast (high AUC).

Step k of `steps` (k = 0..steps) has n_k = ⌊k·H·W / steps⌋ pixels changed (all channels of a
pixel together), so step 0 is the untouched image (deletion) or the baseline (insertion) and
step `steps` the reverse. AUC is the trapezoid rule over the fraction of pixels in [0, 1]:
AUC = (Σ_k c_k − (c_0 + c_steps)/2) / steps, as in RISE's evaluation code.

Every step of every image is one model input; they are built on the fly and sent through
`model_fn` in chunks of `chunk` images (the last chunk padded, so a jitted `model_fn` compiles once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ._filters import gaussian_blur
from .energy import channel_sum

__all__ = ["CurveResult", "auc", "deletion_insertion", "make_baseline", "pixel_order"]


class CurveResult(NamedTuple):
    """`curves` `(N, steps + 1)` target scores after each step; `auc` `(N,)`; `fractions` `(steps + 1,)`."""

    curves: np.ndarray
    auc: np.ndarray
    fractions: np.ndarray


def auc(curves) -> np.ndarray:
    """Area under each curve `(N, K)` sampled at K equally spaced points of [0, 1] (trapezoid rule)."""
    c = np.asarray(curves, np.float64)
    if c.ndim != 2 or c.shape[1] < 2:
        raise ValueError(f"curves must be (N, steps + 1) with steps >= 1, got shape {c.shape}")
    return (c.sum(axis=1) - (c[:, 0] + c[:, -1]) / 2) / (c.shape[1] - 1)


def pixel_order(maps, *, order_by: str = "value") -> np.ndarray:
    """Rank of each pixel in the deletion/insertion order, `(N, H, W)` int64 (0 = changed first).

    Pixels are sorted by the channel-summed map S (see `energy.channel_sum`), largest first;
    `order_by="abs"` sorts by |S| (for signed gradient maps, where strong negative evidence also
    counts as important). Ties keep row-major order.
    """
    s = channel_sum(maps)
    if order_by == "abs":
        s = np.abs(s)
    elif order_by != "value":
        raise ValueError(f"order_by must be 'value' or 'abs', got {order_by!r}")
    if np.isnan(s).any():
        raise ValueError("maps contain NaN: cannot order pixels by importance")
    n = len(s)
    flat = s.reshape(n, -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(flat.shape[1]), flat.shape), axis=1)
    return ranks.reshape(s.shape)


def make_baseline(images: np.ndarray, baseline="blur", *, sigma: float = 5.0, value: float = 0.0) -> np.ndarray:
    """The images with everything removed, `(N, H, W, C)`.

    Args:
      images: `(N, H, W, C)` model inputs.
      baseline: "blur" (Gaussian blur, σ = `sigma` px; RISE's insertion baseline used σ = 5, 11 taps),
        "constant" (every value = `value`; RISE's deletion baseline was 0), or an array broadcastable
        to `images` (`(H, W, C)`, `(N, H, W, C)`, per-channel `(C,)`, ...).
    """
    if isinstance(baseline, str):
        if baseline == "blur":
            return gaussian_blur(images, sigma).astype(images.dtype)
        if baseline == "constant":
            return np.full_like(images, value)
        raise ValueError(f"baseline must be 'blur', 'constant' or an array, got {baseline!r}")
    b = np.asarray(baseline, images.dtype)
    try:
        return np.broadcast_to(b, images.shape).copy()
    except ValueError:
        raise ValueError(f"baseline array of shape {b.shape} does not broadcast to the images {images.shape}") from None


def deletion_insertion(
    model_fn: Callable,
    images,
    maps,
    targets,
    *,
    mode: str = "deletion",
    steps: int = 32,
    baseline="blur",
    chunk: int = 64,
    order_by: str = "value",
    softmax: bool = False,
    sigma: float = 5.0,
    value: float = 0.0,
    progress: bool = False,
) -> CurveResult:
    """Deletion or insertion curves of each image, in order of its map (RISE, Petsiuk et al. 2018).

    Args:
      model_fn: `f(x (B, H, W, C)) -> (B, K)` class scores (probabilities or logits), NumPy or JAX;
        called with B = `chunk` every time.
      images: `(N, H, W, C)` model inputs (preprocessed as `model_fn` expects).
      maps: `(N, H, W)` or `(N, H, W, C)` importance maps at the images' resolution.
      targets: `(N,)` ints, the class whose score is tracked per image.
      mode: "deletion" (image → baseline) or "insertion" (baseline → image).
      steps: number of steps (curve has steps + 1 points); at most H·W.
      baseline: "blur", "constant" or an array; see `make_baseline` (`sigma`, `value`).
      chunk: model inputs per `model_fn` call.
      order_by: "value" or "abs"; see `pixel_order`.
      softmax: apply a softmax to `model_fn`'s outputs first (when it returns logits).
      progress: show a tqdm bar over chunks.

    Returns:
      `CurveResult(curves (N, steps + 1), auc (N,), fractions (steps + 1,))`, float64.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    x = np.asarray(images, np.float32)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {x.shape}")
    n, h, w, _ = x.shape
    ranks = pixel_order(maps, order_by=order_by)
    if ranks.shape != (n, h, w):
        raise ValueError(f"maps {np.shape(maps)} do not match the images {x.shape}")
    t = np.asarray(targets)
    if t.shape != (n,) or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"targets must be (N,) = ({n},) class indices, got {t.dtype} array of shape {t.shape}")
    if not 1 <= steps <= h * w:
        raise ValueError(f"steps must be between 1 and H·W = {h * w}, got {steps}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    base = make_baseline(x, baseline, sigma=sigma, value=value)
    start, end = (x, base) if mode == "deletion" else (base, x)
    counts = (np.arange(steps + 1) * (h * w)) // steps

    total = n * (steps + 1)
    scores = np.empty(total, np.float64)
    bar = _progress(total, mode) if progress else None
    for lo in range(0, total, chunk):
        idx = np.arange(lo, min(lo + chunk, total))
        img, k = idx // (steps + 1), idx % (steps + 1)
        changed = ranks[img] < counts[k][:, None, None]
        batch = np.where(changed[..., None], end[img], start[img])
        if len(idx) < chunk:  # pad to a fixed batch shape (no recompilation of a jitted model_fn)
            batch = np.concatenate([batch, np.repeat(batch[-1:], chunk - len(idx), axis=0)])
        out = np.asarray(model_fn(batch), np.float64)[: len(idx)]
        if out.ndim != 2 or out.shape[0] != len(idx):
            raise ValueError(f"model_fn must return (B, K) scores for B = {chunk} inputs, got shape {out.shape}")
        if softmax:
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        scores[lo : lo + len(idx)] = out[np.arange(len(idx)), t[img]]
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    curves = scores.reshape(n, steps + 1)
    return CurveResult(curves=curves, auc=auc(curves), fractions=counts / (h * w))


def _progress(total: int, mode: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=mode, unit="img")
