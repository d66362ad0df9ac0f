"""Separable 2-D filtering of `(N, H, W)` or `(N, H, W, C)` NumPy arrays (SSIM windows, blur baselines).

Borders use half-sample symmetric padding (`d c b a | a b c d`), which is SciPy's and
scikit-image's default `mode="reflect"`, so SSIM matches `skimage.metrics.structural_similarity`.
"""

from __future__ import annotations

import numpy as np


def gaussian_kernel(sigma: float, truncate: float = 3.5) -> np.ndarray:
    """1-D normalized Gaussian taps over [-r, r], r = int(truncate·sigma + 0.5) (SciPy's radius)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    r = int(truncate * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def uniform_kernel(size: int) -> np.ndarray:
    """1-D box of `size` taps (odd), each 1/size."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"window size must be an odd number >= 1, got {size!r}")
    return np.full(size, 1.0 / size)


def filter2d(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve axes 1 (rows) and 2 (columns) of `x` with the symmetric 1-D `kernel`; same shape."""
    x = np.asarray(x, dtype=np.float64)
    for axis in (1, 2):
        x = _filter_axis(x, kernel, axis)
    return x


def _filter_axis(x: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    r = len(kernel) // 2
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    # mode="symmetric" repeats the edge sample like SciPy's "reflect"; tile for kernels wider than x
    padded = np.pad(x, pad, mode="symmetric") if r <= n else _pad_symmetric_wide(x, r, axis)
    out = np.zeros_like(x)
    for i, w in enumerate(kernel):
        out += w * np.take(padded, np.arange(i, i + n), axis=axis)
    return out


def _pad_symmetric_wide(x: np.ndarray, r: int, axis: int) -> np.ndarray:
    n = x.shape[axis]
    period = np.concatenate([np.arange(n), np.arange(n)[::-1]])
    idx = period[np.arange(-r, n + r) % (2 * n)]
    return np.take(x, idx, axis=axis)


def gaussian_blur(x: np.ndarray, sigma: float, truncate: float = 3.5) -> np.ndarray:
    """Gaussian blur of images `(N, H, W[, C])` over H and W."""
    return filter2d(x, gaussian_kernel(sigma, truncate))
