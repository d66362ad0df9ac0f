"""Thumbnails as sprites: one WebP per column (the input, or one run's method) and page of rows.

A sprite stacks the tiles of `rows` consecutive rows vertically, each tile `side × side` pixels (the
image fitted inside, centred on a neutral background), so the browser fetches one file for a page of
a column instead of a hundred. Map tiles hold the map alone in colour (`plot.colors`); the page draws
them over the input tile at the opacity the user picks.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .. import plot
from ..atomic import atomic_path
from ..batch import resize_image
from ..data.images import ImageError, load_image
from ..data.preprocess import resize_and_crop
from ..store import MapReader

__all__ = ["BACKGROUND", "fit", "input_view", "map_tiles", "write_sprite"]

BACKGROUND = (236, 238, 241)
"""Fill around tiles whose image is not square, and of missing cells."""

MAX_SIDE = 16383
"""WebP's largest width or height."""


def fit(img: np.ndarray, side: int) -> Image.Image:
    """An `(H, W, 3)` float image in [0, 1] scaled to fit `side × side` (aspect kept), centred."""
    tile = Image.new("RGB", (side, side), BACKGROUND)
    h, w = img.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    pic = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
    if pic.size != size:
        pic = pic.resize(size, Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.NEAREST, reducing_gap=None)
    tile.paste(pic, ((side - size[0]) // 2, (side - size[1]) // 2))
    return tile


def input_view(record: dict) -> np.ndarray | None:
    """The image of a record in the geometry its model saw (so a map lies on it), or None if unreadable."""
    hw = tuple(record.get("input_hw") or ())
    rc = record.get("resize_crop")
    try:
        img = load_image(record.get("resolved") or record["image"], min(rc) if rc else (max(hw) if hw else None))
    except (ImageError, OSError):
        return None
    if rc:
        return resize_and_crop(img, *rc)
    return resize_image(img, hw) if len(hw) == 2 else img


def map_tiles(records: list[dict | None], maps: MapReader, method: str) -> tuple[list[np.ndarray | None], list]:
    """Coloured views of the records' maps (None for a missing record or unreadable map) and each map's
    `[min, max]` (None where there is no map). Maps of one shape are coloured together."""
    raw: list[np.ndarray | None] = []
    for r in records:
        try:
            raw.append(None if r is None else maps(r))
        except (OSError, ValueError, KeyError, IndexError):
            raw.append(None)
    views: list[np.ndarray | None] = [None] * len(raw)
    by_shape: dict[tuple, list[int]] = {}
    for i, m in enumerate(raw):
        if m is not None and np.all(np.isfinite(m)):
            by_shape.setdefault(m.shape, []).append(i)
    signed = method.partition(":")[0] in plot.SIGNED_VIEWS
    for idx in by_shape.values():
        for i, v in zip(idx, plot.colors(np.stack([raw[i] for i in idx]), signed=signed)):
            views[i] = v
    ranges = [None if m is None else [float(np.min(m)), float(np.max(m))] for m in raw]
    return views, ranges


def write_sprite(path, tiles: list[np.ndarray | None], side: int, quality: int = 82) -> None:
    """Stack `tiles` (None: an empty cell) vertically as one WebP at `path`, atomically."""
    if len(tiles) * side > MAX_SIDE:
        raise ValueError(f"a sprite of {len(tiles)} tiles of {side} px is taller than WebP allows ({MAX_SIDE})")
    sheet = Image.new("RGB", (side, side * len(tiles)), BACKGROUND)
    for i, t in enumerate(tiles):
        if t is not None:
            sheet.paste(fit(t, side), (0, i * side))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="WEBP", quality=quality, method=4)
