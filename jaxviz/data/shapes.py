"""Synthetic "shapes" dataset: one labelled shape on a cluttered background, with its mask.

Used to train the embedded default CNN (`jaxviz.models.shapesnet`) and to score attribution
maps against ground truth (energy inside the mask, pointing game).

Each image holds one *target* shape of class `label`, drawn in a flat colour that contrasts
with the background under it, plus 0-2 smaller *distractor* shapes of other classes. Every
shape is randomly rotated and mirrored; the target's circumscribed diameter is 30-60% of the
image side and it lies fully inside the image. Design:

- The target is always the largest shape: a distractor's circumscribed diameter is 30-50% of
  the target's, so "which shape is labelled" is never ambiguous.
- Distractors never overlap the target: their bounding boxes keep at least `_GAP` pixels from
  the target's bounding box, so the target is fully visible and `mask` is its whole
  silhouette. Distractors may overlap each other. When no free place is found a distractor is
  dropped, so `distractors=(lo, hi)` is "up to hi".
- `mask` is the target's anti-aliased coverage > 0.5 at the final resolution, i.e. exactly the
  alpha used to composite it. `box` is the tight box of `mask`: `(x0, y0, x1, y1)` with x1, y1
  exclusive, so `mask[y0:y1, x0:x1]` holds every mask pixel.
- Image i depends only on `(seed, i)`, so `generate(n)` is a prefix of `generate(m > n)`.
  Labels are balanced: each block of `num_classes` consecutive images is a permutation of the
  classes.

Shapes are drawn as polygons with Pillow on a 4x supersampled canvas, then box-downsampled.

Run `python -m jaxviz.data.shapes --out /tmp/shapes.png --n 40` for a grid of examples with
the masks outlined.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from ..atomic import atomic_path, write_text

CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "heart",
    "crescent",
    "arrow",
    "l_shape",
)
num_classes: int = len(CLASSES)

_SUPERSAMPLE = 4
_TARGET_DIAMETER = (0.30, 0.60)  # of the image side; circumscribed circle of the shape
_DISTRACTOR_SCALE = (0.30, 0.50)  # of the target's diameter: the target stays the largest
_GAP = 2.0  # pixels between target box and any distractor box
_PLACEMENT_TRIES = 20
_TARGET_CONTRAST = 0.30  # min RGB distance to every background pixel under it
_DISTRACTOR_CONTRAST = 0.20
_COLOR_TRIES = 40
_NOISE_STD = 0.012
# Separate seed-sequence streams, so label permutations never share entropy with pixels.
_STREAM_LABELS, _STREAM_IMAGE = 0, 1


class ShapesBatch(NamedTuple):
    """A batch of shapes images.

    images: (N, S, S, 3) float32 in [0, 1].
    labels: (N,) int32, index into `CLASSES`.
    masks:  (N, S, S) bool, the target's pixels.
    boxes:  (N, 4) int32, (x0, y0, x1, y1) tight box of `masks`, x1/y1 exclusive.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray


class ShapesExample(NamedTuple):
    """One image with everything known about how it was drawn.

    image: (S, S, 3) float32 in [0, 1].   label: int.
    mask: (S, S) bool, target pixels.       box: (4,) int32, as in `ShapesBatch`.
    color: (3,) float32, the target's flat RGB colour (before pixel noise).
    distractor_mask: (S, S) bool, pixels any distractor touches (coverage > 0).
    """

    image: np.ndarray
    label: int
    mask: np.ndarray
    box: np.ndarray
    color: np.ndarray
    distractor_mask: np.ndarray


def label_of(index: int, *, seed: int = 0) -> int:
    """Class index of image `index`: block-wise permutation, balanced and prefix-stable."""
    block, offset = divmod(index, num_classes)
    perm = np.random.default_rng([seed, _STREAM_LABELS, block]).permutation(num_classes)
    return int(perm[offset])


def render(
    index: int, *, seed: int = 0, size: int = 64, distractors: tuple[int, int] = (0, 2), clutter: bool = True
) -> ShapesExample:
    """Draw image `index` of the dataset with this `seed`; a pure function of its arguments.

    Args:
      index, seed: non-negative ints; the image depends on nothing else (besides the options).
      size: side S of the square image in pixels.
      distractors: (lo, hi) inclusive range for the number of distractors attempted.
      clutter: textured background (gradient, low-frequency noise, stripes, blotches) if True,
        else a flat random colour.
    """
    rng = np.random.default_rng([seed, _STREAM_IMAGE, index])
    label = label_of(index, seed=seed)
    image = _background(rng, size, clutter)

    diameter = rng.uniform(*_TARGET_DIAMETER) * size
    target_polys, target_box = _place(rng, CLASSES[label], diameter, size, avoid=None)
    target_alpha = _rasterize(target_polys, size)
    color = _pick_color(rng, image[target_alpha > 0], _TARGET_CONTRAST)

    distractor_alpha = np.zeros((size, size), np.float32)
    count = int(rng.integers(distractors[0], distractors[1] + 1))
    others = [c for c in range(num_classes) if c != label]
    for _ in range(count):
        name = CLASSES[others[int(rng.integers(len(others)))]]
        d_diameter = rng.uniform(*_DISTRACTOR_SCALE) * diameter
        placed = _place(rng, name, d_diameter, size, avoid=target_box)
        if placed is None:
            continue
        alpha = _rasterize(placed[0], size)
        d_color = _pick_color(rng, image[alpha > 0], _DISTRACTOR_CONTRAST)
        image = _composite(image, alpha, d_color)
        distractor_alpha = np.maximum(distractor_alpha, alpha)

    image = _composite(image, target_alpha, color)
    image = image + rng.normal(0.0, _NOISE_STD, image.shape).astype(np.float32)
    image = np.clip(image, 0.0, 1.0)

    mask = target_alpha > 0.5
    ys, xs = np.nonzero(mask)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.int32)
    return ShapesExample(image, label, mask, box, color, distractor_alpha > 0)


def generate(
    n: int, *, size: int = 64, seed: int = 0, distractors: tuple[int, int] = (0, 2), clutter: bool = True
) -> ShapesBatch:
    """Generate `n` images; image i is `render(i, seed=seed, ...)`, so batches are prefix-stable.

    Returns a `ShapesBatch` with images (n, size, size, 3) float32 in [0, 1], labels (n,) int32,
    masks (n, size, size) bool and boxes (n, 4) int32.
    """
    images = np.empty((n, size, size, 3), np.float32)
    labels = np.empty((n,), np.int32)
    masks = np.empty((n, size, size), bool)
    boxes = np.empty((n, 4), np.int32)
    for i in range(n):
        ex = render(i, seed=seed, size=size, distractors=distractors, clutter=clutter)
        images[i], labels[i], masks[i], boxes[i] = ex.image, ex.label, ex.mask, ex.box
    return ShapesBatch(images, labels, masks, boxes)


# --- shape outlines ---------------------------------------------------------------------------


def _circle(radius: float = 1.0, center: tuple[float, float] = (0.0, 0.0), k: int = 64):
    t = np.linspace(0.0, 2.0 * np.pi, k, endpoint=False)
    return np.stack([center[0] + radius * np.cos(t), center[1] + radius * np.sin(t)], 1)


def _regular(k: int, radius: float = 1.0):
    return _circle(radius, k=k)


def _star(points: int = 5, inner: float = 0.42):
    t = np.pi / 2 + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _heart(k: int = 96):
    t = np.linspace(0.0, 2.0 * np.pi, k, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], 1)
    return pts - (pts.max(0) + pts.min(0)) / 2


@functools.cache
def _outline(name: str) -> tuple[tuple[np.ndarray, int], ...]:
    """(polygon (K, 2), fill) pairs drawn in order, fill 1 = solid, 0 = hole; radius 1 at most."""
    w = 0.3  # half-width of cross arms and L strokes
    if name == "circle":
        parts = [(_circle(), 1)]
    elif name == "square":
        parts = [(_regular(4), 1)]
    elif name == "triangle":
        parts = [(_regular(3), 1)]
    elif name == "star":
        parts = [(_star(), 1)]
    elif name == "cross":
        a = 1.0
        parts = [
            (
                np.array(
                    [
                        [-w, -a],
                        [w, -a],
                        [w, -w],
                        [a, -w],
                        [a, w],
                        [w, w],
                        [w, a],
                        [-w, a],
                        [-w, w],
                        [-a, w],
                        [-a, -w],
                        [-w, -w],
                    ]
                ),
                1,
            )
        ]
    elif name == "ring":
        parts = [(_circle(), 1), (_circle(0.55), 0)]
    elif name == "heart":
        parts = [(_heart(), 1)]
    elif name == "crescent":
        parts = [(_circle(), 1), (_circle(0.82, center=(0.42, 0.0)), 0)]
    elif name == "arrow":
        s, h = 0.2, 0.62  # shaft half-width, head half-width
        parts = [(np.array([[-1.0, -s], [0.05, -s], [0.05, -h], [1.0, 0.0], [0.05, h], [0.05, s], [-1.0, s]]), 1)]
    elif name == "l_shape":
        # Long thin arms: a chunky L looks like an arrow head at small sizes.
        t, a, b = 0.45, 1.6, 1.2
        parts = [(np.array([[0, 0], [t, 0], [t, a - t], [b, a - t], [b, a], [0, a]]), 1)]
    else:
        raise ValueError(f"unknown shape {name!r}")
    solid = np.concatenate([p for p, fill in parts if fill])
    center = (solid.max(0) + solid.min(0)) / 2 if name in ("l_shape", "heart") else 0.0
    radius = np.linalg.norm(solid - center, axis=1).max()
    return tuple(((p - center) / radius, fill) for p, fill in parts)


# --- drawing ----------------------------------------------------------------------------------


def _place(rng: np.random.Generator, name: str, diameter: float, size: int, avoid: np.ndarray | None):
    """Rotate, scale and translate a shape fully inside the image.

    Returns (polygons in pixel coordinates, continuous box (4,) x0 y0 x1 y1), or None when
    `avoid` is given and no position keeps `_GAP` pixels from that box.
    """
    theta = rng.uniform(0.0, 2.0 * np.pi)
    flip = rng.integers(2) * 2 - 1  # mirror images belong to the same class
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    rot = rot * np.array([1.0, flip])
    parts = [(p @ rot.T * (diameter / 2), fill) for p, fill in _outline(name)]
    solid = np.concatenate([p for p, fill in parts if fill])
    lo, hi = solid.min(0), solid.max(0)
    margin = 1.0
    low, high = margin - lo, size - margin - hi
    for _ in range(1 if avoid is None else _PLACEMENT_TRIES):
        center = rng.uniform(low, np.maximum(low, high))
        box = np.concatenate([lo + center, hi + center])
        if avoid is None or _separated(box, avoid, _GAP):
            return [(p + center, fill) for p, fill in parts], box
    return None


def _separated(a: np.ndarray, b: np.ndarray, gap: float) -> bool:
    return bool(a[0] >= b[2] + gap or b[0] >= a[2] + gap or a[1] >= b[3] + gap or b[1] >= a[3] + gap)


def _rasterize(parts, size: int) -> np.ndarray:
    """Anti-aliased coverage (S, S) float32 in [0, 1] of polygons drawn in order."""
    big = size * _SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    for poly, fill in parts:
        draw.polygon([tuple(xy) for xy in (poly * _SUPERSAMPLE).tolist()], fill=255 * fill)
    small = canvas.resize((size, size), Image.BOX)
    return np.asarray(small, np.float32) / 255.0


def _composite(image: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return image * (1.0 - a) + color.astype(np.float32) * a


def _pick_color(rng: np.random.Generator, under: np.ndarray, min_distance: float) -> np.ndarray:
    """A random RGB colour at least `min_distance` from every pixel in `under` (P, 3).

    Falls back to the best of `_COLOR_TRIES` candidates (in practice always close).
    """
    candidates = rng.uniform(0.0, 1.0, (_COLOR_TRIES, 3)).astype(np.float32)
    if under.size == 0:
        return candidates[0]
    # |c - u|^2 = |c|^2 - 2 c.u + |u|^2, as one matrix product instead of a (T, P, 3) array.
    dist2 = (np.square(candidates).sum(1)[:, None] - 2.0 * candidates @ under.T + np.square(under).sum(1)[None, :]).min(
        1
    )
    ok = np.nonzero(dist2 >= min_distance**2)[0]
    return candidates[ok[0] if ok.size else int(np.argmax(dist2))]


@functools.cache
def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1], each (S, S)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(c, c)  # x, y


@functools.cache
def _upsampler(size: int, k: int) -> np.ndarray:
    """(S, k) linear-interpolation matrix from a k-point grid to S pixels."""
    pos = np.linspace(0.0, k - 1.0, size)
    lo = np.clip(np.floor(pos).astype(int), 0, k - 2)
    frac = pos - lo
    m = np.zeros((size, k), np.float32)
    m[np.arange(size), lo] = 1.0 - frac
    m[np.arange(size), lo + 1] = frac
    return m


def _background(rng: np.random.Generator, size: int, clutter: bool) -> np.ndarray:
    """(S, S, 3) float32 background: flat colour, or gradient + noise + stripes + blotches."""
    base = rng.uniform(0.1, 0.9, 3).astype(np.float32)
    if not clutter:
        return np.broadcast_to(base, (size, size, 3)).copy()
    x, y = _coords(size)
    # Smooth gradient towards a second colour along a random direction.
    phi = rng.uniform(0.0, 2.0 * np.pi)
    t = (np.cos(phi) * (x - 0.5) + np.sin(phi) * (y - 0.5)) + 0.5
    other = rng.uniform(0.1, 0.9, 3).astype(np.float32)
    img = base + (other - base) * (rng.uniform(0.2, 0.6) * t)[..., None]
    # Low-frequency colour noise: a coarse random grid, bilinearly upsampled.
    k = int(rng.integers(3, 7))
    grid = rng.normal(0.0, rng.uniform(0.04, 0.10), (k, k, 3)).astype(np.float32)
    up = _upsampler(size, k)
    img = img + (up @ grid.transpose(2, 0, 1) @ up.T).transpose(1, 2, 0)
    # Stripes: a sinusoid of random frequency, orientation and colour.
    if rng.random() < 0.5:
        psi = rng.uniform(0.0, np.pi)
        freq = rng.uniform(2.0, 8.0)
        wave = np.sin(2 * np.pi * freq * (np.cos(psi) * x + np.sin(psi) * y) + rng.uniform(0, 6.3))
        img = img + wave[..., None] * rng.uniform(-0.1, 0.1, 3).astype(np.float32)
    # Soft blotches: Gaussian blobs of random colour.
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = rng.uniform(0.0, 1.0, 2)
        sigma = rng.uniform(0.05, 0.2)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
        img = img + blob[..., None] * rng.uniform(-0.25, 0.25, 3).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def image_path(folder: str | Path, index: int) -> Path:
    """Where `write_folder` puts image `index`: 1000 files per sub-folder (`000/000123.png`)."""
    return Path(folder) / f"{index // 1000:03d}" / f"{index:06d}.png"


def write_folder(
    folder: str | Path, n: int, *, size: int = 64, seed: int = 0, workers: int | None = None, progress: bool = True
) -> Path:
    """Write images `0..n-1` as PNG files under `folder` (see `image_path`) and `labels.csv`.

    For jobs over many files (the 100 000-image scale test). Resumable: files already there are
    kept; each file is written atomically, so a killed run never leaves half an image.
    Returns `folder`.
    """
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    folder = Path(folder)
    todo = [i for i in range(n) if not image_path(folder, i).exists()]
    chunks = [todo[k : k + 500] for k in range(0, len(todo), 500)]
    # "spawn": forking a process that already runs JAX's threads can deadlock the child.
    with (
        ProcessPoolExecutor(workers or os.cpu_count(), mp_context=multiprocessing.get_context("spawn")) as pool,
        tqdm(total=len(todo), unit="img", desc="shapes", disable=not progress) as bar,
    ):
        for done in pool.map(_write_chunk, [(folder, c, size, seed) for c in chunks]):
            bar.update(done)
    lines = ["file,label,class"] + [
        f"{image_path(folder, i).relative_to(folder)},{label_of(i, seed=seed)},{CLASSES[label_of(i, seed=seed)]}"
        for i in range(n)
    ]
    write_text(folder / "labels.csv", "\n".join(lines) + "\n")
    return folder


def write_array(
    path: str | Path, n: int, *, size: int = 64, seed: int = 0, workers: int | None = None, progress: bool = True
) -> np.ndarray:
    """Images `0..n-1` as one uint8 `.npy` array `(n, size, size, 3)` at `path`, memory-mapped read-only.

    For datasets that do not fit in memory as float32 (50 000 images at 64 px are 2.4 GB as float32,
    0.6 GB here): rendered in chunks by `workers` processes straight into a memmap written under a
    temporary name and renamed when complete. An existing file of the right shape is reused.
    Labels are `label_of(i, seed=seed)` (no need to store them).
    """
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    path, shape = Path(path), (n, size, size, 3)
    if path.exists():
        try:
            done = np.load(path, mmap_mode="r")
            if done.shape == shape and done.dtype == np.uint8:
                return done
        except (ValueError, OSError):
            pass  # unreadable: render it again
    starts = list(range(0, n, 500))
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        with (
            ProcessPoolExecutor(workers or os.cpu_count(), mp_context=multiprocessing.get_context("spawn")) as pool,
            tqdm(total=n, unit="img", desc="shapes", disable=not progress) as bar,
        ):
            for start, chunk in zip(
                starts, pool.map(_render_chunk, [(s, min(s + 500, n), size, seed) for s in starts])
            ):
                out[start : start + len(chunk)] = chunk
                bar.update(len(chunk))
        out.flush()
        del out
    return np.load(path, mmap_mode="r")


def _render_chunk(job) -> np.ndarray:
    start, stop, size, seed = job
    return np.stack([(render(i, seed=seed, size=size).image * 255 + 0.5).astype(np.uint8) for i in range(start, stop)])


def _write_chunk(job) -> int:
    folder, indices, size, seed = job
    for i in indices:
        img = (render(i, seed=seed, size=size).image * 255 + 0.5).astype(np.uint8)
        with atomic_path(image_path(folder, i)) as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
    return len(indices)


# --- command line: a grid of examples for a person to look at ---------------------------------


def _save_grid(batch: ShapesBatch, path: str, cols: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(batch.labels)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:n]):
        ax.imshow(batch.images[i], interpolation="nearest")
        ax.contour(batch.masks[i].astype(float), levels=[0.5], colors="white", linewidths=0.8)
        ax.contour(batch.masks[i].astype(float), levels=[0.5], colors="black", linewidths=0.4, linestyles="dashed")
        ax.set_title(CLASSES[batch.labels[i]], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="shapes.png", help="PNG file to write")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--no-clutter", action="store_true")
    args = parser.parse_args(argv)
    batch = generate(args.n, size=args.size, seed=args.seed, clutter=not args.no_clutter)
    _save_grid(batch, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    _main()
