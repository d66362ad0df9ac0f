"""The classifier training step and accuracy shared by the `experiments/` training scripts, and the shapes
training loop (`fit_shapes`) of `train_shapesnet.py` and seed 004."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    hits = sum(
        int(np.sum(np.asarray(predict(params, images[i : i + batch])) == labels[i : i + batch]))
        for i in range(0, len(images), batch)
    )
    return hits / len(images)


TEST_SEED = 999_999
"""The shapes test set's seed (`fit_shapes`, `experiments/train_shapesnet.py`): no training epoch uses it."""


def fit_shapes(
    model,
    *,
    epochs: int = 14,
    per_epoch: int = 16_000,
    batch: int = 64,
    lr: float = 1e-3,
    size: int = 64,
    seed: int = 0,
    test: int = 2_000,
    checkpoints: Sequence[int] = (),
    on_checkpoint: Callable | None = None,
    progress: bool = True,
    params=None,
    data: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[dict, list[dict]]:
    """Train a shapes classifier by the embedded ShapesNet's recipe; returns `(params, history)`.

    Fresh images every epoch (`shapes.generate(per_epoch, seed=seed*1000 + epoch)`), CENTERED
    inputs, AdamW (weight decay 1e-4) on a warmup-cosine schedule peaking at `lr`. After each epoch the
    accuracy on `test` images of `TEST_SEED` is measured; history holds one
    `{"epoch", "test_accuracy", "loss"}` per epoch (loss: that epoch's mean training loss). At each
    epoch in `checkpoints`, `on_checkpoint(epoch, params, accuracy)` is called (e.g. to save them:
    seed 004's features over training). `params` starts from given weights instead of `model.init`
    (fine-tuning); `data(data_seed) -> (images (per_epoch, S, S, 3) in [0, 1], labels)` supplies an
    epoch's images instead of generating them (e.g. from a cache shared by several runs).
    """
    from tqdm.auto import tqdm

    from .data import shapes
    from .data.preprocess import CENTERED, normalize

    if params is None:
        params = model.init(jax.random.key(seed), jnp.zeros((1, size, size, 3)))["params"]
    if data is None:
        data = lambda data_seed: tuple(shapes.generate(per_epoch, size=size, seed=data_seed)[:2])
    steps = epochs * (per_epoch // batch)
    schedule = optax.warmup_cosine_decay_schedule(1e-5, lr, min(max(300, steps // 10), steps // 2), steps, 1e-5)
    tx = optax.adamw(schedule, weight_decay=1e-4)
    opt = tx.init(params)
    step = jax.jit(cross_entropy_step(model, tx))
    held_out = shapes.generate(test, size=size, seed=TEST_SEED)
    test_x = normalize(held_out.images, CENTERED)
    rng = np.random.default_rng(seed)
    history = []
    for epoch in range(1, epochs + 1):
        images, labels = data(seed * 1000 + epoch - 1)
        images = normalize(images, CENTERED)
        order = rng.permutation(per_epoch)
        losses = []
        bar = tqdm(range(0, per_epoch - batch + 1, batch), desc=f"epoch {epoch}/{epochs}", disable=not progress)
        for i in bar:
            idx = order[i : i + batch]
            params, opt, loss = step(params, opt, images[idx], labels[idx])
            losses.append(loss)
            if len(losses) % 20 == 0:
                bar.set_postfix(loss=f"{float(loss):.3f}")
        acc = accuracy(model, params, test_x, held_out.labels)
        history.append({"epoch": epoch, "test_accuracy": acc, "loss": float(np.mean(jax.device_get(losses)))})
        if progress:
            print(f"epoch {epoch}: test accuracy {acc:.4f}", flush=True)
        if epoch in checkpoints and on_checkpoint is not None:
            on_checkpoint(epoch, params, acc)
    return params, history
