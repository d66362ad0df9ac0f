"""Download, port and verify weight files: one safetensors file per model, with its provenance.

    fetch(name)          download the source file named in weights/manifest.json, then port it
    port(file, arch)     torchvision .pth / safetensors (torchvision layout, every zoo arch; timm
                         layout, VGG16/19) / Keras 2 HDF5, Keras 3 .weights.h5 or .keras, KerasHub
                         preset folder (VGG16/19) -> weights_dir()/NAME.safetensors
    verify(name_or_path) source checksum, tensor shapes, stored forward-pass fingerprint
    load_variables(path) -> (variables, meta): `{"params": ..., "batch_stats": ...}` for `model.apply`
    load_weights(path)   -> (params, meta); resolve(name_or_path) -> Path; list_weights()
    torchvision_arrays(arch, variables) the inverse of a torchvision port (torch layout, NumPy)

The stored file is safetensors with flat float32 tensors in Flax layout (conv `(kh, kw, in, out)`,
dense `(in, out)`, BatchNorm `scale`/`bias`, running `mean`/`var`), keyed by the module path with
dots, then the leaf: `"conv1_1.kernel"` (VGG16/19), `"layer1.0.conv1.kernel"`, `"features.0.bias"`.
Parameters have no prefix; every other collection is prefixed with its name and a slash:
`"batch_stats/layer1.0.bn1.mean"`, `"batch_stats/layer1.0.bn1.var"` (BatchNorm nets only).
`load_variables` gives them back as the nested variables dict. String metadata: `arch`, `preprocessing`
("torchvision" | "caffe" | "unit"), `source` (URL, hf://repo/file or path), `source_sha256`,
`include_top`, `num_classes`, `fingerprint` (JSON), `format_version`, `tensors_sha256`; ports add
`name`, `source_file`, `source_format`, `source_layout`; callers may add more (e.g. `classes`).
Known weights are listed in weights/manifest.json (plus an optional manifest.json in
weights_dir()); sha256s of fetched sources are recorded in weights_dir()/checksums.json.

Layout conversions (checked against literal reimplementations in tests/reference.py, and against
torchvision's own models in tests/test_zoo.py):
- torch conv weight `(out, in, kh, kw)` -> `(kh, kw, in, out)`; torch linear `(out, in)` -> `(in, out)`.
- fc6, the first dense layer after the flatten: torch flattens NCHW, so the 25088 columns of
  torchvision's `classifier.0.weight` run in (C, H, W) order, while our flatten is NHWC (H, W, C).
  The kernel's rows are reordered, not just transposed (`_chw_rows_to_hwc`). timm stores the
  same matrix as a 7x7 conv `pre_logits.fc1.weight` `(4096, 512, 7, 7)`, i.e. (out, C, H, W).
  A plain transpose gives a network that runs and is silently wrong unless pool5 happens to be
  constant over space. (timm runs that conv over any pool5 >= 7x7 and then averages; we, like
  torchvision, average-pool pool5 to 7x7 first: the two agree exactly at 224x224 inputs.)
- Keras kernels are already HWIO / `(in, out)` and Keras's Flatten is (H, W, C): no reordering.
  Keras VGG weights come from the Caffe originals and want caffe preprocessing (BGR, mean
  subtraction); torchvision and timm weights want torchvision preprocessing.
- The other torchvision architectures (`_TORCHVISION_ARCHS`) have torchvision's module paths, so a
  torch key maps by name: `M.weight` -> `M.kernel` (conv, linear) or `M.scale` (BatchNorm),
  `M.bias` -> `M.bias`, `M.running_mean` / `M.running_var` -> `batch_stats/M.mean` / `.var`;
  `num_batches_tracked` is dropped, and so are GoogLeNet's training-only `aux1.*` / `aux2.*` heads.
  The dense layer after a flatten over a spatial grid (AlexNet `classifier.1` after the 6x6 pool,
  VGG `classifier.0` after the 7x7 pool; the model's `FLATTEN_CHW`) has its rows reordered as
  fc6 above; the others flatten a 1x1 map, where the order does not matter. DenseNet keys of old
  checkpoints (`denselayer1.norm.1.weight`) are renamed as torchvision's `_load_state_dict` does.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .atomic import atomic_path
from .data.preprocess import PRESETS as PREPROCESSING_PRESETS
from .errors import WeightsError
from .models import DEFAULT_INPUT, TORCHVISION_ARCHS, build
from .models.base import ADAPTIVE_AVG, CONV, DENSE, FLATTEN, SequentialNet

__all__ = [
    "WeightsError",
    "fetch",
    "list_weights",
    "load_variables",
    "load_weights",
    "port",
    "resolve",
    "save_variables",
    "save_weights",
    "torchvision_arrays",
    "verify",
    "weights_dir",
]

FORMAT_VERSION = 1
FORMATS = ("torch", "safetensors", "keras")
FINGERPRINT_RTOL = 1e-4
# Metadata values that save_weights always JSON-encodes and load_weights always decodes.
_JSON_META = ("include_top", "num_classes", "fingerprint", "format_version")
_VGG_ARCHS = ("vgg16", "vgg19")
# Architectures in torchvision's module layout: their torch keys map to ours by name.
_TORCHVISION_ARCHS = TORCHVISION_ARCHS
_PORTABLE = _VGG_ARCHS + _TORCHVISION_ARCHS
PARAMS = "params"  # the collection stored without a prefix; others are "NAME/..."
_REPO_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
_CHUNK = 1 << 20

# The network opener; tests replace it. Called as _urlopen(request, timeout=seconds).
_urlopen = urllib.request.urlopen


# --- where files live ---------------------------------------------------------------------


def weights_dir() -> Path:
    """Folder for weight files: `$JAXVIZ_WEIGHTS_DIR`, else the repository's `weights/` (an
    editable install, recognised by its manifest.json), else `~/.cache/jaxviz/weights`."""
    env = os.environ.get("JAXVIZ_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    if (_REPO_WEIGHTS / "manifest.json").is_file():
        return _REPO_WEIGHTS
    return Path.home() / ".cache" / "jaxviz" / "weights"


def _manifest() -> dict[str, dict]:
    """Known weights by name: the repository's weights/manifest.json, then entries of a
    manifest.json in weights_dir() (which add to or override it)."""
    entries: dict[str, dict] = {}
    paths = [_REPO_WEIGHTS / "manifest.json", weights_dir() / "manifest.json"]
    seen = set()
    for path in paths:
        if not path.is_file() or path.resolve() in seen:
            continue
        seen.add(path.resolve())
        try:
            data = json.loads(path.read_text())
            for entry in data["weights"]:
                entries[entry["name"]] = dict(entry)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise WeightsError(f"{path}: unreadable weights manifest ({e}); fix or remove the file") from e
    return entries


def _checksums_path() -> Path:
    return weights_dir() / "checksums.json"


def _recorded_checksums() -> dict[str, dict]:
    """sha256 (and md5) of source files recorded by earlier fetches: local, git-ignored."""
    path = _checksums_path()
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise WeightsError(f"{path}: unreadable checksum record ({e}); delete it and fetch again") from e


def _record_checksum(name: str, file: str, digests: dict[str, str]) -> None:
    record = _recorded_checksums()
    record[name] = {"file": file, **digests}
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    _write_atomic(_checksums_path(), lambda tmp: Path(tmp).write_text(text))


def _write_atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def _file_digests(path: Path, md5: bool = True) -> dict[str, str]:
    """sha256 (and md5) of a file, in one pass; of a folder (a KerasHub preset), of its files'
    bytes one after the other in name order."""
    hashes = {"sha256": hashlib.sha256(), **({"md5": hashlib.md5()} if md5 else {})}
    for file in sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]:
        with open(file, "rb") as f:
            while chunk := f.read(_CHUNK):
                for h in hashes.values():
                    h.update(chunk)
    return {name: h.hexdigest() for name, h in hashes.items()}


def _checksum_problems(digests: dict[str, str], entry: dict, recorded: dict | None) -> list[str]:
    """What disagrees between a file's digests and every checksum known for it."""
    problems = []
    known_sha = [(entry.get("sha256"), "the manifest")]
    if recorded:
        known_sha.append((recorded.get("sha256"), "checksums.json (recorded at fetch)"))
    for sha, where in known_sha:
        if sha and digests["sha256"] != sha:
            problems.append(f"sha256 {digests['sha256']} differs from {sha} in {where}")
    prefix = entry.get("sha256_prefix")
    if prefix and not digests["sha256"].startswith(prefix):
        problems.append(f"sha256 {digests['sha256'][:16]}... does not start with {prefix} (manifest)")
    if entry.get("md5") and digests.get("md5") != entry["md5"]:
        problems.append(f"md5 {digests.get('md5')} differs from {entry['md5']} (manifest)")
    return problems


def _has_checksum(entry: dict, recorded: dict | None) -> bool:
    known = (entry.get("sha256"), entry.get("sha256_prefix"), entry.get("md5"), (recorded or {}).get("sha256"))
    return any(known)


# --- the stored format ----------------------------------------------------------------------


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a.b.kernel": leaf}` for a nested dict."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) or hasattr(value, "items"):
            flat.update(_leaves(value, name + "."))
        else:
            flat[name] = value
    return flat


def _flatten(params: Any, prefix: str = "") -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in _leaves(params, prefix).items()}


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    params: dict = {}
    for key, value in flat.items():
        *path, leaf = key.split(".")
        node = params
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return params


def _flatten_variables(variables: dict, convert: bool = True) -> dict[str, Any]:
    """`{"params": ..., "batch_stats": ...}` -> flat file keys: params bare, others `"NAME/..."`;
    float32 NumPy arrays when `convert`, else the leaves as they are."""
    flat = {}
    for collection, tree in variables.items():
        prefix = "" if collection == PARAMS else f"{collection}/"
        flat.update(_flatten(tree, prefix) if convert else _leaves(tree, prefix))
    return flat


def _unflatten_variables(flat: dict[str, np.ndarray]) -> dict:
    """The inverse of `_flatten_variables`; always has `"params"`."""
    grouped: dict[str, dict[str, np.ndarray]] = {PARAMS: {}}
    for key, value in flat.items():
        collection, _, rest = key.partition("/") if "/" in key else (PARAMS, "", key)
        grouped.setdefault(collection, {})[rest] = value
    return {collection: _unflatten(tree) for collection, tree in grouped.items()}


def _tensors_sha256(flat: dict[str, np.ndarray]) -> str:
    """Hash of every tensor's name, shape and float32 bytes, in name order."""
    h = hashlib.sha256()
    for key in sorted(flat):
        a = np.ascontiguousarray(flat[key], dtype=np.float32)
        h.update(f"{key}{a.shape}".encode())
        h.update(a.reshape(-1).view(np.uint8))  # no copy
    return h.hexdigest()


def _model(arch: str, include_top: bool = True, num_classes: int | None = None):
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    if not include_top:
        if arch not in _VGG_ARCHS:
            raise WeightsError(f"include_top=False is only defined for {', '.join(_VGG_ARCHS)}, not {arch!r}")
        kwargs["include_top"] = False
    try:
        return build(arch, **kwargs)
    except ValueError as e:
        raise WeightsError(str(e)) from None


_LEAF_ORDER = {"kernel": 0, "scale": 1, "bias": 2, "mean": 3, "var": 4}


def _expected_shapes(
    arch: str, include_top: bool = True, num_classes: int | None = None
) -> tuple[tuple[str, tuple], ...]:
    """(file key, shape) for every variable of the architecture, in the order the modules run
    (`"conv1_1.kernel"`, `"layer1.0.bn1.scale"`, `"batch_stats/layer1.0.bn1.mean"`, ...)."""
    if num_classes is not None and num_classes == getattr(_model(arch, include_top), "num_classes", None):
        num_classes = None  # the default: one cache entry (tracing ResNet-152's init takes seconds)
    return _traced_shapes(arch, include_top, num_classes)


@functools.lru_cache(maxsize=32)
def _traced_shapes(arch: str, include_top: bool, num_classes: int | None) -> tuple[tuple[str, tuple], ...]:
    model = _model(arch, include_top, num_classes)
    x = jax.ShapeDtypeStruct((1, *DEFAULT_INPUT[arch]), jnp.float32)
    order: dict[str, int] = {}

    def record(next_fun, args, kwargs, context):  # each module's path when it first runs
        if context.method_name == "__call__":
            order.setdefault(".".join(context.module.path), len(order))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    flat = _flatten_variables({c: v for c, v in shapes.items() if c in (PARAMS, "batch_stats")}, convert=False)

    def rank(key: str) -> tuple:
        module, _, leaf = key.partition("/")[2 if "/" in key else 0].rpartition(".")
        return order.get(module, len(order)), _LEAF_ORDER.get(leaf, 9), leaf

    return tuple((key, tuple(flat[key].shape)) for key in sorted(flat, key=rank))


def _infer_num_classes(arch: str, params: dict) -> int | None:
    """Width of the last layer: the last dense layer of a SequentialNet, else the last module
    with parameters (`fc`, `classifier`, `classifier.6`, SqueezeNet's `classifier.1` conv)."""
    model = _model(arch)
    if isinstance(model, SequentialNet):
        dense = [layer.name for layer in model.layers() if layer.kind == DENSE]
        if dense and dense[-1] in params:
            return int(np.shape(params[dense[-1]]["bias"])[0])
        return None
    last = [k for k, _ in _expected_shapes(arch) if "/" not in k][-1].rpartition(".")[0]
    node = params
    for part in last.split("."):
        if not hasattr(node, "get") or part not in node:
            return None
        node = node[part]
    leaf = node.get("bias", node.get("kernel")) if hasattr(node, "get") else None
    return None if leaf is None else int(np.shape(leaf)[-1])


def _shape_problems(flat: dict[str, np.ndarray], arch: str, include_top: bool, num_classes: int | None) -> list[str]:
    expected = dict(_expected_shapes(arch, include_top, num_classes))
    problems = []
    for key, shape in expected.items():
        if key not in flat:
            problems.append(f"tensor {key} is missing (expected {shape})")
        elif tuple(flat[key].shape) != shape:
            problems.append(f"tensor {key} has shape {tuple(flat[key].shape)}, {arch} expects {shape}")
    problems += [
        f"unexpected tensor {key} {tuple(flat[key].shape)}: {arch} has no such parameter"
        for key in flat
        if key not in expected
    ]
    return problems


@functools.lru_cache(maxsize=8)
def _forward_fn(arch: str, include_top: bool, num_classes: int | None):
    model = _model(arch, include_top, num_classes)
    return jax.jit(lambda variables, x: model.apply(variables, x))


def _fingerprint(variables: dict, arch: str, include_top: bool, num_classes: int | None) -> dict:
    """Summary of the output for a fixed input: logits, or pool5 for notop VGGs.

    `variables`: `{"params": ..., ("batch_stats": ...)}`. Input:
    `np.random.default_rng(0).standard_normal((1, H, W, C), float32)` at the architecture's
    DEFAULT_INPUT (inference mode: BatchNorm uses the stored running statistics); matmuls at full
    float32 precision (no TF32), so that the numbers agree across CPUs and GPUs to about 1e-5.
    """
    h, w, c = DEFAULT_INPUT[arch]
    x = np.random.default_rng(0).standard_normal((1, h, w, c), dtype=np.float32)
    with jax.default_matmul_precision("highest"):
        y = np.asarray(_forward_fn(arch, include_top, num_classes)(variables, x), np.float32)
    flat = y.reshape(-1).astype(np.float64)
    as32 = lambda v: float(np.float32(v))  # noqa: E731 - stored at float32 precision
    return {
        "input": f"default_rng(0).standard_normal((1, {h}, {w}, {c}), float32)",
        "output_shape": list(y.shape),
        "first": [as32(v) for v in flat[:5]],
        "mean": as32(flat.mean()),
        "std": as32(flat.std()),
    }


def _nonfinite_problems(flat: dict) -> list[str]:
    """`tensor 'x' holds 3 NaN and 1 infinite values` for every floating tensor that is not finite."""
    problems = []
    for key, a in flat.items():
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            nan = int(np.isnan(a).sum())
            problems.append(
                f"tensor {key!r} holds {nan} NaN and {int(a.size - np.isfinite(a).sum()) - nan} infinite values"
            )
    return problems


def _fingerprint_problems(stored: dict, now: dict, rtol: float = FINGERPRINT_RTOL) -> tuple[list[str], float]:
    """Compare fingerprints number by number: |a - b| <= rtol * (|b| + scale), scale = the
    larger of the stored std and the largest |first| value (so values near 0 don't need
    relative precision they can't have)."""
    if list(stored.get("output_shape", [])) != list(now["output_shape"]):
        return [f"output shape {now['output_shape']} differs from stored {stored.get('output_shape')}"], float("inf")
    a = np.array([*now["first"], now["mean"], now["std"]], np.float64)
    b = np.array([*stored["first"], stored["mean"], stored["std"]], np.float64)
    scale = max(abs(stored["std"]), *np.abs(stored["first"]), 1e-12)
    rel = float(np.max(np.abs(a - b) / (np.abs(b) + scale)))
    if not rel <= rtol:  # NaN compares False both ways: a NaN fingerprint fails
        return [
            f"forward-pass fingerprint differs from the stored one (max relative difference {rel:.2e} > {rtol:g}): "
            f"now first={now['first']} mean={now['mean']} std={now['std']}, stored first={stored['first']} "
            f"mean={stored['mean']} std={stored['std']}"
        ], rel
    return [], rel


def save_weights(path: str | Path, params: dict, meta: dict) -> Path:
    """Write `params` (nested `{layer: {"kernel", "bias"}}`) as float32 safetensors, atomically.

    `meta` needs `arch` and `preprocessing` ("torchvision" | "caffe" | "unit"); `include_top`
    defaults to True, `num_classes` to the last dense layer's width, `fingerprint` is computed
    when absent, `source`/`source_sha256` default to "". Other keys are stored too: strings as
    they are, anything else JSON-encoded (and decoded again by `load_weights`). The tensors are
    checked against the architecture first; nothing is written on error. BatchNorm nets need
    their running statistics too: use `save_variables`.
    """
    return _save(Path(path), {PARAMS: params}, meta, "save_weights")


def save_variables(path: str | Path, variables: dict, meta: dict) -> Path:
    """`save_weights` for a whole variables dict `{"params": ..., "batch_stats": ...}`; the
    batch statistics are stored as `batch_stats/MODULE.PATH.mean` / `.var` (module docstring)."""
    return _save(Path(path), dict(variables), meta, "save_variables")


def _save(path: Path, variables: dict, meta: dict, who: str) -> Path:
    meta = dict(meta)
    for key in ("arch", "preprocessing"):
        if key not in meta:
            raise WeightsError(f"{who}({path}): meta needs {key!r}")
    arch = meta["arch"]
    if arch not in DEFAULT_INPUT:
        raise WeightsError(f"{who}({path}): unknown arch {arch!r}; known: {', '.join(DEFAULT_INPUT)}")
    if meta["preprocessing"] not in PREPROCESSING_PRESETS:
        raise WeightsError(
            f"{who}({path}): preprocessing must be one of {sorted(PREPROCESSING_PRESETS)}, "
            f"got {meta['preprocessing']!r}"
        )
    include_top = bool(meta.setdefault("include_top", True))
    if meta.get("num_classes") is None:
        meta["num_classes"] = _infer_num_classes(arch, variables.get(PARAMS, {})) if include_top else None
    flat = _flatten_variables(variables)
    problems = _shape_problems(flat, arch, include_top, meta["num_classes"])
    if problems:
        raise WeightsError(f"{who}({path}): the tensors do not fit {arch}: " + "; ".join(problems[:5]))
    problems = _nonfinite_problems(flat)
    if problems:
        raise WeightsError(
            f"{who}({path}): " + "; ".join(problems[:5]) + ": the source is damaged; nothing was written"
        )
    if "fingerprint" not in meta:
        meta["fingerprint"] = _fingerprint(_unflatten_variables(flat), arch, include_top, meta["num_classes"])
    meta.setdefault("source", "")
    meta.setdefault("source_sha256", "")
    meta["format_version"] = FORMAT_VERSION
    meta["tensors_sha256"] = _tensors_sha256(flat)
    encoded, json_keys = {}, []
    for key, value in meta.items():
        if isinstance(value, str) and key not in _JSON_META:
            encoded[key] = value
        else:
            encoded[key] = json.dumps(value)
            json_keys.append(key)
    encoded["json_keys"] = json.dumps(sorted(json_keys))

    from safetensors.numpy import save_file

    _write_atomic(path, lambda tmp: save_file(flat, str(tmp), metadata=encoded))
    return path


def _read_meta(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as f:
            raw = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise WeightsError(f"{path}: not a readable safetensors file ({e}); port the source file again") from e
    return _decode_meta(raw)


def _decode_meta(raw: dict[str, str]) -> dict:
    json_keys = set(json.loads(raw.get("json_keys", "[]"))) | set(_JSON_META)
    meta = {}
    for key, value in raw.items():
        if key == "json_keys":
            continue
        try:
            meta[key] = json.loads(value) if key in json_keys else value
        except ValueError:
            raise WeightsError(f"metadata {key!r} is not valid JSON ({value[:60]!r}); port the source again") from None
    return meta


def load_variables(path: str | Path) -> tuple[dict, dict]:
    """`(variables, meta)` from a file written by `save_variables`/`save_weights`/`port`.

    variables: `{"params": ..., "batch_stats": ...}` (batch_stats only for BatchNorm nets), nested
    dicts of float32 NumPy arrays, ready for `model.apply(variables, x)`. meta: as `load_weights`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    meta = _read_meta(path)
    if "arch" not in meta:
        raise WeightsError(
            f"{path}: a safetensors file without jaxviz metadata; port its source with "
            f"`jaxviz weights port FILE --arch A`"
        )
    from safetensors.numpy import load_file

    return _unflatten_variables(load_file(str(path))), meta


def load_weights(path: str | Path) -> tuple[dict, dict]:
    """`(params, meta)` from a file written by `save_weights` (the `params` of `load_variables`).

    params: nested dict of float32 NumPy arrays. meta: the metadata with `include_top` (bool),
    `num_classes` (int or None), `fingerprint` (dict), `format_version` (int) and any key the
    writer passed as a non-string decoded from JSON; every other value is a string.
    """
    variables, meta = load_variables(path)
    return variables[PARAMS], meta


# --- reading source files -------------------------------------------------------------------


def _torch_or_none():
    """The torch module if installed (then torch.load reads .pth files), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def _guess_format(path: Path) -> str:
    if path.is_dir():
        if _keras_hub_preset(path):
            return "keras"
        raise WeightsError(
            f"{path}: a folder, but not a KerasHub preset (no model.weights.h5 beside a "
            f"config.json); port a weights file, or the preset folder itself"
        )
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "keras"
    if head.startswith(b"PK\x03\x04"):
        import zipfile

        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as e:
            raise WeightsError(f"{path}: a damaged zip file ({e}): the download is incomplete or corrupt") from e
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        if "config.json" in names or "model.weights.h5" in names:
            return "keras"  # a Keras 3 `.keras` archive
    elif head[:1] == b"\x80":
        return "torch"
    elif len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size:
        return "safetensors"
    raise WeightsError(
        f"{path}: unknown weights format (suffix {path.suffix!r}); port reads torch.save "
        f"checkpoints (.pth/.pt), safetensors, Keras HDF5 (.h5, .weights.h5), Keras 3 archives "
        f"(.keras) and KerasHub preset folders: pass fmt= one of {FORMATS} if the file is one of those"
    )


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    torch = _torch_or_none()
    if torch is None:
        from . import _torch_pickle

        obj = _torch_pickle.load(path)
    else:
        import pickle

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise WeightsError(
                f"refusing to unpickle {path}: it holds objects other than tensors, and unpickling "
                f"those can run arbitrary code (torch.load(weights_only=True) said: "
                f"{str(e).splitlines()[0]}). If you trust it, save only its state dict."
            ) from e
        except Exception as e:
            raise WeightsError(f"{path}: torch cannot read it ({type(e).__name__}: {e}); is the file complete?") from e
    return _state_dict_arrays(obj, path, torch)


def _state_dict_arrays(obj: Any, path: Path, torch=None) -> dict[str, np.ndarray]:
    # Training checkpoints wrap the state dict: {"state_dict": ...}, {"model": ...}.
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state dict; save model.state_dict()")
    out = {}
    for key, value in obj.items():
        if torch is not None and isinstance(value, torch.Tensor):
            value = value.detach().to(torch.float32).numpy() if value.is_floating_point() else value.numpy()
        if isinstance(value, np.ndarray):
            out[str(key).removeprefix("module.")] = value
    return out


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    out = {}
    try:
        with safe_open(str(path), "np") as f:
            for key in f.keys():
                out[key] = f.get_tensor(key)
    except Exception as e:
        raise WeightsError(f"{path}: cannot read it as safetensors ({e})") from e
    return out


def _h5_strings(attrs, name: str) -> list[str] | None:
    """A Keras string-list attribute; Keras splits long ones into name0, name1, ..."""
    if name in attrs:
        values = list(attrs[name])
    elif f"{name}0" in attrs:
        values, i = [], 0
        while f"{name}{i}" in attrs:
            values += list(attrs[f"{name}{i}"])
            i += 1
    else:
        return None
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _keras_role(weight_name: str, index: int, ndim: int) -> str:
    base = weight_name.split("/")[-1].split(":")[0]
    if base == "kernel" or re.search(r"(^|_)W(_\d+)?$", base):
        return "kernel"
    if base == "bias" or re.search(r"(^|_)b(_\d+)?$", base):
        return "bias"
    return "kernel" if ndim > 1 else "bias"


@dataclass(frozen=True)
class _KerasSource:
    """What a Keras file says about itself, beyond its tensors."""

    version: str  # "2" | "3"
    layout: str  # "keras.applications" | "keras_hub"
    preprocessing: str  # a jaxviz preset name
    preprocessing_from: str  # where that came from, for the ported file's metadata


_KERAS_HUB_REPEATS = ((2, 2, 3, 3, 3), (2, 2, 4, 4, 4))  # VGGBackbone's stackwise_num_repeats: VGG16, VGG19
_KERAS_SKIP = ("optimizer", "preprocessor")  # groups of a Keras 3 weights file that hold no model weights


def _h5py(where: Path | str):
    try:
        import h5py
    except ImportError:
        raise WeightsError(f"{where}: reading Keras HDF5 needs h5py: pip install h5py") from None
    return h5py


def _read_keras(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str], _KerasSource]:
    """Tensors keyed `"layer/kernel"`, `"layer/bias"`, each key's place in the file, and the source's
    facts — from a Keras 2 HDF5 file, a Keras 3 `.weights.h5`, a `.keras` archive or a KerasHub preset."""
    import zipfile

    if path.is_dir():
        return _read_keras_hub_preset(path)
    if zipfile.is_zipfile(path):
        return _read_keras_archive(path)
    return _read_keras_h5(path, path)


def _open_h5(file, where: Path | str):
    try:
        return _h5py(where).File(file, "r")
    except OSError as e:
        raise WeightsError(f"{where}: HDF5 cannot open it ({e}): the file is incomplete or corrupt") from e


def _read_keras_h5(file, where: Path | str, hub: bool = False, converter: dict | None = None):
    """One HDF5 weights file (a path or a file object); `hub`: known to be KerasHub's (else told by the
    file); `converter`: KerasHub's image converter config, when known."""
    with _open_h5(file, where) as f:
        group = f["model_weights"] if "model_weights" in f else f
        layer_names = _h5_strings(group.attrs, "layer_names")
        if layer_names is not None:
            tensors, origin = _keras2_tensors(group, layer_names, where)
            return tensors, origin, _KerasSource("2", "keras.applications", "caffe", "Keras VGG weights (Caffe)")
        if "layers" not in f:
            raise WeightsError(
                f"{where}: an HDF5 file with neither Keras 2's `layer_names` attribute nor Keras 3's "
                f"`layers` group: not a Keras weights file"
            )
        tensors, origin = _keras3_tensors(f, where)
        root = f["vars"].attrs.get("name", b"") if "vars" in f else b""
        root = root.decode("utf8") if isinstance(root, bytes) else str(root)
    # KerasHub: a backbone nested in a task, KerasHub's default model names, or its conv head
    hub = (
        hub
        or any("vgg_backbone/" in o for o in origin.values())
        or root in ("vgg_backbone", "vgg_image_classifier")
        or np.ndim(tensors.get("fc1/kernel")) == 4
    )
    if not hub:
        return tensors, origin, _KerasSource("3", "keras.applications", "caffe", "keras.applications VGG (Caffe)")
    for layer in ("fc1", "fc2"):  # KerasHub's avg-pool head: 7x7 and 1x1 convolutions = fc1, fc2 at 224x224
        if np.ndim(tensors.get(f"{layer}/kernel")) == 4:
            k = tensors[f"{layer}/kernel"]
            tensors[f"{layer}/kernel"] = k.reshape(-1, k.shape[-1])  # (H, W, C) rows, Keras's flatten order
    return (tensors, origin, _KerasSource("3", "keras_hub", *_keras_hub_preprocessing(converter, where)))


def _keras2_tensors(group, layer_names: list[str], where) -> tuple[dict, dict]:
    tensors, origin = {}, {}
    for lname in layer_names:
        if lname not in group:
            raise WeightsError(
                f"{where}: the file lists layer {lname!r} in `layer_names` but holds no group of that "
                "name: it is truncated or was edited; save the weights again"
            )
        lgroup = group[lname]
        for i, wname in enumerate(_h5_strings(lgroup.attrs, "weight_names") or []):
            if wname not in lgroup:
                raise WeightsError(
                    f"{where}: layer {lname!r} lists weight {wname!r} but holds no such dataset: the "
                    "file is truncated or was edited; save the weights again"
                )
            array = np.asarray(lgroup[wname])
            key = f"{lname}/{_keras_role(wname, i, array.ndim)}"
            if key in tensors:
                raise WeightsError(f"{where}: layer {lname} has two tensors read as {key}; not a VGG weights file")
            tensors[key], origin[key] = array, f"{lname}/{wname}"
    return tensors, origin


def _keras3_tensors(f, where) -> tuple[dict, dict]:
    """Keras 3 stores a layer's variables as `.../<attribute path>/vars/0, 1, ...`, the layer's name
    in the `vars` group's `name` attribute (`layers/conv2d_3/vars` is `block2_conv2`)."""
    import h5py

    tensors, origin = {}, {}

    def visit(name: str, obj) -> None:
        if not isinstance(obj, h5py.Group) or not name.endswith("vars") or name.split("/")[0] in _KERAS_SKIP:
            return
        parts = sorted((int(k), k) for k in obj if k.isdigit())
        layer = obj.attrs.get("name", name.split("/")[-2] if "/" in name else name)
        layer = layer.decode("utf8") if isinstance(layer, bytes) else str(layer)
        for i, k in parts:
            array = np.asarray(obj[k])
            key = f"{layer}/{_keras_role(k, i, array.ndim)}"
            if key in tensors:
                raise WeightsError(
                    f"{where}: two layers named {layer} ({origin[key]} and {name}/{k}); not a VGG weights file"
                )
            tensors[key], origin[key] = array, f"{name}/{k}"

    f.visititems(visit)
    return tensors, origin


def _keras_hub_preprocessing(converter: dict | None, where) -> tuple[str, str]:
    """(preset name, provenance) for a KerasHub image converter's `scale`/`offset` (model input =
    pixel in [0, 255] * scale + offset)."""
    from .data.preprocess import TORCHVISION

    if converter is None:
        return "torchvision", (
            "KerasHub's VGG presets are timm's torchvision weights (the file has no image converter)"
        )
    scale, offset = converter.get("scale"), converter.get("offset")
    scale3 = np.broadcast_to(np.asarray(1.0 if scale is None else scale, float), (3,))
    offset3 = np.broadcast_to(np.asarray(0.0 if offset is None else offset, float), (3,))
    std, mean = 1 / (255 * scale3), -offset3 / (255 * scale3)  # as (pixel/255 - mean) / std
    told = f"its image converter: scale={scale}, offset={offset}"
    if np.allclose(std, TORCHVISION.std, rtol=1e-4) and np.allclose(mean, TORCHVISION.mean, rtol=1e-4):
        return "torchvision", told
    if np.allclose(std, 1.0) and np.allclose(mean, 0.0):
        return "unit", told
    raise WeightsError(
        f"{where}: {told}, which is none of jaxviz's preprocessings (torchvision: ImageNet mean/std "
        f"of [0, 1] pixels; unit: pixels / 255); port the weights file alone to assume torchvision's"
    )


def _keras_hub_preset(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.weights.h5").is_file()


def _json_member(read, name: str, where) -> dict | None:
    try:
        raw = read(name)
    except (KeyError, FileNotFoundError):
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise WeightsError(f"{where}: {name} is not readable JSON ({e})") from e


def _converter_config(config: dict | None) -> dict | None:
    """The image converter's config inside a KerasHub task or preprocessor config, if any."""
    while isinstance(config, dict):
        cfg = config.get("config", {})
        if "scale" in cfg or "offset" in cfg:
            return cfg
        config = cfg.get("preprocessor") or cfg.get("image_converter")
    return None


def _check_keras_hub_backbone(config: dict | None, where) -> None:
    """A KerasHub VGGBackbone config must describe VGG16 or VGG19 (the tensors are checked against --arch)."""
    if not config or config.get("class_name") != "VGGBackbone":
        return
    repeats = tuple(config.get("config", {}).get("stackwise_num_repeats") or ())
    if repeats not in _KERAS_HUB_REPEATS:
        raise WeightsError(
            f"{where}: a KerasHub VGGBackbone with stackwise_num_repeats={list(repeats)}: port reads "
            f"VGG16 [2, 2, 3, 3, 3] and VGG19 [2, 2, 4, 4, 4]"
        )


def _read_keras_archive(path: Path):
    """A `.keras` zip: `config.json` (the model) and `model.weights.h5` (its variables)."""
    import io
    import zipfile

    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise WeightsError(f"{path}: a damaged zip file ({e}): the download is incomplete or corrupt") from e
    with zf:
        names = zf.namelist()
        for member in ("config.json", "model.weights.h5"):
            if member not in names:
                raise WeightsError(
                    f"{path}: a .keras archive without {member} (it has {', '.join(names) or 'nothing'})"
                    f"; save it again with model.save('x.keras')"
                )
        config = _json_member(zf.read, "config.json", f"{path}")
        try:
            data = zf.read("model.weights.h5")
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise WeightsError(f"{path}: cannot read model.weights.h5 from the archive ({e})") from e
    backbone = (config or {}).get("config", {}).get("backbone", config)
    _check_keras_hub_backbone(backbone, path)
    hub = str((config or {}).get("registered_name") or "").startswith("keras_hub>")
    return _read_keras_h5(io.BytesIO(data), f"{path}[model.weights.h5]", hub, _converter_config(config))


def _read_keras_hub_preset(folder: Path):
    """A KerasHub preset folder: `config.json` (the backbone), `model.weights.h5` (its weights),
    `task.json` + `task.weights.h5` (the classifier head, when saved), and the image converter."""
    read = lambda name: (folder / name).read_bytes()  # noqa: E731
    config = _json_member(read, "config.json", folder)
    _check_keras_hub_backbone(config, folder)
    converter = None
    for name in ("image_converter.json", "preprocessor.json", "task.json"):
        converter = converter or _converter_config(_json_member(read, name, folder))
    tensors, origin, source = _read_keras_h5(folder / "model.weights.h5", folder / "model.weights.h5", True, converter)
    if (folder / "task.weights.h5").is_file():
        head, head_origin, _ = _read_keras_h5(folder / "task.weights.h5", folder / "task.weights.h5", True, converter)
        tensors.update({k: v for k, v in head.items() if k not in tensors})
        origin.update({k: f"task.weights.h5:{v}" for k, v in head_origin.items() if k not in origin})
    return tensors, origin, source


# --- source layouts -------------------------------------------------------------------------


def _detect_layout(tensors: dict[str, np.ndarray], path: Path) -> str:
    """The naming of a VGG16/19 torch or safetensors file: "torchvision" or "timm"."""
    keys = list(tensors)
    if any(k.startswith(("pre_logits.", "head.fc.")) for k in keys):
        return "timm"
    if any(k.startswith(("features.", "classifier.")) for k in keys):
        return "torchvision"
    _refuse_jaxviz_layout(keys, path)
    other = _recognize_arch(tensors)
    hint = f" They are a torchvision {other}: try `jaxviz weights port {path} --arch {other}`." if other else ""
    raise WeightsError(
        f"{path}: unrecognised tensor names ({', '.join(keys[:4])}, ...): port understands "
        f"torchvision VGGs (features.N / classifier.N), timm VGGs (features.N / pre_logits.fcK / "
        f"head.fc) and Keras VGG HDF5 files for --arch vgg16/vgg19.{hint}"
    )


def _refuse_jaxviz_layout(keys: list[str], path: Path) -> None:
    if keys and all(k.endswith((".kernel", ".bias", ".scale", ".mean", ".var")) for k in keys):
        raise WeightsError(
            f"{path}: already in jaxviz layout (conv1_1.kernel ...); use it directly "
            f"(load_weights / resolve) instead of porting it"
        )


def _torch_key_order(key: str) -> tuple:
    """Model order for torch-style keys (safetensors stores them sorted by name): features
    before the head, numbers numerically, a module's weight before its bias."""
    module, _, leaf = key.rpartition(".")
    rank = {"features": 0, "classifier": 1, "pre_logits": 1, "head": 2}.get(key.split(".")[0], 3)
    parts = [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", module) if p]
    return (rank, parts, {"weight": 0, "bias": 1}.get(leaf, 2), leaf)


def _source_names(model, layout: str) -> dict[str, tuple[str, str]]:
    """Source tensor name -> (our layer, "kernel" | "bias") for every parameter of `model`."""
    layers = model.layers()
    dense = [layer.name for layer in layers if layer.kind == DENSE]
    names = {}
    for layer in layers:
        if layer.kind not in (CONV, DENSE):
            continue
        if layout == "keras":
            m = re.fullmatch(r"conv(\d+)_(\d+)", layer.name)
            module = f"block{m[1]}_conv{m[2]}" if m else ("fc1", "fc2", "predictions")[dense.index(layer.name)]
            names[f"{module}/kernel"], names[f"{module}/bias"] = (layer.name, "kernel"), (layer.name, "bias")
            continue
        module = layer.aliases[0]  # torchvision's module path: features.N / classifier.N
        if layout == "timm" and layer.kind == DENSE:
            module = ("pre_logits.fc1", "pre_logits.fc2", "head.fc")[dense.index(layer.name)]
        names[f"{module}.weight"], names[f"{module}.bias"] = (layer.name, "kernel"), (layer.name, "bias")
    return names


def _head_input(model, shapes: dict) -> tuple[str | None, tuple[int, int, int] | None]:
    """(name of the first dense layer after the flatten, (C, H, W) of what it flattens)."""
    layers = model.layers()
    kinds = [layer.kind for layer in layers]
    if FLATTEN not in kinds:
        return None, None
    first = next(layer for layer in layers[kinds.index(FLATTEN) :] if layer.kind == DENSE)
    convs = [layer.name for layer in layers if layer.kind == CONV]
    pool = next(layer for layer in layers if layer.kind == ADAPTIVE_AVG)
    return first.name, (shapes[f"{convs[-1]}.kernel"][-1], *pool.size)


def _chw_rows_to_hwc(w: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """torch linear weight `(out, C*H*W)` on an NCHW flatten -> our dense kernel `(H*W*C, out)` on NHWC.

    Equal to `w.reshape(out, C, H, W).transpose(0, 2, 3, 1).reshape(out, -1).T`, written in blocks
    of output units so that the 400 MB VGG fc6 is copied in cache-sized pieces.
    """
    c, h, wd = chw
    out_units = w.shape[0]
    w3 = w.reshape(out_units, c, h * wd)
    kernel = np.empty((h * wd, c, out_units), np.float32)
    for i in range(0, out_units, 256):
        kernel[:, :, i : i + 256] = w3[i : i + 256].transpose(2, 1, 0)
    return kernel.reshape(h * wd * c, out_units)


def _source_shape(layout: str, leaf: str, ours: tuple, role: str, fc6_chw) -> tuple:
    """The shape a tensor of ours (`ours`, Flax layout) has in the source layout; `role` is
    "fc6" (the dense layer after the flatten), "fc7" (the next one) or "" for the rest."""
    if layout == "keras" or leaf == "bias":
        return ours
    if len(ours) == 4:  # conv (kh, kw, in, out) -> (out, in, kh, kw)
        return (ours[3], ours[2], ours[0], ours[1])
    if layout == "timm" and role == "fc6":  # a 7x7 conv over pool5
        return (ours[1], *fc6_chw)
    if layout == "timm" and role == "fc7":  # a 1x1 conv
        return (ours[1], ours[0], 1, 1)
    return (ours[1], ours[0])


def _convert(layout: str, leaf: str, w: np.ndarray, ours_ndim: int, role: str, fc6_chw) -> np.ndarray:
    """A source tensor (already shape-checked) in Flax layout, float32."""
    w = np.asarray(w, np.float32)
    if layout == "keras" or leaf == "bias":
        return w
    if ours_ndim == 4:
        return w.transpose(2, 3, 1, 0)
    if role == "fc6":
        return _chw_rows_to_hwc(w.reshape(w.shape[0], -1), fc6_chw)
    return np.ascontiguousarray(w.reshape(w.shape[0], -1).T)


def _to_params(
    tensors: dict[str, np.ndarray], layout: str, arch: str, path: Path, origin: dict[str, str] | None = None
) -> tuple[dict, bool, int | None]:
    """Map and convert source tensors to our params; (params, include_top, num_classes).

    Every tensor is checked (name and source-layout shape) before anything is converted; the
    first problem in model order is reported, with the right --arch when another one fits.
    """
    if arch not in _VGG_ARCHS:
        raise WeightsError(f"_to_params reads VGG weights only ({', '.join(_VGG_ARCHS)}), not arch={arch!r}")
    origin = origin or {}
    keys = list(tensors) if layout == "keras" else sorted(tensors, key=_torch_key_order)
    full = _source_names(_model(arch), layout)
    head_layers = {layer.name for layer in _model(arch).layers() if layer.kind == DENSE}
    include_top = any(full[k][0] in head_layers for k in keys if k in full)
    final_bias = next((k for k, (n, leaf) in reversed(list(full.items())) if leaf == "bias"), None)
    num_classes = None
    if include_top and final_bias in tensors and np.ndim(tensors[final_bias]) == 1:
        num_classes = int(np.shape(tensors[final_bias])[0])
    model = _model(arch, include_top, num_classes)
    names = _source_names(model, layout)
    expected = dict(_expected_shapes(arch, include_top, num_classes))
    fc6, fc6_chw = _head_input(model, expected) if include_top else (None, None)
    fc7 = [layer.name for layer in model.layers() if layer.kind == DENSE][1] if include_top else None
    role = {fc6: "fc6", fc7: "fc7"}
    order = {layer.name: i for i, layer in enumerate(model.layers())}

    def where(key: str) -> str:
        return f"{key!r}" + (f" (HDF5 dataset {origin[key]})" if key in origin else "")

    problems: list[tuple[float, str]] = []  # (position in the model, message)
    position = -1.0
    for key in keys:
        arr = tensors[key]
        if key in names:
            layer, leaf = names[key]
            position = order[layer] + (0.5 if leaf == "bias" else 0.0)
            ours = expected[f"{layer}.{leaf}"]
            want = _source_shape(layout, leaf, ours, role.get(layer, ""), fc6_chw)
            if tuple(arr.shape) != want:
                problems.append(
                    (
                        position,
                        f"tensor {where(key)} (-> {layer}.{leaf}) has shape {tuple(arr.shape)}, "
                        f"but {arch} expects {want} in the {layout} layout",
                    )
                )
            continue
        module = key.rsplit("/" if layout == "keras" else ".", 1)[0]
        with contextlib.suppress(KeyError):
            position = float(model.resolve(module))
        what = ""
        with contextlib.suppress(KeyError):
            layer = model.layer(module)
            what = f" ({module} is {layer.name} in {arch}"
            what += ")" if layer.kind in (CONV, DENSE) else ", which has no weights)"
        position += 0.25
        problems.append((position, f"unexpected tensor {where(key)}: {arch} has no such parameter{what}"))
    for key, (layer, leaf) in names.items():
        if key not in tensors:
            problems.append(
                (order[layer] + (0.5 if leaf == "bias" else 0.0), f"tensor {key!r} (-> {layer}.{leaf}) is missing")
            )
    if problems:
        problems.sort(key=lambda p: p[0])
        hint = ""
        for other in _VGG_ARCHS:
            if other != arch:
                other_names = _source_names(_model(other, include_top, num_classes), layout)
                if set(other_names) == set(tensors) or len(other_names) == len(tensors):
                    hint = (
                        f" The file has {len(tensors)} tensors, as {other} has: try "
                        f"`jaxviz weights port {path} --arch {other}`."
                    )
        if not hint and layout == "torchvision":
            hint = _arch_hint(tensors, arch, path)
        more = f" ({len(problems) - 1} more problems.)" if len(problems) > 1 else ""
        raise WeightsError(f"{path} does not fit --arch {arch} ({layout} layout): {problems[0][1]}.{hint}{more}")

    params: dict = {}
    for key in keys:
        layer, leaf = names[key]
        ours_ndim = len(expected[f"{layer}.{leaf}"])
        params.setdefault(layer, {})[leaf] = _convert(
            layout, leaf, tensors[key], ours_ndim, role.get(layer, ""), fc6_chw
        )
    return params, include_top, num_classes


def _read_tensors(src: Path, fmt: str) -> tuple[dict[str, np.ndarray], str, dict[str, str], _KerasSource | None]:
    """(tensors keyed by source name, layout, HDF5 dataset path per key, what a Keras source says)."""
    if fmt == "keras":
        tensors, origin, source = _read_keras(src)
        return tensors, "keras", origin, source
    tensors = _read_torch(src) if fmt == "torch" else _read_safetensors(src)
    return tensors, _detect_layout(tensors, src), {}, None


# --- torchvision layout: every zoo architecture, by module path -----------------------------


@dataclass(frozen=True)
class _TorchTensor:
    """One tensor of a torchvision state dict and where it lives in our file."""

    key: str  # torch's name: "layer1.0.bn1.running_mean"
    ours: str  # our file key: "batch_stats/layer1.0.bn1.mean"
    shape: tuple  # torch's shape
    kind: str  # "conv" | "dense" | "flat_dense" (after a spatial flatten: rows reordered) | "vector"
    chw: tuple[int, int, int] | None = None  # what a flat_dense layer flattens


_TORCH_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
# Old DenseNet checkpoints name `denselayer1.norm1` `denselayer1.norm.1` (torchvision's _load_state_dict).
_DENSENET_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
_RESNETS = {
    (False, 2, 2): "resnet18",
    (False, 4, 6): "resnet34",
    (True, 4, 6): "resnet50",
    (True, 4, 23): "resnet101",
    (True, 8, 36): "resnet152",
}
_VGG_CONVS = {8: "vgg11", 10: "vgg13", 13: "vgg16", 16: "vgg19"}


def _torchvision_tensors(arch: str, num_classes: int | None = None) -> tuple[_TorchTensor, ...]:
    """Every tensor of torchvision's state dict for `arch` except `num_batches_tracked`, in model order."""
    if arch not in _PORTABLE:
        raise WeightsError(f"no torchvision layout for arch={arch!r}; one of {', '.join(_PORTABLE)}")
    if num_classes is not None and num_classes == getattr(_model(arch), "num_classes", None):
        num_classes = None
    return _torchvision_tensors_cached(arch, num_classes)


@functools.lru_cache(maxsize=32)
def _torchvision_tensors_cached(arch: str, num_classes: int | None) -> tuple[_TorchTensor, ...]:
    model = _model(arch, True, num_classes)
    expected = _expected_shapes(arch, True, num_classes)
    if isinstance(model, SequentialNet):  # VGG16/19: semantic names, torchvision's paths as aliases
        torch_name = {f"{layer}.{leaf}": key for key, (layer, leaf) in _source_names(model, "torchvision").items()}
        flat_module, chw = _head_input(model, dict(expected))
    else:
        torch_name = {}
        flat_module, chw = getattr(type(model), "FLATTEN_CHW", (None, None))
    out = []
    for ours, shape in expected:
        module, _, leaf = ours.partition("/")[2 if "/" in ours else 0].rpartition(".")
        key = torch_name.get(ours) or f"{module}.{_TORCH_LEAF[leaf]}"
        if len(shape) == 4:
            out.append(_TorchTensor(key, ours, (shape[3], shape[2], shape[0], shape[1]), "conv"))
        elif len(shape) == 2 and module == flat_module:
            out.append(_TorchTensor(key, ours, (shape[1], shape[0]), "flat_dense", tuple(chw)))
        elif len(shape) == 2:
            out.append(_TorchTensor(key, ours, (shape[1], shape[0]), "dense"))
        else:
            out.append(_TorchTensor(key, ours, shape, "vector"))
    return tuple(out)


def _from_torch(t: _TorchTensor, w: np.ndarray) -> np.ndarray:
    """A torch tensor (shape already checked) in Flax layout, float32."""
    w = np.asarray(w, np.float32)
    if t.kind == "conv":
        return np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    if t.kind == "flat_dense":
        return _chw_rows_to_hwc(w, t.chw)
    if t.kind == "dense":
        return np.ascontiguousarray(w.T)
    return w


def _to_torch(t: _TorchTensor, a: np.ndarray) -> np.ndarray:
    """The inverse of `_from_torch`."""
    a = np.asarray(a, np.float32)
    if t.kind == "conv":
        a = a.transpose(3, 2, 0, 1)
    elif t.kind == "flat_dense":
        c, h, w = t.chw
        a = a.reshape(h, w, c, a.shape[-1]).transpose(3, 2, 0, 1).reshape(a.shape[-1], c * h * w)
    elif t.kind == "dense":
        a = a.T
    return np.ascontiguousarray(a)


def _torchvision_keys(tensors: dict[str, np.ndarray], arch: str | None) -> tuple[dict[str, np.ndarray], list[str]]:
    """(the tensors a port maps, the dropped ones worth recording): old DenseNet names renamed,
    `num_batches_tracked` dropped, and for GoogLeNet its training-only `aux1.*` / `aux2.*` heads."""
    kept, dropped = {}, []
    for key, value in tensors.items():
        m = _DENSENET_LEGACY.match(key)
        key = m[1] + m[2] if m else key
        if key.endswith(".num_batches_tracked"):
            continue
        if arch == "googlenet" and key.startswith(("aux1.", "aux2.")):
            dropped.append(key)
            continue
        kept[key] = value
    return kept, dropped


def _file_num_classes(tensors: dict[str, np.ndarray], arch: str) -> int | None:
    """The width of the file's last layer (its bias), if it has one where `arch` has it."""
    final = next(t for t in reversed(_torchvision_tensors(arch)) if t.key.endswith(".bias"))
    if final.key in tensors and np.ndim(tensors[final.key]) == 1:
        return int(np.shape(tensors[final.key])[0])
    return None


def _torchvision_problems(tensors: dict[str, np.ndarray], entries: tuple[_TorchTensor, ...], arch: str) -> list[str]:
    """What does not fit, in model order (an unexpected tensor goes after its nearest known module)."""
    index = {t.key: i for i, t in enumerate(entries)}
    last_under: dict[str, int] = {}  # module path prefix -> index of its last tensor
    for i, t in enumerate(entries):
        parts = t.key.split(".")[:-1]
        for n in range(1, len(parts) + 1):
            last_under[".".join(parts[:n])] = i
    problems: list[tuple[float, str]] = []
    for key, value in tensors.items():
        shape = tuple(np.shape(value))
        if key in index:
            t = entries[index[key]]
            if shape != t.shape:
                problems.append(
                    (
                        index[key],
                        f"tensor {key!r} (-> {t.ours}) has shape {shape}, but {arch} expects "
                        f"{t.shape} in the torchvision layout",
                    )
                )
            continue
        parts = key.split(".")[:-1]
        near = next(
            (last_under[".".join(parts[:n])] for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in last_under),
            len(entries),
        )
        problems.append((near + 0.5, f"unexpected tensor {key!r} {shape}: {arch} has no such parameter"))
    problems += [
        (i, f"tensor {t.key!r} (-> {t.ours}) is missing") for i, t in enumerate(entries) if t.key not in tensors
    ]
    return [message for _, message in sorted(problems, key=lambda p: p[0])]


def _guess_arch(tensors: dict[str, np.ndarray]) -> str | None:
    """The architecture a torchvision-layout state dict looks like, from its names and a few shapes."""
    keys = set(tensors)

    def shape(key: str) -> tuple:
        return tuple(np.shape(tensors[key])) if key in tensors else ()

    if "inception3a.branch1.conv.weight" in keys:
        return "googlenet"
    if any(k.startswith("features.denseblock") for k in keys):
        return "densenet121"
    if "layer1.0.conv1.weight" in keys:

        def blocks(stage: int) -> int:
            return len({k.split(".")[1] for k in keys if k.startswith(f"layer{stage}.")})

        return _RESNETS.get(("layer1.0.conv3.weight" in keys, blocks(2), blocks(3)))
    if any(k.endswith(".squeeze.weight") for k in keys):
        return "squeezenet1_0" if shape("features.0.weight")[-1:] == (7,) else "squeezenet1_1"
    if "features.0.weight" in keys:
        if shape("features.0.weight")[-1:] == (11,):
            return "alexnet"
        convs = sum(1 for k in keys if re.fullmatch(r"features\.\d+\.weight", k) and len(shape(k)) == 4)
        base = _VGG_CONVS.get(convs)
        return f"{base}_bn" if base and "features.1.running_mean" in keys else base
    return None


def _recognize_arch(tensors: dict[str, np.ndarray]) -> str | None:
    """The architecture whose torchvision state dict these tensors are exactly (names and shapes), if any."""
    guess = _guess_arch(_torchvision_keys(tensors, None)[0])
    if guess is None:
        return None
    kept, _ = _torchvision_keys(tensors, guess)
    entries = _torchvision_tensors(guess, _file_num_classes(kept, guess))
    return None if _torchvision_problems(kept, entries, guess) else guess


def _arch_hint(tensors: dict[str, np.ndarray], arch: str, path: Path) -> str:
    other = _recognize_arch(tensors)
    if other is None or other == arch:
        return ""
    return f" The tensors are a torchvision {other}: try `jaxviz weights port {path} --arch {other}`."


def _to_variables(tensors: dict[str, np.ndarray], arch: str, path: Path) -> tuple[dict, int | None, list[str]]:
    """A torchvision state dict as our variables; (variables, num_classes, dropped tensor names).

    Every tensor is checked (name and shape) before anything is converted; the first problem in
    model order is reported, with the right --arch when the file is another architecture's.
    """
    kept, dropped = _torchvision_keys(tensors, arch)
    num_classes = _file_num_classes(kept, arch)
    entries = _torchvision_tensors(arch, num_classes)
    problems = _torchvision_problems(kept, entries, arch)
    if problems:
        more = f" ({len(problems) - 1} more problems.)" if len(problems) > 1 else ""
        raise WeightsError(
            f"{path} does not fit --arch {arch} (torchvision layout): {problems[0]}."
            f"{_arch_hint(tensors, arch, path)}{more}"
        )
    flat = {t.ours: _from_torch(t, kept[t.key]) for t in entries}
    return _unflatten_variables(flat), num_classes, dropped


def torchvision_arrays(arch: str, variables: dict) -> dict[str, np.ndarray]:
    """torchvision's state dict for our `variables`, as float32 NumPy arrays: the inverse of `port`.

    Keys and order are torchvision's (`"layer1.0.bn1.running_mean"`), shapes torch's (conv
    `(out, in, kh, kw)`, linear `(out, in)`); BatchNorm's `num_batches_tracked` is left out.
    `jaxviz.torchvision_peer.torchvision_model` builds the torch model from it.
    """
    if arch not in _PORTABLE:
        raise WeightsError(f"no torchvision layout for arch={arch!r}; one of {', '.join(_PORTABLE)}")
    entries = _torchvision_tensors(arch, _infer_num_classes(arch, variables.get(PARAMS, {})))
    flat = _flatten_variables(variables)
    missing = [t.ours for t in entries if t.ours not in flat]
    if missing:
        raise WeightsError(f"the variables lack {len(missing)} tensors of {arch}, first {missing[0]}")
    out = {t.key: _to_torch(t, flat[t.ours]) for t in entries}
    bad = next((t for t in entries if out[t.key].shape != t.shape), None)
    if bad is not None:
        raise WeightsError(
            f"{bad.ours} has shape {np.shape(flat[bad.ours])}, which does not fit {arch}'s {bad.key} {bad.shape}"
        )
    return out


# --- public steps ---------------------------------------------------------------------------


def _manifest_match(src: Path, digests: dict[str, str]) -> dict | None:
    """The manifest entry of a downloadable file with this name, if no known checksum contradicts it."""
    for entry in _manifest().values():
        if entry.get("url") and entry.get("file") == src.name:
            if not _checksum_problems(digests, entry, _recorded_checksums().get(entry["name"])):
                return entry
    return None


def port(
    src: str | Path, arch: str, *, out: str | Path | None = None, fmt: str | None = None, name: str | None = None
) -> Path:
    """Convert a weights file to jaxviz's safetensors layout, checking every tensor.

    Args:
      src: a torch.save state dict (.pth/.pt; read with torch.load(weights_only=True) when torch
        is installed, else with a restricted reader that unpickles nothing but tensors), a
        safetensors file in torchvision or timm layout, or a Keras VGG (top or notop): Keras 2 HDF5, Keras 3
        `.weights.h5`, a `.keras` archive, or a KerasHub preset folder.
      arch: "vgg16" or "vgg19" (every layout), or one of the torchvision-layout architectures
        (alexnet, vgg11[_bn], vgg13[_bn], vgg16_bn, vgg19_bn, squeezenet1_0/1_1, resnet18/34/50/101/152,
        googlenet, densenet121) from a torchvision state dict (.pth or safetensors).
      out: output file; default `weights_dir()/NAME.safetensors`.
      fmt: "torch", "safetensors" or "keras"; guessed from the content when None.
      name: NAME for the default output; default: the manifest name when `src` is a known file
        (e.g. vgg16-397923af.pth -> vgg16-torchvision), else the file's stem.
    Returns the written path. Raises WeightsError (and writes nothing) when the file does not fit `arch`.
    """
    return _port(Path(src), arch, out=out, fmt=fmt, name=name)


def _port(
    src: Path,
    arch: str,
    *,
    out=None,
    fmt=None,
    name=None,
    origin: str | None = None,
    entry: dict | None = None,
    digests: dict[str, str] | None = None,
) -> Path:
    """port(), plus what fetch knows: the source's `origin` (URL), its manifest `entry`, its `digests`."""
    if arch not in _PORTABLE:
        raise WeightsError(
            f"port reads torchvision-layout weights of {', '.join(_PORTABLE)} (timm and Keras "
            f"layouts: VGG weights only, {', '.join(_VGG_ARCHS)}), not arch={arch!r}"
        )
    if not (src.is_file() or (src.is_dir() and _keras_hub_preset(src))):
        raise WeightsError(
            f"{src}: no such file to port"
            + (" (a folder, but not a KerasHub preset: no config.json and model.weights.h5)" if src.is_dir() else "")
        )
    if fmt is None:
        fmt = _guess_format(src)
    fmt = {"pth": "torch", "pt": "torch", "h5": "keras", "hdf5": "keras"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise WeightsError(f"unknown fmt={fmt!r} for {src}; one of {FORMATS}")
    extra: dict[str, Any] = {}
    preprocessing = "torchvision"
    if arch in _VGG_ARCHS:
        tensors, layout, where, keras = _read_tensors(src, fmt)
        params, include_top, num_classes = _to_params(tensors, layout, arch, src, where)
        variables = {PARAMS: params}
        if keras is not None:
            preprocessing = keras.preprocessing
            extra.update(
                source_keras=f"Keras {keras.version}, {keras.layout} layout",
                preprocessing_from=keras.preprocessing_from,
            )
    else:
        if fmt == "keras":
            raise WeightsError(
                f"{src}: Keras files are ported for {', '.join(_VGG_ARCHS)} only; {arch} ports from "
                f"a torchvision state dict (.pth, or safetensors with torchvision's names)"
            )
        tensors = _read_torch(src) if fmt == "torch" else _read_safetensors(src)
        _refuse_jaxviz_layout(list(tensors), src)
        variables, num_classes, dropped = _to_variables(tensors, arch, src)
        layout, include_top = "torchvision", True
        if dropped:
            heads = ", ".join(sorted({k.split(".")[0] for k in dropped}))
            extra["dropped_tensors"] = f"{len(dropped)} tensors of {heads} (training-only auxiliary heads)"
    del tensors
    if digests is None:
        known = [e for e in _manifest().values() if e.get("url") and e.get("file") == src.name]
        digests = _file_digests(src, md5=any(e.get("md5") for e in [*known, entry or {}]))
    if entry is None:
        entry = _manifest_match(src, digests)
    if entry is not None:
        if bool(entry.get("include_top", True)) != include_top:
            raise WeightsError(
                f"{src}: the manifest says {entry['name']} has include_top={entry.get('include_top')}, "
                f"but the file {'has' if include_top else 'lacks'} the classifier"
            )
        name = name or entry["name"]
    name = name or src.stem
    out = Path(out) if out is not None else weights_dir() / f"{name}.safetensors"
    meta = {
        "arch": arch,
        "name": name,
        "preprocessing": preprocessing,
        "source": origin or str(src.resolve()),
        "source_file": str(src.resolve()),
        "source_sha256": digests["sha256"],
        "source_format": fmt,
        "source_layout": layout,
        "include_top": include_top,
        "num_classes": num_classes,
        **extra,
    }
    return _save(out, variables, meta, "port")


def _offline_message(name: str, entry: dict, reason: Any) -> str:
    where = entry.get("url") or f"https://huggingface.co/{entry.get('hf_repo')}"
    known = f" (a file named {entry['file']} is saved as {name})" if entry.get("url") else ""
    return (
        f"could not download {name} from {where}: {reason}. We seem to be offline (or the server is "
        f"unreachable). If you have the file (or can copy it from a machine that is online), port it: "
        f"`jaxviz weights port FILE --arch {entry['arch']}`{known}."
    )


def _download(url: str, dest: Path, *, entry: dict, progress: bool = True) -> dict[str, str]:
    """Download `url` to `dest` via `dest.part` (resumed with an HTTP Range request when it
    exists), check the checksums `entry` knows, then rename. Returns the file's digests."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "jaxviz"}
    if start:
        headers["Range"] = f"bytes={start}-"
    complete = False
    try:
        response = _urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # nothing left to send: the part is already whole
            complete, response = True, None
        else:
            raise WeightsError(
                f"downloading {url} failed: HTTP {e.code} {e.reason}; try again later, or "
                f"port a copy you have with `jaxviz weights port FILE --arch {entry['arch']}`"
            ) from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise WeightsError(_offline_message(entry["name"], entry, getattr(e, "reason", e))) from e
    if not complete:
        with response:
            status = getattr(response, "status", None) or response.getcode()
            if start and status != 206:  # the server ignored Range: start over
                start = 0
            length = response.headers.get("Content-Length")
            total = start + int(length) if length is not None else None
            from tqdm.auto import tqdm

            with (
                open(part, "ab" if start else "wb") as f,
                tqdm(
                    total=total,
                    initial=start,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=dest.name,
                    disable=not progress,
                ) as bar,
            ):
                try:
                    while chunk := response.read(_CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
                except (OSError, http.client.HTTPException) as e:
                    raise WeightsError(
                        f"download of {url} was interrupted after {f.tell()} bytes ({e}); {part} is kept and "
                        f"`jaxviz weights fetch {entry['name']}` resumes it"
                    ) from e
        if total is not None and part.stat().st_size != total:
            raise WeightsError(
                f"download of {url} stopped at {part.stat().st_size} of {total} bytes; "
                f"`jaxviz weights fetch {entry['name']}` resumes it"
            )
    digests = _file_digests(part, md5=bool(entry.get("md5")))
    problems = _checksum_problems(digests, entry, _recorded_checksums().get(entry["name"]))
    if problems:
        part.unlink()
        raise WeightsError(
            f"checksum mismatch for {url}: {'; '.join(problems)}. The download was deleted; "
            f"fetch again (if it keeps failing, the server's file or the manifest entry changed)"
        )
    os.replace(part, dest)
    return digests


def fetch(name: str, *, force: bool = False, progress: bool = True) -> Path:
    """Download the weights `name` from the manifest and port them to `weights_dir()/NAME.safetensors`.

    URL entries download with a resumable `.part` file and are checked against the manifest's
    sha256 prefix / md5 before they are renamed into place; Hugging Face entries use
    `huggingface_hub.hf_hub_download` (its cache, resume and progress bars). The source's
    sha256 is recorded in `weights_dir()/checksums.json` for later `verify`. With
    `force=False` an existing NAME.safetensors is returned as is.
    """
    entries = _manifest()
    if name not in entries:
        raise WeightsError(
            f"unknown weights {name!r}; known: {', '.join(sorted(entries))} "
            f"(or port a file you have: `jaxviz weights port FILE --arch A`)"
        )
    entry = entries[name]
    out = weights_dir() / f"{name}.safetensors"
    if out.exists() and not force:
        return out
    if entry.get("hf_repo"):
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            raise WeightsError(f"fetching {name} needs huggingface_hub: pip install huggingface_hub") from None
        try:
            extra = {"force_download": True} if force else {}
            src = Path(
                hf_hub_download(
                    repo_id=entry["hf_repo"], filename=entry["hf_file"], revision=entry.get("revision"), **extra
                )
            )
        except Exception as e:  # hub errors are many types (offline, gated, missing); all end here
            raise WeightsError(_offline_message(name, entry, f"{type(e).__name__}: {e}")) from e
        digests = _file_digests(src, md5=bool(entry.get("md5")))
        problems = _checksum_problems(digests, entry, _recorded_checksums().get(name))
        if problems:
            raise WeightsError(
                f"checksum mismatch for {src} ({name}): {'; '.join(problems)}; delete it from the "
                f"Hugging Face cache and fetch again"
            )
        origin = f"hf://{entry['hf_repo']}/{entry['hf_file']}"
    else:
        src = weights_dir() / entry["file"]
        if src.exists() and not force:
            digests = _file_digests(src, md5=bool(entry.get("md5")))
            problems = _checksum_problems(digests, entry, _recorded_checksums().get(name))
            if problems:
                raise WeightsError(
                    f"{src} is already here but fails its checksum ({'; '.join(problems)}); "
                    f"delete it or run `jaxviz weights fetch {name} --force`"
                )
        else:
            if force:
                with contextlib.suppress(FileNotFoundError):
                    src.with_name(src.name + ".part").unlink()
            digests = _download(entry["url"], src, entry=entry, progress=progress)
        origin = entry["url"]
    _record_checksum(name, src.name, digests)
    return _port(
        src, entry["arch"], out=out, fmt=entry.get("format"), name=name, origin=origin, entry=entry, digests=digests
    )


def resolve(name_or_path: str | Path) -> Path:
    """The weights file for a manifest name (downloaded), a ported name, or a path."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    key = str(name_or_path)
    local = weights_dir() / f"{key}.safetensors"
    if local.is_file():
        return local
    entries = _manifest()
    if key in entries:
        entry = entries[key]
        how = (
            f"the source is {entry['url']}"
            if entry.get("url")
            else f"the source is {entry['hf_file']} from https://huggingface.co/{entry['hf_repo']}"
        )
        same = f"; a file named {entry['file']} is saved as {key}" if entry.get("url") else ""
        raise WeightsError(
            f"weights {key!r} are not in {weights_dir()} yet: run `jaxviz weights fetch {key}`, or "
            f"if you have the file, `jaxviz weights port FILE --arch {entry['arch']}` ({how}{same})"
        )
    raise WeightsError(
        f"no weights {key!r}: neither a file nor a name in {weights_dir()}. Known names: "
        f"{', '.join(sorted(entries)) or '(none)'}; get one with `jaxviz weights fetch NAME`, or "
        f"port a file you have with `jaxviz weights port FILE --arch A`"
    )


def verify(name_or_path: str | Path) -> dict:
    """Check a weights file; returns a report dict, raises WeightsError listing what failed.

    Checks: the source file's checksum (when it is still on disk and a checksum is known:
    recorded at port, in the manifest or in checksums.json), every tensor's shape against the
    architecture, the stored hash of the tensors, and the forward-pass fingerprint recomputed
    against the stored one (rtol 1e-4).
    """
    path = resolve(name_or_path)
    variables, meta = load_variables(path)
    arch, include_top, num_classes = meta["arch"], bool(meta.get("include_top", True)), meta.get("num_classes")
    report: dict[str, Any] = {
        "path": str(path),
        "name": meta.get("name", path.stem),
        "arch": arch,
        "include_top": include_top,
        "num_classes": num_classes,
        "preprocessing": meta.get("preprocessing"),
    }
    failures: list[str] = []

    src = Path(meta["source_file"]) if meta.get("source_file") else None
    entry = _manifest().get(report["name"], {})
    recorded = _recorded_checksums().get(report["name"])
    if src is None or not src.is_file():
        report["source_checksum"] = "skipped: source file not present"
    elif not (_has_checksum(entry, recorded) or meta.get("source_sha256")):
        report["source_checksum"] = "skipped: no known checksum"
    else:
        digests = _file_digests(src, md5=bool(entry.get("md5")))
        problems = _checksum_problems(digests, entry, recorded)
        if meta.get("source_sha256") and digests["sha256"] != meta["source_sha256"]:
            problems.append(f"sha256 {digests['sha256']} differs from {meta['source_sha256']} recorded at port")
        report["source_checksum"] = "ok" if not problems else "failed"
        failures += [f"source {src}: {p}" for p in problems]

    flat = _flatten_variables(variables)
    problems = _shape_problems(flat, arch, include_top, num_classes)
    report["tensors"] = len(flat)
    report["shapes"] = "ok" if not problems else "failed"
    failures += problems
    nonfinite = _nonfinite_problems(flat)
    report["finite"] = "ok" if not nonfinite else "failed"
    failures += nonfinite

    if meta.get("tensors_sha256"):
        ok = _tensors_sha256(flat) == meta["tensors_sha256"]
        report["tensors_sha256"] = "ok" if ok else "failed"
        if not ok:
            failures.append(
                "the tensors' sha256 differs from the one stored when the file was written (the file was modified)"
            )
    if not problems and "fingerprint" in meta:
        now = _fingerprint(variables, arch, include_top, num_classes)
        fp_problems, rel = _fingerprint_problems(meta["fingerprint"], now)
        report["fingerprint"] = "ok" if not fp_problems else "failed"
        report["fingerprint_max_rel_diff"] = rel
        failures += fp_problems
    else:
        report["fingerprint"] = "skipped"
    if failures:
        raise WeightsError(
            f"{path}: verification failed: " + "; ".join(failures) + ". Fetch or port the weights again."
        )
    report["ok"] = True
    return report


def list_weights() -> list[dict]:
    """Manifest entries, then other .safetensors files in weights_dir(), one dict each.

    Every row has `name`, `arch`, `source` (the layout it came in: torchvision, timm, keras;
    "local" for files of unknown origin), `present`, `path` and `in_manifest`; manifest rows
    keep all their manifest fields, other rows add `preprocessing`, `include_top` and `origin`.
    """
    folder = weights_dir()
    rows = []
    entries = _manifest()
    for name, entry in entries.items():
        path = folder / f"{name}.safetensors"
        rows.append(
            {
                **entry,
                "source": entry.get("layout", ""),
                "present": path.is_file(),
                "path": str(path),
                "in_manifest": True,
            }
        )
    if folder.is_dir():
        for path in sorted(folder.glob("*.safetensors")):
            if path.stem in entries:
                continue
            row = {
                "name": path.stem,
                "arch": "?",
                "source": "local",
                "present": True,
                "path": str(path),
                "in_manifest": False,
            }
            with contextlib.suppress(WeightsError, ValueError):
                meta = _read_meta(path)
                row.update({k: meta[k] for k in ("arch", "preprocessing", "include_top") if k in meta})
                row["source"] = meta.get("source_layout") or "local"
                row["origin"] = meta.get("source", "")
            rows.append(row)
    return rows
