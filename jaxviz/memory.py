"""One memory budget for a batch job: how many images a forward/backward pass may hold at once.

Every method's working set is images × samples × the model's activation size: a batch of N images,
SmoothGrad's n noisy copies or IG's path points of each (`chunk` samples per pass: chunk·N images),
Score-CAM's masked copies (chunk channels: chunk·N images), occlusion's occluded copies. `rows(...)`
turns a byte budget into the number of images one pass may hold, from the model's own activation sizes
(every module's output at batch 1, `jax.eval_shape`: nothing runs), and the batch runner derives each
method's `chunk` — and, if need be, a smaller batch — from it.

    budget = parse_bytes("6G")                 # or default_budget(): a quarter of this machine's memory
    per_image = activation_bytes(model, variables, (224, 224, 3))
    rows(budget, per_image)                    # images per pass
"""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["PASS_FACTOR", "activation_bytes", "default_budget", "parse_bytes", "rows"]

PASS_FACTOR = 1
"""Bytes a pass holds per image, in units of the module outputs' bytes. Measured with XLA's own
`memory_analysis()` (temp bytes per image row, CPU, 224x224): backward passes 0.51-0.78 (VGG16 and
ResNet-50: guided backprop 0.78/0.77, SmoothGrad 0.72/0.59, IG 0.59/0.51), forward-only Score-CAM and
occlusion 0.13-0.22; 1 bounds them all."""

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(text: str | int) -> int:
    """`"6G"`, `"512M"`, `"1.5GiB"`, `"800000000"` → bytes (binary units)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?B)?\s*", str(text), re.IGNORECASE)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"memory budget {text!r}: give a size such as 6G, 512M or 1.5GiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def default_budget() -> int:
    """A quarter of this machine's physical memory (the rest for the model, the input pipeline, the OS)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * 2**30
    return total // 4


def activation_bytes(model, variables, input_shape: tuple[int, int, int], dtype=jnp.float32) -> int:
    """Bytes of every module output of one image (batch 1) — the input included — at `dtype`."""
    from .taps import ALL, run

    x = jax.ShapeDtypeStruct((1, *input_shape), dtype)
    out, acts = jax.eval_shape(lambda v, x: run(model, v, x, ALL), variables, x)
    leaves = [*jax.tree_util.tree_leaves(acts), out, x]
    return int(sum(np.prod(a.shape) * jnp.dtype(dtype).itemsize for a in leaves))


def rows(budget: int, per_image: int) -> int:
    """Images one pass may hold within `budget` (at least 1)."""
    return max(1, int(budget // max(1, PASS_FACTOR * per_image)))
