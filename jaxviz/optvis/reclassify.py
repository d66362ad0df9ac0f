"""Reclassification: what the model says about a finished visualization (seed 001 fed its class
model of "dragonfly" back to VGG19 and got 96% for class 319)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..data.preprocess import normalize


def probabilities(lm, images, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities `(N, K)` of display-space images `(N, H, W, 3)` in [0, 1] (clipped first)."""
    images = np.asarray(images, np.float32)
    fn = jax.jit(lambda x: jax.nn.softmax(lm.logits(normalize(jnp.clip(x, 0.0, 1.0), lm.preprocessing)), -1))
    out = [np.asarray(fn(jnp.asarray(images[i : i + batch_size]))) for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, len(lm.labels)), np.float32)


def reclassify(lm, images, targets) -> list[dict]:
    """Per image: p(target), the predicted class and its probability, with names.

    Args:
      images: `(N, H, W, 3)` in [0, 1]; targets: `(N,)` class indices (the class asked for)."""
    probs = probabilities(lm, images)
    rows = []
    for p, t in zip(probs, np.asarray(targets).reshape(-1)):
        top = int(p.argmax())
        rows.append(
            {
                "target": int(t),
                "target_name": lm.labels.name(int(t)),
                "target_probability": float(p[int(t)]),
                "predicted": top,
                "predicted_name": lm.labels.name(top),
                "predicted_probability": float(p[top]),
            }
        )
    return rows


__all__ = ["probabilities", "reclassify"]
