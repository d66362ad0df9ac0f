"""Weakly supervised localization from a class map: boxes from a thresholded CAM, IoU, localization error.

Zhou et al. 2016 ("Learning Deep Features for Discriminative Localization", section 3; seed 004's
37.1 % on ILSVRC 2014): "we segment the regions of which the value is above 20 % of the max value of
the CAM. Then we take the bounding box that covers the largest connected component". A prediction
localizes its object when the box's IoU with a ground-truth box of that object is at least 0.5.

- `map_box(m, threshold)`: that box for one map `(H, W)`, `(x0, y0, x1, y1)` with x1, y1 exclusive
  (the convention of `jaxviz.data.shapes` boxes and of `mask_box`); `map_boxes` for a batch.
- `mask_box(mask)`: the tight box of a mask (ground truth from segmentation masks).
- `box_iou(a, b)`: IoU of boxes, broadcast.
- `localization(boxes, truth, ...)`: per-image best IoU against any of the image's ground-truth
  boxes, hits, and the two errors the CAM paper reports: **top-1 localization error** (wrong class
  or IoU < 0.5) and **GT-known localization error** (IoU < 0.5 for the map of the true class).

Arrays in, arrays out (NumPy); connected components by `scipy.ndimage.label` (8-connectivity).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["IOU_THRESHOLD", "THRESHOLD", "Localization", "box_iou", "localization", "map_box", "map_boxes", "mask_box"]

THRESHOLD = 0.2
"""Fraction of a map's maximum above which pixels form the segmentation (Zhou et al. 2016)."""
IOU_THRESHOLD = 0.5
"""IoU at which a box counts as localizing its object (ILSVRC's localization criterion)."""


def map_box(m, threshold: float = THRESHOLD) -> np.ndarray:
    """The box `(x0, y0, x1, y1)` (int, x1/y1 exclusive) around the largest connected component of
    `m >= threshold · max(m)` for one map `(H, W)` (a `(H, W, C)` map is reduced by its channel
    norm first). A map with no positive value boxes the whole image (nothing localized)."""
    from scipy import ndimage

    m = _plane(m)
    top = float(m.max()) if m.size else 0.0
    h, w = m.shape
    if not np.isfinite(top) or top <= 0:
        return np.array([0, 0, w, h], np.int64)
    labels, count = ndimage.label(m >= threshold * top, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    return mask_box(labels == int(np.argmax(sizes)))


def map_boxes(maps, threshold: float = THRESHOLD) -> np.ndarray:
    """`map_box` of each of `maps` `(N, H, W)` or `(N, H, W, C)` → `(N, 4)` int."""
    return np.stack([map_box(m, threshold) for m in np.asarray(maps)]).astype(np.int64)


def mask_box(mask) -> np.ndarray:
    """The tight box `(x0, y0, x1, y1)` (x1, y1 exclusive) of a boolean mask `(H, W)`; an empty mask
    gives the empty box `(0, 0, 0, 0)`."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got {mask.shape}")
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return np.zeros(4, np.int64)
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.int64)


def box_iou(a, b) -> np.ndarray:
    """Intersection over union of boxes `(..., 4)` and `(..., 4)` (x0, y0, x1, y1; broadcast) → `(...)`.
    Two empty boxes have IoU 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = lambda t: np.clip(t[..., 2] - t[..., 0], 0, None) * np.clip(t[..., 3] - t[..., 1], 0, None)
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


class Localization(NamedTuple):
    """Per-image localization of `N` predicted boxes against their ground truth.

    iou `(N,)`: best IoU with any ground-truth box of the image; located `(N,)` bool: iou ≥ the
    threshold; correct `(N,)` bool: the predicted class is right (all True when not given);
    top1_error: share with a wrong class or no located box; gt_known_error: share not located.
    Boxes from the *true* class's map serve both: where the top-1 class is right it is that class."""

    iou: np.ndarray
    located: np.ndarray
    correct: np.ndarray
    top1_error: float
    gt_known_error: float


def localization(boxes, truth: Sequence, correct=None, *, iou_threshold: float = IOU_THRESHOLD) -> Localization:
    """Score predicted boxes `(N, 4)` against ground truth.

    Args:
      boxes: `(N, 4)` predicted boxes (e.g. `map_boxes` of class maps).
      truth: per image, its ground-truth boxes: `(N, 4)` (one each) or a length-N sequence of
        `(k_i, 4)` arrays (several objects of the class, e.g. COCO instances); the best IoU counts.
      correct: `(N,)` bool, whether the classifier's top-1 class is right (top-1 error needs it).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    truth = list(truth) if not isinstance(truth, np.ndarray) else list(truth.reshape(len(truth), -1, 4))
    if len(truth) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but ground truth for {len(truth)} images")
    iou = np.array(
        [box_iou(b[None], np.asarray(t, np.float64).reshape(-1, 4)).max(initial=0.0) for b, t in zip(boxes, truth)]
    )
    located = iou >= iou_threshold
    correct = np.ones(len(boxes), bool) if correct is None else np.asarray(correct, bool).reshape(-1)
    if len(correct) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(correct)} entries in correct")
    n = max(len(boxes), 1)
    return Localization(iou, located, correct, float(np.sum(~(located & correct)) / n), float(np.sum(~located) / n))


def _plane(m) -> np.ndarray:
    m = np.asarray(m, np.float64)
    if m.ndim == 3:
        m = np.sqrt((m**2).sum(-1))
    if m.ndim != 2:
        raise ValueError(f"a map must be (H, W) or (H, W, C), got {m.shape}")
    return np.nan_to_num(m, nan=0.0)
