"""Batch attribution over many image files: discover, name outputs, run, resume.

The runner behind `jaxviz attribute`. Users 1 of the spec: thousands to millions of images, a
bad file never kills a run, every output is written atomically, and a rerun of the same
command picks up where a killed run stopped (and does nothing at all when it had finished).

A run directory `out/` holds:

    out/<method>/<stem>.npy   raw map, float32: (H, W, C) gradient methods, (H, W) CAM family
    out/<method>/<stem>.png   its view: CAMs as a heatmap over the input, gradients grayscale, LRP
                              relevance red (+) / blue (−)
    out/results.jsonl         one JSON line per (image, method) done; the resume ledger
    out/errors.jsonl          one JSON line per image (or image and method) that failed
    out/summary.json          the `RunSummary` of the latest run

`<stem>` is the image's path relative to the common folder of all inputs, without suffix,
every component made safe (`a/cat.jpg` → `a/cat`); see `output_stem` and `assign_stems`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import functools
import glob
import hashlib
import inspect
import json
import os
import re
import stat
import threading
import time
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from tqdm import tqdm

from . import plot
from .atomic import save_npy, write_text
from .data.images import load_image, save_image
from .data.preprocess import input_bounds, normalize, resize_and_crop
from .ledger import ERRORS, ERRORS_GLOB, RESULTS, RESULTS_GLOB, cut_torn_line
from .ledger import append as append_records
from .ledger import read as read_jsonl
from .memory import activation_bytes, default_budget
from .memory import rows as memory_rows
from .run_identity import (
    SETTINGS,
    describe_difference,
    digest,
    method_identity,
    read_settings,
    run_identity,
    write_settings,
)
from .runlock import run_lock
from .store import STORE, MapStore, StoreFormat

__all__ = [
    "IMAGE_SUFFIXES",
    "Engine",
    "RunSummary",
    "assign_stems",
    "bind_methods",
    "class_fields",
    "common_root",
    "discover_images",
    "display_geometry",
    "local_engine",
    "output_stem",
    "read_jsonl",
    "resize_image",
    "run_attribution",
]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
"""Suffixes (compared lower-case) picked up from directories and globs."""

SUMMARY, CONFIG = "summary.json", "config.json"
OUTPUTS = frozenset({"npy", "png", "store"})

_GLOB_CHARS = re.compile(r"[*?\[]")
_UNSAFE = re.compile(r"[^\w\-]")  # dots too: a folder named `x.png` could shadow a file
_MAX_COMPONENT = 100
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
)


# --------------------------------------------------------------------------- discovery


def discover_images(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    exclude: Sequence[str | os.PathLike[str]] = (),
    log: Callable[[str], Any] | None = None,
) -> list[Path]:
    """Image files named by `inputs`, in order, each once.

    Each input is one of:
      - a file path (taken as is, whatever its suffix);
      - a directory: searched recursively for `IMAGE_SUFFIXES` (case-insensitive), sorted,
        hidden files and folders (name starting with `.`) skipped;
      - a glob (`photos/*.jpg`, `data/**/*.png` with `**` recursive): matching image files,
        and matching directories searched as above; a glob that matches nothing adds nothing;
      - a list file, `@list.txt` or any existing `.txt` file: one input per line (a file,
        directory, glob or further list), blank lines and lines starting with `#` skipped,
        relative paths relative to the list file's folder.

    Paths are returned as given (not resolved); duplicates (the same resolved file) are dropped,
    keeping the first. Only regular files are images: a FIFO, socket, device, broken link or
    symlink loop found in a folder or glob is skipped and reported to `log`. Folders in `exclude`
    (the run's own output folder) and folders that hold a jaxviz run are not searched, so a run
    never reads its own maps back as inputs.

    Raises:
      ValueError: an input or list entry names a path that does not exist (the message names
        it), a list file includes itself, or nothing was found at all.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not inputs:
        raise ValueError("no inputs given: pass image files, folders, globs or @list.txt files")
    found: list[Path] = []
    walk = _Walk(tuple(Path(e).resolve() for e in exclude), log or (lambda _: None))
    for spec in inputs:
        found.extend(_expand(os.fspath(spec), base=None, lists=(), walk=walk))
    images = _dedupe(found, walk.skip)
    if not images:
        searched = ", ".join(repr(os.fspath(s)) for s in inputs)
        suffixes = " ".join(sorted(IMAGE_SUFFIXES))
        raise ValueError(f"no images found in {searched} (looked for files ending in {suffixes})")
    return images


@dataclasses.dataclass
class _Walk:
    """What directory walks leave out: excluded folders; `log` hears about skipped entries."""

    exclude: tuple[Path, ...]
    log: Callable[[str], Any]

    def skip(self, path: Path, reason: str) -> None:
        self.log(f"skipped {path}: {reason}")

    def searched(self, folder: Path) -> bool:
        if (folder / ".jaxviz.lock").exists() or all((folder / n).is_file() for n in (RESULTS, SUMMARY)):
            return False  # a jaxviz run folder
        return not self.exclude or folder.resolve() not in self.exclude


def _expand(spec: str, base: Path | None, lists: tuple[Path, ...], where: str = "", *, walk: _Walk) -> list[Path]:
    """One input (see `discover_images`) → image paths; `base` is a list file's folder."""
    is_list = spec.startswith("@")
    raw = spec[1:] if is_list else spec
    path = Path(os.path.expanduser(raw))
    if base is not None and not path.is_absolute():
        path = base / path
    if is_list or (path.is_file() and path.suffix.lower() == ".txt"):
        if not path.is_file():
            raise ValueError(f"{where}{raw}: list file not found")
        return _read_list_file(path, lists, walk)
    if path.is_dir():
        return _walk_directory(path, walk)
    if path.is_file():
        return [path]
    if os.path.lexists(path) and not _GLOB_CHARS.search(raw):
        raise ValueError(f"{where}{raw}: {_not_regular(path)}, not an image file")
    if _GLOB_CHARS.search(raw):
        return _expand_glob(str(path), walk)
    raise ValueError(f"{where}{raw}: no such file or directory")


def _not_regular(path: Path) -> str:
    """Why `path`, which exists as a name, is not a regular file."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        return "a symlink loop" if e.errno == errno.ELOOP else "a broken symbolic link"
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a device", stat.S_ISBLK: "a device"}
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def _read_list_file(path: Path, lists: tuple[Path, ...], walk: _Walk) -> list[Path]:
    key = path.resolve()
    if key in lists:
        raise ValueError(f"{path}: list file includes itself (via {' → '.join(map(str, lists))})")
    found = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            entry = line.strip()
            if entry and not entry.startswith("#"):
                found.extend(_expand(entry, path.parent, lists + (key,), where=f"{path}:{lineno}: ", walk=walk))
    return found


def _walk_directory(root: Path, walk: _Walk) -> list[Path]:
    found = []
    if not walk.searched(root):
        return found
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and walk.searched(Path(folder, d))]
        found.extend(_regular(Path(folder) / f, walk) for f in files if _is_image_name(f))
    return sorted(p for p in found if p is not None)


def _regular(path: Path, walk: _Walk) -> Path | None:
    """`path` if it is a regular file (or a link to one); else None, reported."""
    if path.is_file():
        return path
    walk.skip(path, f"{_not_regular(path)}, not an image file")
    return None


def _expand_glob(pattern: str, walk: _Walk) -> list[Path]:
    found = []
    for match in sorted(glob.glob(pattern, recursive=True)):
        p = Path(match)
        if p.is_dir():
            found.extend(_walk_directory(p, walk))
        elif _is_image_name(p.name) and _regular(p, walk) is not None:
            found.append(p)
    return found


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def _dedupe(paths: Iterable[Path], skip: Callable[[Path, str], None] | None = None) -> list[Path]:
    seen, kept = set(), []
    for p in paths:
        try:
            key = p.resolve()
        except (RuntimeError, OSError) as e:  # a symlink loop in a parent folder
            if skip is None:
                raise ValueError(f"{p}: {e}") from None
            skip(p, str(e))
            continue
        if key not in seen:
            seen.add(key)
            kept.append(p)
    return kept


# --------------------------------------------------------------------------- output names


def common_root(paths: Sequence[str | os.PathLike[str]]) -> Path | None:
    """The deepest folder holding every path (absolute, `..` resolved lexically); None if none
    (paths on different drives)."""
    if not paths:
        return None
    try:
        return Path(os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths]))
    except ValueError:
        return None


def output_stem(path: str | os.PathLike[str], roots: str | os.PathLike[str] | Sequence | None) -> str:
    """A safe relative output name (no suffix, `/`-separated) for one input image.

    The name is the path relative to the deepest of `roots` that holds it, without the file
    suffix (`a/cat.jpg` → `a/cat`), each component sanitized: characters other than letters,
    digits, `_` and `-` become `_` (so no `..`, no `/`, no drive colons, no dots at all),
    Windows device names get a `_` appended, and over-long components are shortened with a
    hash. A path under none of the roots gets a flat `name-<hash>` (hash of its absolute path).

    This names one path; `assign_stems` makes the names of many paths unique.
    """
    full = Path(os.path.abspath(path))
    if roots is None:
        candidates = []
    elif isinstance(roots, (str, os.PathLike)):
        candidates = [roots]
    else:
        candidates = list(roots)
    bases = sorted((Path(os.path.abspath(r)) for r in candidates), key=lambda r: len(r.parts), reverse=True)
    for base in bases:
        try:
            rel = full.relative_to(base)
        except ValueError:
            continue
        if rel.parts:
            parts = [*rel.parts[:-1], _strip_suffix(rel.parts[-1])]
            return "/".join(_safe_component(p) for p in parts)
    return _flat_stem(full)


def assign_stems(
    paths: Sequence[str | os.PathLike[str]],
    roots,
    taken: Mapping[str, str] | None = None,
) -> list[str]:
    """`output_stem` for each path, made unique: two different files never share a stem.

    Args:
      paths: image paths, in order; the first of a colliding group keeps the plain name, later
        ones get `-<hash>` of their resolved path (`cat.jpg`, `cat.png` → `cat`, `cat-1a2b3c4d`).
      roots: as for `output_stem`.
      taken: stems already in use (e.g. by earlier runs), mapped to the resolved path owning
        them; a path that owns its stem keeps it. Compared case-insensitively, since two stems
        differing only in case are one file on macOS and Windows.

    Returns:
      one stem per path, in order.
    """
    owners = {_stem_key(s): owner for s, owner in (taken or {}).items()}
    stems = []
    for p in paths:
        resolved = str(Path(p).resolve())
        stem = output_stem(p, roots)
        n = 8
        while owners.get(_stem_key(stem), resolved) != resolved:
            stem = f"{output_stem(p, roots)}-{_short_hash(resolved, n)}"
            n += 4  # only for adversarial names like `cat-1a2b3c4d.jpg`
        owners[_stem_key(stem)] = resolved
        stems.append(stem)
    return stems


def _strip_suffix(name: str) -> str:
    stem, suffix = os.path.splitext(name)
    return stem if stem else name


def _safe_component(part: str) -> str:
    text = _UNSAFE.sub("_", unicodedata.normalize("NFC", part)) or "_"
    if text.upper() in _WINDOWS_RESERVED:
        text += "_"
    if len(text) > _MAX_COMPONENT:
        text = f"{text[: _MAX_COMPONENT - 9]}-{_short_hash(part)}"
    return text


def _flat_stem(path: Path) -> str:
    name = _safe_component(_strip_suffix(path.name))[: _MAX_COMPONENT - 9]
    return f"{name}-{_short_hash(str(path.resolve()))}"


def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:n]


def _stem_key(stem: str) -> str:
    return stem.casefold()


def _inside(out: Path, candidate: Path) -> bool:
    """Whether `candidate`, with every symlink resolved, lies under the resolved `out`."""
    return candidate.resolve().is_relative_to(out.resolve())


# --------------------------------------------------------------------------- preprocessing


ORIGINAL = "original"
BUCKET, MAX_SIDE = 32, 1024  # size="original": sides rounded to a multiple of BUCKET, the longer one at most MAX_SIDE


def original_hw(h: int, w: int) -> tuple[int, int]:
    """The input size used for an `(h, w)` image with `size="original"`: its own size, scaled down to fit
    `MAX_SIDE` if larger, each side rounded to a multiple of `BUCKET` (at least one). Rounding makes
    images of similar sizes share one compiled shape (seed 002 kept COCO's original sizes)."""
    scale = min(1.0, MAX_SIDE / max(h, w))
    return tuple(max(BUCKET, int(round(side * scale / BUCKET)) * BUCKET) for side in (h, w))


def display_and_input(img: np.ndarray, lm, size: int | tuple[int, int] | str | None) -> tuple[np.ndarray, np.ndarray]:
    """A loaded image → (display `(H, W, 3)` in [0, 1], model input `(H, W, C)` float32).

    `size="original"` keeps each image's own size (see `original_hw`), for every preset. Otherwise
    presets with a crop (torchvision, caffe) resize and crop as their weights expect; `size` is
    ignored for them. The others ("centered", "unit") take any size, so every image is resized
    to `size` (an int for square, or `(H, W)`), default `lm.input_shape[:2]`, to keep one
    compiled shape.
    """
    pp = lm.preprocessing
    if size == ORIGINAL:
        display = resize_image(img, original_hw(*img.shape[:2]))
    elif pp.crop is not None:
        display = resize_and_crop(img, pp.resize, pp.crop)
    else:
        display = resize_image(img, _target_hw(lm, size))
    x = normalize(display, pp)
    if lm.input_shape[-1] == 1:  # LeNet-style grayscale models
        x = x.mean(-1, keepdims=True)
    return display, x


def display_geometry(lm, size) -> dict:
    """What a record says of how its image became the model input (besides `input_hw`):
    `{"resize_crop": [resize, crop]}` where the preset resized and center-cropped, else nothing
    (the whole image stretched to `input_hw`). `jaxviz report` redraws inputs this way."""
    pp = lm.preprocessing
    if size == ORIGINAL or pp.crop is None:
        return {}
    return {"resize_crop": [pp.resize, pp.crop]}


def input_shape(lm, size) -> tuple[int, int, int]:
    """The `(H, W, C)` the model sees for `size` (for "original": the largest, 1024x1024)."""
    if size == ORIGINAL:
        hw = (1024, 1024)
    elif lm.preprocessing.crop is not None:
        hw = (lm.preprocessing.crop,) * 2
    else:
        hw = _target_hw(lm, size)
    return (*hw, lm.input_shape[-1])


def _target_hw(lm, size) -> tuple[int, int]:
    if size is None:
        return tuple(lm.input_shape[:2])
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def resize_image(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of `(H, W, 3)` float32 to `hw`, per channel in float ("F") mode."""
    img = np.asarray(img, np.float32)
    if img.shape[:2] == hw:
        return img
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c])).resize(hw[::-1], Image.Resampling.BILINEAR))
        for c in range(img.shape[-1])
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- ledgers (JSONL, `jaxviz.ledger`)


@dataclasses.dataclass
class _Ledger:
    """What earlier runs left: finished pairs, stems in use, pairs that failed."""

    done: set[tuple[str, str]]
    stems: dict[str, str]  # resolved image → its stem
    failed: dict[str, set[str | None]]  # resolved image → failed methods (None: loading failed)
    chunks: set[str]  # store chunks that records point at


def _read_ledger(out: Path, wanted: set[str], identity: _Identity) -> _Ledger:
    """Read every process's `results*.jsonl` / `errors*.jsonl` in `out`; only `wanted` images' files are checked.

    Raises ValueError when a record was made with other settings than `identity` (see `run_identity`)."""
    ledger = _Ledger(set(), {}, collections.defaultdict(set), set())
    exists = functools.lru_cache(maxsize=4096)(lambda rel: (out / rel).is_file())  # store chunks hold many maps
    known, checked = read_settings(out), set()
    for path in sorted(out.glob(RESULTS_GLOB)):
        for r in read_jsonl(path):
            try:
                image, method, stem, files = r["resolved"], r["method"], r["stem"], r["files"]
            except KeyError:
                continue
            if (method, r.get("settings")) not in checked:
                identity.check(out, method, r.get("settings"), known)
                checked.add((method, r.get("settings")))
            ledger.stems.setdefault(image, stem)
            chunk = (r.get("store") or {}).get("chunk")
            if chunk:
                ledger.chunks.add(chunk)
            if image in wanted and all(exists(f) for f in files.values()) and (chunk is None or exists(chunk)):
                ledger.done.add((image, method))
    for path in sorted(out.glob(ERRORS_GLOB)):
        for r in read_jsonl(path):
            if "resolved" in r:
                ledger.failed[r["resolved"]].add(r.get("method"))
    return ledger


class _Identity:
    """This run's settings per method (`run_identity`), and the check of earlier records against them."""

    def __init__(self, lm, methods: Mapping[str, Callable], size, target_json):
        self.run = run_identity(lm, size=size, target_json=target_json)
        self.full = {m: {**self.run, **(getattr(fn, "settings", None) or {"method": m})} for m, fn in methods.items()}
        self.digests = {m: digest(v) for m, v in self.full.items()}

    def check(self, out: Path, method: str, recorded: str | None, known: dict) -> None:
        old = known.get(recorded)
        if method in self.digests:
            if recorded == self.digests[method]:
                return
            new = self.full[method]
        else:  # another method's records: the model, weights, input and target must still agree
            if old is not None and all(old.get(k) == v for k, v in self.run.items()):
                return
            new, old = self.run, old and {k: old.get(k) for k in self.run}
        raise ValueError(
            f"{out} holds {method} maps made with other settings ({describe_difference(old, new)}); "
            "write to another --out (or delete this one) so that maps of different settings do not mix"
        )


# --------------------------------------------------------------------------- the run


@dataclasses.dataclass
class RunSummary:
    """What one `run_attribution` call did (counts are images, not image × method pairs).

    Attributes:
      done: images computed in this run (at least one method).
      skipped_existing: images whose every method was already recorded with its files.
      failed: `(image, reason)` for each image (or image and method) that failed in this run.
      seconds: wall time of the run.
      images_per_second: `done / seconds`.
      skipped_failed: images not retried because they failed in an earlier run.
    """

    done: int
    skipped_existing: int
    failed: list[tuple[str, str]]
    seconds: float
    images_per_second: float
    skipped_failed: int = 0

    def failure_reasons(self, top: int = 10) -> dict[str, int]:
        """The most common failure reasons (file names taken out) and how many images each hit."""
        counts = collections.Counter(reason.replace(image, "<image>") for image, reason in self.failed)
        return dict(counts.most_common(top))


@dataclasses.dataclass
class _Item:
    """One image with work to do."""

    path: Path
    resolved: str
    stem: str
    methods: tuple[str, ...]  # the methods still to do for it


class _SameArguments:
    """Calls `fn` once for consecutive calls with the very same argument objects (one batch), so that
    the methods of a fused group, called one after another on a batch, share one computation."""

    def __init__(self, fn: Callable):
        self.fn, self.args, self.value = fn, None, None

    def __call__(self, *args):
        if self.args is None or any(a is not b for a, b in zip(args, self.args, strict=True)):
            self.args, self.value = args, self.fn(*args)
        return self.value


def bind_methods(
    lm,
    names: Sequence[str],
    target=None,
    *,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
    devices: Sequence | None = None,
    dtype: str = "float32",
    memory_budget: int | None = None,
) -> dict[str, Callable]:
    """Compiled `fn(x_batch, ids[, target]) -> (maps, classes, logits)` per method name, for `run_attribution`.

    `target` is bound for every call; a call may pass its own (e.g. each image's ground-truth class
    as an `(B,)` int array, as the seed-002 experiment does) without recompiling.

    Uses `attribution.engine.compiled` (params are an argument, not baked-in constants; one
    compilation per shape). `options` go to the methods that accept them (e.g. `layer` to the
    CAM family, `n` to SmoothGrad); sample-based methods draw from `jax.random.key(seed)`.
    `devices` (more than one) shards each batch over them: a 1-D `Mesh` with axis "batch", the
    batch placed with `NamedSharding(mesh, P("batch"))` and the params replicated, so XLA runs
    each device's slice of the batch (a batch size that is not a multiple of `len(devices)` is
    replicated instead).
    Under that mesh the sample axes of SmoothGrad and IG are sharded too (one image's samples on
    every device), which is what keeps devices busy at small batch sizes.
    `dtype="bfloat16"` runs the model in bfloat16 (maps are returned as float32).
    Memory: each method that takes a `chunk` (SmoothGrad's samples, IG's steps, Score-CAM's masked
    channels, occlusion's patches) and was not given one runs as many per pass as `memory_budget`
    bytes allow (`memory.rows`: images per pass from the model's activation sizes; default
    `memory.default_budget()`, a quarter of this machine's memory).
    Two or more methods of `fused.FUSABLE` (seed 002's saliency, deconvnet, guided backprop,
    Grad-CAM, guided Grad-CAM, ...) share one compiled call per batch: one forward pass and one
    backward walk per rule (`attribution.fused`); each method's function returns its part.
    """
    from .attribution.engine import compiled, method_options, variant
    from .attribution.fused import FUSABLE, SHARES_FORWARD, fused_compiled

    key = jax.random.key(seed)
    image_keys = jax.jit(jax.vmap(lambda i: jax.random.fold_in(key, i)))
    params = lm.variables
    given_options = dict(options or {})
    if devices is not None and len(devices) > 1:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.asarray(devices), ("batch",))
        params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
        split, whole = NamedSharding(mesh, PartitionSpec("batch")), NamedSharding(mesh, PartitionSpec())

        def place(a):  # a batch that does not divide evenly is replicated (its sample axes still shard)
            return jax.device_put(a, whole if a.shape[0] % len(devices) else split)

        set_mesh = functools.partial(jax.set_mesh, mesh)  # lets sample axes (SmoothGrad, IG) shard too
    else:
        set_mesh = contextlib.nullcontext

        def place(a):
            return a

    extra = {} if dtype == "float32" else {"dtype": dtype}
    budget = memory_budget or default_budget()
    pass_rows = functools.lru_cache(maxsize=16)(
        lambda shape: memory_rows(budget, activation_bytes(lm.model, lm.variables, shape))
    )
    bound = {}
    group = [n for n in dict.fromkeys(names) if n in FUSABLE]
    if len(group) >= 2:  # one forward pass, one backward walk per rule, for all of them
        group += [n for n in dict.fromkeys(names) if n in SHARES_FORWARD]
        accepted = {o for n in group for o in method_options(n)}
        fused = fused_compiled(
            group, lm.model, **_with_box(lm, {k: v for k, v in (options or {}).items() if k in accepted}), **extra
        )

        def run_fused(x, ids, t):
            with set_mesh():
                return fused(params, place(x), t, image_keys(place(ids)))

        shared = _SameArguments(run_fused)
        for name in group:
            bound[name] = lambda x, ids, per_call_target=None, name=name: shared(
                x, ids, target if per_call_target is None else per_call_target
            )[name][:3]
    for name in names:
        if name in bound:
            continue
        method, fixed = variant(name)  # e.g. lrp:epsilon_gamma_box: its own options over the shared ones
        accepted = method_options(method)
        given = {**{k: v for k, v in (options or {}).items() if k in accepted}, **fixed}
        given = _with_box(lm, given)
        auto_chunk = "chunk" in accepted and "chunk" not in given
        # XLA:CPU unrolls sample chunks (its loops run ~5x slower) and then holds all of them at once:
        # there the batch is split on the host instead, each part all its samples in one pass.
        samples = _samples(method, given) if auto_chunk and jax.default_backend() == "cpu" else None

        def run(x, ids, per_call_target=None, name=method, given=given, auto_chunk=auto_chunk, samples=samples):
            # SmoothGrad's default is all samples in one pass: at batch 64 that is 3 200 VGG passes
            # at once. Batch jobs hold as many images per pass as the memory budget allows instead.
            t = target if per_call_target is None else per_call_target
            n, rows = x.shape[0], pass_rows(x.shape[1:])
            k = max(1, rows // samples) if samples is not None else n
            if k < n:  # parts of k images, each all its samples in one pass (or, k = 1, `rows` at a time)
                parts = [run(x[s : s + k], ids[s : s + k], _target_rows(t, s, s + k, n)) for s in range(0, n, k)]
                return tuple(jnp.concatenate(p) for p in zip(*parts))
            fits = samples is not None and n * samples <= rows
            chunk = {"chunk": samples if fits else max(1, rows // n)} if auto_chunk else {}
            fn = compiled(name, lm.model, **given, **chunk, **extra)
            with set_mesh():
                return fn(params, place(x), t, image_keys(place(ids)))[:3]

        bound[name] = run
    for name, fn in bound.items():  # what makes each method's maps what they are (see `run_identity`)
        fn.settings = method_identity(name, given_options, seed=seed, dtype=dtype)
    return bound


def _with_box(lm, options: dict) -> dict:
    """LRP's epsilon_gamma_box gets its box from the model's preprocessing (black and white) unless given."""
    if options.get("composite") == "epsilon_gamma_box":
        return {**input_bounds(lm.preprocessing), **options}
    return options


_SAMPLE_OPTION = {"smoothgrad": "n", "smoothgrad_squared": "n", "vargrad": "n", "integrated_gradients": "steps"}


def _samples(name: str, given: dict) -> int | None:
    """Samples per image of a method whose chunks XLA:CPU unrolls (SmoothGrad's n, IG's steps), else None."""
    from .attribution import METHODS

    option = _SAMPLE_OPTION.get(name)
    if option is None:
        return None
    return int(given.get(option, inspect.signature(METHODS[name]).parameters[option].default))


def _target_rows(t, start: int, stop: int, n: int):
    """Rows `start:stop` of a per-image target (an array of `n`); any other target as it is."""
    return t[start:stop] if getattr(t, "ndim", 0) >= 1 and t.shape[0] == n else t


def run_attribution(
    lm,
    images: Sequence[str | os.PathLike[str]],
    methods: Mapping[str, Callable],
    out: str | os.PathLike[str],
    *,
    target=None,
    batch_size: int = 16,
    size: int | tuple[int, int] | None = None,
    progress: bool = True,
    log: Callable[[str], Any] = print,
    retry_failed: bool = False,
    workers: int | None = None,
    outputs: Iterable[str] = ("npy", "png"),
    store_format: StoreFormat = StoreFormat(),
    process: tuple[int, int] = (0, 1),
    config: Mapping[str, Any] | None = None,
    engine: Engine | None = None,
) -> RunSummary:
    """Run every method on every image in batches, writing maps, views and a resumable ledger.

    Args:
      lm: a `LoadedModel` (its `preprocessing`, `input_shape`, `labels` and `name` are used).
      images: image paths (e.g. from `discover_images`); duplicates are run once.
      methods: name → jitted `fn(x (B, H, W, C), ids (B,) uint32) -> (maps, classes (B,), logits (B, K))`;
        `ids` identify the images (from their output names) for per-image random keys,
        with model, params, target and options already bound (`bind_methods`). Names become
        folder names: letters, digits, `_`, `-` and `.`, not starting with `.`.
      out: the run directory (created); see the module docstring for its layout.
      target: only recorded (as JSON) in each result line; must match earlier runs in `out`.
      batch_size: images per call; a short last batch is padded (repeating its last image) to the
        next power of two (`padded_size`), so each method compiles for a few shapes at most.
      size: model input size for presets without a crop, or "original" for each image's own size
        (rounded to a multiple of 32, see `original_hw`; images are sorted by size so that each
        batch has one shape and each shape compiles once).
      progress: show a tqdm bar (images/s, ETA and error count).
      log: where messages about skipped images go.
      retry_failed: try again images (and pairs) that failed in an earlier run.
      workers: threads loading and writing images (default: CPU count, at most 8).
      outputs: any of "npy" and "png" (one file per image and method) and "store" (one chunk per
        batch and method, see `jaxviz.store`; for millions of maps).
      store_format: dtype and downsampling of the store's maps.
      process: `(index, count)` of a multi-process run: this process takes every count-th image
        starting at index, and writes `results.p<index>.jsonl` (etc.); every process reads all
        ledgers, so a rerun with any process count resumes.
      config: the job, written to `out/config.json` (by process 0) once the folder is known to hold
        nothing that conflicts with this run (what `--resume` reads).
      engine: where the images are decoded and the methods run (an `Engine`; default `local_engine`:
        this process, loader threads ahead of the device). This process always plans, names and writes:
        e.g. `jaxviz.integrations.ray.RayEngine` computes on a Ray cluster's actors and the run folder
        is the same.

    The run holds `out` (`runlock.run_lock`): another run on the same folder is refused, except the
    other processes of one multi-process run. Each record carries the digest of the settings that
    made its map (`run_identity`; in full in `out/settings.json`): a rerun whose settings differ
    (method options, seed, dtype, size, target, model, weights, preprocessing) is refused before
    anything in `out` changes. Methods bound by `bind_methods` carry their settings; other
    callables are identified by their name only.

    Returns:
      the `RunSummary`, also written to `out/summary.json` (`summary.p<index>.json`).

    Raises:
      ValueError: bad arguments, or `out` holds maps made with other settings.
      RunLockedError: another run holds `out`.
    """
    t0 = time.perf_counter()
    out = Path(out)
    _check_method_names(methods)
    outputs = frozenset(outputs)
    if not outputs or outputs - OUTPUTS:
        raise ValueError(f"outputs must be a non-empty subset of {sorted(OUTPUTS)}, got {sorted(outputs)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    index, count = process
    if not 0 <= index < count:
        raise ValueError(f"process index {index} is not in 0..{count - 1}")
    with run_lock(out, process):
        suffix = "" if count == 1 else f".p{index}"
        results_path, errors_path, summary_path = (
            out / name.replace(".", f"{suffix}.", 1) for name in (RESULTS, ERRORS, SUMMARY)
        )
        target_json = _target_json(target)
        images = _dedupe(Path(p) for p in images)
        resolved = [str(p.resolve()) for p in images]
        _refuse_links(out, methods)
        identity = _Identity(lm, methods, size, target_json)
        ledger = _read_ledger(out, set(resolved[index::count]), identity)  # refuses before anything changes
        if config is not None and index == 0:
            write_text(out / CONFIG, json.dumps(config, indent=2))
        write_settings(out, {identity.digests[m]: identity.full[m] for m in methods})
        for path in (results_path, errors_path):
            cut_torn_line(path)
        if count == 1 and results_path.exists():  # a resumed run: clear temp files a kill left mid-write
            _remove_stale_temps(out)
        store = MapStore(out, store_format, prefix="" if count == 1 else f"p{index}-")
        store.prune(ledger.chunks)
        items, skipped_existing, skipped_failed = _plan(
            images, resolved, list(methods), ledger, out, retry_failed, (index, count)
        )
        if size == ORIGINAL:  # batches of one shape each: group the images by their input size
            items.sort(key=_header_hw)
        if skipped_failed:
            log(
                f"not retrying {skipped_failed} image(s) that failed before (see {errors_path}; "
                "rerun with --retry-failed, or retry_failed=True from Python, to try them again)"
            )

        failed: list[tuple[str, str]] = []
        done = 0
        if items:
            workers = workers or max(1, min(8, os.cpu_count() or 1))
            context = dict(
                lm=lm,
                out=out,
                target=target_json,
                methods=methods,
                batch_size=batch_size,
                outputs=outputs,
                store=store,
                settings=identity.digests,
                size=size,
                workers=workers,
                geometry=display_geometry(lm, size),
            )
            with (
                ThreadPoolExecutor(workers) as pool,
                open(results_path, "a", encoding="utf-8") as results,
                open(errors_path, "a", encoding="utf-8") as errors,
                tqdm(total=len(items), unit="img", desc="attribute", disable=not progress) as bar,
            ):

                def fail(item: _Item, reason: str, method: str | None = None) -> None:
                    failed.append((str(item.path), reason))
                    append_records(
                        errors,
                        [{"image": str(item.path), "resolved": item.resolved, "method": method, "error": reason}],
                    )
                    named = reason if reason.startswith(str(item.path)) else f"{item.path}: {reason}"
                    log(f"skipped {named}" + (f" (method {method})" if method else ""))
                    bar.set_postfix(_postfix(done, failed, t0), refresh=False)

                def on_load_error(item: _Item, reason: str) -> None:
                    fail(item, reason)
                    bar.update(1)

                t_last = time.perf_counter()
                for entries, computed in (engine or local_engine)(pool, items, context, on_load_error):
                    t_last, written = _finish(pool, entries, computed, context, results, fail, t_last)
                    done += written
                    bar.update(written)
                    bar.set_postfix(_postfix(done, failed, t0), refresh=False)

        seconds = time.perf_counter() - t0
        summary = RunSummary(
            done=done,
            skipped_existing=skipped_existing,
            failed=failed,
            seconds=round(seconds, 3),
            images_per_second=round(done / seconds, 3) if seconds else 0.0,
            skipped_failed=skipped_failed,
        )
        report = dict(
            dataclasses.asdict(summary),
            failure_reasons=summary.failure_reasons(),
            model=lm.name,
            methods=list(methods),
            target=target_json,
            batch_size=batch_size,
            images=len(images),
            process={"index": index, "count": count},
            outputs=sorted(outputs),
        )
        write_text(summary_path, json.dumps(report, indent=2))
        return summary


def _refuse_links(out: Path, methods: Iterable[str]) -> None:
    """Refuse a symbolic link where the run writes, truncates or deletes: its ledgers, config, the
    store and its method folders, and the method folders of per-image files (a link there would
    take the damage outside `out`)."""
    candidates = [
        *out.glob("results*.jsonl"),
        *out.glob("errors*.jsonl"),
        *out.glob("summary*.json"),
        out / CONFIG,
        out / SETTINGS,
        out / STORE,
        *(out / STORE).glob("*"),
        *(out / m for m in methods),
    ]
    for path in candidates:
        if path.is_symlink():
            raise ValueError(
                f"{path} is a symbolic link: a run never writes, truncates or deletes through a link "
                f"inside its folder; remove the link (or write to another --out)"
            )


_TEMP = re.compile(r"\..+\.[0-9a-f]{32}\.tmp")  # `atomic_path`'s temporary names


def _remove_stale_temps(out: Path) -> None:
    for root, _, names in os.walk(out):
        for name in names:
            if _TEMP.fullmatch(name):
                Path(root, name).unlink(missing_ok=True)


def _check_method_names(methods: Mapping[str, Callable]) -> None:
    if not methods:
        raise ValueError("no methods given")
    for name in methods:
        if not re.fullmatch(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*", name) or name in (RESULTS, ERRORS, SUMMARY):
            raise ValueError(f"method name {name!r} cannot be a folder name in the output directory")


def _target_json(target) -> Any:
    """The requested target as JSON: null, an int, {"top": n}, a list of ints, or its repr."""
    from .attribution.targets import Top, Unit

    if target is None or isinstance(target, (bool, int, float, str)):
        return target
    if isinstance(target, Top):
        return {"top": target.n}
    if isinstance(target, Unit):
        return {"unit": {"layer": target.layer, "channel": target.channel, "y": target.y, "x": target.x}}
    try:
        return np.asarray(target).tolist()
    except Exception:
        return repr(target)


def _plan(
    images: list[Path],
    resolved: list[str],
    methods: list[str],
    ledger: _Ledger,
    out: Path,
    retry_failed: bool,
    process: tuple[int, int] = (0, 1),
) -> tuple[list[_Item], int, int]:
    """This process's images with pending methods (and their stems), and the skip counts.

    New stems are assigned over all images without one, the same way in every process, so two
    processes never give one name to different images."""
    index, count = process
    pending, skipped_existing, skipped_failed = [], 0, 0
    for path, r in zip(images[index::count], resolved[index::count]):
        failed = set() if retry_failed else ledger.failed.get(r, set())
        todo = tuple(m for m in methods if (r, m) not in ledger.done and m not in failed and None not in failed)
        if todo:
            pending.append((path, r, todo))
        elif failed and any((r, m) not in ledger.done for m in methods):
            skipped_failed += 1
        else:
            skipped_existing += 1
    roots = common_root(images)
    taken = {stem: image for image, stem in ledger.stems.items()}
    new = [(p, r) for p, r in zip(images, resolved) if r not in ledger.stems]
    fresh = dict(zip((r for _, r in new), assign_stems([p for p, _ in new], roots, taken)))
    items = []
    for path, r, todo in pending:
        stem = ledger.stems.get(r) or fresh[r]
        items.append(_Item(path, r, _contained_stem(out, methods, stem, path), todo))
    return items, skipped_existing, skipped_failed


def _contained_stem(out: Path, methods: Sequence[str], stem: str, path: Path) -> str:
    """`stem`, or a flat hashed name if any output would resolve outside `out` (a symlink)."""
    for candidate in (stem, _flat_stem(path)):
        if all(_inside(out, out / m / f"{candidate}.npy") for m in methods):
            return candidate
    raise ValueError(f"outputs for {path} would land outside {out}: is {out}/<method> a symlink?")


def _load_one(item: _Item, lm, size, display: bool) -> tuple[np.ndarray | None, np.ndarray]:
    with _DECODING.hold(_decode_bytes(item.path)):
        shown, x = display_and_input(load_image(item.path, shorter_side_needed(lm, size)), lm, size)
    return (shown if display else None), x


def shorter_side_needed(lm, size) -> int | None:
    """The shorter side `display_and_input` needs to resize down from (None: the image's own size is kept)."""
    if size == ORIGINAL:
        return None
    pp = lm.preprocessing
    if pp.crop is not None:
        return pp.resize or pp.crop
    return max(_target_hw(lm, size))


def _decode_bytes(path: Path) -> int:
    """What decoding `path` may take at most (4 bytes a pixel, from the header); 0 when unreadable."""
    try:
        with Image.open(path) as im:
            return im.size[0] * im.size[1] * 4
    except Exception:
        return 0  # load_image will say what is wrong with it


class _ByteBudget:
    """Bounds the bytes of images being decoded at once across the loader threads (one image larger
    than the budget still runs, alone)."""

    def __init__(self, budget: int):
        self.budget, self.used = budget, 0
        self.cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, n: int):
        n = min(n, self.budget)
        with self.cond:
            self.cond.wait_for(lambda: self.used + n <= self.budget)
            self.used += n
        try:
            yield
        finally:
            with self.cond:
                self.used -= n
                self.cond.notify_all()


DECODE_BUDGET = 1 << 30
"""Bytes of images decoded at once by a batch run's loader threads (a 64 Mpx PNG takes 256 MiB)."""
_DECODING = _ByteBudget(DECODE_BUDGET)


def _load_all(
    pool: ThreadPoolExecutor,
    items: list[_Item],
    lm,
    size,
    window: int,
    on_error: Callable[[_Item, str], None],
    display: bool = True,
) -> Iterator[tuple[_Item, np.ndarray | None, np.ndarray]]:
    """(item, display, x) for each image that loads, in order; at most `window` loads in flight.

    Decoding and preprocessing run in the pool's threads (Pillow and NumPy release the GIL), ahead
    of the batch being computed. `display` (the resized image, for PNG views) is None unless asked."""
    queue: collections.deque[tuple[_Item, Future]] = collections.deque()
    todo = iter(items)
    for item in todo:
        queue.append((item, pool.submit(_load_one, item, lm, size, display)))
        if len(queue) >= window:
            yield from _take(queue, on_error)
    while queue:
        yield from _take(queue, on_error)


def _take(queue, on_error) -> Iterator[tuple[_Item, np.ndarray, np.ndarray]]:
    item, future = queue.popleft()
    try:
        display, x = future.result()
    except Exception as e:  # any failure of this one file (ImageError, odd sizes, memory)
        on_error(item, str(e) or type(e).__name__)
        return
    yield item, display, x


def _header_hw(item: _Item) -> tuple[int, int]:
    """`original_hw` of an image from its header (no decoding); (0, 0) when unreadable (it fails later)."""
    try:
        with Image.open(item.path) as im:
            w, h = im.size
            if (im.getexif() or {}).get(0x0112, 1) in (5, 6, 7, 8):  # EXIF rotation swaps the sides
                h, w = w, h
        return original_hw(h, w)
    except Exception:
        return (0, 0)


def _batches(loaded: Iterable, batch_size: int) -> Iterator[list]:
    """Batches of up to `batch_size` loaded images of one input shape (a new shape starts a new batch)."""
    batch = []
    for entry in loaded:
        if batch and entry[2].shape != batch[0][2].shape:
            yield batch
            batch = []
        batch.append(entry)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def padded_size(n: int, batch_size: int) -> int:
    """The size a batch of `n` images runs at: `batch_size`, or for a short (last) batch the next power of
    two, so 3 images cost 4 images of work rather than 16, and at most log2(batch_size) + 1 shapes compile."""
    return min(batch_size, 1 << max(0, n - 1).bit_length())


def _launch(batch: list, methods: Mapping[str, Callable], batch_size: int):
    """Start every method needed by the batch (asynchronously); pad to `padded_size`.

    Each image also gets an id from its output name, so sample-based methods draw the same noise
    for an image whatever its batch or position (resumed and re-batched runs agree)."""
    size = padded_size(len(batch), batch_size)
    xs = [x for _, _, x in batch]
    xs += [xs[-1]] * (size - len(xs))
    ids = [zlib.crc32(item.stem.encode()) for item, _, _ in batch]
    ids += [ids[-1]] * (size - len(ids))
    x, ids = np.stack(xs), np.asarray(ids, np.uint32)
    needed = {m for item, _, _ in batch for m in item.methods}
    return {name: fn(x, ids) for name, fn in methods.items() if name in needed}


Engine = Callable[
    [ThreadPoolExecutor, list[_Item], dict, Callable[[_Item, str], None]],
    Iterator[tuple[list[tuple[_Item, np.ndarray | None, tuple[int, int]]], dict]],
]
"""Where a run computes: `engine(pool, items, context, on_load_error)` yields `(entries, computed)` per batch,
`entries` the batch's `(item, display image or None, input (h, w))` and `computed` method → `(maps, classes,
logits)` rows in the order of `entries` (arrays, NumPy or JAX). An image that does not load is reported to
`on_load_error(item, reason)` instead. `context` holds the run's `lm`, `methods`, `batch_size`, `size`,
`outputs` and `workers`. The runner writes what is yielded (`_finish`)."""


def local_engine(
    pool: ThreadPoolExecutor, items: list[_Item], context: dict, on_load_error: Callable[[_Item, str], None]
) -> Iterator[tuple[list, dict]]:
    """This process: images decoded in `pool`'s threads ahead of the device, one batch in flight while the
    previous one is written (each batch is launched before the previous one is yielded)."""
    batch_size = context["batch_size"]
    loaded = _load_all(
        pool,
        items,
        context["lm"],
        context["size"],
        window=2 * batch_size + context["workers"],
        on_error=on_load_error,
        display="png" in context["outputs"],
    )
    pending = None
    for batch in _batches(loaded, batch_size):
        launched = _entries(batch), _launch(batch, context["methods"], batch_size)
        if pending is not None:
            yield pending
        pending = launched
    if pending is not None:
        yield pending


def _entries(batch: list) -> list[tuple[_Item, np.ndarray | None, tuple[int, int]]]:
    """A loaded batch's `(item, display, input (h, w))`, what the writer needs once the inputs are launched."""
    return [(item, display, tuple(x.shape[:2])) for item, display, x in batch]


def _finish(pool, batch: list, launched: dict, context: dict, results, fail, t_last: float):
    """Wait for a batch (`Engine`'s entries and computed maps), write its files in the pool, then append its
    ledger lines durably."""
    outputs = {name: tuple(np.asarray(a) for a in value) for name, value in launched.items()}
    now = time.perf_counter()
    seconds = (now - t_last) / len(batch)
    kinds, out = context["outputs"], context["out"]
    jobs, rows = [], collections.defaultdict(list)  # method → [(batch row, record)]
    for i, (item, display, input_hw) in enumerate(batch):
        for method in item.methods:
            maps, classes, logits = outputs[method][:3]
            if not np.all(np.isfinite(maps[i])):
                fail(item, f"method {method} gave NaN or infinite values", method)
                continue
            if not np.all(np.isfinite(logits[i])):
                fail(item, "the model gave NaN or infinite logits (damaged weights or an input out of range)", method)
                continue
            files = {k: f"{method}/{item.stem}.{k}" for k in ("npy", "png") if k in kinds}
            if files:
                jobs.append(
                    pool.submit(
                        _write_files,
                        out,
                        files,
                        maps[i].astype(np.float32),
                        display,
                        method.partition(":")[0] in plot.SIGNED_VIEWS,
                    )
                )
            record = _record(item, method, int(classes[i]), logits[i], files, seconds, context)
            rows[method].append((i, {**record, **context["geometry"], "input_hw": list(input_hw)}))
    if "store" in kinds:
        chunks = {
            m: pool.submit(context["store"].append, m, outputs[m][0][[i for i, _ in rs]]) for m, rs in rows.items()
        }
        for m, rs in rows.items():
            for (_, record), where in zip(rs, chunks[m].result()):
                record["store"] = where
    for job in jobs:
        job.result()
    append_records(results, [record for rs in rows.values() for _, record in rs])
    return now, len(batch)


def _write_files(out: Path, files: dict, m: np.ndarray, display: np.ndarray | None, signed: bool) -> None:
    if "npy" in files:
        save_npy(out / files["npy"], m)
    if "png" in files:
        save_image(out / files["png"], plot.view(m[None], display[None], signed=signed)[0])


def _record(item: _Item, method: str, cls: int, logits: np.ndarray, files: dict, seconds: float, context: dict) -> dict:
    lm = context["lm"]
    z = np.asarray(logits, np.float64)
    record = {
        "image": str(item.path),
        "resolved": item.resolved,
        "stem": item.stem,
        "model": lm.name,
        "method": method,
        "target": context["target"],
    }
    if z.ndim == 1 and z.shape[0] == len(lm.labels):  # class target: logits
        record.update(class_fields(z, cls, lm.labels.name))
    else:  # unit target: the channel's activation at its position, or its maximum
        unit = context["target"]["unit"]
        value = z[..., cls] if unit["y"] is None else z[unit["y"], unit["x"], cls]
        record.update({"channel": cls, "activation": float(np.max(value))})
    record.update({"files": files, "settings": context["settings"][method], "seconds": round(seconds, 6)})
    return record


def class_fields(logits: np.ndarray, cls: int, name: Callable[[int], str]) -> dict:
    """A record's class part: the explained class, its logit and softmax probability, and the predicted
    (top-1) class; `name` gives a class index's label."""
    z = np.asarray(logits, np.float64)
    p = np.exp(z - z.max())
    top = int(z.argmax())
    return {
        "class": int(cls),
        "class_name": name(int(cls)),
        "logit": float(z[cls]),
        "probability": float(p[cls] / p.sum()),
        "predicted": top,
        "predicted_name": name(top),
    }


def _postfix(done: int, failed: list, t0: float) -> dict:
    elapsed = time.perf_counter() - t0
    return {"img/s": f"{done / elapsed:.1f}" if elapsed > 0 else "-", "errors": len(failed)}
