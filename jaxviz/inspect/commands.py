"""`jaxviz inspect ...`: each command makes its figure and writes the numbers behind it as JSON/CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..core import as_net
from ..data.datasets import default_dataset
from ..taps import conv_layers, feature_layers, param_at

CONV, ACT = "conv", "act"


def dataset_for(lm, data: str | None, n: int | None, seed: int = 0):
    return default_dataset(lm, n, seed, data)


def _default_layer(lm, kind: str) -> str:
    """The first conv layer (filters) or the last feature layer (maps, top-k, neighbours)."""
    if kind == CONV:
        return conv_layers(lm.model, lm.variables, lm.input_shape)[0]
    return feature_layers(lm.model, lm.variables, lm.input_shape)[-1]


def _json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def filters(lm, out: Path, layer: str | None) -> dict:
    from .filters import layer_filters

    layer = layer or _default_layer(lm, CONV)
    png = layer_filters(lm, layer, out / f"filters_{layer}.png", title=f"{lm.name} {layer} filters")
    k = np.asarray(param_at(lm.variables, as_net(lm.model).resolve(layer))["kernel"])
    info = {
        "layer": layer,
        "kernel_shape": list(k.shape),
        "png": str(png),
        "norms": np.linalg.norm(k.reshape(-1, k.shape[-1]), axis=0).round(5).tolist(),
    }
    _json(out / f"filters_{layer}.json", info)
    return info


def maps(lm, out: Path, layer: str | None, data: str | None, index: int) -> dict:
    from .filters import feature_maps

    layer = layer or _default_layer(lm, ACT)
    ds = dataset_for(lm, data, index + 1)
    png = feature_maps(lm, ds.images[index], layer, out / f"maps_{layer}_{index}.png")
    info = {"layer": layer, "image": ds.names[index], "png": str(png)}
    _json(out / f"maps_{layer}_{index}.json", info)
    return info


def stats(lm, out: Path, data: str | None, n: int | None, progress: bool) -> dict:
    from .stats import activation_stats, dead_filters, plot_stats, stats_table

    ds = dataset_for(lm, data, n or 2000)
    st = activation_stats(lm, ds, progress=progress)
    png = plot_stats(st, out / "stats.png")
    rows = stats_table(st, per_channel=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "stats.csv", buf.getvalue())
    info = {
        "images": len(ds),
        "png": str(png),
        "csv": str(out / "stats.csv"),
        "dead_filters": {k: v.tolist() for k, v in dead_filters(st).items()},
        "layers": stats_table(st),
    }
    _json(out / "stats.json", info)
    return info


def topk(
    lm, out: Path, layer: str | None, units: list[int] | None, data: str | None, n: int | None, k: int, progress: bool
) -> dict:
    from .topk import plot_top_k, receptive_field, top_k_all

    layer = layer or _default_layer(lm, ACT)
    ds = dataset_for(lm, data, n or 2000)
    result = top_k_all(lm, ds, layer, units or list(range(8)), k, progress=progress)
    rf = receptive_field(lm.model, lm.variables, lm.input_shape, layer)
    png = plot_top_k(ds, result, rf, out / f"topk_{layer}.png")
    info = {
        "layer": layer,
        "receptive_field": rf._asdict() if hasattr(rf, "_asdict") else str(rf),
        "png": str(png),
        "units": [
            {
                "channel": int(c),
                "images": [ds.names[i] for i in result.indices[j]],
                "values": result.values[j].tolist(),
                "positions": result.positions[j].tolist(),
            }
            for j, c in enumerate(result.channels)
        ],
    }
    _json(out / f"topk_{layer}.json", info)
    return info


def neighbours(lm, out: Path, layer: str | None, data: str | None, n: int | None, k: int, queries: int) -> dict:
    from .neighbours import neighbours_figure

    layer = layer or _default_layer(lm, ACT)
    ds = dataset_for(lm, data, n or 500)
    q = np.random.default_rng(0).choice(len(ds), size=min(queries, len(ds)), replace=False)
    rates = neighbours_figure(ds, q, None, k, out / f"neighbours_{layer}.png", lm, layer)
    info = {
        "layer": layer,
        "k": k,
        "images": len(ds),
        "label_agreement": rates,
        "png": str(out / f"neighbours_{layer}.png"),
    }
    _json(out / f"neighbours_{layer}.json", info)
    return info


def embed(lm, out: Path, layer: str | None, data: str | None, n: int | None, seed: int) -> dict:
    from .embed import embedding_figures
    from .neighbours import layer_features

    layer = layer or _default_layer(lm, ACT)
    ds = dataset_for(lm, data, n or 400)
    feats = layer_features(lm, ds.images, layer)
    pts = embedding_figures(ds, feats, out / f"tsne_{layer}.png", out / f"tsne_grid_{layer}.png", seed=seed)
    info = {
        "layer": layer,
        "images": len(ds),
        "png": [str(out / f"tsne_{layer}.png"), str(out / f"tsne_grid_{layer}.png")],
        "points": [
            {"image": nm, "label": int(lb), "x": float(p[0]), "y": float(p[1])}
            for nm, lb, p in zip(ds.names, ds.labels, pts)
        ],
    }
    _json(out / f"tsne_{layer}.json", info)
    return info
