"""Adversarial examples and fooling images (Szegedy et al. 2014; Goodfellow et al. 2015 FGSM;
Kurakin et al. 2017 iterative; Nguyen et al. 2015 fooling images; seed 003).

Seed 003's recipe: take an image, set the gradient so the net maximizes another class's score,
update the image, repeat until the net says that class. Here that is `render` with
`class_log_prob(target)`, a sign-gradient optimizer (iterative FGSM), `linf_project` keeping
the image within ε of the original (and in [0, 1]), and `stop` = "the model predicts the target".
All in display space ([0, 1] RGB), so ε = 8/255 means 8 grey levels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..data.preprocess import Preprocessing, normalize
from ..taps import output
from .objectives import LOGITS


def fgsm(
    model, variables, pp: Preprocessing, images: jax.Array, labels: jax.Array, eps: float, *, targeted: bool = False
) -> jax.Array:
    """One FGSM step (Goodfellow et al. 2015) on display-space images `(N, H, W, 3)` in [0, 1].

    Untargeted: x + ε·sign(∇ₓ CE(f(x), label)) (move away from the true `labels`).
    Targeted:   x − ε·sign(∇ₓ CE(f(x), target)) (move towards `labels`, the targets).
    Returns the perturbed images clipped to [0, 1] `(N, H, W, 3)`."""

    def ce(x):
        logits = output(model, variables, normalize(x, pp))[0]
        return -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits, -1), labels[:, None], axis=1))

    g = jax.grad(ce)(images)
    direction = -1.0 if targeted else 1.0
    return jnp.clip(images + direction * eps * jnp.sign(g), 0.0, 1.0)


def linf_project(eps: float):
    """`(raw, unit) -> raw`: clip a pixel-parameterized image into {x : ‖x − x₀‖∞ ≤ ε} ∩ [0, 1];
    `unit["image"]` is x₀ `(B, H, W, 3)`."""

    def project(raw, unit):
        x0 = unit["image"]
        return jnp.clip(jnp.clip(raw, x0 - eps, x0 + eps), 0.0, 1.0)

    return project


def predicts_target(confidence: float = 0.0):
    """`stop(acts, unit)`: the model's top class is `unit["target"]` for every image of the unit
    (and, with `confidence` > 0, p(target) ≥ confidence)."""

    def stop(acts, unit):
        logits = acts[LOGITS]
        t = unit["target"]
        top = jnp.all(jnp.argmax(logits, -1) == t)
        if confidence > 0:
            top = top & jnp.all(jax.nn.softmax(logits, -1)[:, t] >= confidence)
        return top

    return stop


def perturbation_norms(adv: np.ndarray, orig: np.ndarray) -> dict[str, np.ndarray]:
    """L∞, L2 and mean |δ| of `adv − orig` per image `(N, ...)`, in [0, 1] pixel units (×255 for grey levels)."""
    d = (np.asarray(adv, np.float64) - np.asarray(orig, np.float64)).reshape(len(adv), -1)
    return {"linf": np.abs(d).max(1), "l2": np.sqrt((d**2).sum(1)), "mean_abs": np.abs(d).mean(1)}


__all__ = ["fgsm", "linf_project", "perturbation_norms", "predicts_target"]
