"""`jaxviz demo`: every attribution method on a batch of images, offline.

Uses a shipped model (the embedded default on freshly generated shapes images, or LeNet-5 on
digits with `model="lenet5"`); methods that do not apply (CAM without a GAP head, ReLU rules on a
tanh net) are listed in the summary as not applicable. Writes
per-image inputs, raw maps (`.npy`) and views (`.png`) per method, a comparison figure
(rows = images, columns = methods), `results.jsonl` in the batch runner's format (one record per image and
method) with the explorer of `jaxviz report` in `explorer/`, and `summary.json`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from . import plot
from .atomic import save_npy, write_text
from .attribution import METHODS
from .attribution.engine import compiled
from .batch import RESULTS, class_fields
from .data.datasets import default_dataset
from .data.images import save_image
from .data.preprocess import normalize
from .explorer import build_explorer
from .models.loading import load

DEMO_SEED = 424_242  # far from the training and test seeds of experiments/train_shapesnet.py


def run_demo(
    out: str | Path,
    n: int = 8,
    seed: int = DEMO_SEED,
    methods: list[str] | None = None,
    progress: bool = True,
    model: str | None = None,
) -> dict:
    """Run `methods` (default: all that apply) on `n` images of the model's own data (shapes for
    the embedded default, digits for LeNet-5); returns the summary it writes."""
    methods = list(METHODS) if methods is None else methods
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lm = load(model)
    data = default_dataset(lm, n, seed)
    x = normalize(data.images, lm.preprocessing)
    images = np.repeat(data.images, 3, -1) if data.images.shape[-1] == 1 else data.images  # for display
    classes = data.classes
    names = [f"{i:03d}_{classes[int(c)]}" for i, c in enumerate(data.labels)]
    for name, img in zip(names, images):
        save_image(out / "images" / f"{name}.png", img)

    panels, timings, skipped, predictions, records = {}, {}, {}, None, []
    target = np.asarray(data.labels)  # explain the true class of each image
    key = jax.random.key(seed)
    for method in tqdm(methods, desc="methods", disable=not progress):
        t0 = time.perf_counter()
        try:
            result = compiled(method, lm.model)(lm.variables, x, target, key)
        except ValueError as e:  # e.g. CAM-GMP on a global-average-pooling model
            skipped[method] = str(e)
            continue
        maps, _, logits = jax.block_until_ready(result[:3])
        timings[method] = round(time.perf_counter() - t0, 3)
        maps = np.asarray(maps)
        views = plot.view(maps, images, signed=method in plot.SIGNED_VIEWS)
        panels[method] = views
        (out / method).mkdir(exist_ok=True)
        for name, m, v, z, t in zip(names, maps, views, np.asarray(logits), target):
            save_npy(out / method / f"{name}.npy", m)
            save_image(out / method / f"{name}.png", v)
            image = str((out / "images" / f"{name}.png").resolve())
            records.append(
                {
                    "image": image,
                    "resolved": image,
                    "stem": name,
                    "model": lm.name,
                    "method": method,
                    "target": "label",
                    **class_fields(z, int(t), lm.labels.name),
                    "files": {"npy": f"{method}/{name}.npy", "png": f"{method}/{name}.png"},
                    "input_hw": list(m.shape[:2]),
                }
            )
        if predictions is None:
            predictions = np.asarray(logits).argmax(-1)

    plot.comparison_grid(
        out / "comparison.png",
        images,
        panels,
        row_titles=[f"{classes[int(c)]} → {classes[int(p)]}" for c, p in zip(data.labels, predictions)],
    )
    summary = {
        "model": lm.name,
        "images": n,
        "seed": seed,
        "methods": list(panels),
        "not_applicable": skipped,
        "accuracy": float(np.mean(predictions == np.asarray(data.labels))),
        "predictions": [
            {"image": nm, "label": classes[int(c)], "predicted": classes[int(p)]}
            for nm, c, p in zip(names, data.labels, predictions)
        ],
        "seconds_per_method_incl_compile": timings,
        "comparison": str(out / "comparison.png"),
    }
    write_text(out / RESULTS, "".join(json.dumps(r) + "\n" for r in records))
    summary["explorer"] = str(build_explorer(out, out / "explorer", progress=progress))
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary
