"""Similarity of two batches of maps: Spearman rank correlation and SSIM, per image.

Used by the randomization sanity checks (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018), which compare each map of a randomized model with the original map by the
Spearman rank correlation (with and without absolute values) and by SSIM.
"""

from __future__ import annotations

import numpy as np

from ._filters import filter2d, gaussian_kernel, uniform_kernel

__all__ = ["rank_average", "spearman", "ssim"]


def _flat_pair(a, b, name: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{name}: the two batches differ in shape, {a.shape} vs {b.shape}")
    if a.ndim < 2:
        raise ValueError(f"{name}: expected a batch (N, ...) of maps, got shape {a.shape}")
    return a.reshape(len(a), -1), b.reshape(len(b), -1)


def rank_average(x) -> np.ndarray:
    """Ranks 1..M of each row of `(N, M)` values; ties get their average rank (SciPy's "average")."""
    x = np.asarray(x, np.float64)
    n, m = x.shape
    order = np.argsort(x, axis=1, kind="stable")
    xs = np.take_along_axis(x, order, axis=1)
    pos = np.broadcast_to(np.arange(m), (n, m))
    starts = np.ones((n, m), bool)
    starts[:, 1:] = xs[:, 1:] != xs[:, :-1]
    ends = np.ones((n, m), bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, pos, m - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty_like(x)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return ranks


def spearman(a, b, *, absolute: bool = False) -> np.ndarray:
    """Spearman's ρ between maps a[i] and b[i] over all their values, `(N,)` float64.

    ρ is Pearson's correlation of the average ranks (equal to `scipy.stats.spearmanr`). With
    `absolute`, the maps' absolute values are ranked (Adebayo et al. report both). NaN where
    either map is constant (no ranking to correlate).

    Args:
      a, b: maps of the same shape `(N, ...)` (NumPy or JAX).
    """
    fa, fb = _flat_pair(a, b, "spearman")
    if absolute:
        fa, fb = np.abs(fa), np.abs(fb)
    ra, rb = rank_average(fa), rank_average(fb)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ra * rb).sum(axis=1) / np.where(denom > 0, denom, 1.0), np.nan)


def ssim(
    a,
    b,
    *,
    data_range: float = 1.0,
    window: str = "gaussian",
    win_size: int = 7,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    sample_covariance: bool | None = None,
) -> np.ndarray:
    """Mean structural similarity (Wang et al., IEEE TIP 2004) of each pair of maps, `(N,)` float64.

    SSIM(x, y) = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)), C1 = (k1·L)²,
    C2 = (k2·L)², L = `data_range`, with local statistics under a sliding window, averaged over
    the pixels whose window fits inside the image (borders padded symmetrically for the filter,
    then cropped by (window − 1)/2) — the same as `skimage.metrics.structural_similarity`.

    Args:
      a, b: `(N, H, W)` maps (NumPy or JAX), e.g. normalized to [0, 1].
      data_range: L, the value range of the maps (1 for maps in [0, 1]).
      window: "gaussian" (Wang et al.: σ = `sigma`, 11 taps for 1.5) or "uniform" (`win_size`² box,
        scikit-image's default).
      sample_covariance: divide the local (co)variances by n − 1 instead of n; default True for
        "uniform" (scikit-image's default) and False for "gaussian" (Wang et al.).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"ssim: expected two (N, H, W) batches of the same shape, got {a.shape} and {b.shape}")
    if window == "gaussian":
        kernel = gaussian_kernel(sigma)
    elif window == "uniform":
        kernel = uniform_kernel(win_size)
    else:
        raise ValueError(f"window must be 'gaussian' or 'uniform', got {window!r}")
    size = len(kernel)
    if min(a.shape[1:]) < size:
        raise ValueError(f"ssim: maps {a.shape[1:]} are smaller than the {size}x{size} window")
    if sample_covariance is None:
        sample_covariance = window == "uniform"
    n_pix = size * size
    cov_norm = n_pix / (n_pix - 1) if sample_covariance else 1.0
    mu_a, mu_b = filter2d(a, kernel), filter2d(b, kernel)
    var_a = cov_norm * (filter2d(a * a, kernel) - mu_a * mu_a)
    var_b = cov_norm * (filter2d(b * b, kernel) - mu_b * mu_b)
    cov = cov_norm * (filter2d(a * b, kernel) - mu_a * mu_b)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    pad = (size - 1) // 2
    return s[:, pad : s.shape[1] - pad, pad : s.shape[2] - pad].mean(axis=(1, 2))
