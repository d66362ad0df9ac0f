"""Datasets for inspection and evaluation, as arrays: built-in ones by name, or image files.

`load_dataset("shapes", n=2000)`, `load_dataset("digits")`, `load_dataset("photos/")` or a glob all
give a `Dataset` of display-space images `(N, H, W, C)` in [0, 1] with labels (−1 when unknown)
and class names. Inspection code preprocesses them for the model (`preprocess.normalize`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DIGITS_SIZE = 28  # LeNet-5's MNIST-sized input (seed 001); scikit-learn's digits are 8x8


@dataclass(frozen=True)
class Dataset:
    """`images` `(N, H, W, C)` float32 in [0, 1]; `labels` `(N,)` int (−1 unknown); `names` per image."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    names: tuple[str, ...]
    masks: np.ndarray | None = None  # (N, H, W) bool, where the dataset has them (shapes)

    def __len__(self) -> int:
        return len(self.images)


def default_dataset(lm, n: int | None = None, seed: int = 0, data: str | None = None) -> Dataset:
    """`data` (or the model's own data: digits for LeNet-5, shapes otherwise) at the model's input size."""
    spec = data or ("digits" if lm.arch.startswith("lenet") else "shapes")
    return load_dataset(spec, n=n, size=lm.input_shape[0], seed=seed)


def load_dataset(
    spec: str, *, n: int | None = None, size: int | None = None, seed: int = 0, split: str = "all"
) -> Dataset:
    """A dataset by name (`shapes`, `digits`) or from image files (a folder, a glob, a list file).

    Args:
      spec: "shapes" (generated, with masks), "digits" (scikit-learn's 1 797 handwritten digits,
        upsampled to 28x28, one channel), or paths understood by `batch.discover_images`.
      n: at most this many images (shapes: exactly n).
      size: output side length (shapes default 64; files are resized to size x size, default 64).
      seed: shapes generation seed; digits train/test shuffle seed.
      split: digits only: "all", "train" (80 %) or "test" (20 %), a fixed seeded split.
    """
    if spec == "shapes":
        from . import shapes

        b = shapes.generate(n or 1000, size=size or 64, seed=seed)
        return Dataset(
            b.images,
            b.labels,
            tuple(shapes.CLASSES),
            tuple(f"shapes{seed}_{i:05d}" for i in range(len(b.labels))),
            b.masks,
        )
    if spec == "digits":
        return _digits(n, size or DIGITS_SIZE, seed, split)
    return _files(spec, n, size or 64)


def _digits(n, size, seed, split) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits dataset comes with scikit-learn: pip install 'jaxviz-cnn[inspect]'") from None

    d = load_digits()
    order = np.random.default_rng(seed).permutation(len(d.target))
    cut = int(0.8 * len(order))
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be all, train or test, got {split!r}")
    idx = {"all": order, "train": order[:cut], "test": order[cut:]}[split][:n]
    imgs = np.stack(
        [
            np.asarray(Image.fromarray((d.images[i] / 16.0).astype(np.float32)).resize((size, size), Image.BILINEAR))
            for i in idx
        ]
    )
    imgs = np.clip(imgs, 0, 1)[..., None].astype(np.float32)
    return Dataset(
        imgs, d.target[idx].astype(np.int32), tuple(str(i) for i in range(10)), tuple(f"digit{i:04d}" for i in idx)
    )


def _files(spec, n, size) -> Dataset:
    from ..batch import discover_images
    from .images import ImageError, load_image

    images, names = [], []
    for path in discover_images([spec]):
        if n is not None and len(images) >= n:
            break
        try:
            img = load_image(path)
        except ImageError:
            continue  # inspection over a folder skips unreadable files
        images.append(
            np.asarray(Image.fromarray((img * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR), np.float32)
            / 255.0
        )
        names.append(str(Path(path)))
    if not images:
        raise ValueError(f"no readable images in {spec!r}")
    return Dataset(np.stack(images), np.full(len(images), -1, np.int32), (), tuple(names))
