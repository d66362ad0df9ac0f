"""Train the embedded default model (ShapesNet) on the synthetic shapes dataset.

    python experiments/train_shapesnet.py --out jaxviz/models/embedded/shapesnet.safetensors

Reproducible from `--seed`: training images come from seeds `seed*1000 + epoch`, the test set
from a seed no training epoch uses. Prints test accuracy; the shipped file's figure is in the README.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from jaxviz.data import shapes
from jaxviz.data.preprocess import CENTERED, normalize
from jaxviz.models import ShapesNet
from jaxviz.train import accuracy, cross_entropy_step
from jaxviz.weights import save_weights

TEST_SEED = 999_999


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="jaxviz/models/embedded/shapesnet.safetensors")
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--per-epoch", type=int, default=16_000, help="fresh images generated per epoch")
    ap.add_argument("--test", type=int, default=2_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    model = ShapesNet(num_classes=len(shapes.CLASSES))
    params = model.init(jax.random.key(args.seed), jnp.zeros((1, args.size, args.size, 3)))["params"]
    steps = args.epochs * (args.per_epoch // args.batch)
    tx = optax.adamw(optax.warmup_cosine_decay_schedule(1e-5, args.lr, min(max(300, steps // 10), steps // 2), steps, 1e-5), weight_decay=1e-4)
    opt = tx.init(params)

    step = jax.jit(cross_entropy_step(model, tx))

    test = shapes.generate(args.test, size=args.size, seed=TEST_SEED)
    test = test._replace(images=normalize(test.images, CENTERED))
    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    for epoch in range(args.epochs):
        data = shapes.generate(args.per_epoch, size=args.size, seed=args.seed * 1000 + epoch)
        images = normalize(data.images, CENTERED)
        order = rng.permutation(args.per_epoch)
        bar = tqdm(range(0, args.per_epoch - args.batch + 1, args.batch), desc=f"epoch {epoch + 1}/{args.epochs}")
        for i in bar:
            idx = order[i:i + args.batch]
            params, opt, loss = step(params, opt, images[idx], data.labels[idx])
            bar.set_postfix(loss=f"{float(loss):.3f}")
        print(f"epoch {epoch + 1}: test accuracy {accuracy(model, params, test.images, test.labels):.4f}")

    acc = accuracy(model, params, test.images, test.labels)
    meta = {"arch": "shapesnet", "preprocessing": CENTERED.name, "num_classes": str(len(shapes.CLASSES)),
            "classes": json.dumps(list(shapes.CLASSES)), "source": "experiments/train_shapesnet.py",
            "train_args": json.dumps(vars(args)), "test_accuracy": f"{acc:.4f}",
            "test_set": f"shapes.generate({args.test}, size={args.size}, seed={TEST_SEED})"}
    save_weights(args.out, jax.tree_util.tree_map(np.asarray, params), meta)
    print(json.dumps({"test_accuracy": acc, "seconds": round(time.time() - t0, 1), "out": args.out}))


if __name__ == "__main__":
    main()
