"""Neural style transfer's costs (Gatys, Ecker & Bethge 2016) with seed 001's normalizations.

Content: J_c^l(C, G) = 1/(4·nH·nW·nC) · Σ (a_C − a_G)².
Style:   J_s^l(S, G) = 1/(4·nC²·(nH·nW)²) · Σ_ij (G^S_ij − G^G_ij)², with G = AᵀA over positions;
         J_s = Σ_l λ_l J_s^l;  total J = α·J_c + β·J_s.
Activations are one image's `(nH, nW, nC)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gram(a: jax.Array) -> jax.Array:
    """Gram matrix `(nC, nC)` of an activation `(nH, nW, nC)`: G = AᵀA with A `(nH·nW, nC)` (unnormalized)."""
    flat = a.reshape(-1, a.shape[-1])
    return flat.T @ flat


def content_cost(a_c: jax.Array, a_g: jax.Array) -> jax.Array:
    """J_c = (1/(4·nH·nW·nC))·Σ(a_C − a_G)² for activations `(nH, nW, nC)`."""
    return jnp.sum((a_c - a_g) ** 2) / (4.0 * a_g.size)


def style_cost(gram_s: jax.Array, a_g: jax.Array) -> jax.Array:
    """J_s^l = (1/(4·nC²·(nH·nW)²))·Σ(G_S − G_G)² for the style Gram `(nC, nC)` and `a_g` `(nH, nW, nC)`."""
    n_c = a_g.shape[-1]
    n_hw = a_g.size // n_c
    return jnp.sum((gram_s - gram(a_g)) ** 2) / (4.0 * n_c**2 * n_hw**2)


__all__ = ["content_cost", "gram", "style_cost"]
