"""Optimizers the seeds used, as optax `GradientTransformation`s (any other optax optimizer works too).

`render` *minimizes* −objective, so every optimizer here descends. PyTorch's `weight_decay` adds
`wd·x` to the gradient before the update (for SGD and for Adam, not AdamW), which is
`optax.add_decayed_weights(wd)` chained first.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def torch_sgd(lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """`torch.optim.SGD(lr, momentum, weight_decay)` (seed 000: class models lr 0.05 momentum 0.9;
    DeepDream weight decay 1e-4). torch's momentum buffer matches optax's `trace`."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum=momentum or None))


def torch_adam(lr: float, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """`torch.optim.Adam(lr, weight_decay)` (seed 000's filter visualization: weight decay 1e-6)."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr))


def normalize_gradient(eps: float = 1e-5) -> optax.GradientTransformation:
    """g / (√mean(g²) + eps) over one unit's whole gradient (seed 001, after Chollet's Keras filter
    visualization); `render` vmaps over units, so each unit is normalized on its own."""

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda g: g / (jnp.sqrt(jnp.mean(g * g)) + eps), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def normalized_ascent(step: float) -> optax.GradientTransformation:
    """Seed 001's update `img += step · normalized gradient` (as descent on −objective)."""
    return optax.chain(normalize_gradient(), optax.sgd(step))


def sign_gradient() -> optax.GradientTransformation:
    """sign(g): with `optax.sgd(α)` after it, one step of (I-)FGSM (Goodfellow et al. 2015)."""

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(jnp.sign, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(
    name: str, lr: float, *, momentum: float = 0.0, weight_decay: float = 0.0
) -> optax.GradientTransformation:
    """By name: 'sgd' (torch semantics), 'adam' (torch semantics), 'normalized' (seed 001), 'sign'
    (iterative FGSM)."""
    if name == "sgd":
        return torch_sgd(lr, momentum, weight_decay)
    if name == "adam":
        return torch_adam(lr, weight_decay)
    if name == "normalized":
        return optax.chain(optax.add_decayed_weights(weight_decay), normalized_ascent(lr))
    if name == "sign":
        return optax.chain(sign_gradient(), optax.sgd(lr))
    raise ValueError(f"unknown optimizer {name!r}: use sgd, adam, normalized or sign")


__all__ = ["make_optimizer", "normalize_gradient", "normalized_ascent", "sign_gradient", "torch_adam", "torch_sgd"]
