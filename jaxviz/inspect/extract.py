"""Activations of named layers over a whole dataset, batch by batch, on one compiled shape.

`feature_fn` gives a jitted `params, x -> {name: activation}` that runs only as far as the
deepest requested layer (optionally pooled over H, W). `stream` feeds a `Dataset` through it in
fixed-size batches (the last one padded, padded rows dropped) and yields NumPy arrays;
`cache_pooled` keeps a layer's pooled features in a `.npy` file and reuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..atomic import atomic_path
from ..data.preprocess import normalize
from ..taps import activations

POOLINGS = {False: None, None: None, True: "mean", "mean": "mean", "avg": "mean", "max": "max"}


def _pooling(pooled: bool | str | None) -> str | None:
    try:
        return POOLINGS[pooled]
    except (KeyError, TypeError):
        raise ValueError(f"pooled must be False, True, 'mean' or 'max', got {pooled!r}") from None


def pool(a: jax.Array, how: str | None) -> jax.Array:
    """Global pooling of `(N, H, W, C)` over H, W ("mean" or "max"); other ranks pass through."""
    if how is None or a.ndim != 4:
        return a
    return jnp.mean(a, axis=(1, 2)) if how == "mean" else jnp.max(a, axis=(1, 2))


def feature_fn(model, layers: Sequence[str], pooled: bool | str = False) -> Callable[[Any, jax.Array], dict]:
    """A jitted `params, x -> {name: activation}` for model-space inputs `x` `(N, H, W, C)`.

    Runs the net only up to the deepest of `layers`. `pooled` = True/"mean" averages, "max" takes
    the maximum over H, W, giving `(N, C)` per conv layer.
    """
    names, how = list(layers), _pooling(pooled)

    @jax.jit
    def fn(params, x):
        return {n: pool(a, how) for n, a in activations(model, params, x, names).items()}

    return fn


def run_batches(
    lm, dataset, fn: Callable, *, batch_size: int = 64, progress: bool = True, desc: str = "batches"
) -> Iterator[tuple[int, int, Any]]:
    """Feed `dataset` through `fn(params, x_model, valid)` (jitted by the caller) in fixed batches.

    Images are normalized with `lm.preprocessing` on device; the last batch is padded with zeros
    to `batch_size` so one compiled shape serves all, and `valid` `(batch_size,)` bool marks the
    real rows. Yields `(start, n_valid, output as NumPy)`; padded rows are still in the output.
    """
    from tqdm.auto import tqdm

    images = dataset.images if hasattr(dataset, "images") else np.asarray(dataset)
    n = len(images)
    bs = max(1, min(batch_size, n))
    pp = lm.preprocessing

    @jax.jit
    def step(params, x, valid):
        return fn(params, normalize(x, pp), valid)

    with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for start in range(0, n, bs):
            x = np.asarray(images[start : start + bs], np.float32)
            m = len(x)
            if m < bs:
                x = np.concatenate([x, np.zeros((bs - m, *x.shape[1:]), np.float32)])
            valid = np.arange(bs) < m
            yield start, m, jax.device_get(step(lm.variables, x, valid))
            bar.update(m)


def stream(
    lm, dataset, layers: Sequence[str], *, batch_size: int = 64, pooled: bool | str = False, progress: bool = True
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield `(start_index, {name: activation})` for consecutive batches of `dataset`.

    `lm` is a `LoadedModel`; `dataset` a `Dataset` (or an `(N, H, W, C)` array) of display-space
    images in [0, 1]. Activations are NumPy arrays with exactly the batch's real rows.
    """
    feats = feature_fn(lm.model, layers, pooled)
    for start, m, out in run_batches(
        lm, dataset, lambda p, x, valid: feats(p, x), batch_size=batch_size, progress=progress, desc="activations"
    ):
        yield start, {k: v[:m] for k, v in out.items()}


def feature_shape(lm, layer: str, image_shape: tuple[int, ...], pooled: bool | str = False) -> tuple[int, ...]:
    """Shape of one image's activation at `layer` (after pooling), without running the net."""
    fn = feature_fn(lm.model, [layer], pooled)
    x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    return tuple(jax.eval_shape(fn, lm.variables, x)[layer].shape[1:])


def cache_pooled(
    lm,
    dataset,
    layer: str,
    path: str | Path,
    *,
    pooled: bool | str = "mean",
    batch_size: int = 64,
    progress: bool = True,
) -> np.ndarray:
    """Pooled features `(N, C)` of `layer` for every image, cached in the `.npy` file `path`.

    An existing file with the right shape is reused (memory-mapped, read-only) without running
    the model; otherwise it is written through `np.lib.format.open_memmap` to a temporary name
    beside `path` and renamed when complete, so a crash never leaves a truncated cache.
    """
    path = Path(path)
    images = dataset.images if hasattr(dataset, "images") else np.asarray(dataset)
    shape = (len(images), *feature_shape(lm, layer, images.shape[1:], pooled or "mean"))
    if path.exists():
        try:
            cached = np.load(path, mmap_mode="r")
            if cached.shape == shape and cached.dtype == np.float32:
                return cached
        except (ValueError, OSError):
            pass  # unreadable: rebuild it
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        for start, acts in stream(
            lm, dataset, [layer], batch_size=batch_size, pooled=pooled or "mean", progress=progress
        ):
            out[start : start + len(acts[layer])] = acts[layer]
        out.flush()
        del out
    return np.load(path, mmap_mode="r")
