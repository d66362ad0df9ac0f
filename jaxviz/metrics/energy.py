"""Energy concentration of a map inside an object's (dilated) mask — seed 002's score.

Seed 002 (Czech thesis, section 5.2) scores a map I against the object's segmentation mask M:

    E_total = Σ_{x,y} |I(x, y)|²          total energy of the map (eq. 5.1)
    E       = Σ_{x,y} |I(x, y) · M(x, y)|² energy inside the mask (eq. 5.2)
    P       = E / E_total                  concentration (eq. 5.3), P·100 = % of energy on the object

with M "dilated by about 20 % to enlarge the object's region and also capture its edges".

Channels. The seed's equations index pixels only (x, y) and call the result "the summed squares of
the values" — the energy of a discrete signal, E = Σ|x[n]|² (section 5.1) — while its maps are the
raw (3, H, W) input gradients (Grad-CAM is (H, W), guided Grad-CAM the (H, W) CAM times the
(3, H, W) guided-backprop map). So |I(x, y)|² of a three-channel map is the squared norm over
channels, Σ_c I(x, y, c)², every value squared: **`channels="energy"`, the default**. A pixel
gradient (1, −1, 0) has energy 2. The other reduction stays as a named option:
`channels="sum"` sums the signed channels first, S(x, y) = Σ_c I(x, y, c), and takes |S|²
(opposite-signed channels cancel, as in the dot product of the map with an image change that is
equal in every channel; the same pixel scores 0). A map with no channel axis is the same under both.

Dilation: see `dilate_masks` — each mask grows by a disc of radius r = fraction · √area / 2, so
the object's linear size (width, height of a square) grows by `fraction` (20 % by default).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "CHANNELS",
    "EnergyResult",
    "channel_sum",
    "dilate_masks",
    "dilation_radius",
    "energy_concentration",
    "pixel_energy",
]

CHANNELS = ("energy", "sum")
"""Channel reductions of a map's pixel energy: Σ_c I_c² (seed 002, default) or (Σ_c I_c)²."""


class EnergyResult(NamedTuple):
    """Per-image energy concentration: P = E / E_total, each `(N,)` float64."""

    P: np.ndarray
    E: np.ndarray
    E_total: np.ndarray


def channel_sum(maps) -> np.ndarray:
    """Maps `(N, H, W)` or `(N, H, W, C)` (NumPy or JAX) → signed pixel maps `(N, H, W)` float64.

    Channels are summed with their signs (the `channels="sum"` reduction, see the module docstring).
    """
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim == 4:
        return m.sum(axis=-1)
    if m.ndim == 3:
        return m
    raise ValueError(f"maps must be (N, H, W) or (N, H, W, C); got shape {m.shape}")


def pixel_energy(maps, channels: str = "energy") -> np.ndarray:
    """Maps `(N, H, W)` or `(N, H, W, C)` → per-pixel energy `(N, H, W)` float64 under a `CHANNELS` reduction:
    "energy" Σ_c I_c² (seed 002), "sum" (Σ_c I_c)²."""
    if channels == "energy":
        m = np.asarray(maps, dtype=np.float64)
        return (m**2).sum(axis=-1) if m.ndim == 4 else channel_sum(m) ** 2
    if channels == "sum":
        return channel_sum(maps) ** 2
    raise ValueError(f"channels must be one of {', '.join(CHANNELS)}, got {channels!r}")


def as_masks(masks, shape: tuple[int, ...] | None = None, name: str = "masks") -> np.ndarray:
    """Boolean `(N, H, W)` masks, checked against the maps' `(N, H, W)` when given."""
    m = np.asarray(masks)
    if m.ndim != 3:
        raise ValueError(f"{name} must be (N, H, W) booleans; got shape {m.shape}")
    if shape is not None and m.shape != tuple(shape):
        raise ValueError(f"{name} shape {m.shape} does not match the maps' (N, H, W) = {tuple(shape)}")
    return m.astype(bool) if m.dtype != bool else m


def dilation_radius(masks, fraction: float) -> np.ndarray:
    """Per-mask dilation radius in pixels, `(N,)` float64: r = fraction · √(mask area) / 2.

    √area is the object's size (the side of a square of the same area; for a mask with several
    parts, of their union). A kernel `fraction` times that size wide (radius half of it) makes a
    square object `fraction` larger in width and height: the seed's "dilated by about 20 %".
    """
    if not np.isfinite(fraction) or fraction < 0:
        raise ValueError(f"dilation fraction must be a finite number >= 0, got {fraction!r}")
    m = as_masks(masks)
    return fraction * np.sqrt(m.sum(axis=(1, 2), dtype=np.float64)) / 2


def dilate_masks(masks, fraction: float, *, shape: str = "disc") -> np.ndarray:
    """Grow each mask by `fraction` of its object's size (seed 002's ~20 % dilation).

    Definition: with r = fraction · √(area of the mask) / 2 (`dilation_radius`), a pixel p is in
    the dilated mask iff some mask pixel q has |p − q|₂ ≤ r (`shape="disc"`) or
    max(|p_y − q_y|, |p_x − q_x|) ≤ r (`shape="square"`). On the pixel grid the square grows a
    solid s×s square to exactly (s + 2⌊r⌋)×(s + 2⌊r⌋); the disc grows it by ⌊r⌋ on each side
    with rounded corners. Pixels outside the image are dropped; an empty mask stays empty;
    fraction 0 returns the masks unchanged.

    Args:
      masks: `(N, H, W)` bool (NumPy or JAX), one object (or union of objects) per image.
      fraction: size increase, e.g. 0.2; each mask gets its own radius from its own area.
      shape: "disc" (Euclidean, default) or "square" (chessboard) structuring element.

    Returns:
      `(N, H, W)` bool NumPy array.
    """
    if shape not in ("disc", "square"):
        raise ValueError(f"shape must be 'disc' or 'square', got {shape!r}")
    m = as_masks(masks)
    radii = dilation_radius(m, fraction)
    return np.stack([_dilate_one(mi, r, shape) for mi, r in zip(m, radii)]) if len(m) else m.copy()


def _dilate_one(mask: np.ndarray, r: float, shape: str) -> np.ndarray:
    """One (H, W) mask dilated by radius r: union over rows dy of row-dilations shifted by dy."""
    reach = int(np.floor(r + 1e-9))
    if reach == 0 or not mask.any():
        return mask.copy()
    h = mask.shape[0]
    out = np.zeros_like(mask)
    rows: dict[int, np.ndarray] = {}
    for dy in range(-reach, reach + 1):
        if abs(dy) >= h:
            continue
        w = reach if shape == "square" else int(np.floor(np.sqrt(max(r * r - dy * dy, 0.0)) + 1e-9))
        if w not in rows:
            rows[w] = _dilate_rows(mask, w)
        grown = rows[w]
        if dy >= 0:
            out[dy:] |= grown[: h - dy]
        else:
            out[:dy] |= grown[-dy:]
    return out


def _dilate_rows(mask: np.ndarray, w: int) -> np.ndarray:
    """Each row's True runs grown by w pixels left and right (window sums of a cumulative sum)."""
    if w == 0:
        return mask
    width = mask.shape[1]
    padded = np.pad(mask.astype(np.int32), ((0, 0), (w + 1, w)))
    cs = np.cumsum(padded, axis=1)
    return (cs[:, 2 * w + 1 : 2 * w + 1 + width] - cs[:, :width]) > 0


def energy_concentration(
    maps, masks, *, dilation: float = 0.2, channels: str = "energy", shape: str = "disc"
) -> EnergyResult:
    """Seed 002's energy concentration P = E / E_total of each map inside its dilated mask.

    E_total = Σ_{x,y} |I(x, y)|², E = Σ_{x,y} |I(x, y) · M_dilated(x, y)|², |·|² per `channels`.

    Args:
      maps: `(N, H, W)` or `(N, H, W, C)` float (NumPy or JAX): attribution maps at image resolution.
      masks: `(N, H, W)` bool: the object's ground-truth mask per image.
      dilation: fraction of the object's size the mask grows by (`dilate_masks`); 0 = no dilation.
      channels: "energy" (Σ_c I_c² per pixel, seed 002's definition, default) or "sum" ((Σ_c I_c)²).
      shape: dilation structuring element, "disc" or "square".

    Returns:
      `EnergyResult(P, E, E_total)`, each `(N,)` float64. P is 0 where E_total is 0 (an all-zero
      map has no energy to concentrate); NaN in a map propagates to its P, E and E_total.
    """
    energy = pixel_energy(maps, channels)
    m = as_masks(masks, energy.shape)
    if dilation:
        m = dilate_masks(m, dilation, shape=shape)
    e_total = energy.sum(axis=(1, 2))
    e = np.where(m, energy, 0.0).sum(axis=(1, 2))
    p = np.where(e_total > 0, e / np.where(e_total > 0, e_total, 1.0), 0.0)
    p = np.where(np.isnan(e_total), np.nan, p)
    return EnergyResult(P=p, E=e, E_total=e_total)
