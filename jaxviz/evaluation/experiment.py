"""Seed 002's study as a resumable experiment: maps for every (model, size, image, method), scored.

A config (see `experiments/seed002.py` and `DEFAULTS`) names methods, models, sizes, the data,
the mask dilation and a seed. `run_experiment(config, out)` writes into the run directory `out/`:

    out/config.json       the full config (a rerun with a different config is refused)
    out/records.jsonl     one JSON line per (image, model, size, method); appended per batch
                          with flush + fsync, so a killed run loses at most the batch in flight
    out/examples/         example grids (image, mask, one map per method) per model and size, and
                          each grid's views (`.npz`) for the figure of one image across models
    out/maps/             with `save_maps`: each record's raw map (`.npy`) and a grayscale `.png`
                          (seed 002 keeps both), `maps/<model>/<size>/<method>/<key>.{npy,png}`
    out/summary.json      what the latest run did (counts, seconds)

and then `jaxviz.evaluation.summary.write_summaries` (tables, charts) and `jaxviz.evaluation.report` (HTML).

Record fields: `key` (the sample), `image`, `category`, `model`, `size` ("original" or "224"),
`method`, `class` and `class_name` (the target), `predicted`, `correct`, `hw` (the map's H, W),
`mask_fraction` (dilated mask area / image area, the P of a uniform map), `P`, `E`, `E_total`
(seed 002's energy concentration; `channels` says how a pixel's channels make its energy: "energy",
Σ_c I_c², seed 002's summed squares, or "sum", (Σ_c I_c)²), `pointing` (pointing game hit, at the
pixel of highest energy), `target_rule` (below), `cam_norm` for the Grad-CAM methods ("max" or
seed 002's "minmax"), and `files` with `save_maps`; with
`deletion_steps` > 0 also `deletion_auc` and `insertion_auc` (RISE, Petsiuk et al. 2018: softmax
probability of the target as pixels are removed / restored in map order, blurred baseline;
`jaxviz.metrics.deletion_insertion`). Off by default: it costs 2·(steps + 1) forward passes per map.

Target: the ground-truth class, as in seed 002 — the model's class named like the object's
category; for ImageNet models on COCO, `targets="category"` (default, seed 002) explains the one
ImageNet class named for the category (`class_table`: None = the `class` column of
`coco_to_imagenet.tsv`, or a dict / `.tsv` / `.json` of category → class index or name), and
`targets="best"` the candidate class (`candidates` column, e.g. any of 118 dog breeds) the model
scores highest. Objects whose category the model has no class for are skipped (and counted).
The pointing-game tolerance is given at 224 px and scaled with the image's longer side.

Resuming: a rerun reads `records.jsonl` (a torn last line is cut), skips batches whose records
all exist, and recomputes a partly written batch whole, writing only the missing records. Batch
composition is fixed by the data order and `batch_size` (the last batch is padded by repeating
an image), so a resumed run computes every record on exactly the same inputs as an uninterrupted
one: the final records are identical. Maps are batched and compiled (`attribution.engine.compiled`;
one compilation per method, model and input shape); sample-based methods draw per-image noise from
`fold_in(key(seed), crc32(image key))`, as `jaxviz attribute` does.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import runpy
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from .. import ledger
from ..atomic import write_text
from ..batch import bind_methods
from ..data.preprocess import normalize
from ..metrics import CHANNELS
from ..plot import FIGURE_FORMATS
from ..taps import output
from .datasets import ORIGINAL, TARGET_RULES, Sample, class_candidates, load_class_table, load_samples, resize_sample
from .records import CONFIG, EXAMPLES, MAPS, RECORDS, SUMMARY, read_records, record_key

__all__ = [
    "DEFAULTS",
    "SEED002_METHODS",
    "load_config",
    "parse_overrides",
    "read_records",
    "record_key",
    "run_experiment",
    "validate_config",
]

SEED002_METHODS = ("saliency", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam")
"""Seed 002's five methods: Backpropagation (= saliency), Deconvolution, Guided Backpropagation,
Grad-CAM, Guided Grad-CAM."""

DEFAULTS: dict[str, Any] = {
    "name": "seed002",
    "methods": list(SEED002_METHODS),
    "models": ["shapesnet", "minivgg"],
    "sizes": [ORIGINAL, 224],
    "data": {"source": "shapes", "n": 100, "size": 64, "seed": 0},
    "dilation": 0.2,
    "pointing_tolerance": 15,
    "seed": 0,
    "batch_size": 16,
    "method_options": {},
    "examples": 4,
    "deletion_steps": 0,
    "channels": "energy",
    "targets": "category",
    "class_table": None,
    "save_maps": False,
    "chart_formats": ["png", "svg"],
    "exp_json": False,
}

_POINTING_REFERENCE = 224  # the pointing tolerance is in pixels of a 224-px image (Zhang et al. 2016)


# --------------------------------------------------------------------------- config


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["data.per_category=5", "sizes=[\"original\", 64]"]` → `{"data.per_category": 5, "sizes": [...]}`:
    values are JSON where they parse, else strings. A malformed item raises ValueError naming it."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--set {item!r}: write KEY=VALUE, e.g. --set data.per_category=5")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def load_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> dict:
    """A config file → validated config dict (missing keys from `DEFAULTS`).

    `.py`: a module with `get_config()` returning a dict (big_vision style); `.json`; `.toml`.
    `overrides` (`parse_overrides`) replace keys after loading, dotted keys inside sections
    (`data.per_category`); for a `.py` config, an override named like a parameter of its
    `get_config` (e.g. `coco` of `seed002_coco.py`) is passed to it instead.
    """
    path = Path(path)
    overrides = dict(overrides or {})
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    if path.suffix == ".py":
        module = runpy.run_path(str(path))
        if "get_config" not in module:
            raise ValueError(f"{path} has no get_config() function")
        params = inspect.signature(module["get_config"]).parameters
        config = module["get_config"](**{k: overrides.pop(k) for k in list(overrides) if k in params})
    elif path.suffix == ".json":
        config = json.loads(path.read_text(encoding="utf-8"))
    elif path.suffix == ".toml":
        import tomllib

        config = tomllib.loads(path.read_text(encoding="utf-8"))
    else:
        raise ValueError(f"config {path}: use a .py file with get_config(), .json or .toml")
    config = copy.deepcopy(dict(config))
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            if not isinstance(node.setdefault(part, {}), dict):
                raise ValueError(f"--set {key}: config {part!r} is not a section")
            node = node[part]
        node[leaf] = value
    return validate_config(config)


def validate_config(config: dict) -> dict:
    """`config` over `DEFAULTS`, checked; unknown keys and bad values raise ValueError naming them."""
    from ..attribution import METHODS
    from ..attribution.engine import variant

    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known: {', '.join(DEFAULTS)}")
    c = copy.deepcopy(DEFAULTS)
    c.update(copy.deepcopy(config))
    c["methods"], c["models"], c["sizes"] = list(c["methods"]), list(c["models"]), list(c["sizes"])
    if not c["methods"]:
        raise ValueError(f"config methods is empty; known: {', '.join(METHODS)}")
    for m in c["methods"]:
        try:
            variant(m)  # a name, or a variant such as lrp:epsilon_gamma_box
        except ValueError as e:
            raise ValueError(f"config methods: {e}") from None
    if not c["models"]:
        raise ValueError("config models is empty: name at least one (e.g. 'shapesnet')")
    for s in c["sizes"]:
        if s != ORIGINAL and not (isinstance(s, int) and s >= 8):
            raise ValueError(f"config sizes: {s!r} is neither 'original' nor an int >= 8")
    if not isinstance(c["data"], dict) or c["data"].get("source", "shapes") not in ("shapes", "coco"):
        raise ValueError(f"config data must be a dict with source 'shapes' or 'coco', got {c['data']!r}")
    for key in ("dilation", "pointing_tolerance"):
        if not (isinstance(c[key], (int, float)) and c[key] >= 0):
            raise ValueError(f"config {key} must be a number >= 0, got {c[key]!r}")
    for key in ("batch_size", "seed", "examples", "deletion_steps"):
        if not isinstance(c[key], int) or c[key] < (1 if key == "batch_size" else 0):
            raise ValueError(f"config {key} must be an integer (batch_size >= 1), got {c[key]!r}")
    if not isinstance(c["method_options"], dict):
        raise ValueError("config method_options must be a dict, e.g. {'layer': 'relu3_2'}")  # noqa: TRY004
    for key, allowed in (("channels", CHANNELS), ("targets", TARGET_RULES)):
        if c[key] not in allowed:
            raise ValueError(f"config {key} must be one of {', '.join(allowed)}, got {c[key]!r}")
    if c["class_table"] is not None and not isinstance(c["class_table"], (str, dict)):
        raise ValueError("config class_table must be None, a {category: class} dict or a .tsv/.json path")
    for key in ("save_maps", "exp_json"):
        if not isinstance(c[key], bool):
            raise ValueError(f"config {key} must be true or false, got {c[key]!r}")
    c["chart_formats"] = list(c["chart_formats"])
    bad = [f for f in c["chart_formats"] if f not in FIGURE_FORMATS]
    if bad:
        raise ValueError(f"config chart_formats: {bad} unknown; use {', '.join(FIGURE_FORMATS)}")
    return c


def _canonical(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


# --------------------------------------------------------------------------- maps


RANDOM = ":random"
"""Suffix of a model entry with freshly initialised weights (`resnet152:random`): the protocol runs
before weights are ported (the maps then explain an untrained net)."""


def _model_label(entry: str) -> str:
    """A model entry (architecture, weights name, `.safetensors` path or `ARCH:random`) → its name in records."""
    return Path(entry).stem if entry.endswith(".safetensors") else entry


def _load_model(entry: str):
    from ..models.loading import load

    if entry.endswith(RANDOM):
        return load(entry.removesuffix(RANDOM), random_init=True)
    return load(weights=entry) if entry.endswith(".safetensors") else load(entry)


def _batches(samples: list[Sample], size, batch_size: int) -> Iterator[tuple[list[Sample], int]]:
    """Fixed batches and the size to pad each to: in data order, grouped by the shape the model
    will see (one compilation per shape). A group smaller than `batch_size` (original-size photos)
    is padded only to its own size, not to `batch_size`."""
    groups: dict[tuple, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.hw if size == ORIGINAL else (int(size),) * 2, []).append(s)
    for group in groups.values():
        for i in range(0, len(group), batch_size):
            yield group[i : i + batch_size], min(batch_size, len(group))


def _pointing_tolerance(config: dict, hw: tuple[int, int]) -> float:
    return config["pointing_tolerance"] * max(hw) / _POINTING_REFERENCE


# --------------------------------------------------------------------------- the run


def run_experiment(
    config: dict,
    out: str | os.PathLike[str],
    *,
    progress: bool = True,
    log: Callable[[str], Any] = print,
    report: bool = True,
) -> dict:
    """Run (or resume) the experiment `config` into `out`; returns the run summary.

    Args:
      config: a dict as from `load_config` (validated again here).
      out: the run directory (created).
      progress: tqdm bars.
      log: where notes (skipped objects, resumed counts) go.
      report: also write tables, charts and the HTML report when done.

    Raises:
      ValueError: `out` already holds a run of a different config.
    """
    config = validate_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / CONFIG
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text(encoding="utf-8"))
        if _canonical(old) != _canonical(config):
            raise ValueError(
                f"{out} holds a run of another config ({cfg_path}); pass a new --out "
                "or delete that folder to start over"
            )
    else:
        write_text(cfg_path, json.dumps(config, indent=2, sort_keys=True))
    records_path = out / RECORDS
    ledger.cut_torn_line(records_path)
    done = {record_key(r) for r in read_records(out)}
    resumed = len(done)

    t0 = time.perf_counter()
    samples = load_samples(config["data"])
    table = load_class_table(config["class_table"]) if config["class_table"] is not None else None
    methods = config["methods"]
    settings = {m: _method_settings(m, config) for m in methods}
    total = len(samples) * len(methods) * len(config["models"]) * len(config["sizes"])
    written, skipped = 0, {}
    with (
        open(records_path, "a", encoding="utf-8") as f,
        tqdm(total=total, initial=resumed, unit="rec", desc="experiment", disable=not progress) as bar,
    ):
        for entry in config["models"]:
            model = _model_label(entry)
            lm = None
            for size in config["sizes"]:
                example_path = out / EXAMPLES / f"{model}_{size}.png"
                for b, (batch, pad_to) in enumerate(_batches(samples, size, config["batch_size"])):
                    todo = {(s.key, m) for s in batch for m in methods if (s.key, model, str(size), m) not in done}
                    want_example = b == 0 and config["examples"] > 0 and not example_path.exists()
                    if not todo and not want_example:
                        continue
                    if lm is None:
                        lm = _load_model(entry)
                        fns = bind_methods(lm, methods, seed=config["seed"], options=config["method_options"])
                        logits_fn = jax.jit(lambda v, x, lm=lm: output(lm.model, v, x)[0])
                    rows, maps_by_method, inputs, x = _compute_batch(
                        lm, fns, logits_fn, batch, size, pad_to, skipped, config["targets"], table
                    )
                    new, dilated = _score_batch(rows, maps_by_method, x, todo, config, model, size, lm, logits_fn)
                    for rec in new:
                        rec.update(settings[rec["method"]])
                    if config["save_maps"]:
                        _save_maps(out, new, rows, maps_by_method)
                    if want_example and rows:
                        _write_example(
                            example_path, inputs, rows, dilated, maps_by_method, config["examples"], model, size
                        )
                    ledger.append(f, new, allow_nan=True)  # a metric may be undefined (NaN)
                    done.update(record_key(r) for r in new)
                    written += len(new)
                    bar.update(len(todo))
    seconds = time.perf_counter() - t0
    summary = {
        "records_written": written,
        "records_before": resumed,
        "records_total": len(done),
        "skipped_objects": skipped,
        "seconds": round(seconds, 2),
        "samples": len(samples),
    }
    write_text(out / SUMMARY, json.dumps(summary, indent=2, sort_keys=True))
    if skipped:
        log(f"skipped objects with no matching model class: {skipped}")
    if report:
        from .report import write_report
        from .summary import write_summaries

        write_summaries(out)
        write_report(out)
    return summary


def _method_settings(method: str, config: dict) -> dict:
    """What a method's records say about how it was made and scored: the channel reduction, the
    target rule and, for the Grad-CAM methods, the CAM normalization (a variant's own value first)."""
    from ..attribution.engine import method_options, variant

    name, own = variant(method)
    out = {"channels": config["channels"], "target_rule": config["targets"]}
    if "cam_norm" in method_options(name):
        out["cam_norm"] = own.get("cam_norm", config["method_options"].get("cam_norm", "max"))
    return out


def _compute_batch(
    lm,
    fns,
    logits_fn,
    batch: list[Sample],
    size,
    pad_to: int,
    skipped: dict,
    rule: str = "category",
    table: dict | None = None,
):
    """Load, resize and preprocess a batch; targets; every method's maps. Rows of kept samples."""
    rows = []
    for s in batch:
        cands = class_candidates(s.category, lm.labels, rule, table)
        if not cands:
            key = f"{_model_label(lm.name)}:{s.category}"
            skipped[key] = skipped.get(key, 0) + 1
            continue
        img, mask = resize_sample(*s.load(), size)
        rows.append({"sample": s, "cands": cands, "image": img, "mask": mask})
    if not rows:
        return [], {}, None, None
    images = np.stack([r["image"] for r in rows])
    x = normalize(images, lm.preprocessing)
    if lm.input_shape[-1] == 1:
        x = x.mean(-1, keepdims=True)
    n, bs = len(rows), pad_to
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], bs - n, 0)]) if n < bs else a
    x = pad(np.asarray(x, np.float32))
    ids = pad(np.asarray([zlib.crc32(r["sample"].key.encode()) for r in rows], np.uint32))
    logits = np.asarray(logits_fn(lm.variables, jnp.asarray(x)))[:n]
    for r, z in zip(rows, logits):
        cands = np.asarray(r["cands"])
        r["target"] = int(cands[np.argmax(z[cands])])
        r["predicted"] = int(np.argmax(z))
    targets = pad(np.asarray([r["target"] for r in rows], np.int32))
    maps = {m: np.asarray(fn(x, ids, targets)[0])[:n] for m, fn in fns.items()}
    return rows, maps, images, x[:n]


def _score_batch(
    rows: list[dict], maps_by_method: dict, x, todo: set, config: dict, model: str, size, lm, logits_fn
) -> tuple[list[dict], np.ndarray | None]:
    """The records still to do for a computed batch, and the dilated masks (for the example grid)."""
    from ..metrics import (
        deletion_insertion,
        dilate_masks,
        energy_concentration,
        pointing_game,
    )

    if not rows:
        return [], None
    masks = np.stack([r["mask"] for r in rows])
    dilated = dilate_masks(masks, config["dilation"]) if config["dilation"] else masks
    tol = _pointing_tolerance(config, masks.shape[1:])
    targets = np.asarray([r["target"] for r in rows])
    new = []
    for m, maps in maps_by_method.items():
        energy = energy_concentration(maps, masks, dilation=config["dilation"], channels=config["channels"])
        hits = pointing_game(maps, masks, tolerance=tol, channels=config["channels"])
        curves = {}
        if config["deletion_steps"]:
            for mode in ("deletion", "insertion"):
                curves[f"{mode}_auc"] = deletion_insertion(
                    lambda b: logits_fn(lm.variables, jnp.asarray(b)),
                    x,
                    maps,
                    targets,
                    mode=mode,
                    steps=config["deletion_steps"],
                    softmax=True,
                ).auc
        for i, r in enumerate(rows):
            if (r["sample"].key, m) in todo:
                rec = _record(r, model, size, m, energy, hits, dilated, i, lm)
                new.append(rec | {k: float(v[i]) for k, v in curves.items()})
    return new, dilated


def _record(row: dict, model: str, size, method: str, energy, hits, dilated, i: int, lm) -> dict:
    s = row["sample"]
    return {
        "key": s.key,
        "image": s.image,
        "category": s.category,
        "model": model,
        "size": str(size),
        "method": method,
        "class": row["target"],
        "class_name": lm.labels.name(row["target"]),
        "predicted": row["predicted"],
        "correct": row["predicted"] == row["target"],
        "hw": list(row["mask"].shape),
        "mask_fraction": float(dilated[i].mean()),
        "P": float(energy.P[i]),
        "E": float(energy.E[i]),
        "E_total": float(energy.E_total[i]),
        "pointing": bool(hits[i]),
    }


def _map_path(record: dict, suffix: str) -> str:
    """Where `save_maps` puts a record's map, relative to the run folder (names made file-safe)."""
    safe = lambda t: "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(t))
    return "/".join(
        (MAPS, safe(record["model"]), safe(record["size"]), safe(record["method"]), safe(record["key"]) + suffix)
    )


def _save_maps(out: Path, records: list[dict], rows: list[dict], maps_by_method: dict) -> None:
    """Each new record's raw map (`.npy`, float32, as computed) and a grayscale `.png`: the pixel's
    energy norm √(Σ_c I_c²) (|I| for a map without channels) scaled by the map's maximum, as seed
    002 stored its maps for computing and for looking at. Paths go into the record's `files`."""
    from PIL import Image

    from ..atomic import atomic_path, save_npy

    index = {r["sample"].key: i for i, r in enumerate(rows)}
    for rec in records:
        m = np.asarray(maps_by_method[rec["method"]][index[rec["key"]]], np.float32)
        files = {"npy": _map_path(rec, ".npy"), "png": _map_path(rec, ".png")}
        save_npy(out / files["npy"], m)
        norm = np.sqrt((m.astype(np.float64) ** 2).sum(-1)) if m.ndim == 3 else np.abs(m.astype(np.float64))
        top = norm.max()
        gray = np.round(255 * (norm / top if top > 0 else norm)).astype(np.uint8)
        with atomic_path(out / files["png"]) as tmp:
            Image.fromarray(gray, "L").save(tmp, format="PNG")
        rec["files"] = files


def _write_example(
    path: Path, images: np.ndarray, rows: list[dict], dilated: np.ndarray, maps: dict, k: int, model: str, size
) -> None:
    """Image, dilated mask and one view per method for the first `k` images, and those views in
    `path.npz` (`summary.model_grids` puts one image's views of every model in one figure)."""
    from .. import plot
    from ..atomic import atomic_path

    k = min(k, len(rows))
    imgs = images[:k]
    panels = {
        "mask (dilated)": np.stack(
            [plot.overlay(im, m.astype(np.float32), 0.5, "Greens") for im, m in zip(imgs, dilated[:k])]
        )
    }
    for method, m in maps.items():
        panels[method] = plot.view(m[:k], imgs)
    titles = [f"{r['sample'].category}" for r in rows[:k]]
    plot.comparison_grid(path, imgs, panels, row_titles=titles)
    with atomic_path(path.with_suffix(".npz")) as tmp, open(tmp, "wb") as f:
        u8 = lambda a: np.round(255 * np.clip(a, 0, 1)).astype(np.uint8)
        np.savez_compressed(
            f,
            images=u8(imgs),
            keys=np.asarray([r["sample"].key for r in rows[:k]]),
            **{f"view:{m}": u8(panels[m]) for m in maps},
        )
    meta = {
        "model": model,
        "size": str(size),
        "methods": list(maps),
        "npz": path.with_suffix(".npz").name,
        "images": [
            {"image": r["sample"].image, "category": r["sample"].category, "class": r["target"]} for r in rows[:k]
        ],
    }
    write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))
