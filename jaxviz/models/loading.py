"""A model with everything needed to use it: module, variables, preprocessing, class names.

`load("shapesnet")` gives the embedded default (shipped in the package, works offline);
`load("vgg16")` finds ported VGG16 weights in the weights folder; `load(weights="file.safetensors")`
loads any file written by `jaxviz weights port`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from ..data.labels import Labels, imagenet_labels
from ..data.preprocess import Preprocessing, get_preprocessing
from . import ARCHS, DEFAULT_INPUT, TORCHVISION_ARCHS, build

EMBEDDED = "shapesnet"
# Weights shipped inside the package, by architecture: the default model and LeNet-5 on digits.
SHIPPED = {
    "shapesnet": "shapesnet.safetensors",
    "lenet5": "lenet5_digits.safetensors",
    "lenet5_3x3": "lenet5_3x3_digits.safetensors",
    "minivgg": "minivgg.safetensors",
}


@dataclass(frozen=True)
class LoadedModel:
    """A module, its variables and how to feed it. `input_shape` is `(H, W, C)` it was trained at.

    `variables` is the full Flax variables dict (`{"params": ..., "batch_stats": ...}`): what every
    method takes beside `model` (`method(lm.model, lm.variables, x)`).
    """

    name: str
    arch: str
    model: Any
    variables: Any
    preprocessing: Preprocessing
    labels: Labels
    input_shape: tuple[int, int, int]
    meta: dict

    @property
    def params(self):
        """The `params` collection alone."""
        return self.variables["params"]

    def logits(self, x: jax.Array) -> jax.Array:
        """Logits of a preprocessed batch `(N, H, W, C)`, in inference mode."""
        from ..taps import output

        return output(self.model, self.variables, x)[0]


# What each architecture's usual weights expect, for random-init models that have no file to say so.
_NATIVE_PREPROCESSING = {
    "vgg16": "torchvision",
    "vgg19": "torchvision",
    "shapesnet": "centered",
    "minivgg": "centered",
    "allconv": "centered",
    **{arch: "torchvision" for arch in TORCHVISION_ARCHS},
}


def embedded_path(arch: str = EMBEDDED) -> Path:
    return Path(str(resources.files("jaxviz.models") / "embedded" / SHIPPED[arch]))


def load(
    name: str | None = None, weights: str | Path | None = None, *, random_init: bool = False, seed: int = 0
) -> LoadedModel:
    """Load a model by architecture or weights name.

    Args:
      name: an architecture (`shapesnet`, `vgg16`, `vgg19`, `lenet5`, ...) or a weights name from
        the manifest (`vgg16-torchvision`); None means the embedded default, or the arch the
        `weights` file says.
      weights: a weights name or a `.safetensors` path; overrides the lookup by `name`.
      random_init: use freshly initialised params (tests, benchmarks); no weights file needed.
    """
    from .. import weights as W

    if random_init:
        arch = name or EMBEDDED
        model = build(arch)
        shape = DEFAULT_INPUT[arch]
        variables = jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, *shape)))
        meta = {"arch": arch, "preprocessing": _NATIVE_PREPROCESSING.get(arch, "unit"), "random_init": True}
        return _bundle(f"{arch}(random)", arch, model, dict(variables), meta)
    if weights is None:
        weights = embedded_path(name or EMBEDDED) if (name or EMBEDDED) in SHIPPED else _find_weights(name)
    variables, meta = W.load_variables(W.resolve(weights))
    arch = meta["arch"]
    if name in ARCHS and name != arch:
        raise W.WeightsError(f"weights {weights} are for {arch}, not {name}: pass --model {arch}")
    model = build(arch, **_arch_kwargs(meta))
    return _bundle(Path(str(weights)).stem, arch, model, variables, meta)


def _arch_kwargs(meta: dict) -> dict:
    kw = {}
    if "num_classes" in meta and meta["num_classes"] not in (None, ""):
        kw["num_classes"] = int(meta["num_classes"])
    if str(meta.get("include_top", "true")).lower() == "false":
        kw["include_top"] = False
    if meta.get("pool"):  # ShapesNet's head: "gap" or "gmp"
        kw["pool"] = str(meta["pool"])
    return kw


def _find_weights(name: str) -> str:
    """A present weights name for `name` (itself, or the first manifest entry of that arch)."""
    from .. import weights as W

    entries = W.list_weights()
    for e in entries:
        if e["name"] == name and e.get("present"):
            return name
    for e in entries:
        if e.get("arch") == name and e.get("present"):
            return e["name"]
    known = [e["name"] for e in entries if e.get("arch") == name]
    if known:
        raise W.WeightsError(
            f"no weights for {name} in {W.weights_dir()}: run `jaxviz weights fetch {known[0]}` "
            f"(needs a network) or `jaxviz weights port FILE --arch {name}` for a file you already have"
        )
    return name  # a weights name or path; resolve() explains if it does not exist


def _bundle(name, arch, model, variables, meta) -> LoadedModel:
    pp = get_preprocessing(meta.get("preprocessing", "unit"))
    classes = meta.get("classes")
    if isinstance(classes, str):
        classes = json.loads(classes)
    if classes:
        labels = Labels.from_names(classes)
    elif getattr(model, "num_classes", 0) == 1000:
        labels = imagenet_labels()
    else:
        labels = Labels.from_names([str(i) for i in range(getattr(model, "num_classes", 10))])
    return LoadedModel(name, arch, model, variables, pp, labels, DEFAULT_INPUT[arch], meta)
