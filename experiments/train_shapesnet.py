"""Train a shapes classifier — the embedded default model (ShapesNet), its GMP-head variant or the
all-convolutional net — on the synthetic shapes dataset.

    python experiments/train_shapesnet.py --out jaxviz/models/embedded/shapesnet.safetensors
    python experiments/train_shapesnet.py --pool gmp --out runs/shapesnet_gmp.safetensors     # CAM-GMP (seed 004)
    python experiments/train_shapesnet.py --arch allconv --out runs/allconv.safetensors --checkpoints 1,2,5,10

Reproducible from `--seed`: training images come from seeds `seed*1000 + epoch`, the test set
from a seed no training epoch uses (`jaxviz.train.fit_shapes`, the recipe). Prints test accuracy per
epoch; the shipped file's figure is in the README. `--checkpoints 1,2,5,10` also saves those epochs'
weights as `<out>.epoch001.safetensors`, ... (seed 004's features over training).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from jaxviz.data import shapes
from jaxviz.data.preprocess import CENTERED
from jaxviz.models import build
from jaxviz.train import TEST_SEED, fit_shapes
from jaxviz.weights import save_weights


def checkpoint_path(out: str | Path, epoch: int) -> Path:
    """Where `--checkpoints` saves epoch `epoch` of the model written to `out`."""
    out = Path(out)
    return out.with_name(f"{out.name.removesuffix('.safetensors')}.epoch{epoch:03d}.safetensors")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="jaxviz/models/embedded/shapesnet.safetensors")
    ap.add_argument("--arch", default="shapesnet", choices=("shapesnet", "allconv"))
    ap.add_argument("--pool", default="gap", choices=("gap", "gmp"), help="ShapesNet's head pooling")
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--per-epoch", type=int, default=16_000, help="fresh images generated per epoch")
    ap.add_argument("--test", type=int, default=2_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoints", default="", help="comma-separated epochs whose weights are also saved")
    args = ap.parse_args()
    if args.pool != "gap" and args.arch != "shapesnet":
        ap.error("--pool applies to --arch shapesnet")
    checkpoints = tuple(int(e) for e in args.checkpoints.split(",") if e.strip())

    options = {"pool": args.pool} if args.pool != "gap" else {}
    model = build(args.arch, num_classes=len(shapes.CLASSES), **options)
    meta = {
        "arch": args.arch,
        "preprocessing": CENTERED.name,
        "num_classes": str(len(shapes.CLASSES)),
        "classes": json.dumps(list(shapes.CLASSES)),
        "source": "experiments/train_shapesnet.py",
        "train_args": json.dumps(vars(args)),
        "test_set": f"shapes.generate({args.test}, size={args.size}, seed={TEST_SEED})",
        **options,
    }

    def save(epoch, params, acc):
        save_weights(
            checkpoint_path(args.out, epoch),
            jax.tree_util.tree_map(np.asarray, params),
            {**meta, "epoch": str(epoch), "test_accuracy": f"{acc:.4f}"},
        )

    t0 = time.time()
    params, history = fit_shapes(
        model,
        epochs=args.epochs,
        per_epoch=args.per_epoch,
        batch=args.batch,
        lr=args.lr,
        size=args.size,
        seed=args.seed,
        test=args.test,
        checkpoints=checkpoints,
        on_checkpoint=save,
    )
    acc = history[-1]["test_accuracy"]
    save_weights(args.out, jax.tree_util.tree_map(np.asarray, params), {**meta, "test_accuracy": f"{acc:.4f}"})
    print(json.dumps({"test_accuracy": acc, "seconds": round(time.time() - t0, 1), "out": args.out}))


if __name__ == "__main__":
    main()
