"""Model randomization sanity checks (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

A map that explains a *model* must change when the model's learned weights are destroyed.
Cascading randomization re-initializes the parameterized layers from the top (logits) down,
cumulatively — after step k the top k layers hold fresh initial weights, the rest stay trained —
recomputes each method's maps with the same inputs, targets and noise keys, and compares them
with the original maps per image:

- Spearman rank correlation of the absolute maps (the paper's main curve) and of the signed maps;
- SSIM of the normalized absolute maps.

Maps are compared as the paper's code visualizes them: a gradient map `(N, H, W, C)` becomes
Σ_c |I_c| (absolute; for SSIM additionally scaled to [0, 1], clipped at the 99th percentile) and
Σ_c I_c (signed); a map without channels is used as is (abs for the absolute variants).

Also here (`mode`): "independent" randomizes one layer at a time, the rest trained (the paper's
independent layer randomization); "all" randomizes every layer at once. The paper's
*data-independent* checks: `random_input_check` compares maps of the trained and the fully random
model on random-noise inputs. Retraining on permuted labels (the paper's data randomization test)
is out of scope here: it needs a training run per model.

Fresh weights are the model's own initializers (`model.init` with `jax.random.key(seed)`), i.e.
the weights at the start of training; targets default to the trained model's predicted class and
stay fixed for every randomized model.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .similarity import spearman, ssim

__all__ = [
    "SanityResult",
    "cascading_randomization",
    "compare_maps",
    "comparison_views",
    "fresh_params",
    "plot_randomization_maps",
    "plot_similarity_bars",
    "plot_similarity_curves",
    "random_input_check",
    "randomization_order",
    "randomize_params",
    "records",
    "summary",
    "to_json",
]

MapFn = Callable[..., Any]
METRICS = ("spearman_abs", "spearman", "ssim")
_METRIC_TITLES = {
    "spearman_abs": "Spearman rank correlation (abs)",
    "spearman": "Spearman rank correlation (no abs)",
    "ssim": "SSIM (abs, normalized)",
}


class SanityResult(NamedTuple):
    """Similarity of each method's maps to the original maps, per randomization step and image.

    Attributes:
      methods: method names, `M`.
      steps: the layer randomized at each step, `L` (cumulative from the top in "cascading" mode).
      mode: "cascading", "independent" or "all".
      spearman_abs, spearman, ssim: `(M, L, N)` float64; NaN where a map is constant.
      targets: `(N,)` the explained class per image.
      examples: method → `(L + 1, K, H, W)` float32 absolute views in [0, 1] of the first K images
        (index 0 = original model), for figures.
      seed: the seed of the fresh weights and the noise keys.
    """

    methods: tuple[str, ...]
    steps: tuple[str, ...]
    mode: str
    spearman_abs: np.ndarray
    spearman: np.ndarray
    ssim: np.ndarray
    targets: np.ndarray
    examples: dict[str, np.ndarray]
    seed: int


# --------------------------------------------------------------------------- parameters


def randomization_order(model, variables, input_shape: tuple[int, ...] | None = None) -> tuple[str, ...]:
    """Module paths of the layers that hold parameters, from the top (output) down: Adebayo's order.

    `input_shape` `(H, W, C)` gives the run order for models whose layers are not in params order;
    without it the order of the params tree is used.
    """
    params = _params(variables)
    leaves = _leaf_paths(params)
    if input_shape is not None:
        from ..taps import layer_names

        run = layer_names(model, variables, input_shape)
        leaves = [p for p in run if p in set(leaves)] + [p for p in leaves if p not in set(run)]
    return tuple(reversed(leaves))


def _params(variables):
    return variables["params"] if "params" in variables else variables


def _leaf_paths(tree, prefix: str = "") -> list[str]:
    """Paths of the sub-dicts whose values are all arrays (one layer's params), in tree order."""
    if all(not isinstance(v, Mapping) for v in tree.values()):
        return [prefix] if prefix else []
    out = []
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out += _leaf_paths(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def fresh_params(model, variables, input_shape: tuple[int, ...], seed: int):
    """Initial (untrained) variables of a linen `model` for inputs `(H, W, C)`, from `jax.random.key(seed)`."""
    import flax.linen as nn

    if not isinstance(model, nn.Module):
        raise TypeError(
            "cascading randomization re-initializes layers with the model's own initializers: "
            f"it needs a flax.linen module, got {type(model).__name__}"
        )
    fresh = _jitted(model, "init")(jax.random.key(seed), jnp.zeros((1, *input_shape), jnp.float32))
    if jax.tree_util.tree_structure(_params(fresh)) != jax.tree_util.tree_structure(_params(variables)):
        raise ValueError(
            "the model's fresh params do not match the given params' structure "
            "(were they trained for another input size or architecture?)"
        )
    return fresh


@functools.lru_cache(maxsize=32)
def _jitted(model, what: str) -> Callable:
    """One compiled `model.init` or logits function per model (kept across calls: no recompiling)."""
    from ..core import as_net
    from ..taps import output

    if what == "init":
        return jax.jit(model.init)
    net = as_net(model)
    return jax.jit(lambda v, x: output(net, v, x)[0])


def randomize_params(variables, fresh, layers: Sequence[str]):
    """`variables` with the named layers' params replaced by those of `fresh` (no copy of the rest)."""
    params, new = _params(variables), _params(fresh)
    known = _leaf_paths(params)
    missing = [name for name in layers if name not in known]
    if missing:
        raise ValueError(f"layers {missing} hold no parameters; parameterized layers: {known}")
    out = _replace_paths(params, new, list(layers))
    return {**variables, "params": out} if "params" in variables else out


def _replace_paths(tree, new, paths: list[str]):
    heads = {}
    for p in paths:
        head, _, rest = p.partition(".")
        heads.setdefault(head, []).append(rest)
    out = dict(tree)
    for head, rests in heads.items():
        out[head] = new[head] if "" in rests else _replace_paths(tree[head], new[head], rests)
    return out


def _schedule(order: tuple[str, ...], mode: str) -> list[tuple[str, tuple[str, ...]]]:
    """(label, layers randomized) per step."""
    if mode == "cascading":
        return [(name, order[: i + 1]) for i, name in enumerate(order)]
    if mode == "independent":
        return [(name, (name,)) for name in order]
    if mode == "all":
        return [("all", order)]
    raise ValueError(f"mode must be 'cascading', 'independent' or 'all', got {mode!r}")


# --------------------------------------------------------------------------- maps


def _bind(model, methods, options: Mapping[str, Any] | None) -> dict[str, Callable]:
    """name → jitted `fn(params, x, target, keys) -> maps`."""
    from ..attribution.engine import compiled, method_options

    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, Mapping):
        methods = {name: name for name in methods}
    if not methods:
        raise ValueError("no methods given: pass names from jaxviz.attribution.METHODS or name → fn")
    bound = {}
    for name, fn in methods.items():
        if isinstance(fn, str):
            accepted = method_options(fn)
            run = compiled(fn, model, **{k: v for k, v in (options or {}).items() if k in accepted})
            bound[name] = lambda p, x, t, k, run=run: run(p, x, t, k)[0]
        elif callable(fn):
            jitted = jax.jit(fn)
            bound[name] = lambda p, x, t, k, jitted=jitted: _first(jitted(p, x, t, k))
        else:
            raise TypeError(f"method {name!r}: expected a METHODS name or fn(params, x, target, key), got {fn!r}")
    return bound


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _maps(fn: Callable, params, x: np.ndarray, targets: np.ndarray, keys, batch_size: int) -> np.ndarray:
    """One method's maps for all images, in batches of `batch_size` (last batch padded)."""
    n = len(x)
    out = []
    for lo in range(0, n, batch_size):
        idx = np.arange(lo, lo + batch_size).clip(max=n - 1)
        m = fn(params, jnp.asarray(x[idx]), jnp.asarray(targets[idx]), keys[idx])
        out.append(np.asarray(m, np.float32)[: min(batch_size, n - lo)])
    return np.concatenate(out)


def comparison_views(maps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(absolute, signed, normalized absolute) `(N, H, W)` views that the checks compare."""
    from ..plot import percentile_normalize

    m = np.asarray(maps, np.float64)
    if m.ndim == 4:
        absolute, signed = np.abs(m).sum(-1), m.sum(-1)
    elif m.ndim == 3:
        absolute, signed = np.abs(m), m
    else:
        raise ValueError(f"maps must be (N, H, W) or (N, H, W, C), got shape {m.shape}")
    return absolute, signed, percentile_normalize(absolute).astype(np.float64)


def compare_maps(original, randomized) -> dict[str, np.ndarray]:
    """Per-image Spearman (abs, signed) and SSIM between two batches of maps; each `(N,)`."""
    a_abs, a_signed, a_norm = comparison_views(original)
    b_abs, b_signed, b_norm = comparison_views(randomized)
    return {
        "spearman_abs": spearman(a_abs, b_abs),
        "spearman": spearman(a_signed, b_signed),
        "ssim": ssim(a_norm, b_norm, data_range=1.0),
    }


# --------------------------------------------------------------------------- the checks


def cascading_randomization(
    model,
    params,
    images,
    methods: Sequence[str] | Mapping[str, Any],
    targets=None,
    *,
    seed: int = 0,
    mode: str = "cascading",
    batch_size: int = 16,
    options: Mapping[str, Any] | None = None,
    keep: int = 4,
    progress: bool = True,
) -> SanityResult:
    """Adebayo et al.'s model randomization test for several methods on one batch of images.

    Args:
      model: a flax.linen module (e.g. `load().model`); params: its trained variables.
      images: `(N, H, W, C)` model inputs (preprocessed).
      methods: names in `jaxviz.attribution.METHODS`, or name → either such a name or your own
        `fn(params, x, target, key) -> maps` (or a tuple whose first item is the maps), e.g. a
        gradient through a new `jaxviz.rules.relu_rule`. `key` is one PRNG key per image.
      targets: `(N,)` class indices; None = the trained model's predicted classes.
      seed: seeds the fresh weights and the per-image noise keys (same keys for every step).
      mode: "cascading" (top-down, cumulative), "independent" (one layer at a time) or "all".
      batch_size: images per call of a method.
      options: keyword options given to the named methods that accept them (e.g. `n` for SmoothGrad).
      keep: how many images' views to keep in `examples` for figures.
      progress: show a tqdm bar over (step, method).

    Returns:
      a `SanityResult`; the same seed gives the same result.
    """
    x = np.asarray(images, np.float32)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {x.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(x)
    if targets is None:
        predict = _jitted(model, "predict")
        logits = np.concatenate(
            [np.asarray(predict(params, jnp.asarray(x[i : i + batch_size]))) for i in range(0, n, batch_size)]
        )
        targets = logits.argmax(-1)
    targets = np.asarray(targets)
    if targets.shape != (n,) or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be ({n},) class indices, got {targets.dtype} array of shape {targets.shape}")
    fns = _bind(model, methods, options)
    order = randomization_order(model, params, x.shape[1:])
    schedule = _schedule(order, mode)
    fresh = fresh_params(model, params, x.shape[1:], seed)
    base_key = jax.random.key(seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(jnp.arange(n))
    keep = min(keep, n)

    names = tuple(fns)
    sims = {m: np.full((len(names), len(schedule), n), np.nan) for m in METRICS}
    examples = {name: np.zeros((len(schedule) + 1, keep) + x.shape[1:3], np.float32) for name in names}
    bar = _progress(len(names) * (len(schedule) + 1), progress)
    originals = {}
    for name in names:
        originals[name] = _maps(fns[name], params, x, targets, keys, batch_size)
        examples[name][0] = comparison_views(originals[name][:keep])[2]
        _tick(bar, f"{name} (trained)")
    for s, (label, layers) in enumerate(schedule):
        p = randomize_params(params, fresh, layers)
        for j, name in enumerate(names):
            maps = _maps(fns[name], p, x, targets, keys, batch_size)
            for metric, values in compare_maps(originals[name], maps).items():
                sims[metric][j, s] = values
            examples[name][s + 1] = comparison_views(maps[:keep])[2]
            _tick(bar, f"{name} ({label})")
    if bar is not None:
        bar.close()
    return SanityResult(
        methods=names,
        steps=tuple(label for label, _ in schedule),
        mode=mode,
        targets=targets,
        examples=examples,
        seed=seed,
        **sims,
    )


def random_input_check(
    model, params, methods, *, n: int = 16, shape: tuple[int, int, int] | None = None, seed: int = 0, **kwargs
) -> SanityResult:
    """Data-independent check: maps of the trained vs the fully random model on N(0, 1) noise inputs.

    The inputs carry no object, so any similarity left comes from the method and the architecture,
    not from what the model learned. `shape` is `(H, W, C)` (default: the model's `input_shape` if
    it has one, else 64×64×3). Other arguments as `cascading_randomization` (mode is "all").
    """
    shape = shape or getattr(model, "input_shape", None) or (64, 64, 3)
    noise = np.asarray(jax.random.normal(jax.random.key(seed + 1), (n, *shape)), np.float32)
    return cascading_randomization(model, params, noise, methods, seed=seed, mode="all", **kwargs)


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="randomization", unit="maps")


def _tick(bar, text: str) -> None:
    if bar is not None:
        bar.set_postfix_str(text, refresh=False)
        bar.update(1)


# --------------------------------------------------------------------------- outputs


def summary(result: SanityResult) -> dict[str, dict[str, list[float | None]]]:
    """metric → method → mean over images per step (NaN-ignoring; None where all are NaN)."""
    out: dict[str, dict[str, list[float | None]]] = {}
    for metric in METRICS:
        values = getattr(result, metric)
        out[metric] = {
            name: [_mean(values[j, s]) for s in range(len(result.steps))] for j, name in enumerate(result.methods)
        }
    return out


def _mean(v: np.ndarray) -> float | None:
    finite = v[np.isfinite(v)]
    return float(finite.mean()) if finite.size else None


def records(result: SanityResult) -> list[dict]:
    """One JSON-ready dict per (method, step, image): similarities (None for NaN) and the target."""
    rows = []
    for j, name in enumerate(result.methods):
        for s, label in enumerate(result.steps):
            for i in range(len(result.targets)):
                row = {
                    "method": name,
                    "mode": result.mode,
                    "step": s + 1,
                    "layer": label,
                    "image": i,
                    "target": int(result.targets[i]),
                }
                for metric in METRICS:
                    v = float(getattr(result, metric)[j, s, i])
                    row[metric] = v if math.isfinite(v) else None
                rows.append(row)
    return rows


def to_json(result: SanityResult) -> str:
    """The result as JSON text: methods, steps, mode, seed, summary and records."""
    return json.dumps(
        {
            "methods": list(result.methods),
            "steps": list(result.steps),
            "mode": result.mode,
            "seed": result.seed,
            "summary": summary(result),
            "records": records(result),
        }
    )


def plot_similarity_curves(
    result: SanityResult, path: str | Path, *, metrics: Sequence[str] = METRICS, title: str | None = None
) -> Path:
    """Per-step mean similarity, one line per method, one panel per metric (Adebayo et al. Fig. 2).

    x: "original" then each step's layer (in cascading mode, randomized from the top down to it);
    y: mean similarity to the original maps over the images (1 at "original").
    """
    from ..plot import pyplot, save_figure

    plt = pyplot()
    table = summary(result)
    labels = ["original", *result.steps]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics) + 2.2, 4.4), squeeze=False)
    colors = plt.get_cmap("tab20")
    styles = ("-", "--", "-.", ":")
    for ax, metric in zip(axes[0], metrics):
        for j, name in enumerate(result.methods):
            y = [1.0] + [np.nan if v is None else v for v in table[metric][name]]
            ax.plot(
                range(len(labels)),
                y,
                styles[j % len(styles)],
                marker="o",
                markersize=3,
                color=colors(j % 20),
                label=name.replace("_", " "),
            )
        ax.axhline(0.0, color="gray", linewidth=0.6)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
        ax.set_ylim(_lowest(table[metric]), 1.05)
        ax.set_title(_METRIC_TITLES.get(metric, metric), fontsize=10)
        ax.set_xlabel(
            {"cascading": "layers randomized (top down, cumulative)", "independent": "layer randomized (alone)"}.get(
                result.mode, "layers randomized"
            )
        )
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("mean similarity to the original maps")
    axes[0, -1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def _lowest(values: Mapping[str, Sequence[float | None]]) -> float:
    """Lower y-limit: -0.35, or below the smallest value when one is lower."""
    finite = [v for row in values.values() for v in row if v is not None and math.isfinite(v)]
    return min([-0.35] + [v - 0.05 for v in finite])


def plot_similarity_bars(
    result: SanityResult,
    path: str | Path,
    *,
    step: int = -1,
    metrics: Sequence[str] = METRICS,
    title: str | None = None,
) -> Path:
    """Mean similarity at one step (default the last: everything randomized) as grouped bars per method."""
    from ..plot import pyplot, save_figure

    plt = pyplot()
    table = summary(result)
    names = result.methods
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(names) + 2), 4.2))
    for k, metric in enumerate(metrics):
        y = [np.nan if table[metric][n][step] is None else table[metric][n][step] for n in names]
        ax.bar(
            np.arange(len(names)) + (k - (len(metrics) - 1) / 2) * width,
            y,
            width,
            label=_METRIC_TITLES.get(metric, metric),
        )
    ax.axhline(0.0, color="gray", linewidth=0.6)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace("_", " ") for n in names], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("mean similarity to the trained model's maps")
    ax.set_ylim(_lowest({m: [table[m][n][step] for n in names] for m in metrics}), 1.05)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def plot_randomization_maps(
    result: SanityResult, path: str | Path, *, image: int = 0, input_image: np.ndarray | None = None
) -> Path:
    """Grid of one image's maps: rows = methods, columns = original then each randomization step
    (Adebayo et al. Fig. 1). `input_image` `(H, W, 3)` in [0, 1] adds the input as the first column."""
    from ..plot import pyplot, save_figure

    plt = pyplot()
    extra = input_image is not None
    titles = ["input"] * extra + ["original", *result.steps]
    rows, cols = len(result.methods), len(titles)
    fig, axes = plt.subplots(rows, cols, figsize=(0.95 * cols + 1.4, 0.95 * rows + 0.6), squeeze=False)
    for r, name in enumerate(result.methods):
        views = result.examples[name][:, image]
        cells = ([input_image] if extra else []) + list(views)
        for c, img in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=7, rotation=45)
        axes[r, 0].set_ylabel(name.replace("_", " "), fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.2)
    return save_figure(fig, path, dpi=80)
