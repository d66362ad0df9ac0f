"""A researcher's own LRP rule beside zennit's composites: energy concentration and deletion AUC.

    nice -n 5 .venv/bin/python experiments/lrp_own_rule.py --out docs/lrp

The new rule, `gamma_pos` below, is the README's example: LRP-γ with γ on the positive weights only
and the inputs as they are (zennit's γ also splits the inputs by sign). It goes into a composite
like zennit's epsilon_gamma_box (ReLUs pass, pools and residual sums norm, dense layers ε) and runs
beside the five built-in composites on each model:

- `shapesnet`, `minivgg`: the embedded trained models; target the image's ground-truth class;
- `vgg16`, `resnet50` (torchvision layouts at 224): ported weights when given as a weights name or
  `.safetensors` path (`jaxviz weights port`), `ARCH:random` otherwise (the default here: no download
  works offline) — then the scores only show that the protocol runs, not which rule explains better;
  target the model's top class (ImageNet has no shapes classes).

Images: the shapes benchmark (`--n` per model, rendered at the model's input size, ground-truth
masks). Scores per map: seed 002's energy concentration P (share of the map's energy inside the
object's mask dilated by 20 %; higher is better) and deletion AUC (RISE: the target's probability as
the most relevant pixels are blurred away, `--steps` steps; lower is better), mean ± standard error
over images. Writes `own_rule.json`, `own_rule.md` and `own_rule.png` (each composite's map of one
image per model) under `--out`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from jaxviz.atomic import write_text
from jaxviz.attribution.engine import compiled
from jaxviz.data.preprocess import input_bounds, normalize
from jaxviz.data.shapes import CLASSES, generate
from jaxviz.evaluation.experiment import _load_model, _model_label
from jaxviz.metrics.deletion import deletion_insertion
from jaxviz.metrics.energy import channel_sum, energy_concentration
from jaxviz.rules import composite
from jaxviz.rules.composite import FirstLayer
from jaxviz.rules.lrp import COMPOSITES, Epsilon, Norm, ZBox, linear_rule, pass_relu, stabilize
from jaxviz.taps import output

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


# --- the researcher's rule: 4 lines, and its composite ----------------------------------------------
def gamma_pos(layer, g, gamma=0.5):  # γ on positive weights only, inputs as they are
    w = layer.w + gamma * jnp.maximum(layer.w, 0)
    return layer.x * layer.back(w, g / stabilize(layer.out(layer.x, w, layer.b), 1e-6))


def own_composite(low, high):
    return composite(
        {
            FirstLayer(kind="conv"): ZBox(low, high),
            "relu": pass_relu,
            "pool": Norm(),
            "add": Norm(),
            "conv": linear_rule(gamma_pos),
            "dense": Epsilon(),
        },
        name="gamma_pos",
    )


# -----------------------------------------------------------------------------------------------------


def score_model(entry: str, n: int, steps: int, batch: int, seed: int) -> tuple[list[dict], dict]:
    lm = _load_model(entry)
    size = lm.input_shape[0]
    data = generate(n, size=size, seed=seed)
    x = np.asarray(normalize(data.images, lm.preprocessing), np.float32)
    logits_fn = jax.jit(lambda v, z: output(lm.model, v, z)[0])
    logits = np.concatenate(
        [np.asarray(logits_fn(lm.variables, jnp.asarray(x[i : i + batch]))) for i in range(0, n, batch)]
    )
    shapes_model = lm.labels is not None and tuple(lm.labels.names) == CLASSES
    targets = data.labels if shapes_model else logits.argmax(1).astype(np.int32)
    bounds = {k: tuple(v) for k, v in input_bounds(lm.preprocessing).items()}
    variants = {name: {"composite": name, **bounds} for name in COMPOSITES}
    variants["gamma_pos (own)"] = {"composite": own_composite(bounds["low"], bounds["high"])}

    def probs(z):
        return jax.nn.softmax(logits_fn(lm.variables, jnp.asarray(z)), axis=-1)

    rows, example = [], {}
    for label, options in variants.items():
        fn = compiled("lrp", lm.model, **options)
        t0 = time.perf_counter()
        maps = np.concatenate(
            [
                np.asarray(fn(lm.variables, jnp.asarray(x[i : i + batch]), targets[i : i + batch])[0])
                for i in range(0, n, batch)
            ]
        )
        seconds = time.perf_counter() - t0
        p = energy_concentration(maps, data.masks, dilation=0.2).P
        deletion = deletion_insertion(probs, x, channel_sum(maps), targets, steps=steps, chunk=batch).auc
        rows.append(
            {
                "model": _model_label(entry),
                "composite": label,
                "images": n,
                "P": _stat(p),
                "deletion_auc": _stat(deletion),
                "seconds": round(seconds, 2),
            }
        )
        example[label] = channel_sum(maps[:1])[0]
        print(json.dumps(rows[-1]), flush=True)
    return rows, {"image": data.images[0], "mask": data.masks[0], "maps": example}


def _stat(v) -> dict:
    v = np.asarray(v, np.float64)
    return {"mean": float(v.mean()), "sem": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0}


def figure(examples: dict, path: Path) -> None:
    models = list(examples)
    labels = list(next(iter(examples.values()))["maps"])
    fig, axes = plt.subplots(
        len(models), len(labels) + 1, figsize=(2.1 * (len(labels) + 1), 2.2 * len(models)), squeeze=False
    )
    for r, model in enumerate(models):
        ex = examples[model]
        axes[r, 0].imshow(ex["image"])
        axes[r, 0].contour(ex["mask"], levels=[0.5], colors="yellow", linewidths=0.8)
        axes[r, 0].set_ylabel(model, fontsize=9)
        for c, label in enumerate(labels, start=1):
            m = ex["maps"][label]
            lim = float(np.abs(m).max()) or 1.0
            axes[r, c].imshow(m, cmap="bwr", vmin=-lim, vmax=lim)
            if r == 0:
                axes[r, c].set_title(label, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("image, mask", fontsize=8)
    fig.suptitle("LRP relevance (red +, blue −) of one shapes image per model", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "# LRP: a researcher's own rule (gamma_pos) beside zennit's composites",
        "",
        f"`{command}`",
        "",
        "P: energy concentration in the object's mask dilated 20 % (higher is better); deletion AUC: the "
        "target's probability as the most relevant pixels are blurred away (lower is better); mean ± s.e. "
        "over the images. `:random` models have random weights: their scores show the protocol runs, "
        "nothing about the rules.",
        "",
        "| model | composite | images | P | deletion AUC | s (maps, compile included) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['composite']} | {r['images']} | {r['P']['mean']:.3f} ± {r['P']['sem']:.3f} "
            f"| {r['deletion_auc']['mean']:.3f} ± {r['deletion_auc']['sem']:.3f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["shapesnet", "minivgg", "vgg16:random", "resnet50:random"])
    p.add_argument("--n", type=int, default=16, help="shapes images per model")
    p.add_argument("--steps", type=int, default=8, help="deletion steps")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("docs/lrp"))
    a = p.parse_args()
    rows, examples = [], {}
    for entry in a.models:
        model_rows, examples[_model_label(entry)] = score_model(entry, a.n, a.steps, a.batch, a.seed)
        rows += model_rows
    command = (
        f"python experiments/lrp_own_rule.py --models {' '.join(a.models)} --n {a.n} --steps {a.steps} --seed {a.seed}"
    )
    a.out.mkdir(parents=True, exist_ok=True)
    write_text(a.out / "own_rule.json", json.dumps({"command": command, "rows": rows}, indent=1))
    write_text(a.out / "own_rule.md", markdown(rows, command))
    figure(examples, a.out / "own_rule.png")
    print(markdown(rows, command))


if __name__ == "__main__":
    main()
