"""FullGrad (Srinivas & Fleuret 2019): input-gradient ⊙ input plus every bias-gradient ⊙ bias.

For a ReLU network (piecewise linear) the target's value decomposes exactly:
y = Σ ∂y/∂x ⊙ x + Σ_layers Σ ∂y/∂z_l ⊙ b_l, z_l a layer's output and b_l its bias. The bias
layers are found in any model's variables: every module with a `bias` parameter (conv, dense), and
every BatchNorm, whose inference transform z = γ(x − μ)/√(σ² + ε) + β has the bias β − γμ/√(σ² + ε).
The saliency map keeps the spatial terms: the input term and one per spatial layer. Dense biases
have no spatial layout and are left out of the map (they enter the decomposition, which the tests
check through `fullgrad_terms(..., dense=True)`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core import FUNCTION, Attribution, LayerError, finite_input, prepare
from ..taps import modules_of, output
from .targets import Target, cotangent, select, target_layer


@finite_input
def fullgrad(model, variables, x: jax.Array, target: Target = None) -> Attribution:
    """FullGrad saliency `(N, H, W)` in [0, 1] for the target's value (see `targets.py`).

    As the authors' code: each term is ψ = |·|, min-max scaled to [0, 1] per image over all its
    positions and channels, bilinearly upsampled to the input size (jax's half-pixel resize,
    where theirs uses align_corners=True) and summed over channels; the sum of the terms is
    min-max scaled to [0, 1] per image.
    """
    input_term, terms, sel, out = fullgrad_terms(model, variables, x, target)
    n, hw = x.shape[0], x.shape[1:3]
    m = jnp.sum(_scale(jnp.abs(input_term)), axis=-1)
    for t in terms.values():
        m = m + jax.image.resize(jnp.sum(_scale(jnp.abs(t)), axis=-1), (n, *hw), "bilinear")
    return Attribution(_scale(m), sel.index, out, {})


def bias_layers(net, variables, input_shape, *, dense: bool = False) -> dict[str, jax.Array]:
    """`{path: bias (C,)}` of the layers FullGrad adds up: spatial ones, and with `dense` also 2-D ones."""
    tree = _pure(variables)
    params, stats = tree.get("params", tree), tree.get("batch_stats", {})
    biases = {}
    for path, (module, shape) in modules_of(net, variables, input_shape).items():
        if len(shape) != 3 and not (dense and len(shape) == 1):
            continue
        p = _at(params, path)
        if not isinstance(p, dict) or "bias" not in p or any(isinstance(v, dict) for v in p.values()):
            continue  # no bias, or a block (its children carry the biases)
        p = {**p, **(_at(stats, path) or {})}  # linen keeps BatchNorm's mean/var in batch_stats
        mean, var = p.get("mean"), p.get("var")
        if mean is not None:  # BatchNorm in inference mode
            eps = getattr(module, "epsilon", 1e-5)
            scale = p.get("scale", jnp.ones_like(mean))
            biases[path] = p["bias"] - scale * mean / jnp.sqrt(var + eps)
        elif p["bias"].shape[-1:] == shape[-1:]:
            biases[path] = p["bias"]
    return biases


def fullgrad_terms(model, variables, x: jax.Array, target: Target = None, *, dense: bool = False):
    """The unreduced FullGrad decomposition in one backward pass.

    A zero "delta" is added to each bias layer's output; the gradient with respect to the deltas
    is ∂y/∂z_l for every layer at once. Returns
    `(∂y/∂x ⊙ x (N, H, W, C), {layer: ∂y/∂z_l ⊙ b_l}, selection, out)`.
    """
    net, variables = prepare(model, variables)
    if net.kind == FUNCTION:
        raise LayerError(
            f"FullGrad reads the biases of named layers; {net.name} is a plain function: pass a linen or NNX module"
        )
    stop = target_layer(target)
    biases = bias_layers(net, variables, x.shape[1:], dense=dense)
    shapes = jax.eval_shape(lambda v, x: output(net, v, x, stop, tuple(biases))[1], variables, x)
    deltas = {p: jnp.zeros(shapes[p].shape, shapes[p].dtype) for p in biases}
    out, vjp = jax.vjp(lambda x, d: output(net, variables, x, stop, (), d)[0], x, deltas)
    sel = select(out, target)
    gx, gz = vjp(cotangent(out, sel))
    terms = {p: gz[p] * b.astype(gz[p].dtype).reshape((1,) * (gz[p].ndim - 1) + (-1,)) for p, b in biases.items()}
    return gx * x, terms, sel, out


def _pure(variables):
    try:
        from flax import nnx

        if isinstance(variables, nnx.State):
            return nnx.to_pure_dict(variables)
    except ImportError:  # pragma: no cover
        pass
    return variables


def _at(tree, path: str):
    for part in path.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _scale(t: jax.Array) -> jax.Array:
    """Min-max scale each image (leading axis) to [0, 1]; a constant image becomes 0."""
    axes = tuple(range(1, t.ndim))
    lo, hi = jnp.min(t, axis=axes, keepdims=True), jnp.max(t, axis=axes, keepdims=True)
    return jnp.where(hi > lo, (t - lo) / jnp.where(hi > lo, hi - lo, 1), 0)
