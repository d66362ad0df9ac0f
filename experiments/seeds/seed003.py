"""Seed 003 (Czech lecture slides "Vizualizace a analýza konvolučních sítí"): adversarial examples
and their transfer between networks, the slides' linear toy example, and class models with
Yosinski et al.'s regularization between steps.

    python experiments/seeds/seed003.py --out runs/seed003                    # offline: shapesnet ⇄ minivgg
    python experiments/seeds/seed003.py --out DIR --weights a.safetensors --weights b.safetensors
    python experiments/seeds/seed003.py --out DIR --n 8 --eps 0,8 --steps 8 --class-steps 24   # a quick look

Writes `transfer.png`, `transfer_rates.png`, `toy_linear.png`, `class_models.png`, `results.json`
(every number) and `index.md` / `index.html` (`page.py`: each figure beside the seed's caption, ours,
and what differs).

| slide | what | here |
|---|---|---|
| "Adversarial examples" | raise another class's score by gradient steps on the image until the net says it | targeted iterative sign steps (`jaxviz visualize adversarial --preset iterative`'s recipe: `linf_project`, `predicts_target`), FGSM and untargeted BIM (Kurakin et al. 2017), for several ε |
| "Různé sítě … mají stejné adversarialy" (Szegedy et al. 2014) | adversarials of one net fool another trained on the same task | made on each embedded model, evaluated on the other: fooling rate on the source, transfer rate on the target |
| "Proč to funguje" | x·w = −3 → p = 0.0474; x + 0.5·sign(w) → x·w = 2 → p = 0.88 | the slides' x and w, exactly |
| "lepší způsob regularizace, navíc vyhlazování v každém kroku" (Yosinski et al. 2015) | class models blurred and clipped between steps | class preset `yosinski` beside `regularized` (blur and L2 as loss terms), reclassified |

Rates count only images that both models classify correctly: fooling rate = share the source model now
gets wrong, transfer rate = share the other model gets wrong on the same adversarial images (targeted
attacks also report the share that lands on the target class). ε is in grey levels (`--eps 0,2,4,8,16`
means ε·255). Without `--weights` it runs offline on the two embedded models, both trained on the
synthetic shapes dataset (10 classes), on shapes images they never saw (`--data-seed`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # page.py, a sibling module

from page import Figure, write_page  # noqa: E402

import jaxviz  # noqa: E402  (page.py put the repository on the path)
from jaxviz.atomic import write_text  # noqa: E402
from jaxviz.data import shapes  # noqa: E402
from jaxviz.data.preprocess import normalize  # noqa: E402
from jaxviz.optvis import adversarial as A  # noqa: E402
from jaxviz.optvis import objectives as O  # noqa: E402
from jaxviz.optvis import visualize as V  # noqa: E402
from jaxviz.optvis.optimizers import make_optimizer  # noqa: E402
from jaxviz.optvis.param import pixel  # noqa: E402
from jaxviz.optvis.render import Renderer, unit_keys  # noqa: E402
from jaxviz.plot import pyplot  # noqa: E402

# The slides' toy example ("Proč to funguje"): input x, weights w, b = 0, step 0.5 along sign(w).
TOY_X = (2, -1, 3, -2, 2, 2, 1, -4, 5, 1)
TOY_W = (-1, -1, 1, -1, 1, -1, 1, 1, -1, 1)
TOY_STEP = 0.5
TOY_SEED = {
    "score": -3.0,
    "p": 0.0474,
    "adv_score": 2.0,
    "adv_p": 0.88,
    "adv_x": (1.5, -1.5, 3.5, -2.5, 2.5, 1.5, 1.5, -3.5, 4.5, 1.5),
}
ATTACKS = ("fgsm", "bim", "targeted")
SEED_CLASSES = ("circle", "triangle", "star", "heart", "crescent")  # the seed shows ImageNet classes; ours are shapes


# --- 1. the linear toy example ------------------------------------------------------------------


def toy_example() -> dict:
    """The slides' logistic model P(y=1|x) = σ(wᵀx + b), b = 0, before and after x + 0.5·sign(w)."""
    x, w = np.asarray(TOY_X, np.float64), np.asarray(TOY_W, np.float64)
    adv = x + TOY_STEP * np.sign(w)
    score, adv_score = float(w @ x), float(w @ adv)
    sigmoid = lambda s: 1.0 / (1.0 + np.exp(-s))
    return {
        "x": x.tolist(),
        "w": w.tolist(),
        "adv_x": adv.tolist(),
        "score": score,
        "p": float(sigmoid(score)),
        "adv_score": adv_score,
        "adv_p": float(sigmoid(adv_score)),
        "linf": TOY_STEP,
    }


# --- 2. adversarial examples and their transfer ----------------------------------------------------

_PREDICT: dict = {}


def probabilities(lm, images: np.ndarray) -> np.ndarray:
    """Softmax `(N, K)` of display-space images `(N, H, W, 3)`, one compiled function per model (the
    library's `reclassify.probabilities` compiles anew on every call, which adds up over many ε)."""
    fn = _PREDICT.get(lm.name)
    if fn is None:
        fn = _PREDICT[lm.name] = jax.jit(
            lambda x: jax.nn.softmax(lm.logits(normalize(jnp.clip(x, 0, 1), lm.preprocessing)), -1)
        )
    return np.asarray(fn(jnp.asarray(images, jnp.float32)))


def iterative(
    lm,
    x0: np.ndarray,
    classes: np.ndarray,
    eps: np.ndarray,
    *,
    targeted: bool,
    steps: int,
    lr: float = 1 / 255,
    seed: int = 0,
) -> np.ndarray:
    """Iterative sign steps of size `lr` within ‖δ‖∞ ≤ eps, every (image, ε) pair in one compiled call.

    targeted: maximize log p(classes) and freeze an image once the model predicts its target
    (seed 003's recipe, `jaxviz visualize adversarial --preset iterative`); else maximize the loss
    of the true `classes` for all `steps` (BIM, Kurakin et al. 2017).
    Args: x0 `(N, H, W, 3)` in [0, 1]; classes `(N,)`; eps `(N,)` in [0, 1] units. Returns `(N, H, W, 3)`."""
    objective = (lambda u: O.class_log_prob(u["target"])) if targeted else (lambda u: -O.class_log_prob(u["target"]))
    r = Renderer(
        lm.model,
        lm.variables,
        lm.preprocessing,
        objective,
        pixel((1, *x0.shape[1:])),
        make_optimizer("sign", lr),
        project=lambda raw, u: A.linf_project(u["eps"])(raw, u),
        stop=A.predicts_target() if targeted else None,
    )
    units = {
        "image": jnp.asarray(x0)[:, None],
        "target": jnp.asarray(classes, jnp.int32),
        "eps": jnp.asarray(eps, jnp.float32),
    }
    return r.run(unit_keys(seed, len(x0)), units, steps, raw0=jnp.asarray(x0)[:, None]).images[:, 0]


def attack(lm, name: str, x: np.ndarray, y: np.ndarray, eps_list: list[float], steps: int) -> np.ndarray:
    """Adversarials `(E, N, H, W, 3)` of images `x` (true classes `y`) on `lm`, one stack per ε."""
    n = len(x)
    if name == "fgsm":
        step = jax.jit(lambda x, y, e: A.fgsm(lm.model, lm.variables, lm.preprocessing, x, y, e))
        return np.stack([np.asarray(step(jnp.asarray(x), jnp.asarray(y), e)) for e in eps_list])
    xs, eps = np.tile(x, (len(eps_list), 1, 1, 1)), np.repeat(np.asarray(eps_list, np.float32), n)
    classes = np.tile(target_classes(y) if name == "targeted" else y, len(eps_list))
    return iterative(lm, xs, classes, eps, targeted=name == "targeted", steps=steps).reshape(len(eps_list), *x.shape)


def target_classes(y: np.ndarray) -> np.ndarray:
    """The class each targeted attack asks for: the next one (seed 003: 'correct' + difference = 'ostrich')."""
    return (np.asarray(y) + 1) % shapes.num_classes


def transfer(
    models: list, x: np.ndarray, y: np.ndarray, eps_list: list[float], attacks: list[str], steps: int
) -> tuple[dict, dict]:
    """Every attack on each model, scored on it and on the others.

    Returns `(rates, adversarials)`: rates[f"{src}->{dst}"][attack] is a list over ε of
    {eps, eps_255, n, source_fooling, target_transfer, (source_hit, target_hit,) linf_255, l2};
    adversarials[(src, attack)] is `(E, N, H, W, 3)`."""
    rates, advs = {}, {}
    for src in models:
        for name in attacks:
            t = time.perf_counter()
            adv = attack(src, name, x, y, eps_list, steps)
            advs[(src.name, name)] = adv
            print(f"{name} on {src.name}: {time.perf_counter() - t:.1f} s", flush=True)
            for dst in models:
                if dst is src:
                    continue
                rows = []
                for e, a in zip(eps_list, adv):
                    ps, pt = probabilities(src, a).argmax(1), probabilities(dst, a).argmax(1)
                    norms = A.perturbation_norms(a, x)
                    row = {
                        "eps": float(e),
                        "eps_255": round(float(e) * 255, 3),
                        "n": int(len(x)),
                        "source_fooling": float(np.mean(ps != y)),
                        "target_transfer": float(np.mean(pt != y)),
                        "linf_255": float(norms["linf"].mean() * 255),
                        "l2": float(norms["l2"].mean()),
                    }
                    if name == "targeted":
                        t = target_classes(y)
                        row["source_hit"], row["target_hit"] = float(np.mean(ps == t)), float(np.mean(pt == t))
                    rows.append(row)
                rates.setdefault(f"{src.name}->{dst.name}", {})[name] = rows
    return rates, advs


def clean_images(models: list, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """`n` shapes images that every model classifies correctly (drawn from a larger pool), their
    labels, and how many of the pool were needed."""
    pool = shapes.generate(max(2 * n, n + 10), size=64, seed=seed)
    ok = np.ones(len(pool.labels), bool)
    for lm in models:
        ok &= probabilities(lm, pool.images).argmax(1) == pool.labels
    idx = np.flatnonzero(ok)[:n]
    if len(idx) < n:
        raise SystemExit(f"only {len(idx)} of {len(ok)} shapes images are classified correctly by every model")
    return pool.images[idx], pool.labels[idx], int(idx[-1]) + 1


# --- 3. class models: loss-term regularization vs Yosinski's between steps ----------------------------


def class_models(lm, classes: list[int], steps: int, seed: int) -> dict:
    """Class models of `classes` with the `regularized` and the `yosinski` presets, reclassified."""
    out = {}
    for preset in ("regularized", "yosinski"):
        v = V.class_model(lm, classes, preset=preset, steps=steps, seed=seed)
        out[preset] = {
            "images": v.images[:, 0],
            "reclassification": v.extra["reclassification"],
            "hparams": {
                k: v.hparams[k]
                for k in (
                    "lr",
                    "momentum",
                    "steps",
                    "l2",
                    "blur",
                    "blur_sigma",
                    "transforms",
                    "decay",
                    "blur_every",
                    "norm_pct",
                    "contrib_pct",
                )
                if k in v.hparams
            },
        }
    return out


# --- figures ----------------------------------------------------------------------------------------


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=100)
    pyplot().close(fig)


def _amplified(delta: np.ndarray, eps: float) -> np.ndarray:
    """A perturbation shown as mid-grey ± δ scaled so that ±ε fills [0, 1]."""
    return np.clip(0.5 + 0.5 * delta / max(eps, 1e-12), 0, 1)


def transfer_figure(
    path: Path, models: list, x: np.ndarray, adv_by_src: dict, eps: float, attack_name: str, show: int
) -> None:
    """Per source model: originals | perturbations (amplified) | adversarials, each titled with both
    models' predicted class and probability."""
    plt = pyplot()
    k = min(show, len(x))
    fig, axes = plt.subplots(3 * len(models), k, figsize=(1.55 * k, 1.85 * 3 * len(models)), squeeze=False)
    short = {lm.name: lm.name[0].upper() for lm in models}

    def titles(imgs):
        probs = [probabilities(lm, imgs)[:k] for lm in models]
        return [
            "\n".join(
                f"{short[lm.name]}: {lm.labels.name(int(p[j].argmax()))} {p[j].max():.2f}"
                for lm, p in zip(models, probs)
            )
            for j in range(k)
        ]

    for m, src in enumerate(models):
        adv = adv_by_src[src.name]
        tx, ta = titles(x), titles(adv)
        for j in range(k):
            rows = [
                (x[j], "original"),
                (_amplified(adv[j] - x[j], eps), f"δ (±{eps * 255:g}/255)"),
                (adv[j], "adversarial"),
            ]
            for r, (img, what) in enumerate(rows):
                ax = axes[3 * m + r, j]
                ax.imshow(img, interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                if r != 1:
                    ax.set_title((tx if r == 0 else ta)[j], fontsize=6)
                if j == 0:
                    ax.set_ylabel(f"{what}\n{attack_name} on {src.name}" if r == 1 else what, fontsize=7)
    fig.suptitle(
        f"{attack_name} at ε = {eps * 255:g}/255 — " + ", ".join(f"{v} = {k}" for k, v in short.items()), fontsize=8
    )
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 0.98))
    _save(fig, path)


def rates_figure(path: Path, rates: dict) -> None:
    """Fooling rate on the source (solid) and transfer rate on the other model (dashed) vs ε, per direction."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(rates), figsize=(4.2 * len(rates), 3.2), squeeze=False)
    colors = {"fgsm": "tab:blue", "bim": "tab:red", "targeted": "tab:green"}
    for ax, (direction, by_attack) in zip(axes[0], rates.items()):
        for name, rows in by_attack.items():
            e = [r["eps_255"] for r in rows]
            ax.plot(e, [r["source_fooling"] for r in rows], "-o", color=colors[name], ms=3, label=f"{name}: source")
            ax.plot(e, [r["target_transfer"] for r in rows], "--s", color=colors[name], ms=3, label=f"{name}: transfer")
        ax.set_title(direction, fontsize=9)
        ax.set_xlabel("ε (grey levels of 255)", fontsize=8)
        ax.set_ylabel("share of images misclassified", fontsize=8)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    _save(fig, path)


def toy_figure(path: Path, toy: dict) -> None:
    """x, w and the adversarial x as bars, with both scores and probabilities."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    i = np.arange(len(toy["x"]))
    ax.bar(i - 0.27, toy["x"], 0.27, label="x", color="tab:blue")
    ax.bar(i, toy["w"], 0.27, label="w", color="tab:gray")
    ax.bar(i + 0.27, toy["adv_x"], 0.27, label="x + 0.5·sign(w)", color="tab:red")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(i)
    ax.legend(fontsize=7, ncol=3, loc="lower left")
    ax.set_title(
        f"wᵀx = {toy['score']:g} → σ = {toy['p']:.4f};   wᵀ(x + 0.5·sign w) = {toy['adv_score']:g} → "
        f"σ = {toy['adv_p']:.4f}",
        fontsize=9,
    )
    fig.tight_layout()
    _save(fig, path)


def class_figure(path: Path, lm, classes: list[int], cm: dict) -> None:
    """Rows = presets, columns = classes, each titled with the model's verdict on the image."""
    plt = pyplot()
    fig, axes = plt.subplots(
        len(cm), len(classes), figsize=(max(1.6 * len(classes), 3.2), 2.05 * len(cm)), squeeze=False
    )
    for r, (preset, res) in enumerate(cm.items()):
        for j, row in enumerate(res["reclassification"]):
            ax = axes[r, j]
            ax.imshow(res["images"][j], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(
                f"{row['target_name']}: p = {row['target_probability']:.3f}"
                + ("" if row["predicted"] == row["target"] else f"\n(says {row['predicted_name']})"),
                fontsize=7,
            )
            if j == 0:
                ax.set_ylabel(preset, fontsize=8)
    fig.suptitle(f"class models on {lm.name}", fontsize=8)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 0.96))
    _save(fig, path)


# --- the run -------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, help="folder for the figures, results.json and index.md/html")
    p.add_argument(
        "--models",
        default="shapesnet,minivgg",
        help="two or more models trained on the same task "
        "(names for jaxviz.load; default the two embedded shapes models)",
    )
    p.add_argument(
        "--weights",
        action="append",
        help="weights (name or .safetensors path) for each of --models, in order (repeat once per model)",
    )
    p.add_argument("--n", type=int, default=40, help="images attacked (default 40)")
    p.add_argument(
        "--eps", default="0,2,4,8,16", help="L∞ budgets in grey levels, comma-separated (default 0,2,4,8,16)"
    )
    p.add_argument("--attacks", default=",".join(ATTACKS), help=f"comma-separated subset of {', '.join(ATTACKS)}")
    p.add_argument(
        "--steps",
        type=int,
        default=24,
        help="iterative attacks: sign steps of 1/255 (default 24: "
        "Kurakin's min(ε+4, 1.25ε) for ε = 16, rounded up to whole CPU chunks of 8)",
    )
    p.add_argument("--show", type=int, default=4, help="images in the transfer grid (default 4)")
    p.add_argument(
        "--show-eps",
        type=float,
        help="ε (grey levels) of the transfer grid (default: the largest positive one ≤ 8, else the smallest positive)",
    )
    p.add_argument("--classes", default=",".join(SEED_CLASSES), help="class models: comma-separated names or indices")
    p.add_argument("--class-steps", type=int, default=81, help="SGD steps of the class models (default 81)")
    p.add_argument("--data-seed", type=int, default=3, help="shapes images (not the training set, seed 0)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [s for s in args.models.split(",") if s]
    if args.weights and len(args.weights) != len(names):
        raise SystemExit(f"--weights given {len(args.weights)} times for {len(names)} models: once per model")
    models = [jaxviz.load(nm, weights=(args.weights or [None] * len(names))[i]) for i, nm in enumerate(names)]
    if len(models) < 2:
        raise SystemExit("transfer needs two or more models (--models a,b)")
    attacks = [a for a in args.attacks.split(",") if a]
    bad = [a for a in attacks if a not in ATTACKS]
    if bad:
        raise SystemExit(f"unknown attack {bad[0]!r}: use {', '.join(ATTACKS)}")
    eps_list = [float(e) / 255 for e in args.eps.split(",")]
    lm0 = models[0]
    classes = [int(c) if c.isdigit() else lm0.labels.index(c) for c in args.classes.split(",") if c]
    results: dict = {"models": [lm.name for lm in models], "args": vars(args)}

    toy = toy_example()
    print(
        f"toy: wᵀx = {toy['score']:g}, p = {toy['p']:.4f}; adversarial wᵀx = {toy['adv_score']:g}, "
        f"p = {toy['adv_p']:.4f}"
    )
    assert round(toy["p"], 4) == TOY_SEED["p"] and round(toy["adv_p"], 2) == TOY_SEED["adv_p"], toy
    assert toy["score"] == TOY_SEED["score"] and toy["adv_score"] == TOY_SEED["adv_score"], toy
    assert toy["adv_x"] == list(TOY_SEED["adv_x"]), toy
    results["toy"] = toy
    toy_figure(out / "toy_linear.png", toy)

    t = time.perf_counter()
    x, y, pool = clean_images(models, args.n, args.data_seed)
    rates, advs = transfer(models, x, y, eps_list, attacks, args.steps)
    results["transfer"] = {"rates": rates, "images_drawn": pool, "seconds": round(time.perf_counter() - t, 1)}
    for direction, by_attack in rates.items():
        for name, rows in by_attack.items():
            print(
                f"{direction} {name:8s} "
                + "  ".join(
                    f"ε={r['eps_255']:g}: fool {r['source_fooling']:.2f} transfer {r['target_transfer']:.2f}"
                    + (f" hit {r['source_hit']:.2f}/{r['target_hit']:.2f}" if "source_hit" in r else "")
                    for r in rows
                )
            )
    show_attack = "bim" if "bim" in attacks else attacks[0]
    positive = [e * 255 for e in eps_list if e > 0] or [0.0]
    show_255 = args.show_eps if args.show_eps is not None else max([e for e in positive if e <= 8] or [min(positive)])
    e_idx = int(np.argmin([abs(e * 255 - show_255) for e in eps_list]))
    results["transfer"]["figure"] = {"attack": show_attack, "eps_255": round(eps_list[e_idx] * 255, 3)}
    transfer_figure(
        out / "transfer.png",
        models,
        x,
        {lm.name: advs[(lm.name, show_attack)][e_idx] for lm in models},
        eps_list[e_idx],
        show_attack,
        args.show,
    )
    rates_figure(out / "transfer_rates.png", rates)

    t = time.perf_counter()
    cm = class_models(lm0, classes, args.class_steps, args.seed)
    results["class_models"] = {
        p: {"reclassification": r["reclassification"], "hparams": r["hparams"]} for p, r in cm.items()
    }
    results["class_models"]["seconds"] = round(time.perf_counter() - t, 1)
    for p, r in cm.items():
        print(
            f"class models ({p}): "
            + ", ".join(f"{row['target_name']} {row['target_probability']:.3f}" for row in r["reclassification"])
        )
    class_figure(out / "class_models.png", lm0, classes, cm)

    results["seconds"] = round(time.perf_counter() - t0, 1)
    write_text(out / "results.json", json.dumps(results, indent=2, default=str))
    write_page(
        out,
        "Seed 003 — lecture slides: adversarial examples, transfer, class models",
        _figures(results, models, attacks, eps_list[e_idx], show_attack),
        _intro(models, results),
    )
    print(f"wrote {out}/index.html in {results['seconds']} s")
    return results


def _intro(models, results) -> str:
    return (
        f"Offline on {', '.join(lm.name for lm in models)} (jaxviz's embedded models, both trained on the "
        f"synthetic shapes dataset), not on ImageNet CNNs; {results['args']['n']} "
        f"shapes images that every model classifies correctly. Everything took {results['seconds']} s on this machine."
    )


def _figures(results: dict, models, attacks: list[str], show_eps: float, show_attack: str) -> list[Figure]:
    toy, rates, cm = results["toy"], results["transfer"]["rates"], results["class_models"]
    last = {
        f"{d} {a} ε={rows[-1]['eps_255']:g}": f"fooling {rows[-1]['source_fooling']:.2f}, transfer "
        f"{rows[-1]['target_transfer']:.2f}"
        for d, by in rates.items()
        for a, rows in by.items()
    }
    yos = {
        f"{p} {row['target_name']}": f"{row['target_probability']:.3f}"
        + ("" if row["predicted"] == row["target"] else f" (says {row['predicted_name']})")
        for p in ("regularized", "yosinski")
        for row in cm[p]["reclassification"]
    }
    return [
        Figure(
            "transfer.png",
            "Adversarial examples: 'správně + rozdíl = pštros' (correct + difference = ostrich), "
            "and: different networks trained on the same task have the same adversarials (Szegedy et al.)",
            f"{show_attack} adversarials at ε = {show_eps * 255:g}/255 made on each model (rows), titled with both "
            "models' predicted class and probability; δ amplified so that ±ε is black/white.",
            "Shapes classes and 64×64 images instead of ImageNet photos; the seed shows a targeted attack on one "
            "network and only states that adversarials transfer; here both directions are measured.",
        ),
        Figure(
            "transfer_rates.png",
            "Různé sítě natrénované na stejné úloze mají stejné adversarialy "
            "(Szegedy et al.: Intriguing properties of neural networks)",
            f"Attacks {', '.join(attacks)} on each model; solid: share the source model gets wrong (fooling "
            "rate), dashed: share the other model gets wrong on the same images (transfer rate).",
            "The seed gives no numbers and only the targeted recipe; FGSM and untargeted BIM are added. Ours are "
            "for two small shapes CNNs that share training data but not architecture. The targeted attack stops "
            "once the source says the target, so its images sit just past that boundary and rarely transfer; "
            "BIM keeps climbing the loss for all steps and transfers most at large ε.",
            last,
        ),
        Figure(
            "toy_linear.png",
            "Proč to funguje: x·w = −3 → p(class 1) = 1/(1+e³) = 0.0474; adding 0.5·sign(w) "
            "gives x·w = 2 → p = 0.88 ('from 5% to 88%')",
            "The slides' x and w (b = 0) and the same step; probabilities computed, not copied.",
            "Nothing: the seed rounds σ(2) = 0.8808 to 0.88.",
            {
                "wᵀx": toy["score"],
                "p": f"{toy['p']:.4f}",
                "wᵀx_adv": toy["adv_score"],
                "p_adv": f"{toy['adv_p']:.4f}",
                "x_adv": " ".join(f"{v:g}" for v in toy["adv_x"]),
            },
        ),
        Figure(
            "class_models.png",
            "Příklady obrázků maximalizujících zadanou třídu: lepší způsob regularizace, "
            "navíc vyhlazování (postprocessing) v každém kroku (Yosinski et al.: Flamingo, Billiard Table, "
            "School Bus)",
            "Top row: preset `regularized` (L2 and blur as loss terms, jitter). Bottom row: preset `yosinski` "
            "(the same SGD; a Gaussian blur every few steps and pixels of small norm and small contribution set "
            "to mid-grey, between steps). Each image reclassified by the model.",
            "Shapes classes on a 64×64 CNN instead of ImageNet classes on AlexNet-size nets; θ values chosen "
            "for 64×64 images (blur σ 1 every 4 steps, norm 20th and contribution 50th percentile), not the "
            "paper's four tuned sets; no decay.",
            yos,
        ),
    ]


if __name__ == "__main__":
    main()
