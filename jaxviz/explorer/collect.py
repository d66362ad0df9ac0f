"""Read an attribution run folder as the explorer sees it: one row per image, its records per method.

Reads what `jaxviz attribute` leaves (see `jaxviz.batch`): every process's ledger `results*.jsonl`
(latest record per image and method; a torn last line of a run still going is skipped),
`errors*.jsonl`, `summary*.json`, `config.json`, and `evaluation.jsonl` when `jaxviz evaluate` has
scored the run. Nothing here draws or writes.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from pathlib import Path

from ..ledger import ERRORS_GLOB, RESULTS_GLOB
from ..ledger import read as read_jsonl

__all__ = ["Run", "read_run"]

EVALUATION = "evaluation.jsonl"
METRICS = ("P", "E", "pointing")
"""Per-map numbers of `evaluation.jsonl` that the explorer can filter and sort by."""


@dataclasses.dataclass
class Run:
    """One run folder.

    Attributes:
      path: the folder.
      label: a short name for it (its folder name, made unique among compared runs).
      methods: method names in ledger order.
      images: `key → {method: record}` in ledger order (`key` is the image's resolved path).
      errors: `key → [error records]` (an image that failed as a whole, or one of its methods).
      metrics: `(key, method) → {metric: value}` from `evaluation.jsonl`.
      summary: the latest `summary*.json` of each process, merged (counts added).
      config: `config.json` (the job), or {}.
    """

    path: Path
    label: str
    methods: list[str]
    images: dict[str, dict[str, dict]]
    errors: dict[str, list[dict]]
    metrics: dict[tuple[str, str], dict[str, float]]
    summary: dict
    config: dict

    def stem(self, key: str) -> str:
        """The output stem of an image (its name in the run), or the file name for one that only failed."""
        for record in self.images.get(key, {}).values():
            return record.get("stem") or Path(key).stem
        return Path(key).name


def _key(record: dict) -> str:
    return str(record.get("resolved") or record.get("image"))


def read_run(path: str | Path, label: str | None = None) -> Run:
    """Everything the explorer shows of the run in `path` (an attribute run's `--out` folder)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {path} not found")
    ledgers = sorted(path.glob(RESULTS_GLOB))
    if not ledgers:
        raise FileNotFoundError(
            f"{path} has no results.jsonl: point `jaxviz report` at the --out folder of "
            "`jaxviz attribute` (or of an experiment run)"
        )
    images: dict[str, dict[str, dict]] = {}
    methods: dict[str, None] = {}
    for ledger in ledgers:
        for r in read_jsonl(ledger):
            if "method" in r and ("files" in r or "store" in r):
                images.setdefault(_key(r), {})[r["method"]] = r
                methods.setdefault(r["method"])
    errors: dict[str, list[dict]] = collections.defaultdict(list)
    for ledger in sorted(path.glob(ERRORS_GLOB)):
        for r in read_jsonl(ledger):
            if "error" in r:
                errors[_key(r)].append(r)
    # an image that failed before and is done now (a --retry-failed run) keeps only errors of methods still missing
    errors = {
        k: kept
        for k, rs in errors.items()
        if (
            kept := [
                r
                for r in rs
                if (r.get("method") or None) not in images.get(k, {}) and not (r.get("method") is None and k in images)
            ]
        )
    }
    metrics: dict[tuple[str, str], dict[str, float]] = {}
    for r in read_jsonl(path / EVALUATION):
        if "method" in r:
            metrics[(_key(r), r["method"])] = {m: float(r[m]) for m in METRICS if isinstance(r.get(m), (int, float))}
    return Run(
        path=path,
        label=label or path.resolve().name,
        methods=list(methods),
        images=images,
        errors=errors,
        metrics=metrics,
        summary=_summaries(path),
        config=_json(path / "config.json"),
    )


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _summaries(path: Path) -> dict:
    """`summary.json` (one process) or each process's `summary.p<i>.json`, with the counts added."""
    parts = [s for p in sorted(path.glob("summary*.json")) if (s := _json(p))]
    if not parts:
        return {}
    merged = dict(parts[0])
    for part in parts[1:]:
        for k in ("done", "skipped_existing", "skipped_failed", "images"):
            merged[k] = merged.get(k, 0) + part.get(k, 0)
        merged["seconds"] = max(merged.get("seconds", 0), part.get("seconds", 0))
    if len(parts) > 1 and merged.get("seconds"):
        merged["images_per_second"] = round(merged["done"] / merged["seconds"], 3)
    return merged
