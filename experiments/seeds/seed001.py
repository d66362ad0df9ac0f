"""Seed 001 (Chlipała 2019, "Metody wizualizacji optymalizacji aktywacji neuronów sieci konwolucyjnych",
Keras): LeNet-5 on handwritten digits with its filters and feature maps, VGG19 filter visualization with
multiscale upscaling, and a class maximized ("dragonfly") and fed back to the network.

    python experiments/seeds/seed001.py --out runs/seed001                          # offline: digits + shapesnet
    python experiments/seeds/seed001.py --out DIR --mnist-dir ~/data/mnist          # LeNet-5 on MNIST, as the seed
    python experiments/seeds/seed001.py --out DIR --weights vgg19-torchvision       # the seed's VGG19 (a GPU helps)
    python experiments/seeds/seed001.py --out DIR --epochs 1 --steps 4 --octaves 2  # a quick look

Writes one PNG per figure, `class_model.png` (the maximized class, at the model's input size, reclassified
by `jaxviz predict`), `results.json` (every number) and `index.md` / `index.html` (`page.py`).

| seed (§) | what | here |
|---|---|---|
| 3.3.3 | LeNet-5: ZeroPadding to 32×32, Conv 6 → BN → tanh → MaxPool, Conv 16 → BN → (tanh, MaxPool) → Dropout 0.4, 0.3 → Dense 400-120-84 tanh → 10 softmax; Adam, binary cross-entropy, batch 256, 5 epochs | `LeNet5(batchnorm=True, dropout=(0.4, 0.3))`, 5×5 and 3×3 kernels; Keras' Adam (lr 1e-3) and BN (momentum 0.99, ε 1e-3); both losses selectable (`--loss`) |
| 3.3.4, rys. 3.7 | filters of layer 1 (3×3 variant) and layer 2 (5×5) | `inspect.layer_filters` for both layers of both variants |
| rys. 3.8 | layer-1 feature maps, one example per class | conv1's 6 maps for the first test image of each digit |
| rys. 3.9 | layer-2 feature maps of a "6" | `inspect.feature_maps` at conv2 (16 maps) |
| 4.1.1, rys. 4.2–4.6 | VGG19: grey low-resolution noise, gradient normalized and added, upscaled and optimized again | filter preset `octaves` (4 octaves × 1.3, normalized-gradient ascent from grey noise) at the seed's layers and filters |
| 4.1.2, rys. 4.8 | class 319 (dragonfly) maximized, reclassified: 96 % | the same ascent on log p(class) (its normalized gradient is p's), `jaxviz predict class_model.png --top 3` |

The seed's "convN … bloku k" is Keras' `blockN_convk` (VGG-19's figure 4.1 labels its five stages conv1–conv5;
blocks 1–2 have two convs, 3–5 four, and every layer the seed names exists under this reading), so its figures
are at the ReLU outputs relu1_1/relu1_2 (rys. 4.2), relu3_1–relu3_4 (rys. 4.4) and relu5_1 (text of rys. 4.6).
Without `--weights` the VGG part runs on an embedded model trained on synthetic shapes; the seed's layers and
filters are mapped onto it (stated on the page).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))  # page.py, a sibling module

from page import Figure, parse_only, write_page  # noqa: E402

import jaxviz  # noqa: E402  (page.py put the repository on the path)
from jaxviz.atomic import write_text  # noqa: E402
from jaxviz.cli import main as jaxviz_cli  # noqa: E402
from jaxviz.data.datasets import Dataset, load_dataset  # noqa: E402
from jaxviz.data.images import save_image  # noqa: E402
from jaxviz.data.labels import Labels  # noqa: E402
from jaxviz.data.preprocess import UNIT  # noqa: E402
from jaxviz.inspect import feature_maps, layer_filters  # noqa: E402
from jaxviz.models.lenet import LeNet5  # noqa: E402
from jaxviz.models.loading import LoadedModel  # noqa: E402
from jaxviz.optvis import objectives as O  # noqa: E402
from jaxviz.optvis import visualize as V  # noqa: E402
from jaxviz.optvis.commands import save_grid  # noqa: E402
from jaxviz.optvis.octaves import octave_sizes  # noqa: E402
from jaxviz.optvis.presets import hparams, model_defaults  # noqa: E402
from jaxviz.optvis.reclassify import reclassify  # noqa: E402
from jaxviz.optvis.render import unit_keys  # noqa: E402
from jaxviz.plot import pyplot, save_figure  # noqa: E402
from jaxviz.taps import activations  # noqa: E402

KERNELS = (5, 3)
SEED_DROPOUT = (0.4, 0.3)
SEED_EPOCHS, SEED_BATCH, SEED_LR = 5, 256, 1e-3  # Keras' Adam default learning rate
SEED_TEST_ACCURACY = 0.99439  # Keras' "accuracy" under binary cross-entropy: binary accuracy over 10 outputs
SIX = 6  # rys. 3.9: the layer-2 maps of a "6"
# The seed's VGG19 figures as (its stage N, its "blok" k = Keras blockN_convk, filter), in caption order.
SEED_FILTERS = {
    "rys. 4.2 (conv1)": [
        (1, 1, 5),
        (1, 1, 15),
        (1, 1, 9),
        (1, 2, 50),
        (1, 2, 32),
        (1, 2, 33),
        (1, 2, 59),
        (1, 2, 60),
        (1, 2, 61),
    ],
    "rys. 4.4 (conv3)": [
        (3, 4, 128),
        (3, 4, 17),
        (3, 2, 9),
        (3, 3, 34),
        (3, 1, 15),
        (3, 3, 32),
        (3, 4, 254),
        (3, 4, 32),
        (3, 4, 33),
    ],
    "rys. 4.6 (conv5)": [(5, 1, 30), (5, 1, 3)],  # named in the text: "conv5 bloku 1, filtry 30 i 3"
}
FIGURE_FILES = {
    "rys. 4.2 (conv1)": "vgg_filters_conv1.png",
    "rys. 4.4 (conv3)": "vgg_filters_conv3.png",
    "rys. 4.6 (conv5)": "vgg_filters_conv5.png",
}
DRAGONFLY = 319
EMBEDDED_CLASS = "crescent"  # no dragonfly on an embedded model; grey noise is far from a crescent (p 0.002)


# --- LeNet-5 ----------------------------------------------------------------------------------


def load_digits_data(mnist_dir: str | None, split_seed: int = 0) -> tuple[Dataset, Dataset, str]:
    """(train, test, description): MNIST's 60 000 / 10 000 from `mnist_dir`, else scikit-learn's digits
    (8×8 scans upsampled to 28×28, 1 437 / 360 as `experiments/train_lenet.py` splits them)."""
    if mnist_dir:
        from jaxviz.data.mnist import load_mnist

        return load_mnist(mnist_dir, "train"), load_mnist(mnist_dir, "test"), f"MNIST from {mnist_dir}"
    return (
        load_dataset("digits", split="train", seed=split_seed),
        load_dataset("digits", split="test", seed=split_seed),
        f'scikit-learn digits upsampled to 28×28 (load_dataset("digits", split=..., seed={split_seed}))',
    )


def seed_lenet(kernel: int) -> LeNet5:
    """Seed 001's LeNet-5: BatchNorm after each conv, Dropout 0.4 and 0.3 before the dense head, tanh."""
    return LeNet5(kernel=kernel, batchnorm=True, dropout=SEED_DROPOUT)


def _loss(logits: jax.Array, y: jax.Array, kind: str) -> jax.Array:
    """Keras' binary cross-entropy on the softmax outputs (the seed's compile), or categorical."""
    if kind == "categorical":
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    p = jnp.clip(jax.nn.softmax(logits, -1), 1e-7, 1 - 1e-7)  # Keras clips by its epsilon 1e-7
    onehot = jax.nn.one_hot(y, logits.shape[-1])
    return -(onehot * jnp.log(p) + (1 - onehot) * jnp.log(1 - p)).mean()


def train_lenet(
    kernel: int,
    data: Dataset,
    *,
    epochs: int = SEED_EPOCHS,
    batch: int = SEED_BATCH,
    lr: float = SEED_LR,
    loss: str = "binary",
    seed: int = 0,
    log=print,
):
    """Keras' `model.fit(epochs, batch_size)`: Adam, a fresh shuffle each epoch, the last partial batch kept.

    Returns `(model, variables, epoch_losses)`; `variables` holds `params` and BN's `batch_stats`."""
    model = seed_lenet(kernel)
    variables = dict(model.init(jax.random.key(seed), jnp.zeros((1, *data.images.shape[1:]))))
    tx = optax.adam(lr)
    params, stats = variables["params"], variables["batch_stats"]
    opt = tx.init(params)

    @jax.jit
    def step(params, stats, opt, key, x, y):
        def loss_fn(p):
            logits, new = model.apply(
                {"params": p, "batch_stats": stats}, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
            )
            return _loss(logits, y, loss), new["batch_stats"]

        (value, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, updates), stats, opt, value

    rng, key = np.random.default_rng(seed), jax.random.key(seed + 1)
    images, labels, losses = jnp.asarray(data.images), jnp.asarray(data.labels), []
    for epoch in range(epochs):
        order, total = rng.permutation(len(data)), 0.0
        batches = [order[i : i + batch] for i in range(0, len(order), batch)]
        for idx in batches:
            key, sub = jax.random.split(key)
            params, stats, opt, value = step(params, stats, opt, sub, images[idx], labels[idx])
            total += float(value) * len(idx)
        losses.append(total / len(order))
        if log:
            log(f"lenet {kernel}x{kernel} epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}")
    return model, {"params": params, "batch_stats": stats}, losses


def recompute_bn_statistics(model, variables, data: Dataset, batch: int = 2000) -> dict:
    """`variables` with BN's running statistics replaced by the training set's own mean and variance.

    After few steps Keras' running averages (momentum 0.99) still hold much of their initial 0 and 1
    (0.99^30 = 0.74 on digits); one pass over the training set gives the statistics the net was trained
    with. Each batch's statistics are read back from one train-mode update (new = 0.99·old + 0.01·batch)."""
    fn = jax.jit(
        lambda v, x: model.apply(v, x, train=True, rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"])[1][
            "batch_stats"
        ]
    )
    means, squares, weights = [], [], []
    for i in range(0, len(data), batch):
        new = fn(variables, data.images[i : i + batch])
        b = jax.tree_util.tree_map(lambda n, o: (n - 0.99 * o) / 0.01, new, variables["batch_stats"])
        means.append({k: v["mean"] for k, v in b.items()})
        squares.append({k: v["var"] + v["mean"] ** 2 for k, v in b.items()})
        weights.append(len(data.images[i : i + batch]) / len(data))
    stats = {}
    for k in variables["batch_stats"]:
        mean = sum(w * m[k] for w, m in zip(weights, means))
        stats[k] = {"mean": mean, "var": sum(w * q[k] for w, q in zip(weights, squares)) - mean**2}
    return {"params": variables["params"], "batch_stats": stats}


def evaluate(model, variables, data: Dataset, batch: int = 1000) -> dict:
    """Test accuracy (argmax), Keras' binary accuracy (what the seed's log calls accuracy) and the errors."""
    fn = jax.jit(lambda v, x: jax.nn.softmax(model.apply(v, x), -1))  # inference: running BN statistics
    probs = np.concatenate([np.asarray(fn(variables, data.images[i : i + batch])) for i in range(0, len(data), batch)])
    onehot = np.eye(probs.shape[1])[data.labels]
    wrong = int((probs.argmax(1) != data.labels).sum())
    return {
        "accuracy": 1 - wrong / len(data),
        "keras_binary_accuracy": float(((probs > 0.5) == onehot).mean()),
        "wrong": wrong,
        "n": len(data),
    }


def as_loaded(model, variables, kernel: int, classes, meta: dict) -> LoadedModel:
    """A trained LeNet-5 as a `LoadedModel` (for the `inspect` figures)."""
    return LoadedModel(
        f"lenet5_seed001_{kernel}x{kernel}",
        "lenet5" if kernel == 5 else "lenet5_3x3",
        model,
        variables,
        UNIT,
        Labels.from_names(list(classes)),
        (28, 28, 1),
        meta,
    )


def per_class_examples(data: Dataset) -> list[int]:
    """The first test image of each class, in class order."""
    return [int(np.flatnonzero(data.labels == c)[0]) for c in range(len(data.classes))]


def class_maps_figure(lm, data: Dataset, layer: str, path: Path) -> Path:
    """Rys. 3.8: one row per class, the input then each of the layer's maps (each scaled to its own range)."""
    idx = per_class_examples(data)
    x = data.images[idx]
    a = np.asarray(jax.jit(lambda v, x: activations(lm.model, v, x, [layer])[layer])(lm.variables, x))
    k = a.shape[-1]
    plt = pyplot()
    fig, axes = plt.subplots(len(idx), k + 1, figsize=(0.75 * (k + 1), 0.75 * len(idx) + 0.5), squeeze=False)
    for r in range(len(idx)):
        tiles = [(x[r, ..., 0], 0.0, 1.0)] + [
            (a[r, ..., j], float(a[r, ..., j].min()), float(a[r, ..., j].max())) for j in range(k)
        ]
        for c, (img, lo, hi) in enumerate(tiles):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=lo, vmax=max(hi, lo + 1e-8), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title("input" if c == 0 else f"map {c - 1}", fontsize=6)
        axes[r, 0].set_ylabel(data.classes[int(data.labels[idx[r]])], fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(
        f"{lm.name} {layer}: {k} maps of {a.shape[1]}x{a.shape[2]}, the first test image of each class", fontsize=8
    )
    fig.tight_layout(pad=0.2, h_pad=0.1, w_pad=0.1, rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))
    return save_figure(fig, path)


def lenet_part(args, out: Path, ctx: dict) -> list[Figure]:
    train_set, test_set, desc = load_digits_data(args.mnist_dir)
    ctx["lenet"] = {
        "data": desc,
        "train": len(train_set),
        "test": len(test_set),
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": SEED_LR,
        "loss": args.loss,
        "variants": {},
    }
    steps = args.epochs * -(-len(train_set) // args.batch)
    loaded = {}
    for k in KERNELS:
        t = time.perf_counter()
        model, variables, losses = train_lenet(
            k, train_set, epochs=args.epochs, batch=args.batch, loss=args.loss, seed=args.seed
        )
        seconds = time.perf_counter() - t
        keras = evaluate(model, variables, test_set)
        variables = recompute_bn_statistics(model, variables, train_set)
        ev = evaluate(model, variables, test_set)
        ctx["lenet"]["variants"][f"{k}x{k}"] = {
            **ev,
            "running_statistics": keras,
            "epoch_losses": [round(v, 5) for v in losses],
            "steps": steps,
            "train_seconds": round(seconds, 2),
        }
        print(
            f"lenet {k}x{k}: test accuracy {ev['accuracy']:.4f} ({ev['wrong']} of {ev['n']} wrong; "
            f"{keras['accuracy']:.4f} with Keras' running BN statistics), Keras binary accuracy "
            f"{ev['keras_binary_accuracy']:.4f}, {seconds:.1f} s",
            flush=True,
        )
        loaded[k] = as_loaded(model, variables, k, train_set.classes, {"test_set": desc})
    v = ctx["lenet"]["variants"]
    acc = {
        f"{k}×{k} test accuracy": f"{r['accuracy']:.4f} ({r['wrong']} of {r['n']} wrong; "
        f"{r['running_statistics']['accuracy']:.4f} with the running BN statistics; Keras binary accuracy "
        f"{r['keras_binary_accuracy']:.4f})"
        for k in KERNELS
        for r in [v[f"{k}x{k}"]]
    }
    acc["seed (MNIST, Keras' binary accuracy)"] = f"{SEED_TEST_ACCURACY}"
    mnist = bool(args.mnist_dir)
    data_note = (
        ""
        if mnist
        else "Trained on scikit-learn's 1 437 digits (8×8 scans upsampled to 28×28) instead of "
        f"MNIST's 60 000, so {args.epochs} epochs of batch {args.batch} are {steps // args.epochs} steps each "
        f"({steps} in all, "
        "the seed's MNIST run had 1 175); BN's running statistics (momentum 0.99) are still partly at "
        "their initial values after so few steps, so test accuracy is given with BN statistics recomputed "
        "over the training set (and, beside it, with the running ones Keras would use). `--mnist-dir` "
        "trains on MNIST. "
    )
    figures = []
    for layer, n in (("conv1", 1), ("conv2", 2)):
        for k in KERNELS:
            name = f"filters_{layer}_{k}x{k}.png"
            layer_filters(
                loaded[k],
                layer,
                out / name,
                title=f"LeNet-5 {k}×{k}: {layer} filters" + (" (rows: the first 6 input channels)" if n == 2 else ""),
                in_channels=6,
            )
            figures.append(
                Figure(
                    name,
                    "Rysunek 3.7: Wizualizacja filtrów sieci LeNet-5. Od lewej filtry warstwy pierwszej wersji "
                    "zmodyfikowanej 3×3. Z prawej filtry warstwy drugiej wersji oryginalnej.",
                    f"`inspect.layer_filters` of the {k}×{k} variant's {layer} kernel: "
                    + (
                        "its 6 filters, each min-max scaled to grey."
                        if n == 1
                        else "16 filters (columns) × 6 input channels (rows), one diverging scale centred on zero."
                    ),
                    data_note + "The seed shows layer 1 of the 3×3 variant and layer 2 of the 5×5 one; both layers of "
                    "both variants are drawn here.",
                    acc if (layer, k) == ("conv1", 5) else {},
                )
            )
    figures.append(
        Figure(
            "maps_conv1_per_class.png",
            "Rysunek 3.8: Mapy aktywacji dla 6 filtrów warstwy pierwszej, przy użyciu przykładu dla każdej z klas.",
            "The 5×5 variant's conv1 output (before BN, which only rescales each map) for the first test image of each "
            "digit; every map scaled to its own range.",
            data_note + "The seed does not say which layer's output it draws; the conv output is the 'result of "
            "applying the filters' its text describes.",
        )
    )
    class_maps_figure(loaded[5], test_set, "conv1", out / "maps_conv1_per_class.png")
    six = int(np.flatnonzero(test_set.labels == SIX)[0])
    feature_maps(loaded[5], test_set.images[six], "conv2", out / "maps_conv2_six.png", cols=6)
    figures.append(
        Figure(
            "maps_conv2_six.png",
            "Rysunek 3.9: Mapy aktywacji dla 16 filtrów warstwy drugiej, przy użyciu przykładowej "
            "reprezentacji liczby 6.",
            f"`inspect.feature_maps` of the 5×5 variant at conv2 for test image {test_set.names[six]} (a 6): the "
            f"input, "
            "then 16 maps of 10×10.",
            data_note,
        )
    )
    return figures


# --- VGG19 filters and the class model ----------------------------------------------------------


def stages(lm) -> list[list[str]]:
    """The model's feature ReLUs by stage: VGG19 [[relu1_1, relu1_2], [relu2_1, ...], ...]."""
    groups: dict[str, list[str]] = {}
    for layer in lm.model.layers() if hasattr(lm.model, "layers") else []:
        if layer.kind == "act" and layer.name.startswith("relu") and "_" in layer.name:
            groups.setdefault(layer.name.split("_")[0], []).append(layer.name)
    return list(groups.values())


def seed_filter_units(lm) -> dict[str, list[tuple[str, int, str]]]:
    """Per seed figure: `(layer, channel, the seed's name)` on this model. The seed's stage N, conv k is
    relu{N}_{k} on VGG19; on a shallower model stage N is its last stage if it has fewer, conv k its last
    conv of that stage if it has fewer, and filter f is f mod the layer's width."""
    st = stages(lm)
    out = {}
    for fig, units in SEED_FILTERS.items():
        rows = []
        for n, k, f in units:
            stage = st[min(n, len(st)) - 1]
            layer = stage[min(k, len(stage)) - 1]
            width = lm.model.layer(layer.replace("relu", "conv")).size
            rows.append((layer, f % width, f"block{n}_conv{k} #{f}"))
        out[fig] = rows
    return out


def filter_figures(lm, args, out: Path, ctx: dict) -> list[Figure]:
    """Rys. 4.2–4.6: the octaves preset at each seed filter, the filters of one layer in one vmapped call."""
    units = seed_filter_units(lm)
    ctx["filters"], figures = {}, []
    overrides = {"steps": args.steps, "octaves": args.octaves, "reduce": args.reduce, "size": args.size}
    for fig, rows in units.items():
        images, titles, numbers = [], [], []
        for layer in dict.fromkeys(r[0] for r in rows):  # layers in first-seen order
            mine = [(i, c, s) for i, (lay, c, s) in enumerate(rows) if lay == layer]
            vis = V.filters(lm, layer, [c for _, c, _ in mine], preset="octaves", seed=args.seed, **overrides)
            for j, (i, c, s) in enumerate(mine):
                images.append((i, vis.images[j, 0]))
                titles.append((i, f"{s}\n→ {layer} #{c}" if not ctx["vgg"] else s))
                numbers.append(
                    (
                        i,
                        {
                            "seed": s,
                            "layer": layer,
                            "channel": c,
                            "activation_start": vis.extra["target_activation_start"][j],
                            "activation_end": vis.extra["target_activation_end"][j],
                        },
                    )
                )
            hp = vis.hparams
        order = np.argsort([i for i, _ in images])
        imgs = np.stack([images[o][1] for o in order])
        save_grid(
            out / FIGURE_FILES[fig],
            imgs,
            [titles[o][1] for o in order],
            cols=min(len(imgs), 3),
            cell=1.9,
            suptitle=f"{lm.arch}: {hp['octaves']} octaves × {hp['steps']} normalized-gradient steps, "
            f"{args.reduce} of the filter",
        )
        rows_out = [numbers[o][1] for o in order]
        sizes = octave_sizes(int(hp["size"]), int(hp["octaves"]), float(hp["octave_scale"]))
        ctx["filters"][fig] = {"units": rows_out, "octave_sizes": sizes, "steps": hp["steps"], "lr": hp["lr"]}
        grew = sum(r["activation_end"] > r["activation_start"] for r in rows_out)
        caption = {
            "rys. 4.2 (conv1)": "Rysunek 4.2: Wybrane wizualizacje warstwy sieci VGG-19 oznaczonej na rysunku "
            "4.1 jako conv1 (filtry 5, 15, 9 bloku 1; 50, 32, 33, 59, 60, 61 bloku 2)",
            "rys. 4.4 (conv3)": "Rysunek 4.4: Wybrane wizualizacje warstwy sieci VGG-19 oznaczonej na rysunku "
            "4.1 jako conv3 (filtry 128, 17 bloku 4; 9 bloku 2; 34 bloku 3; 15 bloku 1; 32 bloku 3; 254, 32, "
            "33 bloku 4)",
            "rys. 4.6 (conv5)": "Rysunek 4.6: Wybrane wizualizacje warstwy sieci VGG-19 oznaczonej na rysunku "
            "4.1 jako conv5 (tekst: warstwa conv5 bloku 1, filtry 30 i 3)",
        }[fig]
        mapping = "; ".join(f"{r['seed']} → {r['layer']} #{r['channel']}" for r in rows_out)
        figures.append(
            Figure(
                FIGURE_FILES[fig],
                caption,
                f"`optvis.filters` (preset `octaves`): grey noise U[0.45, 0.55] at {sizes[0]} px, {hp['steps']} steps "
                f"of img += {hp['lr']}·g/rms(g) per octave, upscaled bilinearly through {sizes} px; loss "
                f"−{args.reduce} "
                "of the filter's ReLU output (Keras' conv output includes its ReLU). Layers and filters: "
                + mapping
                + ".",
                (
                    "The seed's listing takes K.mean, its text says median (`--reduce median`). It gives neither "
                    "step size, "
                    "step count nor the number of upscalings; these are the preset's. "
                    + (
                        ""
                        if ctx["vgg"]
                        else f"Embedded {lm.arch} (synthetic shapes, {len(stages(lm))} stages, widths "
                        "16–128) instead of ImageNet VGG19: stage N → its stage min(N, last), conv k → its last "
                        "conv of the "
                        "stage if it has fewer, filter f → f mod width."
                    )
                ),
                {"activation grew": f"{grew} / {len(rows_out)}"},
            )
        )
    return figures


def predict_lines(image: Path, model_args: list[str], top: int = 3) -> list[str]:
    """What `jaxviz predict IMAGE ... --top N` prints, run in this process."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = jaxviz_cli(["predict", str(image), *model_args, "--top", str(top)])
    if rc:
        raise SystemExit(f"jaxviz predict {image} failed with status {rc}")
    return buf.getvalue().splitlines()


def class_figure(lm, args, out: Path, ctx: dict) -> Figure:
    """Rys. 4.8: the seed's ascent from grey noise on the class's probability, saved and reclassified."""
    cls = DRAGONFLY if ctx["vgg"] else lm.labels.index(args.embedded_class)
    hp = model_defaults(
        hparams(
            "class",
            "simonyan",
            init="grey",
            init_range=(0.45, 0.55),
            optimizer="normalized",
            lr=0.02,
            momentum=0.0,
            steps=args.class_steps,
            size=args.size,
        ),
        lm,
    )
    # The normalized gradient of log p is p's (∇log p = ∇p / p), so this is the seed's ascent on the softmax output.
    _, images, losses, _ = V.optimize(
        lm, hp, lambda c: O.class_log_prob(c), jnp.asarray([cls], jnp.int32), unit_keys(args.seed, 1)
    )
    img = images[0, 0]
    save_image(out / "class_model.png", img)
    model_args = ["--weights", args.weights] if ctx["vgg"] else ["--model", args.model]
    lines = predict_lines(out / "class_model.png", model_args)
    rows = [line.split("\t") for line in lines]
    top3 = [{"class": int(r[2]), "name": r[3], "probability": float(r[4])} for r in rows]
    in_memory = reclassify(lm, images[:, 0], [cls])[0]
    ctx["class"] = {
        "class": cls,
        "name": lm.labels.name(cls),
        "steps": hp["steps"],
        "lr": hp["lr"],
        "size": int(hp["size"]),
        "predict": lines,
        "top3": top3,
        "p_target_float_image": in_memory["target_probability"],
        "p_target_start": float(np.exp(-losses[0, 0])),
        "loss_end": float(losses[0, -1]),
    }
    name = lm.labels.name(cls).split(",")[0]
    return Figure(
        "class_model.png",
        "Rysunek 4.8: Ważka uzyskana w odwróconym procesie treningu (klasa 319; sklasyfikowana "
        "przez VGG19 jako ważka z pewnością 96%)",
        f"Class {cls} ({name}) of {lm.arch}: grey noise U[0.45, 0.55] at {hp['size']} px, {hp['steps']} steps of "
        f"img += {hp['lr']}·g/rms(g) on log p({name}), the image kept in [0, 1]; saved as an 8-bit PNG and "
        f"reclassified by `jaxviz predict class_model.png {' '.join(model_args)} --top 3`: "
        + "; ".join(f"{t['name']} {t['probability']:.4f}" for t in top3)
        + ".",
        (
            "One size (Keras' VGG19 with its dense layers takes 224×224 only), no upscaling; the seed states no step "
            "count ('a short training'). "
            + (
                ""
                if ctx["vgg"]
                else f"The embedded {lm.arch} has no dragonfly: its class {name!r} instead; "
                "its 10 classes make a high probability easier than ImageNet's 1 000."
            )
        ),
        {
            "jaxviz predict": " | ".join(lines),
            "p(target), float image": f"{in_memory['target_probability']:.4f}",
            "p(target) of the grey start": f"{float(np.exp(-losses[0, 0])):.4f}",
        },
    )


# --- the run -------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, help="folder for the figures, results.json and index.md/html")
    p.add_argument(
        "--mnist-dir",
        help="folder with MNIST's IDX files: train LeNet-5 on MNIST as the seed "
        "(default: scikit-learn's digits, offline)",
    )
    p.add_argument("--weights", help="VGG19 weights: a name (vgg19-torchvision) or a .safetensors path")
    p.add_argument(
        "--model",
        default="shapesnet",
        choices=("shapesnet", "minivgg"),
        help="embedded model for the VGG part without --weights (default shapesnet)",
    )
    p.add_argument(
        "--embedded-class",
        default=EMBEDDED_CLASS,
        help=f"class maximized on an embedded model (default {EMBEDDED_CLASS})",
    )
    p.add_argument("--epochs", type=int, default=SEED_EPOCHS, help="LeNet-5 epochs (the seed's 5)")
    p.add_argument("--batch", type=int, default=SEED_BATCH, help="LeNet-5 batch size (the seed's 256)")
    p.add_argument(
        "--loss",
        default="binary",
        choices=("binary", "categorical"),
        help="LeNet-5 loss: the seed's binary cross-entropy on the softmax, or categorical",
    )
    p.add_argument("--steps", type=int, help="filter visualization steps per octave (default: the preset's 24)")
    p.add_argument("--octaves", type=int, help="filter visualization octaves (default: the preset's 4)")
    p.add_argument(
        "--reduce",
        default="mean",
        choices=("mean", "median"),
        help="filter objective: the seed's listing (mean) or its text (median)",
    )
    p.add_argument("--class-steps", type=int, default=40, help="steps of the class model (default 40)")
    p.add_argument("--size", type=int, help="image side of filters and class model (default: the model's input)")
    p.add_argument("--only", help="comma-separated subset of lenet, filters, class")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    parts = ("lenet", "filters", "class")
    only = parse_only(args.only, parts, "part")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    vgg = args.weights is not None
    ctx: dict = {"vgg": vgg, "seconds": {}}
    figures = []
    if "lenet" in only:
        t = time.perf_counter()
        figures += lenet_part(args, out, ctx)
        ctx["seconds"]["lenet"] = round(time.perf_counter() - t, 2)
    if "filters" in only or "class" in only:
        lm = jaxviz.load("vgg19", weights=args.weights) if vgg else jaxviz.load(args.model)
        if vgg and lm.arch != "vgg19":
            raise SystemExit(f"--weights {args.weights} are for {lm.arch}; seed 001 uses VGG19")
        ctx.update(model=lm.name, arch=lm.arch)
        for part, fn in (
            ("filters", lambda: filter_figures(lm, args, out, ctx)),
            ("class", lambda: [class_figure(lm, args, out, ctx)]),
        ):
            if part in only:
                t = time.perf_counter()
                figures += fn()
                ctx["seconds"][part] = round(time.perf_counter() - t, 2)
                print(f"{part}: {ctx['seconds'][part]:.1f} s", flush=True)
    ctx["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    ctx["figures"] = [f.path for f in figures]
    ctx["args"] = vars(args)
    write_text(out / "results.json", json.dumps(ctx, indent=1, default=str))
    intro = (
        "Seed 001 (Chlipała 2019, Keras) reproduced by `experiments/seeds/seed001.py`: LeNet-5 on "
        + (ctx["lenet"]["data"] if "lenet" in ctx else "(not run)")
        + "; the VGG part on "
        + (
            f"VGG19 with weights {ctx.get('model')}"
            if vgg
            else f"the embedded {ctx.get('arch', args.model)} (offline; pass --weights vgg19-torchvision for the "
            "seed's VGG19)"
        )
        + f". Whole run: {ctx['seconds']['total']:.0f} s on {jax.default_backend().upper()}."
    )
    write_page(
        out, "Seed 001 — LeNet-5 filters and maps, VGG19 filters by multiscale ascent, reproduced", figures, intro
    )
    return ctx


if __name__ == "__main__":
    main()
