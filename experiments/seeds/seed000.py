"""Seed 000 (Sršen 2019, "Vizualizacija i interpretacija konvolucijskih modela", VGG16 in PyTorch),
experiment by experiment, with the seed's own hyperparameters.

    python experiments/seeds/seed000.py --out runs/seed000                          # offline: embedded shapesnet
    python experiments/seeds/seed000.py --out runs/seed000_minivgg --model minivgg  # the other embedded net
    python experiments/seeds/seed000.py --out runs/seed000_vgg16 --weights vgg16-torchvision   # ported VGG16
    python experiments/seeds/seed000.py --out DIR --weights vgg16-torchvision --image tiger.jpg --image car.jpg

Writes one PNG per figure of the seed's chapter 6.3, `results.json` (every number), and
`index.md` / `index.html` (`page.py`: each figure beside the seed's caption, ours, and what differs).

| seed (§) | what | seed's recipe, as used here |
|---|---|---|
| 6.3.1 | class model | the input tensor itself optimized: init U[150, 180]/255, SGD lr 0.05 momentum 0.9, 81 steps, loss −y_c, no normalization and no clipping (`--normalize`, `--clip` ask for them); reclassified |
| 6.3.2 | saliency | ∂y_c/∂x of the normalized image for the top-n classes, max over channels, clamp(min=0) |
| 6.3.3 | guided backprop | the `features` ReLUs only (VGG16's classifier ReLUs keep their gradient), argmax class |
| 6.3.4 | Grad-CAM | at features.29 (relu5_3) for the top-n classes, shown as heatmap·0.4 + image |
| 6.3.5 | layer / filter visualization | the noise of 6.3.1, Adam weight decay 1e-6, loss −mean(activation) of a whole conv layer (1–9) or of 4 random filters of conv layers 1, 2, 5, 8 |
| 6.3.6 | DeepDream | the normalized photo tensor optimized, SGD weight decay 1e-4, loss −‖A‖ of conv layers 2–10 |

The seed gives no learning rate or step count for 6.3.5 and 6.3.6: we use the presets' (Adam lr 0.05,
64 steps; SGD lr 0.05, 40 steps) unless `--filter-lr`, `--dream-lr`, `--steps` say otherwise.
Without `--weights` it runs offline on an embedded model trained on synthetic shapes (10 classes),
with shapes images it never saw; layer numbers beyond its depth are mapped (stated on the page).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # page.py, a sibling module

from page import Figure, parse_only, write_page  # noqa: E402

import jaxviz  # noqa: E402  (page.py put the repository on the path)
from jaxviz import Top  # noqa: E402
from jaxviz.atomic import write_text  # noqa: E402
from jaxviz.attribution.engine import compiled  # noqa: E402
from jaxviz.data import shapes  # noqa: E402
from jaxviz.data.images import load_image  # noqa: E402
from jaxviz.data.preprocess import TORCHVISION_224, UNIT, normalize, resize_and_crop, to_display  # noqa: E402
from jaxviz.optvis import visualize as V  # noqa: E402
from jaxviz.optvis.commands import save_grid  # noqa: E402
from jaxviz.plot import clamp_max, colors, rgb_gradient  # noqa: E402
from jaxviz.taps import output  # noqa: E402

EXPERIMENTS = ("class", "saliency", "guided_backprop", "grad_cam", "layers", "filters", "deepdream")
SEED_CLASSES = ("dumbbell", "dumbbell", "strawberry", "pineapple")  # figs 6.2-6.5: dumbbell twice (2 runs)
SEED_FILTER_CONVS = (1, 2, 5, 8)  # figs 6.15-6.18: 4 random filters of conv layers 1, 2, 5, 8
SEED_LAYER_CONVS = tuple(range(1, 10))  # fig 6.14: whole conv layers 1-9
SEED_DREAM_CONVS = tuple(range(2, 11))  # fig 6.19: conv layers 2-10
VGG16_CONVS = 13
NOISE = (150 / 255, 180 / 255)  # the seed's generateNoiseImage: np.uint8(U[150, 180]) / 255


# --- inputs -----------------------------------------------------------------------------------


def vgg_photos(paths: list[str] | None, size: int) -> tuple[np.ndarray, list[str]]:
    """Photos `(N, S, S, 3)` in [0, 1] through the seed's Resize(S) + CenterCrop(S) (S = 224: `TORCHVISION_224`):
    the files given, else scikit-image's cat and coffee and scikit-learn's flower."""
    if paths:
        raw, names = [load_image(p, shorter_side=size) for p in paths], [Path(p).stem for p in paths]
    else:
        import skimage.data
        from sklearn.datasets import load_sample_images

        raw = [skimage.data.chelsea() / 255.0, skimage.data.coffee() / 255.0, load_sample_images().images[1] / 255.0]
        names = ["chelsea (skimage)", "coffee (skimage)", "flower (sklearn)"]
    pp = dataclasses.replace(TORCHVISION_224, resize=size, crop=size)  # S = 224: the preset itself
    return np.stack([resize_and_crop(np.asarray(im, np.float32), pp.resize, pp.crop) for im in raw]), names


def shapes_images(lm, paths: list[str] | None, size: int, n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """The files given (resized and cropped like the seed), else `n` shapes images the model never saw."""
    if paths:
        return vgg_photos(paths, size)
    batch = shapes.generate(n, size=size, seed=10_000 + seed)
    return batch.images, [f"shapes #{i} ({lm.labels.name(int(c))})" for i, c in enumerate(batch.labels)]


def conv_layers(lm) -> list[str]:
    """The model's conv layers in order (VGG16: conv1_1 ... conv5_3 = features.0 ... features.28)."""
    return [layer.name for layer in lm.model.layers() if layer.kind == "conv"]


def map_convs(ordinals, n: int) -> list[int]:
    """The seed's VGG16 conv numbers (1-based) on a model with `n` convs: the same number where it exists,
    the deepest ones folded onto the model's last convs, kept distinct and in order ([1, 2, 5, 8] → [1, 2, 5, 6]
    on 6 convs, [1, 2, 3, 4] on 4; [2..10] → [2..6] on 6)."""
    ordinals = list(ordinals)
    if n >= max(ordinals):
        return ordinals
    if len(ordinals) > n:  # more layers than the model has: its whole range from the first asked for
        return list(range(min(ordinals[0], n), n + 1))
    out = [min(o, n - (len(ordinals) - 1 - i)) for i, o in enumerate(ordinals)]
    for i in range(1, len(out)):
        out[i] = max(out[i], out[i - 1] + 1)
    return out


def _raw(lm):
    """The model fed its input tensor as is (the seed's `self.model(image)` on an unnormalized tensor)."""
    return dataclasses.replace(lm, preprocessing=UNIT)


def _softmax(lm, x) -> np.ndarray:
    """Probabilities of the model-space batch `x` (one compiled forward pass, the variables an argument)."""
    net = jaxviz.as_net(lm.model)
    logits = jax.jit(lambda v, x: jax.nn.softmax(output(net, v, x)[0], -1))
    return np.asarray(logits(lm.variables, jnp.asarray(x, jnp.float32)))


def _unit(img) -> np.ndarray:
    """An image for display: (H, W) maps become (H, W, 1); values clipped to [0, 1]."""
    img = np.asarray(img, np.float32)
    return np.clip(img[..., None] if img.ndim == 2 else img, 0, 1)


def _fmt(p: float) -> str:
    return f"{p:.2f}" if p >= 0.01 else f"{p:.0e}"


# --- the experiments ---------------------------------------------------------------------------


def class_models(lm, classes: list[int], args, out: Path, ctx: dict) -> Figure:
    """6.3.1: the input tensor optimized by SGD from U[150, 180]/255, loss −y_c; reclassified."""
    model_lm = lm if args.normalize else _raw(lm)
    steps = args.class_steps
    vis = V.class_model(
        model_lm, classes, preset="simonyan", seed=args.seed, steps=steps, valid="clip" if args.clip else "none"
    )
    tensors = vis.images[:, 0]  # what the model saw: unnormalized, unclipped unless asked
    seen = _softmax(model_lm, normalize(tensors, model_lm.preprocessing))
    idx = np.arange(len(classes))
    p_seen = seen[idx, classes]
    p_shown = np.array([r["target_probability"] for r in vis.extra["reclassification"]])
    runs: dict[int, int] = {}
    titles = []
    for c, p in zip(classes, p_seen):
        runs[c] = runs.get(c, 0) + 1
        name = lm.labels.name(c).split(",")[0] + (f" #{runs[c]}" if classes.count(c) > 1 else "")
        titles.append(f"{name}\np={_fmt(float(p))}")
    save_grid(
        out / "class_models.png",
        _unit(tensors),
        titles,
        cols=min(len(classes), 5),
        suptitle=f"class models, {steps} SGD steps (lr 0.05, momentum 0.9), loss −y_c",
    )
    reached = int((seen.argmax(1) == np.asarray(classes)).sum())
    ctx["class"] = {
        "classes": [lm.labels.name(c) for c in classes],
        "steps": steps,
        "p_target_tensor": p_seen.round(4).tolist(),
        "p_target_shown": p_shown.round(4).tolist(),
        "predicted": [lm.labels.name(int(k)) for k in seen.argmax(1)],
        "reached": reached,
        "tensor_range": [float(tensors.min()), float(tensors.max())],
        "logit_start": vis.extra["logit_start"],
        "logit_end": vis.extra["logit_end"],
        "normalize": bool(args.normalize),
        "clip": bool(args.clip),
    }
    literal = not args.normalize and not args.clip
    return Figure(
        "class_models.png",
        "Slika 6.2–6.5: optimalna pobuda razreda — utezi za vježbanje (dumbbell, 2 pokretanja), jagoda "
        "(strawberry), ananas (pineapple)",
        f"{len(classes)} class models in one vmapped call (`optvis.class_model`, preset `simonyan`, "
        f"valid={'clip' if args.clip else 'none'}, preprocessing {model_lm.preprocessing.name}): init U[150, 180]/255, "
        f"SGD lr 0.05 momentum 0.9, {steps} steps, loss −y_c. Reclassified: {reached} of {len(classes)} are the "
        "model's top class; titles give p(target) of the tensor as optimized.",
        (
            "the input tensor is fed to the model without its normalization (" + lm.preprocessing.name + ") and never "
            "clipped, as the seed's generateNoiseImage → model(image) does (--normalize, --clip ask for them); the "
            "figure shows it clipped to [0, 1], as matplotlib shows it. "
            if literal
            else "asked for: "
            + ", ".join(
                k
                for k, v in (("normalization inside the loss", args.normalize), ("clipping to [0, 1]", args.clip))
                if v
            )
            + ". "
        )
        + "The init is continuous U[150, 180]/255 (the seed's np.uint8 truncates to 30 grey levels). "
        + ("" if ctx["vgg"] else "Embedded model: its 10 shape classes instead of the seed's ImageNet classes."),
        {
            "p(target), tensor as optimized": ", ".join(
                f"{n}: {_fmt(float(p))}" for n, p in zip(ctx["class"]["classes"], p_seen)
            ),
            "p(target), image as shown (clipped)": ", ".join(_fmt(float(p)) for p in p_shown),
            "reached their class": f"{reached} / {len(classes)}",
            "tensor range": f"[{tensors.min():.2f}, {tensors.max():.2f}]",
        },
    )


def _class_titles(lm, probs, index) -> list[str]:
    return [f"{lm.labels.name(int(c)).split(',')[0][:18]}\np={_fmt(float(p[int(c)]))}" for c, p in zip(index, probs)]


def top_n_maps(lm, method: str, x: np.ndarray, top: int, **options) -> tuple[list, np.ndarray]:
    """`([(maps, index)] for Top(1) .. Top(top), softmax probabilities (N, K))` of `METHODS[method]` on the
    normalized batch `x`, through the library's compiled, cached version of the method (`engine.compiled`)."""
    fn = compiled(method, lm.model, **options)
    res = [fn(lm.variables, jnp.asarray(x), Top(n)) for n in range(1, top + 1)]
    probs = np.asarray(jax.nn.softmax(res[0].out, -1))  # `out`: the logits the method saw
    return [(np.asarray(a.maps), np.asarray(a.index)) for a in res], probs


def saliency(lm, images, names, args, out: Path, ctx: dict) -> Figure:
    """6.3.2: saliency of the top-n classes: clamp(max_c ∂y_c/∂x, min=0), shown scaled by its maximum."""
    res, probs = top_n_maps(lm, "saliency", normalize(images, lm.preprocessing), args.top)
    cells, titles = [], []
    for i in range(len(images)):
        cells.append(_unit(images[i])), titles.append(names[i][:22])
        for n, (maps, index) in enumerate(res, start=1):
            m = clamp_max(maps[i : i + 1])[0]
            cells.append(_unit(m / max(float(m.max()), 1e-12)))
            titles.append(f"top-{n}: " + _class_titles(lm, probs[i : i + 1], index[i : i + 1])[0])
    save_grid(
        out / "saliency.png",
        np.stack([np.broadcast_to(c, (*c.shape[:2], 3)) for c in cells]),
        titles,
        cols=1 + args.top,
        cell=1.8,
        suptitle="saliency: clamp(max over channels of ∂y_c/∂x, min=0)",
    )
    ctx["saliency"] = {"top_classes": [[lm.labels.name(int(r[1][i])) for r in res] for i in range(len(images))]}
    return Figure(
        "saliency.png",
        "Slika 6.6–6.8: mapa značajnosti — tigar, leptir, pas (the n-th best class, convertToGrayByMax, clamp(min=0))",
        f"`METHODS['saliency']` with `Top(n)`, n = 1..{args.top}, on the normalized image; view "
        "`plot.clamp_max` (max over channels, clamp at 0), each map divided by its maximum.",
        ("" if ctx["vgg"] else "Embedded model on shapes images instead of the seed's photos. ")
        + "matplotlib's imshow scales each map to its own range, as here; the seed's colour map is not stated "
        "(grey here).",
    )


def guided(lm, images, names, args, out: Path, ctx: dict) -> Figure:
    """6.3.3: guided backprop with the rule on the `features` ReLUs only, argmax class."""
    [(maps, index)], probs = top_n_maps(
        lm, "guided_backprop", normalize(images, lm.preprocessing), 1, layers="features"
    )  # Top(1): the seed's output.argmax()
    view = rgb_gradient(maps)
    cells, titles = [], []
    for i in range(len(images)):
        cells += [_unit(images[i]), view[i]]
        titles += [names[i][:22], "guided: " + _class_titles(lm, probs[i : i + 1], index[i : i + 1])[0]]
    save_grid(
        out / "guided_backprop.png",
        np.stack(cells),
        titles,
        cols=2,
        cell=1.8,
        suptitle="guided backprop on the features ReLUs, argmax class",
    )
    relus = [n for n in lm.model.layer_groups()["features"] if lm.model.layer(n).kind == "act"]
    every = [layer.name for layer in lm.model.layers() if layer.kind == "act"]
    ctx["guided_backprop"] = {"relus": relus, "all_relus": every}
    scope = (
        "VGG16's 13 features ReLUs; the classifier's relu6/relu7 keep their plain gradient, as the seed's "
        "hooks on `model.features` leave them"
        if ctx["vgg"]
        else f"the `features` group of {lm.arch} ({len(relus)} of its {len(every)} ReLUs"
        + (
            ": every ReLU, as the model has no ReLU in its head)"
            if len(relus) == len(every)
            else ": the head's ReLU keeps its plain gradient, as VGG16's classifier ReLUs do in the seed)"
        )
    )
    return Figure(
        "guided_backprop.png",
        "Slika 6.9–6.11: vođeni backprop — bijela morska psina, tigar, sportski auto (backward hooks clamp(min=0) on "
        "the ReLUs of model.features)",
        f"`METHODS['guided_backprop']` with `layers='features'` for the top class: {scope}. View `plot.rgb_gradient` "
        "(0.5 + gradient / (2·its 99th percentile of |g|)).",
        "The seed does not say how it displayed the gradient; rgb_gradient is the library's guided-backprop view. "
        + ("" if ctx["vgg"] else "Shapes images instead of the seed's photos."),
    )


def grad_cam(lm, images, names, args, out: Path, ctx: dict) -> Figure:
    """6.3.4: Grad-CAM at features.29 (relu5_3) for the top-n classes, blended as heatmap·0.4 + image."""
    layer = "features.29" if ctx["vgg"] else lm.model.cam_layer()
    res, probs = top_n_maps(lm, "grad_cam", normalize(images, lm.preprocessing), args.top, layer=layer)
    cells, titles = [], []
    for i in range(len(images)):
        cells.append(_unit(images[i])), titles.append(names[i][:22])
        for n, (maps, index) in enumerate(res, start=1):
            heat = colors(maps[i : i + 1], cmap="jet")[0]
            cells.append(np.clip(heat * 0.4 + images[i], 0, 1))  # the seed's new_img = heatmap*0.4 + imageAlt
            titles.append(f"top-{n}: " + _class_titles(lm, probs[i : i + 1], index[i : i + 1])[0])
    save_grid(
        out / "grad_cam.png",
        np.stack(cells),
        titles,
        cols=1 + args.top,
        cell=1.8,
        suptitle=f"Grad-CAM at {layer}, heatmap·0.4 + image",
    )
    ctx["grad_cam"] = {"layer": layer}
    return Figure(
        "grad_cam.png",
        "Slika 6.12–6.13: razredne aktivacijske mape — krokodil, tegovi za vježbanje (hooks on features[29], gradients "
        "averaged per channel, heatmap*0.4 + image)",
        f"`METHODS['grad_cam'](..., layer={layer!r})` for Top(1..{args.top}): ReLU(Σ_k α_k A^k) with α_k the mean "
        "gradient, bilinearly upsampled, divided by its maximum; jet colours (`plot.colors`) blended as the seed's "
        "heatmap·0.4 + image, clipped to [0, 1].",
        (
            "The seed averages the weighted maps over the 512 channels (a positive constant times our sum); its "
            "listing stops before the ReLU and scaling that its source [12] applies, which we apply. `plot.overlay` "
            "would blend (1 − 0.4)·image + 0.4·heatmap; here the seed's sum. "
        )
        + (
            ""
            if ctx["vgg"]
            else f"Embedded model: its CAM layer {layer} (the last ReLU before the head) stands "
            "for VGG16's features.29 (relu5_3)."
        ),
    )


def _noise_overrides(args) -> dict:
    return {
        "init": "uniform",
        "init_range": NOISE,
        "valid": "clip" if args.clip else "none",
        "lr": args.filter_lr,
        "steps": args.steps or None,
        "size": args.size,
    }


def seed_layers(lm) -> dict[str, list[tuple[int, str]]]:
    """The seed's conv layers on this model, `(number, layer name)` each: `layers` (fig 6.14: 1-9), `filters`
    (figs 6.15-6.18: 1, 2, 5, 8), `deepdream` (fig 6.19: 2-10); mapped by `map_convs` on a shallower model."""
    convs = conv_layers(lm)
    return {
        kind: [(o, convs[o - 1]) for o in map_convs(seed, len(convs))]
        for kind, seed in (
            ("layers", SEED_LAYER_CONVS),
            ("filters", SEED_FILTER_CONVS),
            ("deepdream", SEED_DREAM_CONVS),
        )
    }


def layer_figure(lm, args, out: Path, ctx: dict) -> Figure:
    """6.3.5, fig 6.14: whole conv layers 1-9, −mean of the layer, Adam weight decay 1e-6, the seed's noise."""
    convs = conv_layers(lm)
    ords, names = (list(t) for t in zip(*ctx["seed_layers"]["layers"]))
    model_lm = lm if args.normalize else _raw(lm)
    vis = V.layers(model_lm, names, preset="adam", seed=args.seed, **_noise_overrides(args))
    titles = [f"conv {o}: {n}" for o, n in zip(ords, names)]
    save_grid(
        out / "layers.png",
        _unit(vis.images[:, 0]),
        titles,
        cols=min(len(names), 5),
        suptitle="whole conv layers, Adam (weight decay 1e-6), loss −mean",
    )
    ctx["layers"] = {
        "layers": names,
        "seed_convs": list(SEED_LAYER_CONVS),
        "convs": ords,
        "loss_start": vis.losses[:, 0].tolist(),
        "loss_end": vis.losses[:, -1].tolist(),
        "hparams": {k: vis.hparams[k] for k in ("optimizer", "lr", "weight_decay", "steps", "init_range")},
    }
    return Figure(
        "layers.png",
        "Slika 6.14: vizualizacija optimalnih latentnih aktivacija konvolucijskih slojeva 1–9",
        f"`optvis.layers` (preset `adam`) on {', '.join(names)}: the seed's noise U[150, 180]/255 fed unnormalized, "
        f"Adam lr {vis.hparams['lr']} weight decay 1e-6, {vis.hparams['steps']} steps, loss −mean of the conv "
        "layer's output (the seed's subnet features[0:layer+1] ends at the conv).",
        "The seed gives no learning rate or iteration count; these are the preset's. "
        + (
            ""
            if len(convs) >= 9
            else f"{lm.arch} has {len(convs)} conv layers, so conv layers 1–9 become {ords[0]}–{ords[-1]}."
        ),
        {"loss start → end": ", ".join(f"{a:.3g}→{b:.3g}" for a, b in zip(vis.losses[:, 0], vis.losses[:, -1]))},
    )


def filter_figure(lm, args, out: Path, ctx: dict) -> Figure:
    """6.3.5, figs 6.15-6.18: 4 random filters each of conv layers 1, 2, 5, 8, −mean of the filter, Adam wd 1e-6."""
    convs = conv_layers(lm)
    ords = [o for o, _ in ctx["seed_layers"]["filters"]]
    rng = np.random.default_rng(args.seed)
    model_lm = lm if args.normalize else _raw(lm)
    images, titles, rows = [], [], {}
    for o in ords:
        name = convs[o - 1]
        width = lm.model.layer(name).size
        chosen = sorted(int(c) for c in rng.choice(width, size=min(4, width), replace=False))
        vis = V.filters(model_lm, name, chosen, preset="adam", seed=args.seed + o, **_noise_overrides(args))
        images += list(vis.images[:, 0])
        titles += [f"conv {o} ({name}) #{c}" for c in chosen]
        rows[name] = {
            "conv": o,
            "channels": chosen,
            "activation_start": vis.extra["target_activation_start"],
            "activation_end": vis.extra["target_activation_end"],
            "steps": vis.hparams["steps"],
            "lr": vis.hparams["lr"],
        }
    save_grid(
        out / "filters.png",
        _unit(np.stack(images)),
        titles,
        cols=4,
        suptitle="4 random filters per conv layer, Adam (weight decay 1e-6), loss −mean",
    )
    ctx["filters"] = rows
    mapping = ", ".join(f"{k}→{o} ({convs[o - 1]})" for k, o in zip(SEED_FILTER_CONVS, ords))
    return Figure(
        "filters.png",
        "Slika 6.15–6.18: vizualizacija optimalnih latentnih aktivacija filtara iz 1., 2., 5. i 8. konvolucijskog "
        "sloja (4 slučajno odabrana filtra)",
        f"`optvis.filters` (preset `adam`, the 4 filters of a layer in one vmapped call), conv layers {mapping}; "
        "the seed's noise U[150, 180]/255 fed unnormalized, Adam weight decay 1e-6, loss −mean of the filter's "
        "conv output; filters drawn at random (NumPy seed --seed).",
        "The seed gives no learning rate or iteration count; the preset's "
        f"(lr {args.filter_lr or 0.05}, {args.steps or 64} steps). "
        + (
            ""
            if len(convs) >= 8
            else f"{lm.arch} has {len(convs)} conv layers: the seed's conv layers 1, 2, 5, 8 "
            f"map to {', '.join(map(str, ords))} (the same numbers where they exist, the deepest onto its last convs)."
        ),
        {
            "mean activation start → end": "; ".join(
                f"{n}: " + ", ".join(f"{a:.2g}→{b:.2g}" for a, b in zip(r["activation_start"], r["activation_end"]))
                for n, r in rows.items()
            )
        },
    )


def deepdream(lm, images, names, args, out: Path, ctx: dict) -> Figure:
    """6.3.6: DeepDream on conv layers 2-10: the normalized photo tensor optimized, SGD weight decay 1e-4, −‖A‖."""
    convs = conv_layers(lm)
    ords, layers = (list(t) for t in zip(*ctx["seed_layers"]["deepdream"]))
    photo = normalize(images[:1], lm.preprocessing)  # getAndPreprocessImage: the tensor the seed optimizes
    vis = V.dream(
        _raw(lm),
        photo,
        layers,
        preset="simple",
        seed=args.seed,
        valid="none",
        lr=args.dream_lr,
        steps=args.steps or None,
        size=args.size,
    )
    dreams = np.asarray(to_display(vis.images[:, 0], lm.preprocessing))
    cells = [_unit(images[0])] + list(dreams)
    titles = [names[0][:22]] + [f"conv {o}: {n}" for o, n in zip(ords, layers)]
    save_grid(
        out / "deepdream.png",
        np.stack(cells),
        titles,
        cols=min(len(cells), 5),
        suptitle="DeepDream: SGD (weight decay 1e-4) on the normalized photo, loss −‖A‖",
    )
    change = np.abs(dreams - images[:1]).mean(axis=(1, 2, 3))
    ctx["deepdream"] = {
        "layers": layers,
        "convs": ords,
        "norm_start": vis.extra["norm_start"],
        "norm_end": vis.extra["norm_end"],
        "mean_abs_change": change.round(4).tolist(),
        "lr": vis.hparams["lr"],
        "steps": vis.hparams["steps"],
    }
    return Figure(
        "deepdream.png",
        "Slika 6.19: Deep dream na konvolucijske slojeve 2–10",
        f"`optvis.dream` (preset `simple`) on {names[0]}: the normalized photo tensor itself optimized (the loop is "
        f"given the model without its preprocessing and valid=none), SGD lr {vis.hparams['lr']} weight decay 1e-4, "
        f"{vis.hparams['steps']} steps, loss −‖A‖ of the conv output, shown denormalized and clipped.",
        "The seed gives no learning rate or iteration count; these are the preset's (`--dream-lr`, `--steps`). "
        + (
            ""
            if len(convs) >= 10
            else f"{lm.arch} has {len(convs)} conv layers: conv layers 2–10 become {ords[0]}–{ords[-1]}. "
        )
        + ("" if ctx["vgg"] else "A shapes image instead of the seed's photo."),
        {
            "‖A‖ start → end": ", ".join(
                f"{n}: {a:.3g}→{b:.3g}" for n, a, b in zip(layers, vis.extra["norm_start"], vis.extra["norm_end"])
            ),
            "mean |dream − photo|": ", ".join(f"{c:.3f}" for c in change),
        },
    )


# --- the run -------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, help="folder for the figures, results.json and index.md/html")
    p.add_argument("--weights", help="VGG16 weights: a name (vgg16-torchvision) or a .safetensors path (jaxviz.load)")
    p.add_argument(
        "--model",
        default="shapesnet",
        choices=("shapesnet", "minivgg"),
        help="embedded model used without --weights (default shapesnet)",
    )
    p.add_argument("--image", action="append", help="input image (repeatable); default: photos (VGG) or shapes")
    p.add_argument("--images", type=int, default=3, help="shapes images without --image (default 3)")
    p.add_argument(
        "--classes",
        help="class models: comma-separated names or indices (default: the seed's "
        "dumbbell ×2, strawberry, pineapple on VGG16; every class of an embedded model)",
    )
    p.add_argument(
        "--size",
        type=int,
        help="input side (default: 224 for VGG16 — Resize(224)+CenterCrop(224) — or the embedded model's 64)",
    )
    p.add_argument("--top", type=int, default=3, help="saliency and Grad-CAM for the top-1 .. top-n classes")
    p.add_argument("--class-steps", type=int, default=81, help="SGD steps of the class models (the seed's 81)")
    p.add_argument(
        "--steps",
        type=int,
        help="steps of layer/filter visualization and DeepDream, which the seed "
        "does not state (default: the presets' 64 and 40)",
    )
    p.add_argument("--filter-lr", type=float, help="Adam learning rate of layer/filter visualization (default 0.05)")
    p.add_argument("--dream-lr", type=float, help="SGD learning rate of DeepDream (default 0.05)")
    p.add_argument(
        "--normalize",
        action="store_true",
        help="class/layer/filter models: the model's normalization inside the loss (the seed feeds the tensor as is)",
    )
    p.add_argument("--clip", action="store_true", help="class/layer/filter models: keep the image in [0, 1]")
    p.add_argument("--only", help=f"comma-separated subset of {', '.join(EXPERIMENTS)}")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    only = parse_only(args.only, EXPERIMENTS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    vgg = args.weights is not None
    lm = jaxviz.load("vgg16", weights=args.weights) if vgg else jaxviz.load(args.model)
    if vgg and lm.arch != "vgg16":
        raise SystemExit(f"--weights {args.weights} are for {lm.arch}; seed 000 uses VGG16")
    args.size = args.size or int(lm.input_shape[0])
    ctx: dict = {"vgg": vgg, "model": lm.name, "arch": lm.arch, "size": args.size, "seconds": {}}
    if vgg:
        images, names = vgg_photos(args.image, args.size)
    else:
        images, names = shapes_images(lm, args.image, args.size, args.images, args.seed)
    if args.classes:
        classes = [lm.labels.index(int(c) if c.strip().isdigit() else c.strip()) for c in args.classes.split(",")]
    else:
        classes = [lm.labels.index(c) for c in SEED_CLASSES] if vgg else list(range(len(lm.labels)))
    ctx["classes"] = [lm.labels.name(c) for c in classes]
    ctx["seed_layers"] = seed_layers(lm)

    figures = []
    steps = {
        "class": lambda: class_models(lm, classes, args, out, ctx),
        "saliency": lambda: saliency(lm, images, names, args, out, ctx),
        "guided_backprop": lambda: guided(lm, images, names, args, out, ctx),
        "grad_cam": lambda: grad_cam(lm, images, names, args, out, ctx),
        "layers": lambda: layer_figure(lm, args, out, ctx),
        "filters": lambda: filter_figure(lm, args, out, ctx),
        "deepdream": lambda: deepdream(lm, images, names, args, out, ctx),
    }
    for name in only:
        t = time.perf_counter()
        figures.append(steps[name]())
        ctx["seconds"][name] = round(time.perf_counter() - t, 2)
        print(f"{name}: {ctx['seconds'][name]:.1f} s -> {out / figures[-1].path}", flush=True)
    ctx["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    ctx["figures"] = [f.path for f in figures]
    ctx["args"] = {k: v for k, v in vars(args).items()}
    write_text(out / "results.json", json.dumps(ctx, indent=1, default=str))
    convs = conv_layers(lm)
    what = (
        f"VGG16 with weights {lm.name} (torchvision layout: features.N aliases)"
        if vgg
        else f"the embedded {lm.arch} (trained on synthetic shapes, {len(lm.labels)} classes, "
        f"{len(convs)} conv layers; "
        f"offline — pass --weights vgg16-torchvision for the seed's VGG16)"
    )
    intro = (
        f"Seed 000 (Sršen 2019, VGG16 in PyTorch) reproduced by `experiments/seeds/seed000.py` on {what}, "
        f"inputs {args.size}×{args.size}"
        + (" (Resize + CenterCrop as the seed)" if vgg or args.image else " (shapes images the model never saw)")
        + ". Conv layers of this model, numbered as on the page: "
        + ", ".join(f"{i} {n}" for i, n in enumerate(convs, start=1))
        + f". Whole run: {ctx['seconds']['total']:.0f} s on {jax.default_backend().upper()}."
    )
    write_page(out, "Seed 000 — visualizing and interpreting a CNN, reproduced", figures, intro)
    return ctx


if __name__ == "__main__":
    main()
