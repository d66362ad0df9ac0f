"""The classifier training step and accuracy shared by the `experiments/` training scripts."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax


def cross_entropy_step(model, tx: optax.GradientTransformation) -> Callable:
    """`step(params, opt_state, x, y) -> (params, opt_state, loss)`: one optax step on softmax
    cross-entropy of integer labels. Not jitted, so callers can compose it (e.g. augmentation) first."""

    def step(params, opt, x, y):
        def loss_fn(p):
            logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, g = jax.value_and_grad(loss_fn)(params)
        updates, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    return step


def accuracy(model, params, images: np.ndarray, labels: np.ndarray, batch: int = 500) -> float:
    """Top-1 accuracy of `model` on `images` `(N, H, W, C)` with integer `labels` `(N,)`, in batches."""
    predict = jax.jit(lambda p, x: jnp.argmax(model.apply({"params": p}, x), -1))
    hits = sum(int(np.sum(np.asarray(predict(params, images[i:i + batch])) == labels[i:i + batch]))
               for i in range(0, len(images), batch))
    return hits / len(images)
