"""MNIST from the standard IDX files, for users who have them (nothing is downloaded).

    load_mnist("~/data/mnist", split="train")   # train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]
    load_mnist("~/data/mnist", split="test")    # t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]

IDX: a big-endian header (magic 2051 for images, 2049 for labels; then the count, and for images
rows and columns as uint32), then unsigned bytes. Files may be gzipped (`.gz`) or raw; both names
are tried (also the `train-images.idx3-ubyte` spelling some mirrors use). A wrong magic number,
a truncated file or images that do not match their labels raise a ValueError naming the file.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from .datasets import Dataset

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
CLASSES = tuple(str(i) for i in range(10))
_PREFIX = {"train": "train", "test": "t10k"}


def _check_length(path: Path, data: bytes, need: int, promised: str) -> None:
    if len(data) < need:
        raise ValueError(
            f"{path}: truncated: the header promises {promised} ({need} bytes) but the file has {len(data)} bytes"
        )
    if len(data) > need:
        raise ValueError(f"{path}: {len(data) - need} bytes after the {promised} the header promises")


def read_idx_images(path: str | Path) -> np.ndarray:
    """`(N, rows, cols)` uint8 from an IDX3 image file (gzipped or raw)."""
    path = Path(path)
    data = _read_bytes(path)
    magic = _header(path, data, 1)[0]
    if magic != IMAGES_MAGIC:
        raise ValueError(f"{path}: not an IDX image file (magic number {magic}, expected {IMAGES_MAGIC})")
    _, n, rows, cols = _header(path, data, 4)
    if rows == 0 or cols == 0:
        raise ValueError(f"{path}: image size {rows}x{cols} in the header")
    _check_length(path, data, 16 + n * rows * cols, f"{n} images of {rows}x{cols}")
    return np.frombuffer(data, np.uint8, n * rows * cols, 16).reshape(n, rows, cols)


def read_idx_labels(path: str | Path) -> np.ndarray:
    """`(N,)` uint8 from an IDX1 label file (gzipped or raw)."""
    path = Path(path)
    data = _read_bytes(path)
    magic = _header(path, data, 1)[0]
    if magic != LABELS_MAGIC:
        raise ValueError(f"{path}: not an IDX label file (magic number {magic}, expected {LABELS_MAGIC})")
    _, n = _header(path, data, 2)
    _check_length(path, data, 8 + n, f"{n} labels")
    labels = np.frombuffer(data, np.uint8, n, 8)
    if n and labels.max() > 9:
        raise ValueError(f"{path}: label {int(labels.max())} is not a digit 0-9")
    return labels


def load_mnist(folder: str | Path, split: str = "train") -> Dataset:
    """MNIST `split` ("train": 60 000, "test": 10 000) from the IDX files in `folder`.

    Returns a `Dataset` of `(N, 28, 28, 1)` float32 images in [0, 1] (white digit on black),
    int32 labels and classes "0".."9".
    """
    if split not in _PREFIX:
        raise ValueError(f"split must be train or test, got {split!r}")
    folder = Path(folder).expanduser()
    images_path = find_idx(folder, f"{_PREFIX[split]}-images", "idx3-ubyte")
    labels_path = find_idx(folder, f"{_PREFIX[split]}-labels", "idx1-ubyte")
    images, labels = read_idx_images(images_path), read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise ValueError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, MNIST's are 28x28")
    x = (images.astype(np.float32) / 255.0)[..., None]
    return Dataset(x, labels.astype(np.int32), CLASSES, tuple(f"mnist_{split}{i:05d}" for i in range(len(labels))))


def find_idx(folder: Path, stem: str, kind: str) -> Path:
    """The file `stem-kind` or `stem.kind`, gzipped or not, in `folder`."""
    names = [f"{stem}-{kind}", f"{stem}.{kind}"]
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"no {names[0]} (or {names[0]}.gz) in {folder}; MNIST's IDX files are "
        f"train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        f"t10k-labels-idx1-ubyte (gzipped or not)"
    )


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"  # gzip's magic, whatever the file is called
    if not gz:
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, OSError, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: truncated or corrupt gzip file ({e})") from e


def _header(path: Path, data: bytes, words: int) -> tuple[int, ...]:
    if len(data) < 4 * words:
        raise ValueError(f"{path}: truncated: {len(data)} bytes, too short for an IDX header")
    return struct.unpack(f">{words}I", data[: 4 * words])
