"""Pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016).

A map "hits" when its maximum lies on the object: within `tolerance` pixels (Euclidean, 15 px in
the paper) of some pixel of the ground-truth mask; otherwise it misses. Accuracy = hits / N.
The maximum is the pixel of highest energy under the same channel reduction as
`energy_concentration` (`channels`: Σ_c I_c² by default, or (Σ_c I_c)²); ties go to the first
pixel in row-major order.
"""

from __future__ import annotations

import numpy as np

from .energy import as_masks, pixel_energy

__all__ = ["map_maxima", "pointing_game"]


def map_maxima(maps, channels: str = "energy") -> np.ndarray:
    """(row, col) of each map's pixel of highest energy (`energy.pixel_energy`), `(N, 2)` int64; first in
    row-major order on ties."""
    s = pixel_energy(maps, channels)
    if np.isnan(s).any():
        bad = np.flatnonzero(np.isnan(s).any(axis=(1, 2)))
        raise ValueError(f"maps {bad.tolist()} contain NaN: the pointing game needs finite maps")
    flat = s.reshape(s.shape[0], -1).argmax(axis=1)
    return np.stack(np.unravel_index(flat, s.shape[1:]), axis=1).astype(np.int64)


def pointing_game(maps, masks, *, tolerance: int = 15, channels: str = "energy") -> np.ndarray:
    """Hit (True) if each map's maximum lies within `tolerance` px of its mask.

    Args:
      maps: `(N, H, W)` or `(N, H, W, C)` float (NumPy or JAX).
      masks: `(N, H, W)` bool ground-truth masks; an empty mask is always a miss.
      tolerance: pixels; a hit when the Euclidean distance from the maximum to the nearest mask
        pixel is ≤ tolerance (0: the maximum must be on the mask itself).
      channels: the pixel-energy reduction, "energy" or "sum" (`energy.CHANNELS`).

    Returns:
      `(N,)` bool NumPy array.
    """
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a number of pixels >= 0, got {tolerance!r}")
    points = map_maxima(maps, channels)
    n, h, w = np.shape(maps)[:3]
    m = as_masks(masks, (n, h, w))
    rows = np.arange(h)[None, :, None] - points[:, 0, None, None]
    cols = np.arange(w)[None, None, :] - points[:, 1, None, None]
    d2 = np.where(m, rows.astype(np.float64) ** 2 + cols.astype(np.float64) ** 2, np.inf)
    return d2.reshape(n, -1).min(axis=1) <= float(tolerance) ** 2
