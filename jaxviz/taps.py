"""Activations and gradients at any named layer of any linen or NNX module.

    out, acts = run(net, variables, x, capture=("layer4",))        # logits and layer4's output
    acts, grads, out = layer_gradient(net, variables, x, ["layer4"], seed)  # A and ∂y/∂A, seed(out) → ct
    run(net, variables, x, replace={"layer4": a})                  # the net from layer4's output on
    layer_table(net, variables, (224, 224, 3))                     # every layer: path, kind, shape

A layer is a module path with dots (`features.28`, `layer4.2.conv3`; see `core`). While the
model runs, every submodule's `__call__` is intercepted (linen: `nn.intercept_methods`; NNX: the
merged module's submodules run through a thin subclass) to (a) open a `jax.named_scope` holding the
module path, which is how backward rules find where each operation lives (`rules.transform`);
(b) record the outputs of the layers asked for; (c) add a "delta" to a layer's output, whose
gradient is the gradient with respect to that layer (Grad-CAM, FullGrad, optvis). A module called
more than once in one forward pass is tapped at its first call.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .core import FUNCTION, LINEN, NNX, LayerError, Net, as_net, as_variables
from .rules.composite import Site
from .rules.transform import SCOPE, apply_rules, sites

ALL = "*"
"""`capture=ALL` records every layer (for `layer_table` and layer-name errors)."""


class _Taps:
    def __init__(self, capture, perturb, replace=None):
        self.all = capture == ALL
        self.capture = set() if self.all else set(capture)
        self.perturb = dict(perturb or {})
        self.replace = dict(replace or {})
        self.acts: dict[str, jax.Array] = {}
        self.seen: set[str] = set()
        self.modules: dict[str, object] = {}

    def around(self, path: str, call: Callable, module=None):
        with jax.named_scope(SCOPE + path):
            out = call()
        if path in self.seen:
            return out
        self.seen.add(path)
        self.modules[path] = module  # insertion order: the order the layers finish
        if path in self.replace:
            out = self.replace[path]
        if path in self.perturb:
            out = out + self.perturb[path]
        if (self.all or path in self.capture) and isinstance(out, jax.Array | np.ndarray):
            self.acts[path] = out
        return out


_ACTIVE: contextvars.ContextVar[_Taps | None] = contextvars.ContextVar("jaxviz_taps", default=None)


def raw_run(
    net: Net,
    variables,
    x: jax.Array,
    capture: Iterable[str] | str = (),
    perturb: dict[str, jax.Array] | None = None,
    modules: dict | None = None,
    replace: dict[str, jax.Array] | None = None,
):
    """The model without its backward rules: `(logits, {path: activation})`; `modules`, when given,
    receives `{path: module object}` of every submodule that ran (for its attributes); `replace`
    substitutes layers' outputs (see `run`)."""
    taps = _Taps(capture if capture == ALL else tuple(capture), perturb, replace)
    variables = as_variables(net, variables)
    kwargs = dict(net.apply_kwargs)
    if net.kind == LINEN:
        import flax.linen as nn

        with nn.intercept_methods(functools.partial(_linen_interceptor, taps)):
            out = net.source.apply(variables, x, **kwargs)
    elif net.kind == NNX:
        out = _nnx_run(net, variables, x, kwargs, taps)
    else:
        if taps.capture or taps.perturb:
            raise LayerError(
                f"{net.name} is a plain function: it has no named layers. Methods that read a "
                f"layer (CAM family, Unit targets, layer objectives) need a linen or NNX module"
            )
        out = net.source(x, **kwargs) if variables is None else net.source(variables, x, **kwargs)
    if modules is not None:
        modules.update(taps.modules)
    missing = (taps.capture | set(taps.perturb) | set(taps.replace)) - taps.seen
    if missing:
        raise LayerError(_unknown(net, sorted(missing)[0], variables, x))
    return out, taps.acts


def run(
    net: Net,
    variables,
    x: jax.Array,
    capture: Iterable[str] | str = (),
    perturb: dict[str, jax.Array] | None = None,
    replace: dict[str, jax.Array] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`(logits, {path: activation})` of `x` `(N, H, W, C)` under the Net's backward rules.

    `capture`: module paths (or aliases) whose outputs to return; `perturb`: `{path: delta}` added
    to those outputs (zeros: same forward, and the gradient w.r.t. a delta is the gradient w.r.t.
    the layer); `replace`: `{path: value}` used instead of those outputs — the network run from a
    layer's activation on (what comes before is dead code under `jit`; `x` only fixes shapes).
    """
    net = as_net(net)
    variables = as_variables(net, variables)
    capture = capture if capture == ALL else tuple(net.resolve(c) for c in capture)
    perturb = {net.resolve(k): v for k, v in perturb.items()} if perturb else None
    replace = {net.resolve(k): v for k, v in replace.items()} if replace else None
    if net.rules is None:
        return raw_run(net, variables, x, capture, perturb, replace=replace)
    program = functools.partial(_program, net, capture)
    return apply_rules(program, net.rules, constants_are_params=net.kind == FUNCTION)(variables, x, perturb, replace)


def _program(net, capture, variables, x, perturb, replace):
    return raw_run(net, variables, x, capture, perturb, replace=replace)


def _linen_interceptor(taps: _Taps, next_fun, args, kwargs, context):
    scope = context.module.scope
    if context.method_name != "__call__" or scope is None or not scope.path:
        return next_fun(*args, **kwargs)
    return taps.around(".".join(scope.path), lambda: next_fun(*args, **kwargs), context.module)


def _nnx_run(net: Net, state, x, kwargs, taps: _Taps):
    from flax import nnx

    module = nnx.merge(net.source, state)
    if hasattr(module, "eval"):
        module.eval()
    paths = {}
    for path, sub in nnx.iter_modules(module):
        if path:
            paths[id(sub)] = ".".join(str(p) for p in path)
            sub.__class__ = _tapped(type(sub))
    token = _ACTIVE.set(taps)
    try:
        _NNX_PATHS.append(paths)
        return module(x, **kwargs)
    finally:
        _NNX_PATHS.pop()
        _ACTIVE.reset(token)


_NNX_PATHS: list[dict[int, str]] = []


@functools.cache
def _tapped(cls):
    """A subclass of an NNX module class whose `__call__` goes through the active taps."""

    def __call__(self, *args, **kwargs):
        taps = _ACTIVE.get()
        path = _NNX_PATHS[-1].get(id(self)) if _NNX_PATHS else None
        call = functools.partial(cls.__call__, self, *args, **kwargs)
        return call() if taps is None or path is None else taps.around(path, call, self)

    return type(cls)(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})


def _unknown(net: Net, name: str, variables, x) -> str:
    try:
        known = layer_names(net, variables, x.shape[1:], x.dtype)
    except Exception:  # noqa: BLE001 - the message is best effort
        known = []
    try:
        net.resolve(name, known)
    except LayerError as e:
        return str(e)
    return f"layer {name!r} did not run in {net.name}'s forward pass"


# --- what a model's layers are -------------------------------------------------------------


def layer_shapes(net, variables, input_shape: Sequence[int], dtype=jnp.float32) -> dict[str, tuple]:
    """`{path: output shape for one image}` for every layer, in the order the layers finish."""
    return {k: shape for k, (_, shape) in modules_of(net, variables, input_shape, dtype).items()}


def modules_of(net, variables, input_shape: Sequence[int], dtype=jnp.float32) -> dict[str, tuple[object, tuple]]:
    """`{path: (module object, output shape for one image)}` for every layer (attributes such as a
    BatchNorm's `epsilon` are read from the module objects). Cached per model and shapes: methods
    ask for it while they are traced, and a trace of a deep net takes seconds."""
    net = as_net(net).with_rules(None)
    variables = as_variables(net, variables)
    key = (net, shape_key(variables), tuple(input_shape), jnp.dtype(dtype).name)
    if key not in _MODULES:
        found: dict = {}
        x = jax.ShapeDtypeStruct((1, *input_shape), dtype)
        acts = jax.eval_shape(lambda v, x: raw_run(net, v, x, ALL, modules=found)[1], variables, x)
        if len(_MODULES) >= 64:
            _MODULES.pop(next(iter(_MODULES)))
        _MODULES[key] = {k: (m, tuple(acts[k].shape[1:])) for k, m in found.items() if k in acts}
    return _MODULES[key]


_MODULES: dict = {}


def shape_key(tree) -> tuple:
    """A hashable key of a pytree's structure, shapes and dtypes (what a trace depends on)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((tuple(np.shape(a)), str(getattr(a, "dtype", type(a)))) for a in leaves)


def layer_names(net, variables, input_shape: Sequence[int], dtype=jnp.float32) -> list[str]:
    """Every layer's module path, in the order the layers finish (children before their block)."""
    return list(layer_shapes(net, variables, input_shape, dtype))


def layer_table(model, variables, input_shape: Sequence[int]) -> list[dict]:
    """One row per layer: name (module path), kind, aliases, output shape (one image), parameter count.

    `variables=None` for a linen module uses the shapes of its `init` (nothing is computed).
    """
    net = as_net(model)
    if variables is None and net.kind == LINEN:
        variables = jax.eval_shape(lambda: net.source.init(jax.random.key(0), jnp.zeros((1, *input_shape))))
    variables = as_variables(net, variables)
    found = modules_of(net, variables, input_shape)
    aliases: dict[str, list[str]] = {}
    for alias, path in net.aliases().items():
        aliases.setdefault(path, []).append(alias)
    rows = []
    for path, (module, shape) in found.items():
        count = int(sum(np.prod(v.shape) for v in jax.tree_util.tree_leaves(param_at(variables, path) or {})))
        fn = getattr(module, "fn", None)  # a parameter-free layer of a SequentialNet
        kind = (
            getattr(fn, "__name__", getattr(getattr(fn, "func", None), "__name__", "op")).strip("_")
            if fn is not None
            else type(module).__name__
        )
        rows.append(
            {"name": path, "kind": kind, "aliases": aliases.get(path, []), "shape": list(shape), "params": count}
        )
    return rows


def spatial_layers(net, variables, input_shape: Sequence[int]) -> list[str]:
    """Layers with a spatial `(h, w, c)` output, in finishing order."""
    return [k for k, s in layer_shapes(net, variables, input_shape).items() if len(s) == 3]


def default_cam_layer(net, variables, input_shape: Sequence[int]) -> str:
    """Where the CAM family looks by default: the model's `cam_layer` when it declares one, else
    the last layer (by finishing order) with a spatial output — a ResNet's `layer4`."""
    net = as_net(net)
    if net.kind == FUNCTION:
        raise LayerError(
            f"{net.name} is a plain function: it has no named layers for CAM methods; pass a linen or NNX module"
        )
    declared = getattr(net.source, "cam_layer", None)
    if callable(declared):
        declared = declared()
    if declared:
        return net.resolve(declared)
    spatial = spatial_layers(net, variables, input_shape)
    if not spatial:
        raise LayerError(f"{net.name} has no layer with a spatial (H, W, C) output for CAM methods")
    return spatial[-1]


def activations(model, variables, x: jax.Array, names: Iterable[str]) -> dict[str, jax.Array]:
    """Activations of the named layers (paths or aliases) for a batch `x` `(N, H, W, C)`, keyed by the
    names as given. Under `jit` only what the layers need is computed (the rest is dead code)."""
    net = as_net(model)
    names = list(names)
    acts = run(net, as_variables(net, variables), x, names)[1]
    return {n: acts[net.resolve(n)] for n in names}


def param_at(variables, path: str):
    """The `params` subtree of the module at `path` (e.g. `{"kernel", "bias"}` of a conv), or None."""
    tree = variables.get("params", variables) if hasattr(variables, "get") else None
    try:
        from flax import nnx

        if isinstance(variables, nnx.State):
            tree = nnx.to_pure_dict(variables)
    except ImportError:  # pragma: no cover
        pass
    for part in path.split("."):
        if not hasattr(tree, "get") or part not in tree:
            return None
        tree = tree[part]
    return tree


def conv_layers(model, variables, input_shape: Sequence[int]) -> list[str]:
    """Layers with a 4-D `kernel` (convolutions), in the order they run."""
    net = as_net(model)
    variables = as_variables(net, variables)
    out = []
    for path in layer_names(net, variables, input_shape):
        p = param_at(variables, path)
        if hasattr(p, "get") and getattr(p.get("kernel"), "ndim", 0) == 4:
            out.append(path)
    return out


def feature_layers(model, variables, input_shape: Sequence[int]) -> list[str]:
    """Spatial layers worth showing (optvis, inspect), in order: the model's own `act_layers()` when it
    declares them (the ReLUs of a SequentialNet), else its blocks — spatial layers two levels deep
    (`layer3.1`, `features.7`), or one level deep when there are none."""
    net = as_net(model)
    declared = getattr(net.source, "act_layers", None)
    if callable(declared):
        return list(declared())
    variables = as_variables(net, variables)
    spatial = spatial_layers(net, variables, input_shape)
    for depth in (2, 1):
        found = [p for p in spatial if p.count(".") == depth - 1]
        if found:
            return found
    return spatial


# --- outputs and gradients at a layer ------------------------------------------------------


def output(
    net,
    variables,
    x: jax.Array,
    stop: str | None = None,
    capture: Sequence[str] = (),
    perturb: dict[str, jax.Array] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`(o, acts)`: `o` the logits, or the output of layer `stop` (a Unit target's layer); `acts` the
    captured layers by path. Under `jit`, what comes after `stop` is dead code and XLA drops it."""
    net = as_net(net)
    want = tuple(dict.fromkeys([*capture, *([stop] if stop is not None else [])]))
    out, acts = run(net, variables, x, want, perturb)
    return (out if stop is None else acts[net.resolve(stop)]), acts


def layer_gradient(
    net,
    variables,
    x: jax.Array,
    layers: Sequence[str],
    cotangent: Callable[[jax.Array], jax.Array],
    stop: str | None = None,
) -> tuple[dict, dict, jax.Array]:
    """Activations and gradients at `layers` in one forward and one backward pass.

    `cotangent(o)` seeds the backward pass from the output `o` (see `output`; e.g. a one-hot of the
    target class). Returns `(acts, grads, o)`; `acts` and `grads` keyed by the names as given.
    """
    net = as_net(net)
    paths = [net.resolve(n) for n in layers]
    shapes = jax.eval_shape(lambda v, x: output(net, v, x, stop, paths)[1], variables, x)
    deltas = {p: jnp.zeros(shapes[p].shape, shapes[p].dtype) for p in paths}
    (o, acts), vjp = jax.vjp(lambda d: output(net, variables, x, stop, paths, d), deltas)
    (grads,) = vjp((cotangent(o), jax.tree_util.tree_map(jnp.zeros_like, acts)))
    return ({n: acts[p] for n, p in zip(layers, paths)}, {n: grads[p] for n, p in zip(layers, paths)}, o)


def relu_sites(net: Net, variables, x) -> list[Site]:
    """The ReLU sites of a model's program for inputs like `x` (cached per model and shapes)."""
    plain = net.with_rules(None)
    key = (plain, shape_key(variables), shape_key(x))
    if key not in _RELU_SITES:
        found = sites(lambda v, x: run(plain, v, x)[0], variables, x)
        if len(_RELU_SITES) >= 64:
            _RELU_SITES.pop(next(iter(_RELU_SITES)))
        _RELU_SITES[key] = [s for s, _ in found if s.kind == "relu"]
    return _RELU_SITES[key]


_RELU_SITES: dict = {}


def check_applies(net: Net, variables, x, what: str) -> None:
    """Refuse a ReLU rule for a model with no ReLU where it points (it would change nothing silently)."""
    relus = relu_sites(net, variables, x)
    if not relus:
        raise ValueError(
            f"{net.name} has no ReLU: ReLU backward rules ({what}) do not apply; use saliency, "
            f"gradient_x_input, smoothgrad, integrated_gradients or occlusion"
        )
    if net.rules is not None and not any(net.rules.rule_for(s) is not None for s in relus):
        paths = sorted({s.path for s in relus})
        raise ValueError(
            f"{what}: no ReLU of {net.name} is under the chosen layers; ReLUs run in: "
            f"{', '.join(p or '(top level)' for p in paths)}"
        )


__all__ = [
    "ALL",
    "SCOPE",
    "activations",
    "check_applies",
    "conv_layers",
    "default_cam_layer",
    "feature_layers",
    "param_at",
    "layer_gradient",
    "layer_names",
    "layer_shapes",
    "layer_table",
    "output",
    "raw_run",
    "relu_sites",
    "run",
    "spatial_layers",
]
