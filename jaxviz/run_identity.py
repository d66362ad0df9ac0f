"""What makes a map what it is: the settings a run's records are stamped with, so that a folder never mixes maps.

A map depends on the model and its weights, the preprocessing and input size, the target, the method,
its options, its seed (for methods that draw samples), the compute dtype and the version of the
method's definition. Each record in `results.jsonl` carries the digest of those settings
(`"settings": "3f2a..."`) and `out/settings.json` maps each digest to the settings in full, so a rerun
with other settings is refused with the setting that differs:

    settings = run_identity(lm, size=None, target_json=None) | method_identity("smoothgrad", {"n": 50}, seed=0)
    digest(settings)        # what each smoothgrad record of that run carries

Settings that change how a run goes but not its maps (batch size, workers, outputs, chunk sizes,
devices) are not part of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .atomic import write_text

__all__ = [
    "DEFINITION_VERSION",
    "SETTINGS",
    "describe_difference",
    "digest",
    "method_identity",
    "read_settings",
    "run_identity",
    "weights_digest",
    "write_settings",
]

SETTINGS = "settings.json"

DEFINITION_VERSION: dict[str, int] = {}
"""Version of a method's definition, per method (1 when absent). Bump it when a change alters the maps
the method returns for the same inputs, so that resumed runs do not mix old and new maps."""

_NOT_IDENTITY = frozenset({"chunk"})  # how much runs at once: memory, not the map


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


def method_identity(
    method: str, options: Mapping[str, Any] | None = None, *, seed: int = 0, dtype: str = "float32"
) -> dict:
    """A method's part of the identity: its options with their defaults filled in, seed, dtype, version."""
    from .attribution import METHODS
    from .attribution.engine import key_use, variant

    method, fixed = variant(method)  # a variant's own options (lrp:epsilon_gamma_box) over the shared ones
    options = {**(options or {}), **fixed}
    params = inspect.signature(METHODS[method]).parameters
    full = {
        name: p.default
        for name, p in params.items()
        if name not in ("model", "variables", "x", "target", "key")
        and name not in _NOT_IDENTITY
        and p.default is not inspect.Parameter.empty
    }
    full.update({k: v for k, v in (options or {}).items() if k in params and k not in _NOT_IDENTITY})
    identity = {
        "method": method,
        "definition": DEFINITION_VERSION.get(method, 1),
        "options": _jsonable(full),
        "dtype": dtype,
    }
    if key_use(method)[0]:
        identity["seed"] = seed
    return identity


def weights_digest(lm) -> str:
    """The weights' recorded tensor digest (ported files carry one), else a digest of the variables."""
    recorded = (lm.meta or {}).get("tensors_sha256")
    if recorded:
        return str(recorded)
    h = hashlib.blake2b(digest_size=16)
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(lm.variables)[0], key=lambda kv: str(kv[0])):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def run_identity(lm, *, size, target_json) -> dict:
    """The run's part of the identity: model, weights, preprocessing, input size and target."""
    return {
        "model": lm.name,
        "weights": weights_digest(lm),
        "preprocessing": _jsonable(dataclasses.asdict(lm.preprocessing)),
        "size": _jsonable(size),
        "target": target_json,
    }


def digest(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def read_settings(out: Path) -> dict[str, dict]:
    """digest → settings of every identity recorded in `out` (empty when none)."""
    path = Path(out) / SETTINGS
    if not path.is_file() or path.is_symlink():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def write_settings(out: Path, identities: Mapping[str, dict]) -> None:
    """Add `identities` (digest → settings) to `out/settings.json`, atomically."""
    known = read_settings(out)
    if all(k in known for k in identities):
        return
    write_text(Path(out) / SETTINGS, json.dumps({**known, **identities}, indent=1, sort_keys=True))


def _flat(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for k, v in settings.items():
        if isinstance(v, Mapping) and k != "preprocessing":
            flat.update(_flat(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


_FLAG = {
    "options": "--opt",
    "seed": "--seed",
    "dtype": "--dtype",
    "size": "--size",
    "target": "--target",
    "model": "--model",
    "weights": "--weights",
    "preprocessing": "the weights' preprocessing",
    "definition": "the method's definition (a newer jaxviz changed it)",
}


def describe_difference(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """`options.n: 2 in the folder, 50 now (--opt)`, for every setting that differs."""
    if old is None:
        return "the folder's records carry no settings (written by an older jaxviz) or settings.json is missing"
    a, b = _flat(old), _flat(new)
    parts = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "(unset)") != b.get(key, "(unset)"):
            flag = _FLAG.get(key.split(".")[0], key)
            parts.append(
                f"{key}: {json.dumps(a.get(key, '(unset)'))} in the folder, "
                f"{json.dumps(b.get(key, '(unset)'))} now ({flag})"
            )
    return "; ".join(parts) or "the settings differ"
