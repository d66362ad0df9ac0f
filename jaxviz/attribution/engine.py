"""Compiled methods: one `jit` per (method, model, options), cached, never retraced for a shape.

    explain = compiled("guided_backprop", model)         # any model: linen, NNX, function (`core`)
    maps, index, out, extras = explain(variables, x, target)  # x (N, H, W, C); same N,H,W → no retrace
    fast = compiled("saliency", model, dtype="bfloat16") # model run in bf16, maps returned as float32

Class targets given as ints or arrays are traced (changing them does not recompile); `None`,
`Top(n)` and `Unit(...)` are static. Methods that draw noise take a `key` (SmoothGrad requires
one; IG uses it for its "uniform" baseline).

Throughput modes (issue 8), besides the method's own options:
- `dtype`: "float32" (default) or "bfloat16" / "float16": params and input are cast inside the
  compiled program, the model runs in that dtype, and every floating output (maps, logits, IG's
  completeness error) comes back as float32. Targets are resolved on the low-precision logits.
- `precision`: `jax.default_matmul_precision` while tracing — "default" (the backend's choice;
  TF32 tensor cores on recent NVIDIA GPUs), "tf32" (= "tensorfloat32"), "high", "bf16_3x" (three
  bf16 passes), "bfloat16", or "highest" (true float32 convolutions and matmuls). Most CPU kernels
  ignore it.
`jaxviz.metrics.deviation` measures what a mode costs in accuracy; `program_cost` counts the FLOPs XLA
compiles.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import json
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..core import as_net, as_variables, check_finite
from .registry import METHODS
from .targets import Top, Unit, check_range

TRACES: collections.Counter = collections.Counter()
"""How many times each (method, options) was traced — the tests assert it stays put."""

DTYPES = ("float32", "bfloat16", "float16")
PRECISIONS = {
    "default": None,
    "tf32": "tensorfloat32",
    "tensorfloat32": "tensorfloat32",
    "highest": "highest",
    "high": "high",
    "float32": "float32",
    "bfloat16": "bfloat16",
    "bf16_3x": "BF16_BF16_F32_X3",
}
"""Names for `precision` → `jax.default_matmul_precision` values (None: leave XLA's default)."""
MODE_OPTIONS = ("dtype", "precision")
"""Options every compiled method takes besides its own (`throughput modes`)."""


def compiled(method: str, model, /, **options) -> Callable:
    """The cached compiled `fn(variables, x, target=None, key=None) -> Attribution`.

    `model` is any model (`core`); `options` are the method's own (see `method_options`) plus
    `dtype` and `precision` (module docstring). The returned function has
    `.lower(variables, x, target=None, key=None)` giving the `jax.stages.Lowered` program that a
    call with these arguments runs (for `program_cost`). The cache is keyed by the method's
    function itself (a re-registered method compiles anew) and by the normalized model (equal
    models and equal rules share one compilation).
    """
    method, fixed = variant(method)
    return _compiled(method, METHODS[method], as_net(model), hashable_options({**options, **fixed}))


SHORTHAND = {"lrp": "composite"}


def hashable_options(options: dict) -> tuple:
    """Options as a sorted tuple (lists → tuples) for the caches; the default modes dropped, so
    `dtype="float32"` or `precision="default"` share the program of no mode at all."""
    defaults = {"dtype": ("float32", None), "precision": ("default", None)}
    return tuple(
        sorted(
            (k, tuple(v) if isinstance(v, list) else v)
            for k, v in options.items()
            if not (k in defaults and _mode_name(v) in defaults[k])
        )
    )


def _mode_name(v):
    try:
        return str(jnp.dtype(v)) if v is not None and not isinstance(v, str) else v
    except TypeError:
        return v


def variant(spec: str) -> tuple[str, dict]:
    """`(method, options)` of a method name or of a variant of one, `NAME:OPTION=VALUE[,OPTION=VALUE...]`
    — e.g. `lrp:epsilon_gamma_box` (a bare value is LRP's composite), `grad_cam:layer=relu4_2`,
    `smoothgrad:n=8,level=0.2` — so one study can hold a method under several settings. Values are
    read as JSON when they can be (numbers, booleans), else as strings; a variant's options override
    the study's shared ones. Unknown methods and options raise ValueError naming the accepted ones."""
    name, sep, rest = spec.partition(":")
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    fixed = {}
    for item in rest.split(",") if sep else []:
        key, eq, value = item.partition("=")
        if not eq:
            if name not in SHORTHAND or not item:
                raise ValueError(
                    f"method {spec!r}: write {name}:OPTION=VALUE (options: {', '.join(method_options(name)) or 'none'})"
                )
            key, value = SHORTHAND[name], item
        try:
            fixed[key] = json.loads(value)
        except json.JSONDecodeError:
            fixed[key] = value
    check_options([name], fixed)
    return name, fixed


def method_options(method: str) -> tuple[str, ...]:
    """The keyword options a method (or a `variant` of one) takes (besides model, variables, x, target, key)."""
    name = method.partition(":")[0]
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return tuple(
        p for p in inspect.signature(METHODS[name]).parameters if p not in ("model", "variables", "x", "target", "key")
    )


def key_use(method: str) -> tuple[bool, bool]:
    """(takes a `key`, requires one) for a method."""
    signature = inspect.signature(METHODS[method.partition(":")[0]]).parameters
    takes = "key" in signature
    return takes, takes and signature["key"].default is inspect.Parameter.empty


def check_options(methods, options: dict) -> None:
    """Refuse an option no chosen method takes (a typo such as `step=8`), or a value of the wrong type.

    Types follow the defaults: an int default takes an int, a float one a number, a bool one a bool,
    a str one a string; a `None` default takes anything the method accepts."""
    for key, value in options.items():
        takers = [m for m in methods if key in method_options(m)]
        if not takers:
            accepted = "; ".join(f"{m}: {', '.join(method_options(m)) or 'none'}" for m in methods)
            raise ValueError(f"option {key}={value!r}: no chosen method takes '{key}' (options accepted — {accepted})")
        for m in takers:
            default = inspect.signature(METHODS[m.partition(":")[0]]).parameters[key].default
            if not _same_kind(value, default):
                raise ValueError(
                    f"option {key}={value!r}: {m}'s {key} takes {type(default).__name__} values (default {default!r})"
                )


def _same_kind(value, default) -> bool:
    if default is None or default is inspect.Parameter.empty:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def split_modes(options: dict) -> tuple[dict, str, str | None]:
    """`options` without the mode options, the checked dtype name and the JAX precision name."""
    opts = dict(options)
    dtype = str(jnp.dtype(opts.pop("dtype", None) or "float32"))
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} not supported; choose one of {', '.join(DTYPES)}")
    precision = opts.pop("precision", None) or "default"
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} not known; choose one of {', '.join(PRECISIONS)}")
    return opts, dtype, PRECISIONS[precision]


def in_dtype(fn: Callable, dtype: str) -> Callable:
    """`fn(variables, x, *rest)` computed in `dtype` (floating variables and `x` cast), float outputs as float32."""
    if dtype == "float32":
        return fn
    low = jnp.dtype(dtype)

    def cast(tree, to):
        return jax.tree_util.tree_map(
            lambda a: a.astype(to) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a, tree
        )

    @functools.wraps(fn)
    def run(variables, x, *rest):
        return cast(fn(cast(variables, low), cast(x, low), *rest), jnp.float32)

    return run


def with_precision(jitted: Callable, precision: str | None) -> Callable:
    """`jitted` traced and run under `jax.default_matmul_precision(precision)` (None: unchanged)."""
    if precision is None:
        return jitted

    def run(*args):
        with jax.default_matmul_precision(precision):
            return jitted(*args)

    run.lower = lambda *args: _lower_in(jitted, precision, args)
    return run


def _lower_in(jitted, precision, args):
    with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
        return jitted.lower(*args)


def target_caller(run: Callable, name: str, net, *, needs_key: bool, precision: str | None = None) -> Callable:
    """The public `call(variables, x, target=None, key=None)` around `run(variables, x, target, key)`.

    Compiles `run` twice lazily: with the target static (None, Top, Unit) and traced (class
    indices, broadcast to one per image and range-checked here, outside the trace).
    """
    static_target = with_precision(jax.jit(run, static_argnums=2), precision)
    traced_target = with_precision(jax.jit(run), precision)
    num_classes = net.num_classes

    def route(variables, x, target, key):
        variables = as_variables(net, variables)
        check_finite(x, name)  # NaN in: under jit the maps would stay finite and lie
        if needs_key and key is None:
            raise ValueError(f"{name} draws random samples: pass key=jax.random.key(seed)")
        if target is None or isinstance(target, (Top, Unit)):
            return static_target, (variables, x, target, key)
        t = np.asarray(target)
        if not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"target must be class indices (ints), Top(n) or Unit(...); got {target!r}")
        if num_classes is not None:
            check_range(t, num_classes, "target class")
        return traced_target, (variables, x, jnp.broadcast_to(jnp.asarray(t, jnp.int32), (x.shape[0],)), key)

    def call(variables, x, target=None, key=None):
        fn, args = route(variables, x, target, key)
        return fn(*args)

    def lower(variables, x, target=None, key=None):
        fn, args = route(variables, x, target, key)
        return fn.lower(*args)

    call.lower = lower
    call.__name__ = f"compiled_{name}"
    return call


@functools.lru_cache(maxsize=256)
def _compiled(method: str, fn: Callable, net, options: tuple) -> Callable:
    opts, dtype, precision = split_modes(dict(options))
    takes_key, needs_key = key_use(method)
    bad = [k for k in opts if k not in method_options(method)]
    if bad:
        raise ValueError(
            f"{method} has no option(s) {bad}; options: {list(method_options(method)) + list(MODE_OPTIONS)}"
        )

    def method_fn(variables, x, target, key):
        TRACES[(method, options)] += 1
        extra = {"key": key} if takes_key else {}
        return fn(net, variables, x, target, **opts, **extra)

    return target_caller(in_dtype(method_fn, dtype), method, net, needs_key=needs_key, precision=precision)


# --- what a program costs -------------------------------------------------------------------


def program_cost(fn: Callable, *args, **kwargs) -> dict:
    """FLOPs and memory of the XLA program `fn(*args, **kwargs)` runs (`fn` from `compiled` or
    `fused.fused_compiled`, which have `.lower`); compiles it (cached by JAX) but does not run it.

    Returns `{"flops", "bytes_accessed", "temp_bytes", "argument_bytes", "output_bytes"}`; FLOPs are
    XLA's `cost_analysis()` count after optimisation (a multiply-add counts 2), None where the
    backend does not report them.
    """
    comp = fn.lower(*args, **kwargs).compile()
    ca = _cost(comp)
    out = {"flops": ca.get("flops"), "bytes_accessed": ca.get("bytes accessed")}
    if jax.default_backend() != "cpu":
        # GPU cost analysis leaves out cuDNN convolutions (custom calls): count the same program
        # compiled for the host CPU, where every convolution is an HLO op with a FLOP count.
        cpu = jax.devices("cpu")[0]
        cpu_args, cpu_kwargs = jax.device_put((args, kwargs), cpu)
        out["flops"] = _cost(fn.lower(*cpu_args, **cpu_kwargs).compile()).get("flops")
    try:
        mem = comp.memory_analysis()
        out.update(
            temp_bytes=mem.temp_size_in_bytes,
            argument_bytes=mem.argument_size_in_bytes,
            output_bytes=mem.output_size_in_bytes,
        )
    except Exception:  # noqa: BLE001 - not every backend reports memory
        out.update(temp_bytes=None, argument_bytes=None, output_bytes=None)
    return out


def _cost(compiled) -> dict:
    ca = compiled.cost_analysis()
    return (ca[0] if ca else {}) if isinstance(ca, (list, tuple)) else (ca or {})
