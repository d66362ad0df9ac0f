"""Objectives: what a visualization maximizes, with `+ - *` algebra (Lucid's `objectives.py`, functional).

An `Objective` is a function from a dict of activations to one scalar *to maximize*, plus the
names of the layers it reads. Activations are those of one unit's batch of `B` images:
`acts[layer]` is `(B, h, w, C)` for spatial layers or `(B, K)` for dense ones; `acts["image"]`
is the `(B, H, W, 3)` image in [0, 1] before transforms (what regularizers read), and
`acts["logits"]` is the model's output whatever its last layer is called.

Objectives combine like numbers: `channel("relu3_1", 5) - 0.01 * l2()` or
`0.5 * (class_logit(3) + class_logit(4))`. Unit indices (class, channel) may be traced integers,
so one objective builder `lambda c: class_logit(c)` is `vmap`ped over many units by `render`.

Papers: Simonyan et al. 2014 (class models, −y_c); Erhan et al. 2009 and Yosinski et al. 2015
(channel / neuron maximization); Mordvintsev et al. 2015 (DeepDream, layer norm);
Gatys et al. 2016 (content and Gram style losses); Olah et al. 2017 (diversity, algebra).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Number

import jax
import jax.numpy as jnp

from . import style as _style

Acts = Mapping[str, jax.Array]
IMAGE = "image"  # key of the [0, 1] image (before transforms) in `acts`
LOGITS = "logits"  # key of the model output in `acts` (its last layer, whatever its name)


class Objective:
    """A scalar to maximize: `fn(acts) -> ()` and the layer names it needs.

    Attributes:
      fn: `(acts) -> ()` float; `acts` as described in the module docstring.
      layers: names (or aliases) of the layers `fn` reads, besides `image`; `logits` means the output.
      name: a readable description, kept through the algebra (shown in metadata).
    """

    __slots__ = ("fn", "layers", "name")

    def __init__(self, fn: Callable[[Acts], jax.Array], layers: tuple[str, ...] = (), name: str = "objective"):
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.name = name

    def __call__(self, acts: Acts) -> jax.Array:
        return self.fn(acts)

    # --- algebra: objectives with objectives, objectives with scalar weights -----------------
    def __add__(self, other):
        if isinstance(other, Objective):
            return Objective(lambda a: self(a) + other(a), self.layers + other.layers, f"{self.name} + {other.name}")
        _check_scalar(other, "+")
        return Objective(lambda a: self(a) + other, self.layers, f"{self.name} + {_fmt(other)}")

    __radd__ = __add__

    def __neg__(self):
        return Objective(lambda a: -self(a), self.layers, f"-({self.name})")

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        if isinstance(other, Objective):
            return Objective(
                lambda a: self(a) * other(a), self.layers + other.layers, f"({self.name}) * ({other.name})"
            )
        _check_scalar(other, "*")
        return Objective(lambda a: other * self(a), self.layers, f"{_fmt(other)} * ({self.name})")

    __rmul__ = __mul__

    def __truediv__(self, other):
        _check_scalar(other, "/")
        return self * (1.0 / other)

    def __repr__(self) -> str:
        return f"Objective({self.name})"


def _check_scalar(w, op: str) -> None:
    if isinstance(w, Number) or (isinstance(w, jax.Array) and jnp.ndim(w) == 0):
        return
    raise TypeError(f"objective {op} needs another Objective or a scalar weight, got {type(w).__name__}")


def _fmt(w) -> str:
    return f"{w:g}" if isinstance(w, Number) else "w"


def _spatial_mean(a: jax.Array, reduce: str) -> jax.Array:
    """Per-image reduction over positions of `(B, h, w)` (or `(B,)` for dense units) → `(B,)`."""
    if a.ndim == 1:
        return a
    flat = a.reshape(a.shape[0], -1)
    if reduce == "mean":
        return flat.mean(1)
    if reduce == "median":  # seed 001: the median of the activations
        return jnp.median(flat, axis=1)
    raise ValueError(f"reduce must be 'mean' or 'median', got {reduce!r}")


# --- classes ------------------------------------------------------------------------------


def class_logit(c: int | jax.Array, layer: str = LOGITS) -> Objective:
    """y_c, the pre-softmax score of class `c` (Simonyan et al. 2014; seed 000's loss is −y_c)."""
    return Objective(lambda a: a[layer][:, c].mean(), (layer,), f"logit[{_idx(c)}]")


def class_log_prob(c: int | jax.Array, layer: str = LOGITS) -> Objective:
    """log p(c) = log softmax(y)_c: a targeted class that also pushes the other classes down
    (adversarial and fooling images, Szegedy et al. 2014; Nguyen et al. 2015)."""
    return Objective(lambda a: jax.nn.log_softmax(a[layer], axis=-1)[:, c].mean(), (layer,), f"log_p[{_idx(c)}]")


# --- units inside the network --------------------------------------------------------------


def channel(layer: str, n: int | jax.Array, reduce: str = "mean") -> Objective:
    """Mean (seed 000) or median (seed 001) of channel `n` of `layer` over positions."""
    return Objective(lambda a: _spatial_mean(a[layer][..., n], reduce).mean(), (layer,), f"{layer}:{_idx(n)} {reduce}")


def neuron(layer: str, n: int | jax.Array, y: int | None = None, x: int | None = None) -> Objective:
    """One neuron: channel `n` of `layer` at `(y, x)`, by default the centre of the map."""

    def fn(a):
        t = a[layer]
        if t.ndim == 2:
            return t[:, n].mean()
        yy = t.shape[1] // 2 if y is None else y
        xx = t.shape[2] // 2 if x is None else x
        return t[:, yy, xx, n].mean()

    return Objective(fn, (layer,), f"{layer}:{_idx(n)}@{y},{x}")


def layer_mean(layer: str, reduce: str = "mean") -> Objective:
    """Mean (or median) of a whole layer's activations: seed 000's layer visualization."""

    def fn(a):
        t = a[layer]
        flat = t.reshape(t.shape[0], -1)
        return (flat.mean(1) if reduce == "mean" else _spatial_mean(flat, reduce)).mean()

    return Objective(fn, (layer,), f"{layer} {reduce}")


def layer_norm(layer: str) -> Objective:
    """‖A‖₂ of a layer's activation per image (DeepDream as in seed 000: `loss = -output.norm()`)."""

    def fn(a):
        t = a[layer]
        return jnp.sqrt(jnp.sum(t.reshape(t.shape[0], -1) ** 2, axis=1) + 1e-12).mean()

    return Objective(fn, (layer,), f"norm({layer})")


# --- style transfer (Gatys et al. 2016, seed 001's normalizations) -------------------------------


def content(layer: str, target: jax.Array) -> Objective:
    """−J_c = −(1/(4·nH·nW·nC))·Σ(a_C − a_G)² against the content activation `target` `(h, w, C)`."""
    return Objective(
        lambda a: -jnp.mean(jax.vmap(lambda g: _style.content_cost(target, g))(a[layer])), (layer,), f"content({layer})"
    )


def style(layer: str, target_gram: jax.Array) -> Objective:
    """−J_s^l = −(1/(4·nC²·(nH·nW)²))·Σ(G_S − G_G)² against the style Gram matrix `(C, C)`."""
    return Objective(
        lambda a: -jnp.mean(jax.vmap(lambda g: _style.style_cost(target_gram, g))(a[layer])),
        (layer,),
        f"style({layer})",
    )


# --- batches of images ----------------------------------------------------------------------


def diversity(layer: str) -> Objective:
    """−mean pairwise cosine similarity of the `B` images' Gram matrices at `layer` (Olah et al.
    2017): added to an objective, the batch shows different facets of one unit. Needs B ≥ 2."""

    def fn(a):
        t = a[layer]
        grams = jax.vmap(_style.gram)(t).reshape(t.shape[0], -1)
        grams = grams / (jnp.linalg.norm(grams, axis=1, keepdims=True) + 1e-8)
        sim = grams @ grams.T
        b = t.shape[0]
        return -(jnp.sum(sim) - jnp.trace(sim)) / max(b * (b - 1), 1)

    return Objective(fn, (layer,), f"diversity({layer})")


def _idx(i) -> str:
    return str(i) if isinstance(i, int) else "u"


__all__ = [
    "IMAGE",
    "LOGITS",
    "Objective",
    "channel",
    "class_log_prob",
    "class_logit",
    "content",
    "diversity",
    "layer_mean",
    "layer_norm",
    "neuron",
    "style",
]
