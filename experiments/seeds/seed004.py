"""Seed 004 (Russian lecture notes on CNN visualization): CAM localization with GAP and GMP heads,
occlusion sensitivity panels, deconvnet projections of top activations, an all-convolutional net
(deconvnet vs guided backprop with and without pooling), features over training, and a t-SNE map of
50 000 images with a filled grid.

    python experiments/seeds/seed004.py --out runs/seed004                      # offline
    python experiments/seeds/seed004.py --out DIR --epochs 1 --evolution-epochs 2 --checkpoints 1,2 --per-epoch 512 \
        --n-loc 64 --tsne-n 600 --grid 12                                       # a quick look
    python experiments/seeds/seed004.py --out DIR --only cam --coco /data/coco --weights resnet50-torchvision

Writes one PNG per figure, `results.json` (every number) and `index.md` / `index.html` (`page.py`).

| notes | what | here |
|---|---|---|
| 3.1-3.2, CAM with GAP vs GMP; 37.1 % vs 34.2 % on ILSVRC 2014 | boxes from the thresholded CAM against ground-truth boxes | ShapesNet with a GAP head and with a GMP head, trained here alike (`jaxviz.train.fit_shapes`, the recipe of `experiments/train_shapesnet.py`, from the embedded net's weights or, `--init scratch`, from random ones); box = largest connected component of CAM ≥ 20 % of its max (Zhou et al. 2016), IoU ≥ 0.5 against the shape's box; top-1 and GT-known localization error; COCO boxes with `--coco` and `--weights` |
| 9, fig. 29 (Zeiler & Fergus fig. 7) | occlusion: (b) total activation of the strongest map of the last conv layer, (c) its deconvnet projection, (d) p(true class), (e) most probable class, per occluder position | `attribution.occlusion_sweep` on the embedded ShapesNet, layer `relu4_2` |
| 2, fig. 6 (Zeiler & Fergus fig. 2) | deconvnet projections of the top-9 activations of units of layers 2-5 beside their image patches | `inspect.top_k_all` + `deconvnet` with `Unit` targets, cropped to each unit's receptive field |
| 4, fig. 15 (Springenberg et al. 2015) | deconvnet vs guided backprop, with and without pooling | ShapesNet (max-pooling) vs `AllConvNet` (strided convolutions), both trained here alike; maps from the true class's logit, energy inside the shape's mask |
| 2, fig. 7 | features over training (epochs 1, 2, 5, 10, ...) | first-layer filters and the strongest activation's deconvnet projection of fixed units, from checkpoints of a ShapesNet trained from random weights |
| 8, figs. 25-26 (Karpathy) | t-SNE of 50 000 images, the grid filled by nearest neighbours | GAP features streamed to a memmap, openTSNE (FFT) or scikit-learn (Barnes-Hut), a sparse one-to-one cell assignment |

Everything offline runs on synthetic shapes (10 classes, masks and boxes known exactly); trained nets
are cached in `OUT/weights/` and images/features in `OUT/cache/`, so a rerun redoes nothing it has.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # page.py, a sibling module

from page import Figure, parse_only, write_page  # noqa: E402

import jaxviz  # noqa: E402  (page.py put the repository on the path)
from jaxviz import attribution as A  # noqa: E402
from jaxviz.atomic import atomic_path, write_text  # noqa: E402
from jaxviz.data import shapes  # noqa: E402
from jaxviz.data.preprocess import CENTERED, normalize  # noqa: E402
from jaxviz.inspect import embed, extract  # noqa: E402
from jaxviz.inspect.topk import crop, receptive_field, top_k_all  # noqa: E402
from jaxviz.metrics import energy_concentration, localization, map_boxes  # noqa: E402
from jaxviz.models import build  # noqa: E402
from jaxviz.plot import overlay, pyplot, rgb_gradient, save_figure  # noqa: E402
from jaxviz.train import fit_shapes  # noqa: E402
from jaxviz.weights import save_weights  # noqa: E402

PARTS = ("cam", "occlusion", "deconv", "allconv", "evolution", "tsne")
NETS = {
    "gap": ("shapesnet", {}),
    "gmp": ("shapesnet", {"pool": "gmp"}),
    "allconv": ("allconv", {}),
    "scratch": ("shapesnet", {}),
}
"""The nets this script trains: name → (architecture, options); `scratch` is the evolution figure's."""
LOC_SEED, OCC_SEED, TOP_SEED, TSNE_SEED = 40_404, 40_405, 40_406, 40_407  # data seeds no training epoch uses
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
DECONV_LAYERS = ("relu2_1", "relu3_1", "relu3_2", "relu4_2")  # Zeiler & Fergus's layers 2-5: ShapesNet's convs 2-6
EVOLUTION_LAYERS = ("relu2_1", "relu3_2", "relu4_2")
SEED_LOC = {"CAM (GoogLeNet-GAP), top-1 loc. error": "37.1 %", "weakly-supervised GMP [Oquab et al.]": "34.2 %"}


# --- the nets ------------------------------------------------------------------------------------


def train_nets(args, out: Path, names: tuple[str, ...]) -> dict:
    """The trained nets (name → `LoadedModel`), each trained once and cached in
    `OUT/weights/<name>.safetensors` (the evolution net's checkpoints beside it); a cached file trained
    with other arguments is trained again.

    The three compared nets (gap, gmp, allconv) get the same training: `--epochs` of `fit_shapes`
    starting, with `--init embedded` (default), from the embedded ShapesNet's weights wherever a layer
    has the same name and shape (all-conv: every conv and the head; its `down*` convs start random), so
    that only the head's pooling or the downsampling differs; `--init scratch` trains them from random
    weights. The evolution net is a GAP ShapesNet trained from random weights for `--evolution-epochs`,
    keeping `--checkpoints`. Training images are cached per epoch seed as uint8 in `OUT/cache/`
    (every run shares them)."""
    embedded = jaxviz.load("shapesnet").variables["params"]
    folder = out / "weights"
    nets = {}
    for name in names:
        arch, options = NETS[name]
        scratch = name == "scratch" or args.init == "scratch"
        epochs = args.evolution_epochs if name == "scratch" else args.epochs
        checkpoints = tuple(e for e in args.checkpoints if e <= epochs) if name == "scratch" else ()
        recipe = {
            "epochs": epochs,
            "per_epoch": args.per_epoch,
            "batch": args.batch,
            "lr": args.lr,
            "size": args.size,
            "seed": args.seed,
            "init": "random" if scratch else "embedded shapesnet",
            "checkpoints": checkpoints,
        }
        wanted = json.dumps(recipe, sort_keys=True)
        path = folder / f"{name}.safetensors"
        if path.exists():
            lm = jaxviz.load(str(path))
            if lm.meta.get("train_args") == wanted:
                nets[name] = lm
                continue
        t = time.perf_counter()
        model = build(arch, **options)
        params = model.init(jax.random.key(args.seed), jnp.zeros((1, args.size, args.size, 3)))["params"]
        if not scratch:
            params = {
                k: embedded[k] if k in embedded and _same_shapes(embedded[k], v) else v for k, v in params.items()
            }
        meta = {
            "arch": arch,
            "preprocessing": CENTERED.name,
            "num_classes": str(shapes.num_classes),
            "classes": json.dumps(list(shapes.CLASSES)),
            "source": "experiments/seeds/seed004.py",
            "train_args": wanted,
            **{k: str(v) for k, v in options.items()},
        }

        def save(epoch, params, acc, meta=meta, name=name):
            save_weights(
                folder / f"{name}.epoch{epoch:03d}.safetensors",
                jax.tree_util.tree_map(np.asarray, params),
                {**meta, "epoch": str(epoch), "test_accuracy": f"{acc:.4f}"},
            )

        params, history = fit_shapes(
            model,
            params=params,
            epochs=epochs,
            per_epoch=args.per_epoch,
            batch=args.batch,
            lr=args.lr,
            size=args.size,
            seed=args.seed,
            test=args.test,
            checkpoints=checkpoints,
            on_checkpoint=save,
            data=epoch_images(args, out),
        )
        acc = history[-1]["test_accuracy"]
        save_weights(
            path,
            jax.tree_util.tree_map(np.asarray, params),
            {**meta, "test_accuracy": f"{acc:.4f}", "history": json.dumps(history)},
        )
        print(f"trained {name}: test accuracy {acc:.4f} in {time.perf_counter() - t:.0f} s", flush=True)
        nets[name] = jaxviz.load(str(path))
    return nets


def _same_shapes(a, b) -> bool:
    return jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b) and all(
        np.shape(x) == np.shape(y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    )


def epoch_images(args, out: Path):
    """`fit_shapes`'s `data`: the images `(per_epoch, S, S, 3)` float32 and labels of one epoch's data seed,
    rendered once in parallel into `OUT/cache/train_<seed>_<n>_<size>.npy` (uint8) and shared by every net."""

    def load(data_seed: int) -> tuple[np.ndarray, np.ndarray]:
        array = shapes.write_array(
            out / "cache" / f"train_{data_seed}_{args.per_epoch}_{args.size}.npy",
            args.per_epoch,
            size=args.size,
            seed=data_seed,
            workers=args.workers,
            progress=False,
        )
        labels = np.array([shapes.label_of(i, seed=data_seed) for i in range(args.per_epoch)], np.int32)
        return np.asarray(array, np.float32) / 255.0, labels

    return load


def accuracy_of(lm) -> float:
    return float(lm.meta.get("test_accuracy", "nan"))


def model_input(lm, images: np.ndarray) -> jax.Array:
    return normalize(jnp.asarray(images, jnp.float32), lm.preprocessing)


_JIT: dict = {}


def compiled(lm, method, **options):
    """`(variables, x, target) -> Attribution` of `method` on `lm`, jitted once per (model, method, options)."""
    key = (lm.name, id(lm.model), method.__name__, tuple(sorted(options.items())))
    if key not in _JIT:
        _JIT[key] = jax.jit(lambda v, x, t: method(lm.model, v, x, t, **options))
    return _JIT[key]


def batched(lm, method, images, targets, batch: int = 100, **options):
    """`method`'s maps and predicted classes for `images` (display space) in batches."""
    fn = compiled(lm, method, **options)
    maps, preds = [], []
    for i in range(0, len(images), batch):
        r = fn(lm.variables, model_input(lm, images[i : i + batch]), jnp.asarray(targets[i : i + batch]))
        maps.append(np.asarray(r.maps))
        preds.append(np.asarray(jnp.argmax(r.out, -1)))
    return np.concatenate(maps), np.concatenate(preds)


# --- 1. CAM localization ---------------------------------------------------------------------------

CAM_OF = {"gap": A.cam, "gmp": A.cam_gmp, "allconv": A.cam}


def cam_part(args, out: Path, nets: dict, ctx: dict) -> list[Figure]:
    data = shapes.generate(args.n_loc, size=args.size, seed=LOC_SEED)
    results, maps = {}, {}
    for name in ("gap", "gmp", "allconv"):
        lm = nets[name]
        m, pred = batched(lm, CAM_OF[name], data.images, data.labels)
        maps[name] = m
        correct = pred == data.labels
        per_t = {}
        for t in THRESHOLDS:
            r = localization(map_boxes(m, t), data.boxes, correct)
            per_t[t] = {"top1_error": r.top1_error, "gt_known_error": r.gt_known_error, "mean_iou": float(r.iou.mean())}
        results[name] = {
            "accuracy": float(correct.mean()),
            "by_threshold": per_t,
            "boxes": map_boxes(m, 0.2).tolist()[: args.examples],
        }
    ctx["cam"] = {"n": args.n_loc, "threshold": 0.2, "iou": 0.5, "nets": results}
    if args.coco:
        ctx["cam"]["coco"] = coco_localization(args)

    plt = pyplot()
    labels = {"gap": "ShapesNet GAP (CAM)", "gmp": "ShapesNet GMP (CAM-GMP)", "allconv": "All-conv GAP (CAM)"}
    fig, ax = plt.subplots(1, 2, figsize=(9.5, 3.4))
    for name, r in results.items():
        ts = list(r["by_threshold"])
        ax[0].plot(ts, [100 * r["by_threshold"][t]["top1_error"] for t in ts], "o-", label=labels[name])
        ax[1].plot(ts, [100 * r["by_threshold"][t]["gt_known_error"] for t in ts], "o-", label=labels[name])
    for a, title in zip(ax, ("top-1 localization error", "GT-known localization error")):
        a.set_xlabel("threshold (fraction of the CAM's maximum)")
        a.set_ylabel("% of images")
        a.set_title(title, fontsize=9)
        a.axvline(0.2, color="grey", lw=0.8, ls=":")
        a.set_ylim(0, 100)
    ax[0].legend(fontsize=7)
    fig.suptitle(f"CAM boxes vs the shapes' boxes (IoU ≥ 0.5), {args.n_loc} test images", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out / "cam_localization.png")

    k = min(args.examples, len(data.images))
    fig, axes = plt.subplots(3, k, figsize=(1.5 * k, 4.9), squeeze=False)
    for r, name in enumerate(results):
        boxes = map_boxes(maps[name][:k], 0.2)
        for c in range(k):
            a = axes[r, c]
            a.imshow(overlay(data.images[c], maps[name][c] / max(float(maps[name][c].max()), 1e-12)))
            for box, color in ((data.boxes[c], "lime"), (boxes[c], "red")):
                x0, y0, x1, y1 = box
                a.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color=color, lw=1.2))
            iou = localization(boxes[c : c + 1], data.boxes[c : c + 1]).iou[0]
            a.set_title(f"IoU {iou:.2f}", fontsize=7)
            a.set_xticks([]), a.set_yticks([])
        axes[r, 0].set_ylabel(labels[name].split(" (")[0], fontsize=7)
    fig.suptitle("CAM (threshold 20 % of max): ground truth green, largest component's box red", fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "cam_boxes.png")

    at = {n: r["by_threshold"][0.2] for n, r in results.items()}
    numbers = {
        f"{labels[n]} top-1 / GT-known error": f"{100 * v['top1_error']:.1f} % / {100 * v['gt_known_error']:.1f} %"
        f" (accuracy {100 * results[n]['accuracy']:.1f} %, mean IoU {v['mean_iou']:.2f})"
        for n, v in at.items()
    }
    for n, r in results.items():
        best = min(r["by_threshold"], key=lambda t: r["by_threshold"][t]["top1_error"])
        r["best_threshold"] = best
        numbers[f"{labels[n]} at its best threshold {best:g}"] = (
            f"top-1 {100 * r['by_threshold'][best]['top1_error']:.1f} % / GT-known "
            f"{100 * r['by_threshold'][best]['gt_known_error']:.1f} %"
        )
    numbers.update({f"seed: {k}": v for k, v in SEED_LOC.items()})
    if "coco" in ctx["cam"]:
        c = ctx["cam"]["coco"]
        numbers[f"COCO, {c['model']}, {c['n']} objects"] = (
            f"top-1 {100 * c['top1_error']:.1f} % / GT-known {100 * c['gt_known_error']:.1f} %"
        )
    return [
        Figure(
            "cam_localization.png",
            "Notes 3.1-3.2: CAM localizes objects with a net trained only to classify "
            "(37.1 % top-1 localization error on ILSVRC 2014 vs 34.2 % for the GMP net of Oquab et al.)",
            "localization error against threshold for the GAP and GMP heads trained by one recipe, and the "
            "all-conv net; boxes as Zhou et al.",
            "shapes (one object, exact boxes) instead of ILSVRC; "
            "ShapesNet instead of GoogLeNet-GAP; both heads trained here the same way, so only the pooling "
            "differs. ShapesNet's CAM is 8×8 for a 64×64 image, so upsampled it spreads past small shapes "
            "and Zhou et al.'s 20 % gives boxes about twice too large; the curve shows every threshold",
            numbers,
        ),
        Figure(
            "cam_boxes.png",
            "Notes fig. 10: CAM examples (Zhou et al.)",
            "CAM overlays with the "
            "ground-truth box (green) and the box of the CAM's largest component above 20 % (red)",
        ),
    ]


def coco_localization(args) -> dict:
    """CAM boxes of an ImageNet net with a global-pooling head on COCO photos (stretched to 224) against
    every COCO box of the object's category; the target is the category's ImageNet class."""
    from jaxviz.evaluation.datasets import class_candidates, coco_samples, resize_sample, sample_boxes

    if not args.weights:
        raise SystemExit(
            "--coco needs --weights: an ImageNet model with a global-average-pooling head "
            "(resnet50-torchvision, resnet152-torchvision, ...)"
        )
    root = Path(args.coco)
    ann = root / "annotations" / f"instances_{args.coco_split}.json"
    samples = coco_samples(
        root / args.coco_split, ann, categories=args.categories.split(","), per_category=args.per_category
    )
    lm = jaxviz.load(args.weights)
    images, boxes, targets, ok = [], [], [], []
    for s in samples:
        target = class_candidates(s.category, lm.labels, "category")
        if not target:
            raise SystemExit(f"COCO category {s.category!r} has no ImageNet class in {lm.name}'s labels")
        img, mask = s.load()
        h, w = img.shape[:2]
        images.append(resize_sample(img, mask, 224)[0])
        boxes.append(sample_boxes(s, ann) * np.array([224 / w, 224 / h] * 2))
        targets.append(target[0])
        ok.append(class_candidates(s.category, lm.labels, "best") or target)
    images, targets = np.stack(images), np.asarray(targets)
    maps, pred = batched(lm, A.cam, images, targets, batch=8)
    correct = np.array([p in o for p, o in zip(pred, ok)])
    r = localization(map_boxes(maps, 0.2), boxes, correct)
    return {
        "model": lm.name,
        "n": len(samples),
        "top1_error": r.top1_error,
        "gt_known_error": r.gt_known_error,
        "mean_iou": float(r.iou.mean()),
        "accuracy": float(correct.mean()),
        "split": args.coco_split,
    }


# --- 2. occlusion panels ---------------------------------------------------------------------------


def occlusion_part(args, out: Path, ctx: dict) -> list[Figure]:
    """Zeiler & Fergus's fig. 7 on three shapes images with two distractors each: a grey square slides
    over the image; per position (b) the total activation of the map of `relu4_2` strongest on the
    clean image, (d) p(true class), (e) the most probable class; (c) that map's deconvnet projection."""
    lm = jaxviz.load("shapesnet")
    data = shapes.generate(3, size=args.size, seed=OCC_SEED, distractors=(2, 2))
    x = model_input(lm, data.images)
    fill = normalize(jnp.full((1, 1, 1, 3), 0.5), lm.preprocessing)
    t = time.perf_counter()
    sweep = A.occlusion_sweep(
        lm.model, lm.variables, x, layer="relu4_2", patch=args.patch, stride=args.stride, fill=fill
    )
    proj = np.concatenate(
        [projections(lm, data.images[i : i + 1], "relu4_2", int(c)) for i, c in enumerate(sweep.channel)]
    )
    seconds = time.perf_counter() - t
    y = data.labels
    p_true = np.stack([sweep.probs[i, ..., y[i]] for i in range(len(y))])
    top = sweep.probs.argmax(-1)
    ctx["occlusion"] = {
        "patch": args.patch,
        "stride": args.stride,
        "positions": list(sweep.probs.shape[1:3]),
        "layer": "relu4_2",
        "channels": sweep.channel.tolist(),
        "labels": y.tolist(),
        "clean_p_true": [float(sweep.clean[i, y[i]]) for i in range(len(y))],
        "min_p_true": [float(p.min()) for p in p_true],
        "share_positions_true_class_top": [float((t == y[i]).mean()) for i, t in enumerate(top)],
        "seconds": round(seconds, 2),
    }

    plt = pyplot()
    cmap = plt.get_cmap("tab10")
    h, w = data.images.shape[1:3]
    half = args.patch / 2
    extent = (
        sweep.cols[0] + half - args.stride / 2,
        sweep.cols[-1] + half + args.stride / 2,
        sweep.rows[-1] + half + args.stride / 2,
        sweep.rows[0] + half - args.stride / 2,
    )
    fig, axes = plt.subplots(len(y), 5, figsize=(11, 2.35 * len(y)), squeeze=False)
    views = rgb_gradient(proj)
    for i in range(len(y)):
        a = axes[i]
        a[0].imshow(data.images[i])
        a[0].add_patch(plt.Rectangle((1, 1), args.patch, args.patch, color="grey", alpha=0.9))
        a[0].set_title(f"(a) {shapes.CLASSES[y[i]]}, p = {sweep.clean[i, y[i]]:.2f}", fontsize=7)
        for ax in a[[1, 3, 4]]:  # the image faintly beneath each per-position map (values at the occluder's centre)
            ax.imshow(data.images[i], alpha=0.35)
        im = a[1].imshow(sweep.feature[i], extent=extent, cmap="jet", alpha=0.8)
        a[1].set_title(f"(b) relu4_2 map {sweep.channel[i]}: total activation", fontsize=7)
        fig.colorbar(im, ax=a[1], fraction=0.046, pad=0.02)
        a[2].imshow(views[i])
        a[2].set_title("(c) its deconvnet projection", fontsize=7)
        im = a[3].imshow(p_true[i], extent=extent, cmap="jet", vmin=0, vmax=1, alpha=0.8)
        a[3].set_title(f"(d) p({shapes.CLASSES[y[i]]})", fontsize=7)
        fig.colorbar(im, ax=a[3], fraction=0.046, pad=0.02)
        a[4].imshow(top[i], extent=extent, cmap=cmap, vmin=-0.5, vmax=9.5, interpolation="nearest", alpha=0.8)
        present = np.unique(top[i])
        a[4].legend(
            handles=[plt.Rectangle((0, 0), 1, 1, color=cmap(int(c))) for c in present],
            labels=[shapes.CLASSES[c] for c in present],
            fontsize=6,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            frameon=False,
        )
        a[4].set_title("(e) most probable class", fontsize=7)
        for ax in a:
            ax.set_xlim(-0.5, w - 0.5), ax.set_ylim(h - 0.5, -0.5)
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(
        f"Occlusion with a {args.patch}×{args.patch} grey square every {args.stride} px "
        f"({sweep.probs.shape[1]}×{sweep.probs.shape[2]} positions), embedded ShapesNet",
        fontsize=8,
    )
    fig.tight_layout()
    save_figure(fig, out / "occlusion.png")
    o = ctx["occlusion"]
    return [
        Figure(
            "occlusion.png",
            "Notes fig. 29 (Zeiler & Fergus fig. 7): (b) total activation of the last conv "
            "layer's strongest map per occluder position, (c) projections of the strongest areas, (d) "
            "probability heat maps of the true class, (e) the most probable class",
            "the same five panels for three shapes images with two distractor shapes each",
            "shapes instead of ImageNet photos; the grey square replaces Zeiler's grey patch; (c) is the "
            "projection of the map's strongest activation on the clean image",
            {
                "p(true) clean → lowest under occlusion": ", ".join(
                    f"{a:.2f} → {b:.2f}" for a, b in zip(o["clean_p_true"], o["min_p_true"])
                ),
                "share of positions still predicting the true class": ", ".join(
                    f"{s:.2f}" for s in o["share_positions_true_class_top"]
                ),
                "sweep time": f"{o['seconds']:.1f} s",
            },
        )
    ]


# --- 3. deconvnet projections of top-9 activations ------------------------------------------------


def projections(lm, images: np.ndarray, layer: str, channel: int, method=A.deconvnet) -> np.ndarray:
    """`method`'s maps `(k, H, W, C)` from each image's strongest activation of `channel` of `layer`
    (deconvnet: Zeiler & Fergus's projection to pixel space)."""
    return np.asarray(method(lm.model, lm.variables, model_input(lm, images), A.Unit(layer, channel)).maps)


def projection_view(m: np.ndarray, rf, y: int, x: int) -> np.ndarray:
    """A projection `(H, W, C)` cut to unit `(y, x)`'s receptive field and shown as a colour gradient
    scaled within the crop (outside the image: 0, i.e. grey)."""
    return rgb_gradient(crop(m, rf, y, x, fill=0.0)[None])[0]


def top_units(top, units: int) -> np.ndarray:
    """The `units` channels of a `TopK` whose best activations are strongest (rows of `top`)."""
    return np.argsort(-top.values[:, 0], kind="stable")[:units]


def deconv_part(args, out: Path, ctx: dict) -> list[Figure]:
    lm = jaxviz.load("shapesnet")
    data = shapes.generate(args.n_top, size=args.size, seed=TOP_SEED)
    shape = data.images.shape[1:]
    plt = pyplot()
    ctx["deconv"] = {"n": args.n_top, "layers": {}}
    figures = []
    for li, layer in enumerate(args.deconv_layers.split(","), start=2):
        top = top_k_all(lm, data, layer, k=9, progress=False)
        rf = receptive_field(lm.model, lm.variables, shape, layer)
        rows = top_units(top, args.units)
        fig, axes = plt.subplots(len(rows), 19, figsize=(19 * 0.62, len(rows) * 0.68 + 0.4), squeeze=False)
        info = []
        for r, row in enumerate(rows):
            ch, idx, pos = int(top.channels[row]), top.indices[row], top.positions[row]
            maps = projections(lm, data.images[idx], layer, ch)
            for c in range(9):
                yy, xx = (int(v) for v in pos[c])
                axes[r, c].imshow(projection_view(maps[c], rf, yy, xx))
                axes[r, 10 + c].imshow(crop(data.images[idx[c]], rf, yy, xx))
            info.append(
                {
                    "channel": ch,
                    "images": idx.tolist(),
                    "values": top.values[row].round(4).tolist(),
                    "classes": [shapes.CLASSES[data.labels[i]] for i in idx],
                }
            )
            axes[r, 0].set_ylabel(f"ch {ch}", fontsize=6)
        for a in axes.flat:
            a.set_xticks([]), a.set_yticks([])
            for s in a.spines.values():
                s.set_visible(False)
        fig.suptitle(
            f"{layer} (layer {li}): deconvnet projections of each unit's top 9 activations (left) and the "
            f"image patches (right), receptive field {rf.size:.0f} px",
            fontsize=8,
        )
        fig.tight_layout(pad=0.2, w_pad=0.05, h_pad=0.1)
        path = f"deconv_{layer}.png"
        save_figure(fig, out / path)
        ctx["deconv"]["layers"][layer] = {"receptive_field": rf.size, "units": info}
        purity = np.mean([max(u["classes"].count(c) for c in set(u["classes"])) / 9 for u in info])
        figures.append(
            Figure(
                path,
                f"Notes fig. 6 (Zeiler & Fergus fig. 2), layer {li}: the top 9 activations of "
                "units projected to pixel space by the deconvnet, beside the image patches",
                f"{len(rows)} units of {layer} (those with the strongest best activation) over "
                f"{args.n_top} shapes images; crops are the units' receptive fields",
                "shapes instead of ImageNet's validation set; ShapesNet's six convs stand for AlexNet-like layers 2-5",
                {"mean share of a unit's top 9 from one class": f"{purity:.2f}"},
            )
        )
    return figures


# --- 4. all-convolutional net: deconvnet vs guided backprop with and without pooling --------------


def allconv_part(args, out: Path, nets: dict, ctx: dict) -> list[Figure]:
    """Springenberg et al.'s comparison on two nets trained here by one recipe: ShapesNet (max-pooling;
    the deconvnet passes its switches) and the all-conv net (strided convolutions, no pooling)."""
    data = shapes.generate(args.n_loc, size=args.size, seed=LOC_SEED)
    methods = {"deconvnet": A.deconvnet, "guided backprop": A.guided_backprop}
    names = {"gap": "ShapesNet (max-pooling)", "allconv": "All-conv (strided convs)"}
    maps, scores = {}, {}
    for net in names:
        for label, method in methods.items():
            m, _ = batched(nets[net], method, data.images, data.labels)
            maps[net, label] = m
            scores[f"{names[net]}, {label}"] = float(energy_concentration(m, data.masks).P.mean())
    ctx["allconv"] = {
        "accuracy": {names[n]: accuracy_of(nets[n]) for n in names},
        "energy_in_mask": scores,
        "n": args.n_loc,
        "target": "true class",
    }
    plt = pyplot()
    k = min(args.examples, len(data.images))
    cols = [("image", None)] + [(f"{names[n]}\n{label}", (n, label)) for n in names for label in methods]
    fig, axes = plt.subplots(k, len(cols), figsize=(1.75 * len(cols), 1.75 * k + 0.5), squeeze=False)
    for c, (title, key) in enumerate(cols):
        axes[0, c].set_title(title, fontsize=7)
        for r in range(k):
            axes[r, c].imshow(data.images[r] if key is None else rgb_gradient(maps[key][r : r + 1])[0])
            axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
    fig.suptitle("Deconvnet vs guided backprop from the true class's logit, with and without pooling", fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "allconv.png")
    numbers = {f"{n} test accuracy": f"{100 * a:.1f} %" for n, a in ctx["allconv"]["accuracy"].items()}
    numbers.update({f"energy in the shape's mask, {k}": f"{v:.3f}" for k, v in scores.items()})
    return [
        Figure(
            "allconv.png",
            "Notes fig. 15 (Springenberg et al. 2015, fig. 4): deconvnet and guided backprop on "
            "nets with and without pooling; without pooling the deconvnet's image is almost uninterpretable, "
            "guided backprop is the clearest",
            "both methods on ShapesNet and on the all-conv net trained "
            "here (strided 3×3 convolutions instead of each max-pool), plus each map's energy inside the "
            "object's mask",
            "shapes instead of ImageNet; All-CNN-style replacement of ShapesNet's pools, "
            "not Springenberg's All-CNN-C; maps from the class logit, not from single layer-6 neurons",
            numbers,
        )
    ]


# --- 5. features over training ---------------------------------------------------------------------


def filter_mosaic(kernel: np.ndarray) -> np.ndarray:
    """A `(kh, kw, 3, out)` first-layer kernel as one image: filters min-max scaled, in a square grid."""
    k = np.moveaxis(np.asarray(kernel, np.float32), 3, 0)
    lo, hi = k.min((1, 2, 3), keepdims=True), k.max((1, 2, 3), keepdims=True)
    k = (k - lo) / np.where(hi > lo, hi - lo, 1.0)
    n, kh, kw, c = k.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    canvas = np.ones((rows * (kh + 1) - 1, cols * (kw + 1) - 1, c), np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        canvas[r * (kh + 1) : r * (kh + 1) + kh, q * (kw + 1) : q * (kw + 1) + kw] = k[i]
    return canvas


def evolution_part(args, out: Path, nets: dict, ctx: dict) -> list[Figure]:
    """Zeiler & Fergus's fig. 4 from the checkpoints of a GAP ShapesNet trained from random weights: per epoch
    the first-layer filters and,
    for fixed units of three layers, the strongest activation over the data projected by the deconvnet."""
    epochs = [e for e in args.checkpoints if e <= args.evolution_epochs]
    folder = out / "weights"
    data = shapes.generate(args.n_top, size=args.size, seed=TOP_SEED)
    final = nets["scratch"]
    units = {}
    for layer in EVOLUTION_LAYERS:
        top = top_k_all(final, data, layer, k=1, progress=False)
        units[layer] = [int(top.channels[r]) for r in top_units(top, args.evolution_units)]
    shape = data.images.shape[1:]
    rfs = {layer: receptive_field(final.model, final.variables, shape, layer) for layer in EVOLUTION_LAYERS}
    plt = pyplot()
    per_layer = args.evolution_units
    fig, axes = plt.subplots(
        len(epochs),
        1 + per_layer * len(EVOLUTION_LAYERS),
        figsize=(0.95 * (1 + per_layer * len(EVOLUTION_LAYERS)) + 0.6, 1.0 * len(epochs) + 0.6),
        squeeze=False,
    )
    acc = {}
    for r, epoch in enumerate(epochs):
        lm = jaxviz.load(str(folder / f"scratch.epoch{epoch:03d}.safetensors"))
        acc[epoch] = accuracy_of(lm)
        axes[r, 0].imshow(filter_mosaic(lm.variables["params"]["conv1_1"]["kernel"]), interpolation="nearest")
        axes[r, 0].set_ylabel(f"epoch {epoch}\n{100 * acc[epoch]:.0f} %", fontsize=7)
        for li, layer in enumerate(EVOLUTION_LAYERS):
            top = top_k_all(lm, data, layer, units[layer], k=1, progress=False)
            for u, ch in enumerate(units[layer]):
                i, (yy, xx) = int(top.indices[u, 0]), top.positions[u, 0].tolist()
                proj = projections(lm, data.images[i : i + 1], layer, ch)[0]
                a = axes[r, 1 + li * per_layer + u]
                a.imshow(projection_view(proj, rfs[layer], yy, xx))
                if r == 0:
                    a.set_title(f"{layer}\nch {ch}", fontsize=6)
    axes[0, 0].set_title("conv1_1 filters", fontsize=6)
    for a in axes.flat:
        a.set_xticks([]), a.set_yticks([])
    fig.suptitle(
        "Features over training: first-layer filters and each unit's strongest activation (deconvnet)", fontsize=8
    )
    fig.tight_layout(pad=0.3)
    save_figure(fig, out / "evolution.png")
    ctx["evolution"] = {"epochs": epochs, "test_accuracy": acc, "units": units}
    return [
        Figure(
            "evolution.png",
            "Notes fig. 7 (Zeiler & Fergus fig. 4): the features of each layer at epochs 1, "
            "2, 5, 10, 20, 30, 40, 64; deep layers need more epochs to settle",
            f"checkpoints of a ShapesNet trained from random weights ({args.evolution_epochs} epochs × "
            f"{args.per_epoch} images) at epochs {', '.join(map(str, epochs))} (saved by "
            "`jaxviz.train.fit_shapes(checkpoints=...)`, also `experiments/train_shapesnet.py --checkpoints`); "
            "units chosen on the final net and followed back",
            "shapes and a short schedule instead of ImageNet and 70 epochs",
            {f"epoch {e} test accuracy": f"{100 * a:.1f} %" for e, a in acc.items()},
        )
    ]


# --- 6. t-SNE of many images -------------------------------------------------------------------------


class Images:
    """A uint8 image array `(N, H, W, 3)` (a memmap) seen as float32 in [0, 1], one slice at a time."""

    def __init__(self, array: np.ndarray):
        self.array, self.shape = array, array.shape

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index) -> np.ndarray:
        return np.asarray(self.array[index], np.float32) / 255.0


def tsne_part(args, out: Path, ctx: dict) -> list[Figure]:
    """Karpathy's t-SNE map: GAP features of the embedded ShapesNet for `--tsne-n` images (rendered once
    into a uint8 memmap, features streamed into a float32 memmap), a 2-D t-SNE, and a grid in which
    every cell shows a different image, the nearest to the cell (no empty cells)."""
    cache = out / "cache"
    n, t0, seconds = args.tsne_n, time.perf_counter(), {}
    array = shapes.write_array(
        cache / f"shapes_{n}_{args.size}_{TSNE_SEED}.npy", n, size=args.size, seed=TSNE_SEED, workers=args.workers
    )
    seconds["images"] = time.perf_counter() - t0
    lm = jaxviz.load("shapesnet")
    images = Images(array)
    t = time.perf_counter()
    layer = lm.model.cam_layer()
    feats = extract.cache_pooled(
        lm,
        SimpleNamespace(images=images),
        layer,
        cache / f"features_{lm.name}_{layer}_{n}_{args.size}_{TSNE_SEED}.npy",
        batch_size=256,
    )
    seconds["features"] = time.perf_counter() - t
    t = time.perf_counter()
    points_path = cache / f"tsne_{lm.name}_{n}_{args.tsne_method}.npy"
    if points_path.exists() and np.load(points_path).shape == (n, 2):
        points = np.load(points_path)
    else:
        points = embed.tsne(feats, seed=args.seed, method=args.tsne_method)
        with atomic_path(points_path) as tmp, open(tmp, "wb") as f:  # a file object: np.save adds no suffix
            np.save(f, points)
    seconds["tsne"] = time.perf_counter() - t
    t = time.perf_counter()
    labels = np.array([shapes.label_of(i, seed=TSNE_SEED) for i in range(n)])
    dataset = SimpleNamespace(images=images, labels=labels, classes=shapes.CLASSES)
    embed.embedding_figures(
        dataset,
        feats,
        out / "tsne.png",
        out / "tsne_grid.png",
        points2d=points,
        grid=(args.grid, args.grid),
        title=f"t-SNE of {layer} features",
    )
    seconds["figures"] = time.perf_counter() - t
    # how well the map keeps classes apart: the share of each point's 10 nearest neighbours in the plane of its class
    from scipy.spatial import cKDTree

    _, nn = cKDTree(points).query(points, k=11)
    purity = float((labels[nn[:, 1:]] == labels[:, None]).mean())
    ctx["tsne"] = {
        "n": n,
        "layer": layer,
        "feature_dim": int(feats.shape[1]),
        "grid": [args.grid, args.grid],
        "method": args.tsne_method,
        "knn10_same_class": purity,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    s = ctx["tsne"]["seconds"]
    numbers = {
        "images": f"{n}",
        "feature": f"{layer}, {feats.shape[1]}-d (mean over space = the GAP input)",
        "same-class share of 10 nearest neighbours in the map": f"{purity:.3f}",
        "time (images / features / t-SNE / figures)": f"{s['images']} / {s['features']} / {s['tsne']} / "
        f"{s['figures']} s",
    }
    return [
        Figure(
            "tsne.png",
            "Notes fig. 25 (Karpathy): 50 000 ILSVRC images placed by Barnes-Hut t-SNE of AlexNet's "
            "4096-d fc7 features",
            f"{n} shapes images by t-SNE of the embedded ShapesNet's features, coloured by class",
            "shapes and a 128-d GAP feature instead of ImageNet and fc7; openTSNE's "
            "FFT-accelerated t-SNE where installed (same objective, faster than Barnes-Hut at this size)",
            numbers,
        ),
        Figure(
            "tsne_grid.png",
            "Notes fig. 26: the same map snapped to a grid, empty cells filled by nearest neighbours",
            f"a {args.grid}×{args.grid} grid, every cell a different image: the one nearest "
            "to the cell under a one-to-one assignment (`embed.grid_fill`)",
        ),
    ]


# --- the run -------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, help="folder for the figures, results.json and index.md/html")
    p.add_argument("--only", help=f"comma-separated subset of {', '.join(PARTS)}")
    g = p.add_argument_group("training (GAP, GMP and all-conv nets by one recipe; the evolution net from scratch)")
    g.add_argument(
        "--init",
        default="embedded",
        choices=("embedded", "scratch"),
        help="start of the compared nets: the embedded ShapesNet's weights (default) or random",
    )
    g.add_argument("--epochs", type=int, default=4, help="epochs of the compared nets (default 4)")
    g.add_argument("--evolution-epochs", type=int, default=10, help="epochs of the evolution net (default 10)")
    g.add_argument("--per-epoch", type=int, default=8000, help="fresh shapes images per epoch (default 8000)")
    g.add_argument("--batch", type=int, default=64)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--test", type=int, default=1000, help="test images for each epoch's accuracy")
    g.add_argument(
        "--checkpoints",
        default="1,2,5,10",
        type=lambda s: tuple(int(v) for v in s.split(",")),
        help="epochs whose weights the evolution net keeps (default 1,2,5,10)",
    )
    g = p.add_argument_group("experiments")
    g.add_argument("--size", type=int, default=64, help="image side (the nets are trained at it)")
    g.add_argument("--n-loc", type=int, default=1000, help="test images for CAM localization and the all-conv study")
    g.add_argument("--examples", type=int, default=6, help="example images per figure row")
    g.add_argument("--patch", type=int, default=16, help="occluder side in pixels")
    g.add_argument("--stride", type=int, default=2, help="occluder step in pixels")
    g.add_argument("--n-top", type=int, default=2000, help="images searched for top activations")
    g.add_argument("--deconv-layers", default=",".join(DECONV_LAYERS))
    g.add_argument("--units", type=int, default=6, help="units per layer in the top-9 figures")
    g.add_argument("--evolution-units", type=int, default=3, help="units per layer in the evolution figure")
    g.add_argument("--tsne-n", type=int, default=50_000, help="images in the t-SNE map (default 50 000)")
    g.add_argument("--tsne-method", default="auto", choices=("auto", "fft", "barnes_hut", "exact"))
    g.add_argument("--grid", type=int, default=50, help="side of the t-SNE grid in cells")
    g.add_argument("--workers", type=int, help="processes rendering images (default: every core)")
    g = p.add_argument_group("COCO boxes (with --only cam)")
    g.add_argument("--coco", help="COCO folder with <split>/ and annotations/instances_<split>.json")
    g.add_argument("--coco-split", default="val2017")
    g.add_argument("--weights", help="an ImageNet net with a global-average-pooling head for the COCO part")
    g.add_argument("--categories", default="traffic light,stop sign,zebra,banana,pizza,teddy bear")
    g.add_argument("--per-category", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    only = parse_only(args.only, PARTS, "part")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ctx: dict = {"seconds": {}}
    needs = {"cam": ("gap", "gmp", "allconv"), "allconv": ("gap", "allconv"), "evolution": ("scratch",)}
    wanted = tuple(n for n in NETS if any(n in needs.get(part, ()) for part in only))
    t = time.perf_counter()
    nets = train_nets(args, out, wanted)
    ctx["seconds"]["training"] = round(time.perf_counter() - t, 2)
    ctx["nets"] = {n: {"arch": lm.arch, "test_accuracy": accuracy_of(lm)} for n, lm in nets.items()}
    steps = {
        "cam": lambda: cam_part(args, out, nets, ctx),
        "occlusion": lambda: occlusion_part(args, out, ctx),
        "deconv": lambda: deconv_part(args, out, ctx),
        "allconv": lambda: allconv_part(args, out, nets, ctx),
        "evolution": lambda: evolution_part(args, out, nets, ctx),
        "tsne": lambda: tsne_part(args, out, ctx),
    }
    figures = []
    for part in PARTS:
        if part in only:
            t = time.perf_counter()
            figures += steps[part]()
            ctx["seconds"][part] = round(time.perf_counter() - t, 2)
            print(f"{part}: {ctx['seconds'][part]:.1f} s", flush=True)
    ctx["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    ctx["figures"] = [f.path for f in figures]
    ctx["args"] = vars(args)
    write_text(out / "results.json", json.dumps(ctx, indent=1, default=str))
    trained = ", ".join(f"{n} {100 * v['test_accuracy']:.1f} %" for n, v in ctx["nets"].items())
    intro = (
        "Seed 004 (Russian lecture notes on CNN visualization) reproduced by `experiments/seeds/seed004.py` on "
        f"synthetic shapes, offline. Nets trained here ({args.epochs} epochs × {args.per_epoch} images, test "
        f"accuracy): {trained or 'none'}; the embedded ShapesNet for occlusion, projections and t-SNE. Whole "
        f"run: {ctx['seconds']['total']:.0f} s on {jax.default_backend().upper()}."
    )
    write_page(
        out,
        "Seed 004 — CAM localization, occlusion, deconvnet projections, all-conv nets, feature "
        "evolution and t-SNE, reproduced",
        figures,
        intro,
    )
    return ctx


if __name__ == "__main__":
    multiprocessing.freeze_support()
    main()
