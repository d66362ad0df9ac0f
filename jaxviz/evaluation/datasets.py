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
ImageNet-1k model, the ImageNet classes listed for the COCO category in `coco_to_imagenet.tsv`
(seed 002 evaluated ImageNet models on COCO objects). The experiment's target is the candidate
the model scores highest (see `jaxviz.evaluation.experiment`).

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

__all__ = ["Sample", "class_candidates", "coco_category_table", "coco_mask", "coco_samples",
           "load_samples", "resize_sample", "shapes_benchmark"]

ORIGINAL = "original"


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

    return [Sample(f"shapes-s{seed}-{size}px-{i:05d}", f"shapes_{seed}_{i:05d}.png",
                   shapes.CLASSES[int(data.labels[i])], loader(i), (size, size)) for i in range(n)]


# --------------------------------------------------------------------------- COCO


def _coco_api():
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise ImportError("reading COCO annotations needs pycocotools: pip install 'jaxviz-cnn[coco]' "
                          "(or pip install pycocotools)") from None
    return COCO


@functools.lru_cache(maxsize=4)
def _load_coco(path: str, mtime: float):
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


def coco_samples(images: str | os.PathLike[str], annotations: str | os.PathLike[str], *,
                 categories: Sequence[str] | None = None, per_category: int | None = None,
                 min_area: float = 0.0, seed: int = 0) -> list[Sample]:
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
    coco = _load_coco(str(annotations.resolve()), annotations.stat().st_mtime)
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
            samples.append(Sample(f"coco-{image_id}-{cid}", info["file_name"], name,
                                  _coco_loader(coco, images, image_id, cid),
                                  (int(info["height"]), int(info["width"]))))
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
            raise ValueError(f"{path}: image is {img.shape[1]}x{img.shape[0]} but the annotation says "
                             f"{mask.shape[1]}x{mask.shape[0]}")
        return img, mask

    return load


# --------------------------------------------------------------------------- classes


@functools.lru_cache(maxsize=1)
def coco_category_table() -> dict[str, tuple[int, ...]]:
    """COCO category name → ImageNet-1k class indices that depict it (`coco_to_imagenet.tsv`)."""
    text = (resources.files("jaxviz.evaluation") / "coco_to_imagenet.tsv").read_text(encoding="utf-8")
    table = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        _, name, spec = line.split("\t")
        table[name] = tuple(_parse_indices(spec))
    return table


def _parse_indices(spec: str) -> list[int]:
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def class_candidates(category: str, labels) -> tuple[int, ...]:
    """The model's classes that count as `category`: `()` when the model has none.

    A class of the same name (case-insensitive, `_` as space) wins; otherwise an ImageNet-1k
    model (1000 classes) gets the `coco_category_table` entry.
    """
    try:
        return (labels.index(category),)
    except (ValueError, KeyError):
        pass
    if len(labels) == 1000:
        return coco_category_table().get(category, ())
    return ()


# --------------------------------------------------------------------------- size factor


def resize_sample(image: np.ndarray, mask: np.ndarray, size: int | str) -> tuple[np.ndarray, np.ndarray]:
    """`size="original"`: unchanged; an int S: image bilinear to S×S, mask (as coverage) to S×S, ≥ 0.5."""
    if size == ORIGINAL:
        return image, mask
    s = int(size)
    if image.shape[:2] == (s, s):
        return image, mask
    img = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], np.float32))
                               .resize((s, s), Image.Resampling.BILINEAR)) for c in range(image.shape[-1])], -1)
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
