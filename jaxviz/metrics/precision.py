"""What a throughput mode (bfloat16, lower matmul precision: `jaxviz.attribution.engine`) costs in
accuracy: the same method's maps against plain float32 with "highest" precision.

    deviation("saliency", model, variables, x)   # Spearman ρ, relative errors, class agreement
"""

from __future__ import annotations

import jax
import numpy as np

from ..attribution.engine import compiled, key_use
from .similarity import spearman

__all__ = ["deviation", "map_deviation"]


def map_deviation(ref: np.ndarray, got: np.ndarray) -> dict:
    """Deviation of `got` from `ref` (same shape `(N, ...)`): max abs error, max abs error over
    max |ref| per image (worst image), relative L2 error, and Spearman rank correlation (mean, min)."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if ref.shape != got.shape:
        raise ValueError(f"maps differ in shape: {ref.shape} vs {got.shape}")
    n = len(ref)
    err = np.abs(got - ref).reshape(n, -1)
    scale = np.abs(ref).reshape(n, -1).max(1)
    rho = np.nan_to_num(spearman(ref, got), nan=1.0)  # two constant maps rank alike
    l2 = np.linalg.norm(err, axis=1) / np.maximum(np.linalg.norm(ref.reshape(n, -1), axis=1), 1e-30)
    return {
        "max_abs": float(err.max()),
        "rel_max": float((err.max(1) / np.maximum(scale, 1e-30)).max()),
        "rel_l2": float(l2.max()),
        "rank_corr_mean": float(rho.mean()),
        "rank_corr_min": float(rho.min()),
    }


def deviation(
    method: str,
    model,
    variables,
    x,
    target=None,
    *,
    dtype: str = "bfloat16",
    precision: str | None = None,
    key=None,
    **options,
) -> dict:
    """How far `method`'s maps in a throughput mode are from plain float32 (precision "highest").

    Runs the method twice on the same `x` `(N, H, W, C)`: float32 with "highest" precision as the
    reference, then with `dtype`/`precision`. Returns `map_deviation`'s numbers plus `index_agree`,
    the fraction of images whose explained class (or unit) is the same in both runs, and the modes.
    """
    key = jax.random.key(0) if key is None and key_use(method)[1] else key
    ref = compiled(method, model, precision="highest", **options)(variables, x, target, key)
    got = compiled(method, model, dtype=dtype, precision=precision, **options)(variables, x, target, key)
    res = map_deviation(np.asarray(ref[0]), np.asarray(got[0]))
    res["index_agree"] = float(np.mean(np.asarray(ref[1]) == np.asarray(got[1])))
    return {"method": method, "dtype": dtype, "precision": precision or "default", **res}
