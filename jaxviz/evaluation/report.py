"""A static HTML report of an experiment run: tables, charts, example grids, seed 002 beside ours.

`write_report(run_dir)` writes `run_dir/report.html`. It references the run's PNGs by relative
paths (`figures/…`, `examples/…`), so the run folder can be moved or zipped as a whole. It has no
scripts and loads nothing from the network. Every string that comes from the inputs (file names,
class names, model names, config values) is HTML-escaped, so an image named
`<script>alert(1)</script>.png` shows as that text.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

from ..atomic import write_text
from .records import CONFIG, EXAMPLES, SUMMARY, read_records

__all__ = ["SEED002", "SEED002_NAMES", "compare_with_seed002", "write_report"]

SEED002 = {"saliency": 0.215, "deconvnet": 0.123, "grad_cam": 0.277, "guided_backprop": 0.280, "guided_grad_cam": 0.470}
"""Seed 002's table 7.1: mean energy concentration P over 1440 records per method (COCO objects,
alexnet, resnet152, squeezenet1_0 and vgg19, original and 224×224 sizes)."""

SEED002_NAMES = {
    "saliency": "Backpropagation",
    "deconvnet": "Deconvolution",
    "grad_cam": "Grad-CAM",
    "guided_backprop": "Guided Backpropagation",
    "guided_grad_cam": "Guided Grad-CAM",
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;background:#fff;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f0f3f7}figure{display:inline-block;margin:.5rem 1rem .5rem 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85rem;color:#444;max-width:540px}
pre{background:#f7f7f7;padding:.6rem;overflow-x:auto;font-size:.8rem}.note{color:#555;font-size:.9rem}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(v) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.3f}"
    return _e(v)


def _table(rows: list[dict], columns: list[str] | None = None, caption: str | None = None) -> str:
    if not rows:
        return "<p class='note'>(no rows)</p>"
    cols = columns or list(rows[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='num'>{_num(r.get(c))}</td>"
            if isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool)
            else f"<td>{_e(r.get(c, ''))}</td>"
            for c in cols
        )
        + "</tr>"
        for r in rows
    )
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(run_dir: Path, rel: str, caption: str) -> str:
    if not (run_dir / rel).is_file():
        return ""
    src = "/".join(_e(p) for p in Path(rel).parts)
    return f"<figure><img src='{src}' alt='{_e(caption)}'><figcaption>{_e(caption)}</figcaption></figure>"


def _ranks(values: dict[str, float]) -> dict[str, int]:
    order = sorted(values, key=lambda k: -values[k])
    return {k: i + 1 for i, k in enumerate(order)}


def compare_with_seed002(method_rows: list[dict]) -> tuple[list[dict], bool | None]:
    """Rows (method, seed 002 P and rank, our mean P and rank) for the methods both have, and
    whether the ranking is the same (None when fewer than two methods are shared)."""
    ours = {r["method"]: r["mean_P"] for r in method_rows if r["method"] in SEED002}
    if not ours:
        return [], None
    theirs = {m: SEED002[m] for m in ours}
    r_ours, r_theirs = _ranks(ours), _ranks(theirs)
    rows = [
        {
            "method": m,
            "seed 002 name": SEED002_NAMES[m],
            "seed 002 P": theirs[m],
            "seed 002 rank": r_theirs[m],
            "our P": ours[m],
            "our rank": r_ours[m],
        }
        for m in sorted(ours, key=lambda k: r_theirs[k])
    ]
    return rows, (r_ours == r_theirs) if len(ours) > 1 else None


def write_report(run_dir: str | os.PathLike[str]) -> Path:
    """Write `run_dir/report.html` from the run's config, records, tables and figures."""
    from .summary import all_tables

    run_dir = Path(run_dir)
    records = read_records(run_dir)
    if not records:
        raise ValueError(f"{run_dir} has no records: run `jaxviz experiment run CONFIG --out {run_dir}` first")
    config = _read_json(run_dir / CONFIG)
    summary = _read_json(run_dir / SUMMARY)
    tables = all_tables(records)
    comparison, same = compare_with_seed002(tables["method"])
    title = f"Experiment {config.get('name', run_dir.name)}"

    head = f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
    parts = [head + f"<style>{_CSS}</style></head><body>", f"<h1>{_e(title)}</h1>"]
    models = list(dict.fromkeys(r["model"] for r in records))
    parts.append(
        f"<p>{len(records)} records · methods: {_e(', '.join(dict.fromkeys(r['method'] for r in records)))}"
        f" · models: {_e(', '.join(models))} · sizes: {_e(', '.join(dict.fromkeys(r['size'] for r in records)))}"
        + (f" · last run {_e(summary.get('seconds'))} s" if summary else "")
        + "</p>"
    )
    parts.append("<h2 id='definitions'>Definitions used</h2>" + _definitions(config, records))

    parts.append("<h2 id='seed002'>Seed 002 and this run</h2>")
    if comparison:
        verdict = {
            True: "The ranking of the methods is the same as seed 002's.",
            False: "The ranking of the methods differs from seed 002's.",
            None: "",
        }[same]
        parts.append(_table(comparison, caption="mean P per method: seed 002 (COCO, ImageNet CNNs) vs this run"))
        parts.append(f"<p>{_e(verdict)}</p>")
        parts.append(
            "<p class='note'>Seed 002's numbers: COCO train2017 objects (6 categories × 30 images), "
            "alexnet, resnet152, squeezenet1_0 and vgg19 with ImageNet weights, original size and 224×224, "
            "pixel energy Σ_c I_c², the ImageNet class named for each category, Grad-CAM scaled min–max. "
            "This run's choices are listed under Definitions used.</p>"
        )
    else:
        parts.append("<p class='note'>No method of seed 002's study in this run.</p>")
    parts.append(_figure(run_dir, "figures/bar_method.png", "mean P per method, all models and sizes"))
    for size in dict.fromkeys(r["size"] for r in records):
        parts.append(
            _figure(
                run_dir,
                f"figures/models_{size}.png",
                f"one image, a row per model, a column per method (seed 002 fig. 7.8), size {size}",
            )
        )

    parts.append("<h2 id='tables'>Tables</h2>")
    for name, caption in (
        ("method", "per method"),
        ("method_model", "method × model"),
        ("method_size", "method × size"),
        ("method_model_size", "method × model × size"),
        ("method_category", "method × category (seed 002's charts are per class)"),
    ):
        parts.append(f"<h3>{_e(caption)}</h3>" + _table(tables[name]))
        parts.append(
            f"<p class='note'>Also as <a href='tables/{name}.md'>Markdown</a> and "
            f"<a href='tables/{name}.csv'>CSV</a>.</p>"
        )

    parts.append("<h2 id='charts'>Charts</h2>")
    for size in dict.fromkeys(r["size"] for r in records):
        parts.append(
            _figure(run_dir, f"figures/bar_method_model_{size}.png", f"mean P per method and model, size {size}")
        )
    parts.append(_figure(run_dir, "figures/bar_method_size.png", "mean P per method and size"))
    parts.append(_figure(run_dir, "figures/bar_method_category.png", "mean P per method and category"))
    vector = sorted(
        p.relative_to(run_dir).as_posix()
        for fmt in ("svg", "pdf", "eps")
        for p in (run_dir / "figures").glob(f"*.{fmt}")
    )
    if vector:
        parts.append(
            "<p class='note'>Vector files: "
            + ", ".join(f"<a href='{_e(v)}'>{_e(Path(v).name)}</a>" for v in vector)
            + ".</p>"
        )

    parts.append("<h2 id='examples'>Examples</h2>")
    for meta_path in sorted((run_dir / EXAMPLES).glob("*.json")):
        meta = _read_json(meta_path)
        names = "; ".join(f"{m.get('image')} ({m.get('category')})" for m in meta.get("images", []))
        parts.append(
            _figure(
                run_dir,
                f"{EXAMPLES}/{meta_path.stem}.png",
                f"{meta.get('model')}, size {meta.get('size')}: rows are {names}",
            )
        )

    parts.append("<h2 id='records'>Records (first 30)</h2>")
    cols = ["image", "category", "model", "size", "method", "class_name", "correct", "P", "pointing"]
    parts.append(_table(records[:30], cols))
    parts.append("<h2 id='config'>Config</h2><pre>" + _e(json.dumps(config, indent=2, sort_keys=True)) + "</pre>")
    parts.append("</body></html>\n")
    path = run_dir / "report.html"
    write_text(path, "\n".join(p for p in parts if p))
    return path


_CHANNELS = {
    "energy": "|I(x, y)|² = Σ_c I(x, y, c)², every value squared (seed 002's summed squares, the energy "
    "of a discrete signal)",
    "sum": "|I(x, y)|² = (Σ_c I(x, y, c))², the channels summed with sign first (opposite signs cancel)",
}
_TARGETS = {
    "category": "the one ImageNet class named for the object's category (seed 002; the class column of "
    "coco_to_imagenet.tsv or the config's class_table); a model with a class of that name "
    "explains it",
    "best": "the candidate class the model scores highest among all that depict the category "
    "(e.g. any of 118 dog breeds); a model with a class of that name explains it",
}
_CAM_NORMS = {
    "max": "ReLU, bilinear upsampling, ÷ max",
    "minmax": "ReLU, bilinear upsampling, − min, ÷ max (seed 002's code, after kazuto1011/grad-cam-pytorch)",
}


def _definitions(config: dict, records: list[dict]) -> str:
    """The scoring and target choices of this run, from its records (and config where records lack them)."""
    used = lambda field, default: list(dict.fromkeys(str(r.get(field, default)) for r in records))
    channels = used("channels", "sum")  # records written before the field existed summed channels
    targets = used("target_rule", "best")
    norms = list(dict.fromkeys(str(r["cam_norm"]) for r in records if "cam_norm" in r))
    items = [
        f"P = E / E_total (seed 002, eq. 5.1–5.3): the share of the map's energy inside the object's mask "
        f"dilated by {_e(config.get('dilation', '?'))} of its size.",
        "Pixel energy: " + "; ".join(f"<b>{_e(c)}</b>: {_e(_CHANNELS.get(c, c))}" for c in channels) + ".",
        "Target: " + "; ".join(f"<b>{_e(t)}</b>: {_e(_TARGETS.get(t, t))}" for t in targets) + ".",
    ]
    if norms:
        items.append(
            "Grad-CAM scaling: "
            + "; ".join(f"<b>{_e(n)}</b>: {_e(_CAM_NORMS.get(n, n))}" for n in norms)
            + ". Guided Grad-CAM multiplies guided backprop by that map."
        )
    items.append(
        "pointing = pointing-game hit rate (the pixel of highest energy within the tolerance of the mask). "
        "uniform_P = the P of a uniform map (the dilated mask's share of the image): the chance level. "
        "accuracy = share of records whose model predicted the target."
    )
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
