"""Compiled methods: one `jit` per (method, model, options), cached, never retraced for a shape.

    explain = compiled("guided_backprop", model)
    maps, index, out = explain(params, x, target)        # x (N, H, W, C); same N,H,W → no retrace

Class targets given as ints or arrays are traced (changing them does not recompile); `None`,
`Top(n)` and `Unit(...)` are static. Methods that draw noise take a `key` (SmoothGrad requires
one; IG uses it for its "uniform" baseline).
"""

from __future__ import annotations

import collections
import functools
import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .targets import Top, Unit, _check_range

TRACES: collections.Counter = collections.Counter()
"""How many times each (method, options) was traced — the tests assert it stays put."""


def compiled(method: str, model, /, **options) -> Callable:
    """The cached compiled `fn(params, x, target=None, key=None) -> (maps, index, out, ...)`."""
    from . import METHODS

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}  # hashable
    return _compiled(method, model, tuple(sorted(options.items())))


def method_options(method: str) -> tuple[str, ...]:
    """The keyword options a method takes (besides model, params, x, target, key)."""
    from . import METHODS

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return tuple(p for p in inspect.signature(METHODS[method]).parameters
                 if p not in ("model", "params", "x", "target", "key"))


@functools.lru_cache(maxsize=256)
def _compiled(method: str, model, options: tuple) -> Callable:
    from . import METHODS

    fn, opts = METHODS[method], dict(options)
    signature = inspect.signature(fn).parameters
    takes_key = "key" in signature
    needs_key = takes_key and signature["key"].default is inspect.Parameter.empty
    bad = [k for k in opts if k not in method_options(method)]
    if bad:
        raise ValueError(f"{method} has no option(s) {bad}; options: {list(method_options(method))}")

    def run(params, x, target, key):
        TRACES[(method, options)] += 1
        extra = {"key": key} if takes_key else {}
        return fn(model, params, x, target, **opts, **extra)

    static_target = jax.jit(run, static_argnums=2)
    traced_target = jax.jit(run)
    num_classes = getattr(model, "num_classes", None)

    def call(params, x, target=None, key=None):
        if needs_key and key is None:
            raise ValueError(f"{method} draws random samples: pass key=jax.random.key(seed)")
        if target is None or isinstance(target, (Top, Unit)):
            return static_target(params, x, target, key)
        t = np.asarray(target)
        if not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"target must be class indices (ints), Top(n) or Unit(...); got {target!r}")
        if num_classes is not None:
            _check_range(t, num_classes, "target class")
        return traced_target(params, x, jnp.broadcast_to(jnp.asarray(t, jnp.int32), (x.shape[0],)), key)

    call.__name__ = f"compiled_{method}"
    return call
