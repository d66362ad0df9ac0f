"""A compact store for millions of maps: one `.npy` chunk per method and batch, indexed by `results.jsonl`.

Per-image `.npy`/`.png` files are convenient for a few thousand images; at a million images × several
methods they are millions of small files. The store instead writes each batch's maps of a method as one
array (optionally float16, optionally average-pooled by an integer factor):

    out/store/<method>/<seq>.npy     (B, h, w[, C]) maps of one batch, `seq` a zero-padded counter

Each chunk is written atomically before the batch's records are appended to `results.jsonl`; a record
points at its map with `"store": {"chunk": "store/<method>/<seq>.npy", "row": i}`. A kill between the two
leaves an unreferenced chunk, which `MapStore` deletes when the run resumes (`prune`). `results.jsonl`
stays the only index: `read_maps(run_dir, method)` returns the records and a loader of their maps.

    records, maps = read_maps("runs/a", "saliency")
    m = maps(records[0])                       # one map, float32
    stack = maps.stack(records[:100])          # (100, h, w[, C])
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from . import ledger
from .atomic import save_npy

__all__ = ["MapReader", "MapStore", "StoreFormat", "downsample", "read_maps"]

STORE = "store"
_CHUNK = re.compile(r"(\d{8})\.npy")


@dataclasses.dataclass(frozen=True)
class StoreFormat:
    """How maps are stored: `dtype` "float32" or "float16"; `downsample` an integer pooling factor (1: none)."""

    dtype: str = "float32"
    downsample: int = 1

    def __post_init__(self):
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"store dtype must be float32 or float16, got {self.dtype!r}")
        if not isinstance(self.downsample, int) or self.downsample < 1:
            raise ValueError(f"store downsample must be an integer >= 1, got {self.downsample!r}")

    def encode(self, maps: np.ndarray) -> np.ndarray:
        """`(B, H, W[, C])` maps → what is written: pooled, then cast."""
        return downsample(np.asarray(maps, np.float32), self.downsample).astype(self.dtype)


def downsample(maps: np.ndarray, factor: int) -> np.ndarray:
    """Average-pool `(B, H, W[, C])` by `factor` over H and W (edges that do not fill a cell are dropped)."""
    if factor == 1:
        return maps
    b, h, w = maps.shape[:3]
    hh, ww = h // factor, w // factor
    if hh == 0 or ww == 0:
        raise ValueError(f"store downsample {factor} is larger than the maps ({h}x{w})")
    cut = maps[:, : hh * factor, : ww * factor]
    return cut.reshape(b, hh, factor, ww, factor, *maps.shape[3:]).mean(axis=(2, 4))


class MapStore:
    """Appends chunks under `out/store/`; one instance per run. Not thread-safe across processes:
    each process of a multi-process run passes its own `prefix` (e.g. "p3-")."""

    def __init__(self, out: str | os.PathLike[str], fmt: StoreFormat = StoreFormat(), prefix: str = ""):
        self.out, self.fmt, self.prefix = Path(out), fmt, prefix
        self._next: dict[str, int] = {}

    def append(self, method: str, maps: np.ndarray) -> list[dict]:
        """Write one chunk of `method`'s maps `(B, ...)`; returns each row's `{"chunk", "row"}`."""
        folder = self.out / STORE / method
        if method not in self._next:
            self._next[method] = 1 + max(
                (
                    int(m.group(1))
                    for p in _chunks(folder, self.prefix)
                    if (m := _CHUNK.fullmatch(p.name[len(self.prefix) :]))
                ),
                default=-1,
            )
        seq = self._next[method]
        self._next[method] = seq + 1
        rel = f"{STORE}/{method}/{self.prefix}{seq:08d}.npy"
        save_npy(self.out / rel, self.fmt.encode(maps))
        return [{"chunk": rel, "row": i} for i in range(len(maps))]

    def prune(self, referenced: Iterable[str]) -> int:
        """Delete chunks (of this prefix) that no record references: left by a kill. Returns how many."""
        keep, removed = set(referenced), 0
        for method_dir in (self.out / STORE).glob("*"):
            if method_dir.is_symlink():  # never delete through a link (the runner refuses them first)
                continue
            for path in _chunks(method_dir, self.prefix):
                if f"{STORE}/{method_dir.name}/{path.name}" not in keep:
                    path.unlink()
                    removed += 1
        return removed


def _chunks(folder: Path, prefix: str) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name.startswith(prefix) and _CHUNK.fullmatch(p.name[len(prefix) :])]


class MapReader:
    """Loads maps of records from chunks, keeping recently used chunks memory-mapped."""

    def __init__(self, out: Path):
        self.out = out
        self._open = functools.lru_cache(maxsize=64)(lambda rel: np.load(out / rel, mmap_mode="r"))

    def __call__(self, record: dict) -> np.ndarray:
        where = record.get("store")
        if where is not None:
            return np.asarray(self._open(where["chunk"])[where["row"]], np.float32)
        return np.load(self.out / record["files"]["npy"]).astype(np.float32)

    def stack(self, records: Sequence[dict]) -> np.ndarray:
        return np.stack([self(r) for r in records])


def read_maps(
    out: str | os.PathLike[str], method: str, where: Callable[[dict], bool] | None = None
) -> tuple[list[dict], Callable[[dict], np.ndarray]]:
    """The records of `method` in run directory `out` (latest per image) and a loader of their maps.

    Works for maps in the store and for per-image `.npy` files alike.
    """
    out = Path(out)
    latest: dict[str, dict] = {}
    for path in sorted(out.glob(ledger.RESULTS_GLOB)):
        for r in ledger.read(path):
            if r.get("method") == method and (where is None or where(r)):
                latest[r.get("resolved", r.get("image"))] = r
    return list(latest.values()), MapReader(out)
