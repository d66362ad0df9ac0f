"""Named presets: each seed's recipe, as data. `jaxviz visualize KIND --preset NAME`.

A preset is a kind (class, filter, layer, dream, style, adversarial), a one-paragraph
description saying which seed or paper it reproduces, and a dict of hyperparameters. Anything in
the dict can be overridden (`hparams(kind, name, lr=0.1)`; the CLI's `--steps`, `--lr`, ...).
Sizes and layers that depend on the model are filled in by `model_defaults`, so every preset runs
on any model: VGG16/19 at 224 with ImageNet weights, the embedded shapesnet at 64×64, LeNet-5 at 28×28.

Hyperparameter keys: `param` (pixel | fourier), `valid` (clip | sigmoid | none), `decorrelate`,
`init` (uniform | grey | image | noise) with `init_range`, `optimizer` (sgd | adam | normalized |
sign), `lr`, `momentum`, `weight_decay`, `steps` (per octave), `octaves`, `octave_scale`,
`transforms` (see `transforms.make_transforms`), `l2`, `tv`, `blur` (regularizer weights),
`blur_sigma`, `reduce` (mean | median), `size`, `batch` (images per unit) with `diversity` (weight of
the diversity objective across them, Olah et al. 2017) at `diversity_layer`; style: `alpha`, `beta`, `content_layer`,
`style_layers`, `style_weights` (equal | balanced); class/yosinski only, between steps (`step_regularizers`):
`decay`, `blur_every` (with `blur_sigma`), `norm_pct`, `contrib_pct`; adversarial: `mode` (iterative | fgsm |
fooling), `eps`, `confidence`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..taps import feature_layers

KINDS = ("class", "filter", "layer", "dream", "style", "adversarial")


@dataclass(frozen=True)
class Preset:
    kind: str
    name: str
    doc: str
    hparams: dict = field(default_factory=dict)


_BASE = {
    "param": "pixel",
    "valid": "clip",
    "decorrelate": False,
    "init": "uniform",
    "init_range": (0.4, 0.6),
    "optimizer": "adam",
    "lr": 0.05,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "steps": 64,
    "octaves": 1,
    "octave_scale": 1.4,
    "transforms": "none",
    "l2": 0.0,
    "tv": 0.0,
    "blur": 0.0,
    "blur_sigma": 1.0,
    "reduce": "mean",
    "size": None,
    "batch": 1,
    "diversity": 0.0,
    "diversity_layer": None,
}

_PRESETS = [
    # --- class model visualization --------------------------------------------------------------
    Preset(
        "class",
        "simonyan",
        "Seed 000 (Simonyan et al. 2014): start from U[150, 180]/255, SGD lr 0.05 "
        "momentum 0.9, 81 steps, loss −y_c. The image is kept in [0, 1] after each step so what is shown "
        "is what the model saw (valid=none optimizes it unconstrained, literally as the seed).",
        {
            "init": "uniform",
            "init_range": (150 / 255, 180 / 255),
            "optimizer": "sgd",
            "lr": 0.05,
            "momentum": 0.9,
            "steps": 81,
        },
    ),
    Preset(
        "class",
        "regularized",
        "Seed 003: class model with L2 and blur regularization (Simonyan 2014 L2; "
        "Yosinski et al. 2015 blur each step), plus small jitter; same SGD as seed 000.",
        {
            "init": "uniform",
            "init_range": (150 / 255, 180 / 255),
            "optimizer": "sgd",
            "lr": 0.05,
            "momentum": 0.9,
            "steps": 81,
            "l2": 0.02,
            "blur": 0.5,
            "blur_sigma": 1.0,
            "transforms": "jitter:2",
        },
    ),
    Preset(
        "class",
        "yosinski",
        "Seed 003 / Yosinski et al. 2015: the regularized class model's SGD, but the "
        "regularizers act on the image between steps instead of as loss terms: a Gaussian blur every "
        "`blur_every` steps, then pixels of small norm (below the `norm_pct`-th percentile) and of small "
        "contribution |Σ_c x·∇x| (below `contrib_pct`) set to mid-grey; `decay` shrinks towards mid-grey "
        "(`step_regularizers`).",
        {
            "init": "uniform",
            "init_range": (150 / 255, 180 / 255),
            "optimizer": "sgd",
            "lr": 0.05,
            "momentum": 0.9,
            "steps": 81,
            "decay": 0.0,
            "blur_every": 4,
            "blur_sigma": 1.0,
            "norm_pct": 20.0,
            "contrib_pct": 50.0,
            "transforms": "jitter:2",
        },
    ),
    Preset(
        "class",
        "lucid",
        "Olah et al. 2017: decorrelated Fourier parameterization, Lucid's standard "
        "transforms (pad, jitter, scale, rotate), Adam lr 0.05.",
        {
            "param": "fourier",
            "valid": "sigmoid",
            "decorrelate": True,
            "optimizer": "adam",
            "lr": 0.05,
            "steps": 128,
            "transforms": "standard",
        },
    ),
    # --- filter (channel) visualization ------------------------------------------------------------
    Preset(
        "filter",
        "adam",
        "Seed 000: maximize the mean activation of one filter, Adam with weight decay 1e-6, from noise.",
        {
            "init": "uniform",
            "init_range": (0.4, 0.6),
            "optimizer": "adam",
            "lr": 0.05,
            "weight_decay": 1e-6,
            "steps": 64,
        },
    ),
    Preset(
        "filter",
        "octaves",
        "Seed 001: low-resolution grayscale noise, normalized-gradient ascent, upscaled "
        "over several octaves (reduce=median for the seed's median objective).",
        {
            "init": "grey",
            "init_range": (0.45, 0.55),
            "optimizer": "normalized",
            "lr": 0.02,
            "steps": 24,
            "octaves": 4,
            "octave_scale": 1.3,
        },
    ),
    Preset(
        "filter",
        "lucid",
        "Olah et al. 2017: decorrelated Fourier parameterization with standard transforms.",
        {
            "param": "fourier",
            "valid": "sigmoid",
            "decorrelate": True,
            "optimizer": "adam",
            "lr": 0.05,
            "steps": 128,
            "transforms": "standard",
        },
    ),
    # --- whole-layer visualization ------------------------------------------------------------------
    Preset(
        "layer",
        "adam",
        "Seed 000: maximize the mean of a whole layer's activation, Adam, weight decay 1e-6.",
        {
            "init": "uniform",
            "init_range": (0.4, 0.6),
            "optimizer": "adam",
            "lr": 0.05,
            "weight_decay": 1e-6,
            "steps": 64,
        },
    ),
    Preset(
        "layer",
        "octaves",
        "Seed 001: median of the layer's activations, grey low-resolution start, "
        "normalized gradient, upscaling octaves.",
        {
            "init": "grey",
            "init_range": (0.45, 0.55),
            "optimizer": "normalized",
            "lr": 0.02,
            "steps": 24,
            "octaves": 4,
            "octave_scale": 1.3,
            "reduce": "median",
        },
    ),
    # --- DeepDream ----------------------------------------------------------------------------------
    Preset(
        "dream",
        "simple",
        "Seed 000: maximize ‖A_l‖ of a layer on a photo, plain SGD with weight decay 1e-4 "
        "(seed 000 shows VGG16 conv layers 2–10, one image each: `--layer` is repeatable). The step size "
        "suits the embedded model; the gradient's scale depends on the model and layer, so tune --lr.",
        {"init": "image", "optimizer": "sgd", "lr": 0.05, "weight_decay": 1e-4, "steps": 40},
    ),
    Preset(
        "dream",
        "octaves",
        "Seed 003 / Mordvintsev et al. 2015: octaves (detail carried up a pyramid) and "
        "a random roll (jitter shift) each step, normalized gradient steps.",
        {
            "init": "image",
            "optimizer": "normalized",
            "lr": 0.02,
            "steps": 30,
            "octaves": 3,
            "octave_scale": 1.4,
            "transforms": "roll:4",
        },
    ),
    # --- neural style transfer ----------------------------------------------------------------------------
    Preset(
        "style",
        "gatys",
        "Seed 001 (Gatys et al. 2016): J = α·J_c + β·Σ_l λ_l J_s^l with the seed's "
        "normalizations; content at one deep layer, style at the first activation of every block "
        "(λ equal, summing to 1); Adam from the content image plus noise.",
        {
            "init": "image",
            "optimizer": "adam",
            "lr": 0.02,
            "steps": 200,
            "alpha": 10.0,
            "beta": 40.0,
            "noise": 0.1,
            "content_layer": None,
            "style_layers": None,
            "style_weights": "equal",
        },
    ),
    # --- adversarial ----------------------------------------------------------------------------
    Preset(
        "adversarial",
        "iterative",
        "Seed 003 (Kurakin et al. 2017): targeted steps α·sign(∇ log p(target)) "
        "until the model predicts the target, projected into an L∞ ball of radius eps around the image.",
        {
            "mode": "iterative",
            "init": "image",
            "optimizer": "sign",
            "lr": 1 / 255,
            "eps": 8 / 255,
            "steps": 60,
            "confidence": 0.0,
        },
    ),
    Preset(
        "adversarial",
        "fgsm",
        "Goodfellow et al. 2015: one step of size eps along sign(∇); targeted when a "
        "class is given (towards it), else away from the predicted class.",
        {"mode": "fgsm", "init": "image", "eps": 8 / 255, "steps": 1},
    ),
    Preset(
        "adversarial",
        "fooling",
        "Seed 003 / Nguyen et al. 2015: from noise to an image the model gives a target class with ≥ 99% confidence.",
        {
            "mode": "fooling",
            "init": "uniform",
            "init_range": (0.4, 0.6),
            "optimizer": "sign",
            "lr": 2 / 255,
            "eps": 1.0,
            "steps": 100,
            "confidence": 0.99,
        },
    ),
]

PRESETS: dict[tuple[str, str], Preset] = {(p.kind, p.name): p for p in _PRESETS}
DEFAULT = {
    "class": "simonyan",
    "filter": "adam",
    "layer": "adam",
    "dream": "octaves",
    "style": "gatys",
    "adversarial": "iterative",
}


def get_preset(kind: str, name: str | None = None) -> Preset:
    """The preset `name` of `kind` (None: the kind's default)."""
    if kind not in KINDS:
        raise ValueError(f"unknown visualization kind {kind!r}; kinds: {', '.join(KINDS)}")
    name = name or DEFAULT[kind]
    try:
        return PRESETS[(kind, name)]
    except KeyError:
        names = [n for k, n in PRESETS if k == kind]
        raise ValueError(f"unknown preset {name!r} for {kind}; presets: {', '.join(names)}") from None


def list_presets(kind: str | None = None) -> list[Preset]:
    return [p for p in _PRESETS if kind in (None, p.kind)]


def hparams(kind: str, name: str | None = None, **overrides) -> dict:
    """The preset's hyperparameters over the defaults, then `overrides` (None values are ignored)."""
    p = get_preset(kind, name)
    hp = {**_BASE, **p.hparams}
    unknown = [k for k in overrides if k not in hp and k not in ("layer",)]
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(unknown)} for {kind}/{p.name}; known: {', '.join(sorted(hp))}"
        )
    hp.update({k: v for k, v in overrides.items() if v is not None})
    hp["preset"], hp["kind"] = p.name, kind
    return hp


# --- model-dependent defaults ------------------------------------------------------------------


def act_layers(lm) -> list[str]:
    """Spatial feature layers of a loaded model, in order (`taps.feature_layers`: a VGG's ReLUs
    before the head, a ResNet's blocks)."""
    return feature_layers(lm.model, lm.variables, lm.input_shape)


def blocks(lm) -> list[list[str]]:
    """Feature layers grouped by block (`relu3_1`, `relu3_2` → block 3; `layer3.0`, `layer3.1` → layer3)."""
    groups: dict[str, list[str]] = {}
    for name in act_layers(lm):
        key = name.split(".")[0] if "." in name else (name.rsplit("_", 1)[0] if "_" in name else name)
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def default_layer(lm, kind: str) -> str:
    """A layer that shows something for `kind`: filters / layers / dreams ~40% of the way in."""
    acts = act_layers(lm)
    if not acts:
        raise ValueError(f"{lm.name} has no spatial feature layers to visualize")
    return acts[min(len(acts) - 1, int(0.4 * len(acts)))]


def style_layers(lm) -> tuple[str, tuple[str, ...]]:
    """Gatys' choice on any model: content at the second layer of the second-to-last block
    (VGG: relu4_2), style at the first feature layer of every block (VGG: relu1_1 … relu5_1)."""
    bl = blocks(lm)
    if not bl:
        raise ValueError(f"{lm.name} has no spatial feature layers for style transfer")
    content_block = bl[-2] if len(bl) >= 2 else bl[-1]
    content = content_block[1] if len(content_block) > 1 else content_block[0]
    return content, tuple(b[0] for b in bl)


def model_defaults(hp: dict, lm) -> dict:
    """Fill in what depends on the model: image size (its input), layers for style transfer."""
    hp = dict(hp)
    if hp.get("size") is None:
        hp["size"] = int(lm.input_shape[0])
    if hp.get("diversity") and not hp.get("diversity_layer"):
        hp["diversity_layer"] = default_layer(lm, hp["kind"])
    if hp["kind"] == "style":
        content, styles = style_layers(lm)
        hp["content_layer"] = hp.get("content_layer") or content
        hp["style_layers"] = tuple(hp.get("style_layers") or styles)
    return hp


__all__ = [
    "DEFAULT",
    "KINDS",
    "PRESETS",
    "Preset",
    "act_layers",
    "blocks",
    "default_layer",
    "get_preset",
    "hparams",
    "list_presets",
    "model_defaults",
    "style_layers",
]
