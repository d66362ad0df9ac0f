"""Regularizers applied to the image *between* optimizer steps (Yosinski et al. 2015, seed 003).

Yosinski et al., "Understanding Neural Networks Through Deep Visualization" (ICML DL workshop
2015), update x ← r(x + η∇ₓa) with r a chain of four operations on the image itself, not loss
terms: L2 decay, a Gaussian blur every few steps, and zeroing pixels of small norm or of small
contribution. Seed 003 shows these as "better regularization plus smoothing (post-processing)
in every step". Here each is a pure function `(raw, grad, step, unit) -> raw` that `Renderer`
runs after the optimizer step and the parameterization's clipping (`Renderer(after_step=...)`);
`grad` is the gradient of the loss (−objective) at the pre-step image, `step` the global step
index. They act on pixel parameterizations (raw = the `(B, H, W, 3)` image in [0, 1]).

"Zero" in the paper is the mean-subtracted image's 0, i.e. the dataset mean; here it is `center`
(0.5: the model-space zero of the embedded models' `centered` preprocessing, and the L2
regularizer's centre).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from .regularizers import gaussian_blur

StepRegularizer = Callable[[jax.Array, jax.Array, jax.Array, object], jax.Array]

KEYS = ("decay", "blur_every", "norm_pct", "contrib_pct")
"""Hyperparameters (of a preset) that switch these on; `blur_sigma` is the blur's width."""


def decay(rate: float, center: float = 0.5) -> StepRegularizer:
    """x ← center + (1 − rate)·(x − center): Yosinski's L2 decay θ_decay."""
    return lambda raw, grad, step, unit: center + (1.0 - rate) * (raw - center)


def blur_every(every: int, sigma: float) -> StepRegularizer:
    """A Gaussian blur of width `sigma` after every `every`-th step (θ_b_every, θ_b_width)."""

    def fn(raw, grad, step, unit):
        return jnp.where((step + 1) % every == 0, gaussian_blur(raw, sigma), raw)

    return fn


def _zero_below(raw: jax.Array, score: jax.Array, pct: float, center: float) -> jax.Array:
    """Pixels whose `score` `(B, H, W)` is below the image's `pct`-th percentile set to `center`."""
    thresh = jnp.percentile(score.reshape(score.shape[0], -1), pct, axis=1)[:, None, None]
    return jnp.where((score < thresh)[..., None], center, raw)


def clip_small_norm(pct: float, center: float = 0.5) -> StepRegularizer:
    """Zero the pixels whose norm over colour channels, ‖x_ij − center‖, is below the `pct`-th
    percentile of the image (θ_n_pct)."""

    def fn(raw, grad, step, unit):
        return _zero_below(raw, jnp.sqrt(jnp.sum((raw - center) ** 2, -1)), pct, center)

    return fn


def clip_small_contribution(pct: float, center: float = 0.5) -> StepRegularizer:
    """Zero the pixels whose contribution |Σ_c (x − center)·∇ₓ| is below the `pct`-th percentile
    (θ_c_pct): the linear estimate of how much the objective would change were the pixel zeroed."""

    def fn(raw, grad, step, unit):
        return _zero_below(raw, jnp.abs(jnp.sum((raw - center) * grad, -1)), pct, center)

    return fn


def chain(*regs: StepRegularizer) -> StepRegularizer:
    """Apply `regs` in order (each sees the pre-step gradient)."""

    def fn(raw, grad, step, unit):
        for r in regs:
            raw = r(raw, grad, step, unit)
        return raw

    return fn


def yosinski(
    decay_rate: float = 0.0,
    every: int = 0,
    sigma: float = 0.5,
    norm_pct: float = 0.0,
    contrib_pct: float = 0.0,
    center: float = 0.5,
) -> StepRegularizer:
    """The paper's r_θ: decay, blur every `every` steps, small-norm and small-contribution clipping
    (each off at 0), in the paper's order."""
    regs = []
    if decay_rate:
        regs.append(decay(decay_rate, center))
    if every:
        regs.append(blur_every(int(every), sigma))
    if norm_pct:
        regs.append(clip_small_norm(norm_pct, center))
    if contrib_pct:
        regs.append(clip_small_contribution(contrib_pct, center))
    return chain(*regs)


def from_hparams(hp: dict) -> StepRegularizer | None:
    """The step regularizer a preset asks for (`decay`, `blur_every` with `blur_sigma`, `norm_pct`,
    `contrib_pct`), or None when it asks for none (every preset but `yosinski`)."""
    if not any(hp.get(k) for k in KEYS):
        return None
    if hp.get("param") != "pixel" or hp.get("decorrelate") or hp.get("valid") not in ("clip", "none"):
        raise ValueError(
            "step regularizers (decay, blur_every, norm_pct, contrib_pct) act on the image "
            "itself: use param=pixel, valid=clip, no decorrelate"
        )
    return yosinski(
        float(hp.get("decay") or 0.0),
        int(hp.get("blur_every") or 0),
        float(hp["blur_sigma"]),
        float(hp.get("norm_pct") or 0.0),
        float(hp.get("contrib_pct") or 0.0),
    )


__all__ = [
    "KEYS",
    "StepRegularizer",
    "blur_every",
    "chain",
    "clip_small_contribution",
    "clip_small_norm",
    "decay",
    "from_hparams",
    "yosinski",
]
