"""Build the explorer site of one or more attribution runs (`jaxviz report RUN_DIR [--compare RUN2]`).

The site, written to `--out` (default `RUN_DIR/explorer`):

    index.html, app.js, style.css     the page (no inline script; a Content-Security-Policy forbids any)
    data/meta.js                      runs, columns, summaries, settings, failure reasons, class names
    data/index-<k>.js                 filter and sort columns of rows k·5000 … (loaded one after another)
    data/page-<p>.js                  full records, map value ranges and errors of rows p·100 … (on demand)
    thumbs/<col>/g<p>.webp            grid sprite of column `col` (the input, or one run's method), page p
    thumbs/<col>/d<p>-<j>.webp        detail sprites (larger tiles, 20 rows each), when maps are larger
                                      than grid tiles
    build.json                        what each sprite was drawn from: a rebuild redraws only changed pages

Data files are JavaScript that hands JSON to the page (`jaxvizData.page(3, {...})`): browsers refuse
`fetch` of local files from `file://`, but load scripts from the page's own folder, so the site works
opened from disk and from any static host alike. Every string from a run reaches the page as JSON
data and is shown with `textContent`; nothing from data is ever parsed as HTML or run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from ..atomic import write_text
from ..store import MapReader
from .collect import METRICS, Run, read_run
from .sprites import input_view, map_tiles, write_sprite

__all__ = ["build_explorer"]

ROWS_PER_PAGE = 100
DETAIL_ROWS = 20
SHARD_ROWS = 5000
DRAWING = 1
"""Version of how sprites are drawn: raising it redraws every cached sprite."""

STATUS = {"ok": 0, "partial": 1, "failed": 2}
OVERLAY_OPACITY = 0.5
"""Default opacity of CAM-like (2-D) maps over their image; gradient and relevance maps are shown alone."""


def build_explorer(
    run_dirs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    *,
    methods: Sequence[str] | None = None,
    thumb: int = 64,
    detail: int = 224,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write the explorer of `run_dirs` (the first is the main run; more are compared side by side).

    Args:
      run_dirs: `jaxviz attribute --out` folders (finished, killed or still running; any process count).
      out: the site's folder (default `<first run>/explorer`). Sprites already there that were drawn
        from the same maps are kept, so rebuilding a growing run draws only its new pages.
      methods: the method columns (default: every method of each run).
      thumb: grid tile side in pixels. detail: largest detail tile side (maps smaller than `thumb`
        and no larger than it are shown from the grid sprites).
      workers: processes drawing sprites (default: the CPU count).

    Returns:
      the path of `index.html`.
    """
    paths = [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)
    if not paths:
        raise ValueError("build_explorer needs at least one run folder")
    if not 16 <= thumb <= 512 or not 16 <= detail <= 1024:
        raise ValueError(f"thumb must be 16..512 and detail 16..1024 pixels, got {thumb} and {detail}")
    runs = [read_run(p, label) for p, label in zip(paths, _labels(paths))]
    out = Path(out) if out is not None else runs[0].path / "explorer"
    columns = _columns(runs, methods)
    rows = _align(runs)
    side = _detail_side(runs, rows, thumb, detail)
    t0 = time.perf_counter()

    cache_path = out / "build.json"
    cache = _read_cache(cache_path, thumb, side)
    tasks, pages = [], []
    for p, start in enumerate(range(0, len(rows), ROWS_PER_PAGE)):
        page_rows = rows[start : start + ROWS_PER_PAGE]
        task = _page_task(out, runs, columns, page_rows, p, thumb, side)
        pages.append(task)
        if cache["pages"].get(str(p), {}).get("key") != task["key"] or not _sprites_exist(task):
            tasks.append(task)
    with tqdm(total=len(tasks), unit="page", desc="report", disable=not progress) as bar:
        for p, drawn in _draw(tasks, workers):
            cache["pages"][str(p)] = drawn
            bar.update()
    for p in [k for k in cache["pages"] if int(k) >= len(pages)]:
        del cache["pages"][p]

    classes, reasons, targets = {}, {}, {}
    metric_columns = _metric_columns(runs, columns)
    root = _common_folder([k for row in rows for k in row if k is not None])
    shards = [
        _shard(runs, columns, metric_columns, root, rows[s : s + SHARD_ROWS], classes, reasons, targets)
        for s in range(0, max(1, len(rows)), SHARD_ROWS)
    ]
    for k, shard in enumerate(shards):
        _write_data(out / "data" / f"index-{k:04d}.js", "index", k, shard)
    for p, task in enumerate(pages):
        _write_data(
            out / "data" / f"page-{p:05d}.js",
            "page",
            p,
            _page_data(runs, columns, task["rows"], cache["pages"][str(p)]),
        )
    meta = _meta(
        runs,
        columns,
        rows,
        out,
        thumb,
        side,
        shards,
        classes,
        reasons,
        targets,
        drawn=len(tasks),
        seconds=time.perf_counter() - t0,
    )
    _write_data(out / "data" / "meta.js", "meta", 0, meta)
    for name in ("index.html", "app.js", "style.css"):
        write_text(out / name, resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8"))
    write_text(cache_path, json.dumps(cache))
    return out / "index.html"


# --------------------------------------------------------------------------- runs → rows and columns


def _labels(paths: Sequence) -> list[str]:
    labels: list[str] = []
    for p in paths:
        base = Path(p).resolve().name or "run"
        label, n = base, 2
        while label in labels:
            label, n = f"{base} ({n})", n + 1
        labels.append(label)
    return labels


def _columns(runs: list[Run], methods: Sequence[str] | None) -> list[tuple[int, str]]:
    """`(run index, method)` per map column."""
    if methods is not None:
        known = {m for r in runs for m in r.methods}
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise ValueError(
                f"--methods: {', '.join(unknown)} not in the run(s); they have: {', '.join(sorted(known))}"
            )
    return [(i, m) for i, r in enumerate(runs) for m in r.methods if methods is None or m in methods]


def _align(runs: list[Run]) -> list[list[str | None]]:
    """Rows: for each image, its key in each run (None where a run lacks it), in the main run's ledger order.

    Runs are matched by resolved image path; a compared run that shares no path with the main run (the
    same images copied elsewhere) is matched by output stem instead."""

    def keys(run: Run) -> list[str]:
        return list(dict.fromkeys([*run.images, *run.errors]))

    main = keys(runs[0])
    by_stem = {runs[0].stem(k): k for k in main}
    index = {k: i for i, k in enumerate(main)}
    rows: list[list[str | None]] = [[k] + [None] * (len(runs) - 1) for k in main]
    for ri, run in enumerate(runs[1:], 1):
        theirs = keys(run)
        match = (lambda k: k) if any(k in index for k in theirs) else (lambda k, run=run: by_stem.get(run.stem(k), k))
        for k in theirs:
            m = match(k)
            if m not in index:
                index[m] = len(rows)
                rows.append([None] * len(runs))
            rows[index[m]][ri] = k
    return rows


def _detail_side(runs: list[Run], rows: list, thumb: int, detail: int) -> int:
    """Detail tile side: the largest map input side, at most `detail`; `thumb` when that is no larger."""
    largest = max(
        (max(r.get("input_hw") or [0]) for run in runs for recs in run.images.values() for r in recs.values()),
        default=0,
    )
    return max(thumb, min(detail, largest))


# --------------------------------------------------------------------------- sprites


def _first_record(runs: list[Run], row: list[str | None]) -> dict | None:
    for run, key in zip(runs, row):
        if key is not None:
            for record in run.images.get(key, {}).values():
                return record
    return None


def _source(record: dict | None, base: Path) -> list | None:
    """What a map tile is drawn from, for the cache key: store chunk and row, or the file and its mtime."""
    if record is None:
        return None
    if "store" in record:
        return [record["store"]["chunk"], record["store"]["row"]]
    path = base / record["files"].get("npy", "")
    try:
        st = path.stat()
    except OSError:
        return [str(path), None]
    return [record["files"]["npy"], st.st_mtime_ns, st.st_size]


def _page_task(out: Path, runs: list[Run], columns, page_rows: list, p: int, thumb: int, side: int) -> dict:
    inputs = [_first_record(runs, row) for row in page_rows]
    cols = {"in": {"records": inputs, "run": None, "method": None}}
    for c, (ri, method) in enumerate(columns):
        cols[f"c{c}"] = {
            "records": [
                runs[ri].images.get(row[ri], {}).get(method) if row[ri] is not None else None for row in page_rows
            ],
            "run": str(runs[ri].path),
            "method": method,
        }
    sources = {
        "in": [
            None if r is None else [r.get("resolved") or r["image"], r.get("input_hw"), r.get("resize_crop")]
            for r in inputs
        ]
    }
    for name, col in cols.items():
        if name != "in":
            sources[name] = [_source(r, Path(col["run"])) for r in col["records"]]
    key = hashlib.sha256(json.dumps([DRAWING, thumb, side, sources], sort_keys=True, default=str).encode()).hexdigest()
    return {"page": p, "rows": page_rows, "out": str(out), "cols": cols, "thumb": thumb, "side": side, "key": key}


def _sprite_paths(task: dict, name: str) -> list[Path]:
    folder = Path(task["out"]) / "thumbs" / name
    paths = [folder / f"g{task['page']:05d}.webp"]
    if task["side"] > task["thumb"]:
        paths += [folder / f"d{task['page']:05d}-{j}.webp" for j in range(-(-len(task["rows"]) // DETAIL_ROWS))]
    return paths


def _sprites_exist(task: dict) -> bool:
    return all(p.is_file() for name in task["cols"] for p in _sprite_paths(task, name))


def _draw(tasks: list[dict], workers: int | None):
    """Draw each task's sprites, in worker processes when there is more than a page of work."""
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(tasks) <= 1:
        yield from ((t["page"], _draw_page(t)) for t in tasks)
        return
    import multiprocessing

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from ((t["page"], drawn) for t, drawn in zip(tasks, pool.map(_draw_page, tasks, chunksize=4)))


_READERS: dict[str, MapReader] = {}


def _draw_page(task: dict) -> dict:
    """Write one page's sprites; returns its cache entry (key, map value ranges, rows whose input is missing)."""
    thumb, side = task["thumb"], task["side"]
    ranges, missing = {}, []
    for name, col in task["cols"].items():
        if name == "in":
            tiles = [None if r is None else input_view(r) for r in col["records"]]
            missing = [i for i, (r, t) in enumerate(zip(col["records"], tiles)) if r is not None and t is None]
        else:
            reader = _READERS.setdefault(col["run"], MapReader(Path(col["run"])))
            tiles, ranges[name] = map_tiles(col["records"], reader, col["method"])
        grid, *details = _sprite_paths(task, name)
        write_sprite(grid, tiles, thumb)
        for j, path in enumerate(details):
            write_sprite(path, tiles[j * DETAIL_ROWS : (j + 1) * DETAIL_ROWS], side)
    return {"key": task["key"], "ranges": ranges, "missing_input": missing}


def _read_cache(path: Path, thumb: int, side: int) -> dict:
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict) or cache.get("drawing") != [DRAWING, thumb, side]:
        cache = {"drawing": [DRAWING, thumb, side], "pages": {}}
    return cache


# --------------------------------------------------------------------------- data files


def _write_data(path: Path, kind: str, n: int, data) -> None:
    # JSON is a JavaScript expression; allow_nan=False keeps it strict (NaN would not parse as JSON).
    write_text(path, f"jaxvizData.{kind}({n},{json.dumps(data, allow_nan=False, separators=(',', ':'))});\n")


def _code(table: dict, value) -> int:
    return table.setdefault(value, len(table))


def _reason(error: dict) -> str:
    text = str(error.get("error", "?"))
    for name in (error.get("image"), error.get("resolved")):
        if name:
            text = text.replace(str(name), "<image>")
    return text


def _common_folder(keys: list[str]) -> str:
    try:
        return os.path.commonpath([os.path.dirname(k) for k in keys]) if keys else ""
    except ValueError:  # relative and absolute paths mixed
        return ""


def _name(key: str, root: str) -> str:
    """An image's name on the page: its path below the folder common to all images."""
    return os.path.relpath(key, root) if root else key


def _metric_columns(runs: list[Run], columns) -> dict[str, tuple[int, str]]:
    """`"P|c0" → (column, metric)` for each metric `jaxviz evaluate` wrote for a column's maps."""
    present = [{(m, metric) for (_, m), values in run.metrics.items() for metric in values} for run in runs]
    return {
        f"{metric}|c{c}": (c, metric)
        for c, (ri, m) in enumerate(columns)
        for metric in METRICS
        if (m, metric) in present[ri]
    }


def _shard(
    runs: list[Run], columns, metric_columns: dict, root: str, rows: list, classes: dict, reasons: dict, targets: dict
) -> dict:
    """Columns the page filters and sorts by, for a slice of rows (class, target and reason as codes;
    `cells`: one "1" or "0" per map column, whether the row has that map)."""
    names, status, cells, cls, prob, pred, target, reason = [], [], [], [], [], [], [], []
    metrics: dict[str, list] = {name: [] for name in metric_columns}
    for row in rows:
        first = _first_record(runs, row)
        names.append(_name(next(k for k in row if k is not None), root))
        cells.append(
            "".join("1" if row[ri] is not None and m in runs[ri].images.get(row[ri], {}) else "0" for ri, m in columns)
        )
        errs = [e for run, k in zip(runs, row) if k is not None for e in run.errors.get(k, [])]
        status.append(STATUS["failed"] if first is None else STATUS["partial"] if errs else STATUS["ok"])
        reason.append(_code(reasons, _reason(errs[0])) if errs else -1)
        if first is not None and "class" in first:
            cls.append(_code(classes, (first["class"], first.get("class_name", str(first["class"])))))
            prob.append(round(first["probability"], 6))
            pred.append(
                _code(classes, (first["predicted"], first.get("predicted_name", ""))) if "predicted" in first else -1
            )
        else:
            cls.append(-1), prob.append(None), pred.append(-1)
        target.append(_code(targets, json.dumps(first.get("target") if first else None)))
        for name, (c, metric) in metric_columns.items():
            ri, m = columns[c]
            metrics[name].append(runs[ri].metrics.get((row[ri], m), {}).get(metric))
    return {
        "n": len(rows),
        "name": names,
        "status": status,
        "cells": cells,
        "cls": cls,
        "prob": prob,
        "pred": pred,
        "target": target,
        "reason": reason,
        "metrics": metrics,
    }


def _page_data(runs: list[Run], columns, rows: list, drawn: dict) -> dict:
    """Per row: each column's record and map range, the row's errors, whether its input was unreadable."""
    out = []
    for i, row in enumerate(rows):
        records = {
            f"c{c}": runs[ri].images.get(row[ri], {}).get(m) if row[ri] is not None else None
            for c, (ri, m) in enumerate(columns)
        }
        out.append(
            {
                "records": {k: v for k, v in records.items() if v is not None},
                "ranges": {c: r[i] for c, r in drawn["ranges"].items() if r[i] is not None},
                "errors": [
                    [ri, e]
                    for ri, (run, k) in enumerate(zip(runs, row))
                    if k is not None
                    for e in run.errors.get(k, [])
                ],
                "missing_input": i in drawn["missing_input"],
            }
        )
    return {"rows": out}


def _meta(
    runs: list[Run],
    columns,
    rows,
    out: Path,
    thumb: int,
    side: int,
    shards,
    classes,
    reasons,
    targets,
    *,
    drawn: int,
    seconds: float,
) -> dict:
    failures: list[dict] = []
    for run in runs:
        counts: dict[str, int] = {}
        for errs in run.errors.values():
            for e in errs:
                counts[_reason(e)] = counts.get(_reason(e), 0) + 1
        failures.append(dict(sorted(counts.items(), key=lambda kv: -kv[1])[:20]))
    return {
        "version": 1,
        "built": time.strftime("%Y-%m-%d %H:%M:%S"),
        "build_seconds": round(seconds, 2),
        "pages_drawn": drawn,
        "rows": len(rows),
        "rows_per_page": ROWS_PER_PAGE,
        "detail_rows": DETAIL_ROWS,
        "shard_rows": SHARD_ROWS,
        "shards": len(shards),
        "thumb": thumb,
        "detail": side if side > thumb else None,
        "runs": [
            {
                "label": r.label,
                "href": Path(os.path.relpath(r.path.resolve(), out.resolve())).as_posix(),
                "methods": r.methods,
                "images": len(r.images),
                "failed": sum(1 for k in r.errors if k not in r.images),
                "partial": sum(1 for k in r.errors if k in r.images),
                "summary": r.summary,
                "config": r.config,
                "failures": failures[i],
                "evaluated": bool(r.metrics),
            }
            for i, r in enumerate(runs)
        ],
        "columns": [
            {"id": f"c{c}", "run": ri, "method": m, "opacity": _opacity(runs[ri], m)}
            for c, (ri, m) in enumerate(columns)
        ],
        "classes": [[k[0], k[1]] for k in classes],
        "reasons": list(reasons),
        "targets": list(targets),
        "metrics": list(shards[0]["metrics"]),
    }


def _opacity(run: Run, method: str) -> float:
    """CAM-like maps (one value per pixel) default to an overlay; per-channel gradients and LRP to opaque."""
    for recs in run.images.values():
        record = recs.get(method)
        if record is not None:
            try:
                m = MapReader(run.path)(record)
            except (OSError, ValueError, KeyError, IndexError):
                continue
            return OVERLAY_OPACITY if m.ndim == 2 and method.partition(":")[0] != "lrp" else 1.0
    return 1.0
