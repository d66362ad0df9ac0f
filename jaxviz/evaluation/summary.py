"""Summary tables and bar charts of an experiment's records (seed 002's table 7.1, figs. 7.6-7.9).

`summarize(records, by)` groups records and gives n, mean, std and sum of P plus the pointing-game
hit rate per group; `write_summaries(run_dir)` writes, from `run_dir/records.jsonl`:

    tables/method.{md,csv}               per method over everything (seed 002's table 7.1)
    tables/method_model.{md,csv}         method × model
    tables/method_size.{md,csv}          method × size
    tables/method_model_size.{md,csv}    method × model × size
    tables/method_category.{md,csv}      method × object category, "all classes" first (seed 002's
                                         charts are per class: "třída: all classes")
    figures/bar_method.png               mean P per method (seed 002 fig. 7.6)
    figures/bar_method_model_<size>.png  mean P per method and model, one chart per size (figs. 7.7, 7.9)
    figures/bar_method_size.png          mean P per method and size
    figures/bar_method_category.png      mean P per method and category
    figures/models_<size>.png            one image, rows = models, columns = methods (fig. 7.8), from
                                         the example views the run kept (`examples/*.npz`)
    exp.json                             with the config's `exp_json`: seed 002's export, the records
                                         grouped by size ("original", "resized"), fields id, class,
                                         method, cnn, P, E, E_celk

Every bar chart is also written in the config's `chart_formats` beside the PNG (`.svg` by default; seed
002 wrote PNG and EPS). Bars show the mean with ± one standard error; the dashed line is a uniform
map's P (chance).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import write_text
from .records import CONFIG, EXAMPLES, read_records

__all__ = [
    "ALL_CLASSES",
    "TABLES",
    "all_tables",
    "category_table",
    "exp_json",
    "format_csv",
    "format_markdown",
    "model_grids",
    "summarize",
    "write_summaries",
]

TABLES = {
    "method": ("method",),
    "method_model": ("method", "model"),
    "method_size": ("method", "size"),
    "method_model_size": ("method", "model", "size"),
}
ALL_CLASSES = "all classes"
COLUMNS = ("n", "mean_P", "std_P", "sum_P", "pointing", "uniform_P", "accuracy", "deletion_auc", "insertion_auc")


def _order(records: list[dict], field: str) -> list[str]:
    """Distinct values of a field in first-seen order (methods and models keep the config's order)."""
    seen: dict[str, None] = {}
    for r in records:
        seen.setdefault(str(r[field]), None)
    return list(seen)


def summarize(records: Sequence[dict], by: Sequence[str]) -> list[dict]:
    """One row per group of `by` fields: the group's values, n, mean/std/sum of P, pointing hit rate
    `uniform_P`, the mean P a uniform map would get (the dilated mask's share of the image), and
    `accuracy`, the share of records whose model predicted the target class (NaN where not recorded);
    mean `deletion_auc` and `insertion_auc` when the records have them.

    std is the sample standard deviation (ddof=1; 0 for a single record). Groups come in the order
    their values first appear in `records`.
    """
    records = list(records)
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(str(r[k]) for k in by), []).append(r)
    orders = [_order(records, k) for k in by]
    rows = []
    for key in sorted(groups, key=lambda g: tuple(o.index(v) for o, v in zip(orders, g))):
        p = np.asarray([r["P"] for r in groups[key]], np.float64)
        hits = [bool(r["pointing"]) for r in groups[key] if "pointing" in r]
        rows.append(
            {
                **dict(zip(by, key)),
                "n": len(p),
                "mean_P": float(p.mean()),
                "std_P": float(p.std(ddof=1)) if len(p) > 1 else 0.0,
                "sum_P": float(p.sum()),
                "pointing": float(np.mean(hits)) if hits else math.nan,
                "uniform_P": float(np.mean([r.get("mask_fraction", math.nan) for r in groups[key]])),
                "accuracy": float(np.mean([r.get("correct", math.nan) for r in groups[key]])),
            }
        )
        for curve in ("deletion_auc", "insertion_auc"):  # only in runs with deletion_steps > 0
            values = [r[curve] for r in groups[key] if curve in r]
            if values:
                rows[-1][curve] = float(np.mean(values))
    return rows


def category_table(records: Sequence[dict]) -> list[dict]:
    """Per method: the row over every record (category "all classes"), then one row per category."""
    rows = []
    everything = summarize(records, ("method",))
    per_category = summarize(records, ("method", "category"))
    for row in everything:
        rows.append(
            {"method": row["method"], "category": ALL_CLASSES, **{k: v for k, v in row.items() if k != "method"}}
        )
        rows += [r for r in per_category if r["method"] == row["method"]]
    return rows


def all_tables(records: Sequence[dict]) -> dict[str, list[dict]]:
    """Every table `write_summaries` writes, by name (`TABLES` and `method_category`)."""
    tables = {name: summarize(records, by) for name, by in TABLES.items()}
    tables["method_category"] = category_table(records)
    return tables


def exp_json(records: Sequence[dict]) -> dict[str, list[dict]]:
    """Seed 002's `exp.json`: records grouped by size — "original", and "resized" for one fixed size
    ("resized_<S>" when there are several) — each with the image id (COCO's id for COCO images),
    class (category), method, cnn (model), P, E and E_celk (the total energy)."""
    sizes = [s for s in _order(list(records), "size") if s != "original"]
    group = {s: ("resized" if len(sizes) == 1 else f"resized_{s}") for s in sizes} | {"original": "original"}
    out: dict[str, list[dict]] = {}
    for r in records:
        key = r["key"]
        image_id = int(key.split("-")[1]) if key.startswith("coco-") else key
        out.setdefault(group[str(r["size"])], []).append(
            {
                "id": image_id,
                "class": r["category"],
                "method": r["method"],
                "cnn": r["model"],
                "P": r["P"],
                "E": r["E"],
                "E_celk": r["E_total"],
            }
        )
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else (f"{v:.2f}" if abs(v) >= 100 else f"{v:.3f}")
    return str(v)


def format_markdown(rows: list[dict]) -> str:
    """A GitHub Markdown table of `summarize` rows (`|` in values escaped)."""
    if not rows:
        return "(no records)\n"
    cols = list(rows[0])
    esc = lambda v: _fmt(v).replace("|", "\\|")
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" if c not in COLUMNS else "---:" for c in cols) + "|"]
    lines += ["| " + " | ".join(esc(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def format_csv(rows: list[dict]) -> str:
    """CSV of `summarize` rows (full precision)."""
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def write_summaries(run_dir: str | os.PathLike[str]) -> dict[str, list[dict]]:
    """Tables (Markdown, CSV) and bar charts of `run_dir`'s records; returns the tables by name."""
    run_dir = Path(run_dir)
    records = read_records(run_dir)
    if not records:
        raise ValueError(f"{run_dir} has no records: run `jaxviz experiment run CONFIG --out {run_dir}` first")
    config = _read_config(run_dir)
    formats = config.get("chart_formats", ["png"])
    tables = all_tables(records)
    for name, rows in tables.items():
        write_text(run_dir / "tables" / f"{name}.md", format_markdown(rows))
        write_text(run_dir / "tables" / f"{name}.csv", format_csv(rows))
    figures = run_dir / "figures"
    bar_chart(figures / "bar_method.png", tables["method"], "method", None, "all models and sizes", formats)
    for size in _order(records, "size"):
        rows = [r for r in tables["method_model_size"] if r["size"] == size]
        bar_chart(
            figures / f"bar_method_model_{size}.png",
            rows,
            "method",
            "model",
            f"class: {ALL_CLASSES}, size: {size}",
            formats,
        )
    bar_chart(figures / "bar_method_size.png", tables["method_size"], "method", "size", "all models", formats)
    bar_chart(
        figures / "bar_method_category.png",
        tables["method_category"],
        "method",
        "category",
        "all models and sizes",
        formats,
    )
    model_grids(
        run_dir, _order(records, "model")
    )  # pictures: PNG only (vector files of embedded rasters would only be larger)
    if config.get("exp_json"):
        write_text(run_dir / "exp.json", json.dumps(exp_json(records), indent=1))
    return tables


def _read_config(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / CONFIG).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def model_grids(run_dir: str | os.PathLike[str], models: Sequence[str] | None = None) -> list[Path]:
    """Seed 002's figure 7.8 per size: one image, a row per model, a column per method.

    The views come from the example grids each (model, size) kept (`examples/<model>_<size>.npz`);
    the image is the first one every model of that size has; rows follow `models` (the records'
    order, which is the config's) where given. Sizes with fewer than two models, or
    without a shared image, get no figure. Returns the written paths (`figures/models_<size>.png`).
    """
    from ..plot import comparison_grid

    run_dir = Path(run_dir)
    by_size: dict[str, list[tuple[str, dict]]] = {}
    for meta_path in sorted((run_dir / EXAMPLES).glob("*.json")):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        npz = run_dir / EXAMPLES / meta.get("npz", "")
        if meta.get("npz") and npz.is_file():
            with np.load(npz) as z:
                by_size.setdefault(str(meta["size"]), []).append((meta["model"], {k: z[k] for k in z.files}))
    written = []
    for size, entries in by_size.items():
        if len(entries) < 2:
            continue
        if models is not None:
            entries.sort(key=lambda e: list(models).index(e[0]) if e[0] in models else len(models))
        shared = [k for k in entries[0][1]["keys"] if all(k in e["keys"] for _, e in entries)]
        if not shared:
            continue
        key = shared[0]
        images, panels, titles = [], {}, []
        for model, e in entries:
            i = list(e["keys"]).index(key)
            images.append(e["images"][i] / np.float32(255))
            titles.append(model)
            for name in e:
                if name.startswith("view:"):
                    panels.setdefault(name[5:], []).append(e[name][i] / np.float32(255))
        methods = [m for m, views in panels.items() if len(views) == len(entries)]
        grid = {m: _stack(panels[m]) for m in methods}
        path = run_dir / "figures" / f"models_{size}.png"
        written.append(comparison_grid(path, _stack(images), grid, row_titles=titles))
        write_text(
            path.with_suffix(".json"),
            json.dumps({"size": size, "key": str(key), "models": titles, "methods": methods}, indent=2),
        )
    return written


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    """Arrays of one column stacked; images of different sizes (original-size photos per model are
    the same image, so this only guards odd cases) are padded to the largest."""
    h = max(a.shape[0] for a in arrays)
    w = max(a.shape[1] for a in arrays)
    pad = lambda a: np.pad(a, [(0, h - a.shape[0]), (0, w - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=1)
    return np.stack([pad(a) for a in arrays])


def bar_chart(
    path: Path, rows: list[dict], x: str, hue: str | None, title: str, formats: Sequence[str] = ("png",)
) -> Path:
    """Grouped bars of mean P (± standard error) with `x` groups and one bar colour per `hue` value;
    a dashed line at the mean `uniform_P` (chance level)."""
    from ..plot import pyplot, save_figure

    plt = pyplot()
    xs = list(dict.fromkeys(r[x] for r in rows))
    hues = list(dict.fromkeys(r[hue] for r in rows)) if hue else [None]
    width = 0.8 / len(hues)
    fig, ax = plt.subplots(figsize=(min(14.0, 1.3 + 1.25 * len(xs) * max(1, len(hues)) ** 0.5) + 1.6, 3.6))
    for j, h in enumerate(hues):
        sel = {r[x]: r for r in rows if hue is None or r[hue] == h}
        means = [sel[v]["mean_P"] if v in sel else np.nan for v in xs]
        errs = [sel[v]["std_P"] / math.sqrt(sel[v]["n"]) if v in sel else 0 for v in xs]
        pos = np.arange(len(xs)) - 0.4 + width * (j + 0.5)
        bars = ax.bar(pos, means, width, yerr=errs, capsize=2, label=h)
        for b, m, e in zip(bars, means, errs):
            if np.isfinite(m):
                ax.text(b.get_x() + b.get_width() / 2, m + e + 0.01, f"{m:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(xs)), [v.replace("_", " ") for v in xs], fontsize=8, rotation=15)
    ax.set_ylabel("mean energy concentration P")
    ax.set_ylim(0, min(1.1, max([r["mean_P"] for r in rows] + [0.1]) * 1.2 + 0.06))
    ax.set_title(title, fontsize=9)
    uniform = [r["uniform_P"] for r in rows if np.isfinite(r.get("uniform_P", math.nan))]
    if uniform:  # chance level: what a map spread evenly over the image scores
        ax.axhline(float(np.mean(uniform)), color="gray", ls="--", lw=1, label="uniform map")
    ax.legend(
        fontsize=7,
        title=hue,
        title_fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0,
        framealpha=1.0,
    )  # opaque: EPS has no transparency
    fig.tight_layout()
    return save_figure(fig, path, formats=formats)
