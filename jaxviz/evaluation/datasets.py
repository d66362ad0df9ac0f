"""Evaluation data: images with ground-truth object masks and the class each object is.

Two sources give the same thing, a list of `Sample`s (seed 002's study needs nothing else):

- `shapes_benchmark(n, size, seed)`: the synthetic shapes (`jaxviz.data.shapes.generate`), one
  labelled shape per image with its exact silhouette as the mask. Reproducible from `seed`;
  image i depends only on `(seed, i)`.
- `coco_samples(images, annotations, ...)`: real photos with a COCO-format annotation file
  (polygons, RLE and uncompressed RLE, read with `pycocotools`). One sample per (image,
  category): the mask is the union of every instance of that category in the image.

A sample's `category` is a class *name*; `class_candidates` turns it into the model's class
indices: the model's own class of that name (shapes models, COCO-trained models), else, for an
ImageNet-1k model (seed 002 evaluated ImageNet models on COCO objects), by one of two `TARGET_RULES`:
"category" (seed 002: the one ImageNet class named for the COCO category, the `class` column of
`coco_to_imagenet.tsv` or the user's own `class_table`) or "best" (every class that depicts the
category, the `candidates` column; the experiment then explains the one the model scores highest).

Sizes (seed 002's "original vs 224×224" factor): `resize_sample(image, mask, size)` with
`size="original"` keeps the image as it is (shapes: the generated size; COCO: the photo's own
size), an int `S` stretches both to S×S like the seed did (bilinear image; mask resized as a
coverage map and kept where ≥ 0.5).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.images import load_image

__all__ = [
    "TARGET_RULES",
    "Sample",
    "class_candidates",
    "coco_boxes",
    "coco_category_table",
    "coco_class_table",
    "coco_mask",
    "coco_samples",
    "load_class_table",
    "load_samples",
    "resize_sample",
    "sample_boxes",
    "shapes_benchmark",
]

ORIGINAL = "original"
TARGET_RULES = ("category", "best")
"""How an object's category becomes an ImageNet target: the one class named for it (seed 002), or
the best-scoring of every class that depicts it."""


@dataclass(frozen=True)
class Sample:
    """One object to score a map against.

    Attributes:
      key: unique, stable id of the (image, object) pair; part of every record's key.
      image: the image's name as shown to people (a file name relative to the images folder).
      category: the object's class name in the dataset ("star", "traffic light").
      load: `() -> (image (H, W, 3) float32 in [0, 1], mask (H, W) bool)`.
      hw: `(H, W)` of the image at its original size.
    """

    key: str
    image: str
    category: str
    load: Callable[[], tuple[np.ndarray, np.ndarray]] = field(repr=False, compare=False)
    hw: tuple[int, int] = (0, 0)


# --------------------------------------------------------------------------- shapes


def shapes_benchmark(n: int, size: int = 64, seed: int = 0) -> list[Sample]:
    """`n` shapes images of `size`×`size` with their target masks, reproducible from `seed`.

    Keys are `shapes-s<seed>-<size>px-<i>`; categories are `jaxviz.data.shapes.CLASSES` names.
    """
    from ..data import shapes

    if n < 1 or size < 8:
        raise ValueError(f"shapes benchmark needs n >= 1 and size >= 8, got n={n}, size={size}")
    data = shapes.generate(n, size=size, seed=seed)

    def loader(i: int):
        return lambda: (data.images[i], data.masks[i])

    return [
        Sample(
            f"shapes-s{seed}-{size}px-{i:05d}",
            f"shapes_{seed}_{i:05d}.png",
            shapes.CLASSES[int(data.labels[i])],
            loader(i),
            (size, size),
        )
        for i in range(n)
    ]


# --------------------------------------------------------------------------- COCO


def _coco_api():
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise ImportError(
            "reading COCO annotations needs pycocotools: pip install 'jaxviz-cnn[coco]' (or pip install pycocotools)"
        ) from None
    return COCO


@functools.lru_cache(maxsize=4)
def load_coco(path: str, mtime: float):
    import contextlib
    import io

    COCO = _coco_api()
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        return COCO(path)


def coco_mask(coco, image_id: int, category_id: int) -> np.ndarray:
    """Union of every instance of `category_id` in image `image_id`: `(H, W)` bool.

    Polygons, RLE and uncompressed RLE (crowd regions) all go through `coco.annToMask`.
    """
    info = coco.imgs[image_id]
    mask = np.zeros((int(info["height"]), int(info["width"])), bool)
    with warnings.catch_warnings():  # pycocotools' NumPy-2 `copy=` deprecation, not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=[category_id], iscrowd=None)):
            mask |= coco.annToMask(ann).astype(bool)
    return mask


def coco_boxes(coco, image_id: int, category_id: int) -> np.ndarray:
    """Every non-crowd instance box of `category_id` in image `image_id`: `(k, 4)` float64
    `(x0, y0, x1, y1)` (COCO's `[x, y, width, height]`, so x1 = x + width), possibly `(0, 4)`."""
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=[category_id], iscrowd=False))
    boxes = [(x, y, x + w, y + h) for x, y, w, h in (a["bbox"] for a in anns if "bbox" in a)]
    return np.asarray(boxes, np.float64).reshape(-1, 4)


def sample_boxes(sample: Sample, annotations: str | os.PathLike[str]) -> np.ndarray:
    """The ground-truth boxes `(k, 4)` of a `coco_samples` sample (its image and category), read from
    the same annotation file."""
    parts = sample.key.split("-")
    if len(parts) != 3 or parts[0] != "coco":
        raise ValueError(f"sample {sample.key!r} is not a COCO sample (coco_samples keys are coco-<image>-<category>)")
    path = Path(annotations)
    coco = load_coco(str(path.resolve()), path.stat().st_mtime)
    return coco_boxes(coco, int(parts[1]), int(parts[2]))


def coco_samples(
    images: str | os.PathLike[str],
    annotations: str | os.PathLike[str],
    *,
    categories: Sequence[str] | None = None,
    per_category: int | None = None,
    min_area: float = 0.0,
    seed: int = 0,
) -> list[Sample]:
    """One sample per (image, category) of a COCO-format annotation file.

    Args:
      images: folder holding the images (`file_name` of each image entry is relative to it).
      annotations: the COCO JSON (e.g. `instances_val2017.json`).
      categories: category names to keep (all when None); an unknown name is an error.
      per_category: at most this many images per category, chosen at random with `seed`
        (seed 002: 30 images of each of a few classes); all when None.
      min_area: drop objects whose summed annotation area (pixels) is smaller than this.
      seed: for the per-category choice.

    An image listed in the file but missing from the folder fails when it is loaded
    (`FileNotFoundError` naming it), so a wrong folder is noticed rather than silently skipped.
    """
    images, annotations = Path(images), Path(annotations)
    if not annotations.is_file():
        raise FileNotFoundError(f"COCO annotation file {annotations} not found")
    if not images.is_dir():
        raise FileNotFoundError(f"COCO images folder {images} not found")
    coco = load_coco(str(annotations.resolve()), annotations.stat().st_mtime)
    cats = {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())}
    wanted = list(cats) if categories is None else list(categories)
    unknown = [c for c in wanted if c not in cats]
    if unknown:
        raise ValueError(f"categories {unknown} are not in {annotations}; it has: {', '.join(sorted(cats))}")
    rng = np.random.default_rng(seed)
    samples = []
    for name in wanted:
        cid = cats[name]
        ids = sorted(i for i in coco.getImgIds(catIds=[cid]) if _area(coco, i, cid) >= max(min_area, 1e-9))
        if per_category is not None and len(ids) > per_category:
            ids = sorted(rng.choice(ids, per_category, replace=False).tolist())
        for image_id in ids:
            info = coco.imgs[image_id]
            samples.append(
                Sample(
                    f"coco-{image_id}-{cid}",
                    info["file_name"],
                    name,
                    _coco_loader(coco, images, image_id, cid),
                    (int(info["height"]), int(info["width"])),
                )
            )
    return samples


def _area(coco, image_id: int, category_id: int) -> float:
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=[category_id], iscrowd=None))
    return float(sum(a.get("area", 0.0) or 0.0 for a in anns)) if anns else 0.0


def _coco_loader(coco, folder: Path, image_id: int, category_id: int):
    def load():
        info = coco.imgs[image_id]
        path = folder / info["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"image {path} (COCO id {image_id}) not found: is the images folder right?")
        img = load_image(path)
        mask = coco_mask(coco, image_id, category_id)
        if img.shape[:2] != mask.shape:
            raise ValueError(
                f"{path}: image is {img.shape[1]}x{img.shape[0]} but the annotation says "
                f"{mask.shape[1]}x{mask.shape[0]}"
            )
        return img, mask

    return load


# --------------------------------------------------------------------------- classes


@functools.lru_cache(maxsize=1)
def _shipped_table() -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    text = (resources.files("jaxviz.evaluation") / "coco_to_imagenet.tsv").read_text(encoding="utf-8")
    candidates, one = {}, {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        _, name, spec, cls = line.split("\t")
        candidates[name], one[name] = tuple(_parse_indices(spec)), int(cls)
    return candidates, one


def coco_category_table() -> dict[str, tuple[int, ...]]:
    """COCO category name → every ImageNet-1k class index that depicts it (`coco_to_imagenet.tsv`)."""
    return dict(_shipped_table()[0])


def coco_class_table() -> dict[str, int]:
    """COCO category name → the one ImageNet-1k class named for it (the table's `class` column)."""
    return dict(_shipped_table()[1])


def _parse_indices(spec: str) -> list[int]:
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def load_class_table(spec) -> dict[str, int | str]:
    """A category → class table: None (the shipped `coco_class_table`), a dict, or a file.

    Values are class indices or class names (looked up in the model's labels when used). Files:
    `.json` (an object), or a tab-separated table — two columns `category<TAB>class`, or the shipped
    four-column layout (`coco_id, coco_name, candidates, class`); `#` lines are comments.
    """
    if spec is None:
        return coco_class_table()
    if isinstance(spec, dict):
        return {str(k): v for k, v in spec.items()}
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"class_table {path} not found (a .json object or a category<TAB>class .tsv)")
    if path.suffix == ".json":
        import json

        table = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(table, dict):
            raise ValueError(f"class_table {path}: expected a JSON object {{category: class}}")
        return {str(k): v for k, v in table.items()}
    table = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) not in (2, 4):
            raise ValueError(f"class_table {path} line {n}: expected category<TAB>class (or the shipped 4 columns)")
        name, cls = (cols[0], cols[1]) if len(cols) == 2 else (cols[1], cols[3])
        table[name.strip()] = int(cls) if cls.strip().isdigit() else cls.strip()
    return table


def class_candidates(
    category: str, labels, rule: str = "category", table: dict[str, int | str] | None = None
) -> tuple[int, ...]:
    """The model's classes that count as `category`: `()` when the model has none.

    A class of the same name (case-insensitive, `_` as space) wins under either rule. Otherwise an
    ImageNet-1k model (1000 classes) gets, with `rule="category"`, the one class `table` gives for
    the category (default `coco_class_table()`; a class name is looked up in `labels`), and with
    `rule="best"` every class of `coco_category_table()`.
    """
    if rule not in TARGET_RULES:
        raise ValueError(f"targets must be one of {', '.join(TARGET_RULES)}, got {rule!r}")
    try:
        return (labels.index(category),)
    except (ValueError, KeyError):
        pass
    if len(labels) != 1000:
        return ()
    if rule == "best":
        return coco_category_table().get(category, ())
    cls = (coco_class_table() if table is None else table).get(category)
    if cls is None:
        return ()
    try:
        return (labels.index(cls),)
    except (ValueError, KeyError) as e:
        raise ValueError(f"class_table: {category!r} -> {cls!r} is not one of the model's classes: {e}") from None


# --------------------------------------------------------------------------- size factor


def resize_sample(image: np.ndarray, mask: np.ndarray, size: int | str) -> tuple[np.ndarray, np.ndarray]:
    """`size="original"`: unchanged; an int S: image bilinear to S×S, mask (as coverage) to S×S, ≥ 0.5."""
    if size == ORIGINAL:
        return image, mask
    s = int(size)
    if image.shape[:2] == (s, s):
        return image, mask
    img = np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(image[..., c], np.float32)).resize(
                    (s, s), Image.Resampling.BILINEAR
                )
            )
            for c in range(image.shape[-1])
        ],
        -1,
    )
    cover = np.asarray(Image.fromarray(mask.astype(np.float32)).resize((s, s), Image.Resampling.BILINEAR))
    return np.clip(img, 0, 1).astype(np.float32), cover >= 0.5


def load_samples(data: dict) -> list[Sample]:
    """The samples a config's `data` section names: `{"source": "shapes", "n", "size", "seed"}` or
    `{"source": "coco", "images", "annotations", "categories", "per_category", "min_area", "seed"}`."""
    data = dict(data)
    source = data.pop("source", "shapes")
    try:
        if source == "shapes":
            return shapes_benchmark(**data)
        if source == "coco":
            return coco_samples(**data)
    except TypeError as e:
        raise ValueError(f"data section for source {source!r}: {e}") from None
    raise ValueError(f"data source must be 'shapes' or 'coco', got {source!r}")
