"""Each seed's visualization as one function: presets → the four ideas → `Renderer` → a `Visualization`.

`class_model`, `filters`, `layers`, `dream`, `style_transfer` and `adversarial` take a
`LoadedModel`, the units to render, a preset name and overrides, and return images with the
numbers a reader needs: loss curves, the hyperparameters used, and — for classes and adversarial
images — the model's probability for the target on the final image (reclassification).
All units of one call are rendered by one compiled, vmapped loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..core import as_net
from ..data.preprocess import normalize
from ..taps import activations, layer_names
from . import adversarial as A
from . import objectives as O
from . import regularizers as R
from . import step_regularizers as SR
from . import style as S
from .octaves import dream_octaves, octave_sizes, resize, upscale_octaves
from .optimizers import make_optimizer
from .param import Param, grey, make_param, uniform
from .presets import default_layer, hparams, model_defaults
from .reclassify import probabilities, reclassify
from .render import Renderer, unit_keys
from .transforms import make_transforms


@dataclass
class Visualization:
    """images `(U, B, H, W, C)` in [0, 1]; `units` a label per unit; `losses` `(U, steps)` (−objective);
    `hparams` everything used; `extra` per-kind numbers (reclassification, norms, costs)."""

    kind: str
    hparams: dict
    units: list[str]
    images: np.ndarray
    losses: np.ndarray
    steps_run: np.ndarray
    extra: dict = field(default_factory=dict)


# --- building blocks from hyperparameters ----------------------------------------------------------


def make_init(hp: dict):
    lo, hi = hp["init_range"]
    if hp["init"] == "grey":
        return grey(lo, hi)
    return uniform(lo, hi)


def build_param(hp: dict, size: int, channels: int) -> Param:
    """The preset's parameterization for `(batch, size, size, channels)` (colour decorrelation is RGB only)."""
    shape = (int(hp.get("batch", 1)), size, size, channels)
    return make_param(
        hp["param"], shape, make_init(hp), valid=hp["valid"], decorrelate=bool(hp["decorrelate"]) and channels == 3
    )


def regularized(objective_fn: Callable, hp: dict) -> Callable:
    """`unit -> objective(unit) − l2·L2 − tv·TV − blur·Blur (+ diversity·Diversity)` with the preset's weights."""

    def fn(unit):
        obj = objective_fn(unit)
        if hp.get("diversity"):
            obj = obj + hp["diversity"] * O.diversity(hp["diversity_layer"])
        if hp["l2"]:
            obj = obj - hp["l2"] * R.l2()
        if hp["tv"]:
            obj = obj - hp["tv"] * R.total_variation()
        if hp["blur"]:
            obj = obj - hp["blur"] * R.blur(hp["blur_sigma"])
        return obj

    return fn


def _chunk(steps: int) -> int:
    """Steps per compiled call: a divisor of `steps` (one compile) near 32, for a live progress bar."""
    best = max(d for d in range(1, min(steps, 40) + 1) if steps % d == 0)
    return best if best >= 8 else steps


def build_renderer(lm, hp: dict, objective_fn: Callable, size: int, *, project=None, stop=None) -> Renderer:
    """A `Renderer` for this model and preset at image side `size`."""
    param = build_param(hp, size, lm.input_shape[2])
    opt = make_optimizer(hp["optimizer"], hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    return Renderer(
        lm.model,
        lm.variables,
        lm.preprocessing,
        regularized(objective_fn, hp),
        param,
        opt,
        transforms=make_transforms(hp["transforms"], size),
        project=project,
        stop=stop,
        chunk=_chunk(int(hp["steps"])),
        after_step=SR.from_hparams(hp),
    )


def optimize(
    lm,
    hp: dict,
    objective_fn: Callable,
    units,
    keys,
    *,
    start: np.ndarray | None = None,
    carry: str = "image",
    project=None,
    stop=None,
    progress: bool = False,
):
    """Run the preset's octaves (or one size) for all units.

    Args:
      start: images `(U, B, H, W, C)` to start from (a photo), or None for the parameterization's init.
      carry: 'image' (upscale the whole image between octaves) or 'detail' (DeepDream).
    Returns `(start_images, images, losses, steps_run)`, images `(U, B, size, size, C)`.
    """
    size, steps = int(hp["size"]), int(hp["steps"])
    sizes = octave_sizes(size, int(hp["octaves"]), float(hp["octave_scale"])) if hp["octaves"] > 1 else [size]
    renderers: dict[int, Renderer] = {}
    steps_run = []

    def run(i, img):
        s = sizes[i]
        r = renderers.setdefault(s, build_renderer(lm, hp, objective_fn, s, project=project, stop=stop))
        raw0 = None if img is None else jax.vmap(r.param.from_image)(jnp.asarray(img))
        res = r.run(keys, units, steps, raw0=raw0, progress=progress, desc=f"{hp['kind']} {s}px")
        steps_run.append(res.steps_run)
        return res.images, res.losses

    if start is None:
        first = build_renderer(lm, hp, objective_fn, sizes[0], project=project, stop=stop)
        renderers[sizes[0]] = first
        start = np.asarray(first.images(first.init(keys).raw))
    if len(sizes) == 1:
        images, losses = run(0, resize(jnp.asarray(start), sizes[0]) if start.shape[-2] != sizes[0] else start)
    elif carry == "detail":
        images, losses = dream_octaves(run, start, sizes, progress=progress)
    else:
        images, losses = upscale_octaves(run, start, sizes, progress=progress)
    return np.asarray(start), np.asarray(images), losses, np.sum(steps_run, axis=0)


def _setup(kind: str, lm, preset: str | None, overrides: dict) -> dict:
    return model_defaults(hparams(kind, preset, **overrides), lm)


def _logits(lm, images: np.ndarray) -> np.ndarray:
    flat = np.asarray(images).reshape(-1, *images.shape[-3:])
    return np.asarray(jax.jit(lambda x: lm.logits(normalize(jnp.clip(x, 0, 1), lm.preprocessing)))(flat))


# --- class model visualization -------------------------------------------------------------------


def class_model(
    lm, classes: Sequence[int], *, preset: str | None = None, seed: int = 0, progress: bool = False, **overrides
) -> Visualization:
    """One image per class maximizing y_c (seed 000; regularized: seed 003; lucid: Olah 2017).

    `extra`: `reclassification` per class (p(target) on the final image, seed 001's check),
    `logit_start` / `logit_end` of the target class."""
    hp = _setup("class", lm, preset, overrides)
    classes = [int(c) for c in classes]
    units = jnp.asarray(classes, jnp.int32)
    start, images, losses, steps_run = optimize(
        lm, hp, lambda c: O.class_logit(c), units, unit_keys(seed, len(classes)), progress=progress
    )
    idx = np.arange(len(classes))
    b = images.shape[1]
    first = _logits(lm, start).reshape(len(classes), b, -1)[idx, :, classes].mean(-1)
    last = _logits(lm, images).reshape(len(classes), b, -1)[idx, :, classes].mean(-1)
    extra = {
        "reclassification": reclassify(lm, images[:, 0], classes),
        "logit_start": first.tolist(),
        "logit_end": last.tolist(),
    }
    return Visualization("class", hp, [lm.labels.name(c) for c in classes], images, losses, steps_run, extra)


# --- filters and layers ------------------------------------------------------------------------------


def channel_means(lm, layer: str, images: np.ndarray) -> np.ndarray:
    """Mean activation of every channel of `layer` for each image `(N, C)` (what a filter image excites)."""
    flat = np.asarray(images).reshape(-1, *images.shape[-3:])
    fn = jax.jit(lambda x: activations(lm.model, lm.variables, normalize(x, lm.preprocessing), [layer])[layer])
    a = np.asarray(fn(jnp.asarray(flat)))
    return a.reshape(a.shape[0], -1, a.shape[-1]).mean(1) if a.ndim == 4 else a


def filters(
    lm,
    layer: str | None,
    channels: Sequence[int],
    *,
    preset: str | None = None,
    seed: int = 0,
    progress: bool = False,
    **overrides,
) -> Visualization:
    """One image per channel of `layer` maximizing its mean (seed 000) or median (seed 001) activation,
    all channels in one vmapped call. `extra["channel_means"]` `(U, C)`: every channel's mean activation
    on each result (the chosen one should stand out)."""
    hp = _setup("filter", lm, preset, overrides)
    layer = layer or default_layer(lm, "filter")
    _check_layer(lm, layer)
    width = _width(lm, layer)
    bad = [c for c in channels if not 0 <= int(c) < width]
    if bad:
        raise ValueError(f"--channel {bad[0]} out of range: layer {layer} has {width} channels (0..{width - 1})")
    hp["layer"] = layer
    units = jnp.asarray([int(c) for c in channels], jnp.int32)
    reduce = hp["reduce"]
    start, images, losses, steps_run = optimize(
        lm, hp, lambda n: O.channel(layer, n, reduce), units, unit_keys(seed, len(units)), progress=progress
    )
    means = channel_means(lm, layer, images[:, 0])
    start_means = channel_means(lm, layer, resize(jnp.asarray(start[:, 0]), images.shape[-2]))
    extra = {
        "channel_means": means.round(5).tolist(),
        "target_activation_start": [float(start_means[i, c]) for i, c in enumerate(channels)],
        "target_activation_end": [float(means[i, c]) for i, c in enumerate(channels)],
    }
    return Visualization("filter", hp, [f"{layer}:{int(c)}" for c in channels], images, losses, steps_run, extra)


def _check_layer(lm, layer: str) -> None:
    """A clear LayerError (listing the model's layers) for an unknown layer name, before optimizing."""
    net = as_net(lm.model)
    net.resolve(layer, layer_names(net, lm.variables, lm.input_shape))


def _width(lm, layer: str) -> int:
    x = jax.ShapeDtypeStruct((1, *lm.input_shape), jnp.float32)
    return int(jax.eval_shape(lambda x: activations(lm.model, lm.variables, x, [layer])[layer], x).shape[-1])


def layers(
    lm, names: Sequence[str] | None, *, preset: str | None = None, seed: int = 0, progress: bool = False, **overrides
) -> Visualization:
    """One image per layer maximizing the mean (or median) of the whole layer (seed 000: conv layers
    1–9; seed 001: median). Layers differ in shape, so each is its own compiled call."""
    from .presets import act_layers

    hp = _setup("layer", lm, preset, overrides)
    names = list(names or act_layers(lm))
    reduce = hp["reduce"]
    outs, losses, runs = [], [], []
    for i, name in enumerate(names):
        _check_layer(lm, name)
        _, img, loss, run = optimize(
            lm,
            hp,
            lambda _, name=name: O.layer_mean(name, reduce),
            jnp.zeros((1,)),
            unit_keys(seed + i, 1),
            progress=progress,
        )
        outs.append(img), losses.append(loss), runs.append(run)
    hp["layers"] = names
    return Visualization("layer", hp, names, np.concatenate(outs), np.concatenate(losses), np.concatenate(runs))


# --- DeepDream -----------------------------------------------------------------------------------


def dream(
    lm,
    images: np.ndarray,
    layer_names: Sequence[str] | None = None,
    *,
    preset: str | None = None,
    seed: int = 0,
    progress: bool = False,
    **overrides,
) -> Visualization:
    """DeepDream: maximize ‖A_l‖ on photos `(N, H, W, 3)` (all N in one call), for each layer.

    Units are (layer, image) pairs, ordered layer-major. `extra["norm_start"/"norm_end"]`: ‖A_l‖ of
    the photo and of the dream (at the final size)."""
    hp = _setup("dream", lm, preset, overrides)
    names = list(layer_names or [default_layer(lm, "dream")])
    photos = resize(jnp.asarray(images, jnp.float32), int(hp["size"]))[:, None]  # (N, 1, S, S, C)
    n = photos.shape[0]
    outs, losses, runs, before, after, labels = [], [], [], [], [], []
    for i, name in enumerate(names):
        _check_layer(lm, name)
        _, img, loss, run = optimize(
            lm,
            hp,
            lambda _, name=name: O.layer_norm(name),
            jnp.zeros((n,)),
            unit_keys(seed + i, n),
            start=np.asarray(photos),
            carry="detail",
            progress=progress,
        )
        outs.append(img), losses.append(loss), runs.append(run)
        before += _norms(lm, name, np.asarray(photos[:, 0])).tolist()
        after += _norms(lm, name, img[:, 0]).tolist()
        labels += [f"{name} #{j}" for j in range(n)]
    hp["layers"] = names
    return Visualization(
        "dream",
        hp,
        labels,
        np.concatenate(outs),
        np.concatenate(losses),
        np.concatenate(runs),
        {"norm_start": before, "norm_end": after, "photos": np.asarray(photos[:, 0])},
    )


def _norms(lm, layer: str, images: np.ndarray) -> np.ndarray:
    fn = jax.jit(lambda x: activations(lm.model, lm.variables, normalize(x, lm.preprocessing), [layer])[layer])
    a = np.asarray(fn(jnp.asarray(images)))
    return np.sqrt((a.reshape(len(a), -1).astype(np.float64) ** 2).sum(1))


# --- neural style transfer ---------------------------------------------------------------------------


def style_costs(lm, hp: dict, content_img: np.ndarray, style_imgs: np.ndarray, images: np.ndarray) -> dict:
    """J_c and J_s (seed 001's normalizations) of `images` `(U, H, W, C)`, unit i against style i."""
    names = [hp["content_layer"], *hp["style_layers"]]
    fn = jax.jit(lambda x: activations(lm.model, lm.variables, normalize(x, lm.preprocessing), names))
    ac = fn(jnp.asarray(content_img)[None])[hp["content_layer"]][0]
    st = fn(jnp.asarray(style_imgs))
    gen = fn(jnp.asarray(images))
    lam = dict(zip(hp["style_layers"], hp["style_lambdas"]))
    jc = [float(S.content_cost(ac, gen[hp["content_layer"]][i])) for i in range(len(images))]
    js = [
        float(sum(lam[n] * S.style_cost(S.gram(st[n][i]), gen[n][i]) for n in hp["style_layers"]))
        for i in range(len(images))
    ]
    return {"content_cost": jc, "style_cost": js}


def style_lambdas(lm, hp: dict, content_img: np.ndarray, grams: dict) -> list[float]:
    """λ_l per style layer: equal (Gatys, seed 001) or 'balanced' (∝ 1/J_s^l of the content image)."""
    layers_ = list(hp["style_layers"])
    if hp.get("style_weights", "equal") == "equal":
        return [1.0 / len(layers_)] * len(layers_)
    if hp["style_weights"] != "balanced":
        raise ValueError(f"style_weights must be 'equal' or 'balanced', got {hp['style_weights']!r}")
    acts = activations(lm.model, lm.variables, normalize(jnp.asarray(content_img)[None], lm.preprocessing), layers_)
    inv = np.array([1.0 / max(float(S.style_cost(grams[n][0], acts[n][0])), 1e-12) for n in layers_])
    return (inv / inv.sum()).tolist()


def style_transfer(
    lm,
    content_img: np.ndarray,
    style_imgs: np.ndarray,
    *,
    preset: str | None = None,
    seed: int = 0,
    progress: bool = False,
    **overrides,
) -> Visualization:
    """Gatys et al. 2016 with seed 001's costs: one result per style image `(S, H, W, 3)`, all in one call.

    J = α·J_c(content_layer) + β·Σ_l λ_l J_s^l(style_layers). `style_weights='equal'` (the seed):
    λ_l = 1/len(style_layers); 'balanced': λ_l ∝ 1/J_s^l(content, style 0), so that no layer's scale
    drowns the others (on the embedded model, relu4_1's cost is ~25× relu1_1's, and colour is lost).
    `extra`: content and style costs at the start (content + noise) and end."""
    hp = _setup("style", lm, preset, overrides)
    size = int(hp["size"])
    content_img = np.asarray(resize(jnp.asarray(content_img, jnp.float32), size))
    style_imgs = np.asarray(resize(jnp.asarray(style_imgs, jnp.float32), size))
    names = [hp["content_layer"], *hp["style_layers"]]
    acts_fn = jax.jit(lambda x: activations(lm.model, lm.variables, normalize(x, lm.preprocessing), names))
    a_c = acts_fn(jnp.asarray(content_img)[None])[hp["content_layer"]][0]
    st = acts_fn(jnp.asarray(style_imgs))
    units = {n: jax.vmap(S.gram)(st[n]) for n in hp["style_layers"]}  # per style: Gram per layer
    hp["style_lambdas"] = style_lambdas(lm, hp, content_img, units)
    lam = dict(zip(hp["style_layers"], hp["style_lambdas"]))
    alpha, beta, content_layer = float(hp["alpha"]), float(hp["beta"]), hp["content_layer"]

    def objective(unit):
        obj = alpha * O.content(content_layer, a_c)
        for n in hp["style_layers"]:
            obj = obj + (beta * lam[n]) * O.style(n, unit[n])
        return obj

    k = len(style_imgs)
    noise = jax.random.uniform(
        jax.random.key(seed), (k, 1, size, size, content_img.shape[-1]), minval=-hp["noise"], maxval=hp["noise"]
    )
    start = np.asarray(jnp.clip(jnp.asarray(content_img)[None, None] + noise, 0, 1))
    start_imgs, images, losses, steps_run = optimize(
        lm, hp, objective, units, unit_keys(seed, k), start=start, progress=progress
    )
    before = style_costs(lm, hp, content_img, style_imgs, start_imgs[:, 0])
    after = style_costs(lm, hp, content_img, style_imgs, images[:, 0])
    extra = {
        "content_cost_start": before["content_cost"],
        "style_cost_start": before["style_cost"],
        "content_cost_end": after["content_cost"],
        "style_cost_end": after["style_cost"],
        "content_cost_style_image": style_costs(lm, hp, content_img, style_imgs, style_imgs)["content_cost"],
        "content": content_img,
        "styles": style_imgs,
    }
    return Visualization("style", hp, [f"style #{i}" for i in range(k)], images, losses, steps_run, extra)


# --- adversarial and fooling images -------------------------------------------------------------


def adversarial(
    lm,
    images: np.ndarray | None,
    targets: Sequence[int] | None,
    *,
    preset: str | None = None,
    seed: int = 0,
    progress: bool = False,
    **overrides,
) -> Visualization:
    """Adversarial examples (seed 003) for images `(N, H, W, 3)` and target classes `(N,)`.

    Modes (preset): 'iterative' — targeted sign steps until the model predicts the target, within
    ‖δ‖∞ ≤ eps; 'fgsm' — one step (targeted when targets are given, else away from the prediction);
    'fooling' — from noise (images ignored) until p(target) ≥ confidence.
    `extra`: per unit the original prediction, the reclassification, perturbation norms, steps used,
    and `originals` / `perturbations` `(U, H, W, C)` for display."""
    hp = _setup("adversarial", lm, preset, overrides)
    mode, size, eps = hp["mode"], int(hp["size"]), float(hp["eps"])
    if mode == "fooling":
        if targets is None:
            raise ValueError("fooling images need target classes (--class)")
        n = len(targets)
        x0 = np.asarray(jax.vmap(lambda k: make_init(hp)(k, (1, size, size, lm.input_shape[2]))[0])(unit_keys(seed, n)))
    else:
        if images is None:
            raise ValueError("adversarial examples need images (--image)")
        x0 = np.asarray(resize(jnp.asarray(images, jnp.float32), size))
        n = len(x0)
    before = probabilities(lm, x0)
    if targets is None:
        if mode != "fgsm":
            raise ValueError(f"{mode} adversarial examples need target classes (--class)")
        targets = before.argmax(1)
        targeted = False
    else:
        targeted = True
        targets = np.asarray(targets, np.int64).reshape(-1)
        if len(targets) == 1 and n > 1:
            targets = np.repeat(targets, n)
        if len(targets) != n:
            raise ValueError(f"{len(targets)} target classes for {n} images: give one, or one per image")
    if mode == "fgsm":
        adv = np.asarray(
            A.fgsm(
                lm.model,
                lm.variables,
                lm.preprocessing,
                jnp.asarray(x0),
                jnp.asarray(targets, jnp.int32),
                eps,
                targeted=targeted,
            )
        )
        losses, steps_run = np.zeros((n, 0), np.float32), np.ones(n, np.int32)
    else:
        units = {"image": jnp.asarray(x0)[:, None], "target": jnp.asarray(targets, jnp.int32)}
        hp_run = {**hp, "param": "pixel", "valid": "clip", "decorrelate": False, "octaves": 1}
        _, out, losses, steps_run = optimize(
            lm,
            hp_run,
            lambda u: O.class_log_prob(u["target"]),
            units,
            unit_keys(seed, n),
            start=x0[:, None],
            project=A.linf_project(eps),
            stop=A.predicts_target(float(hp["confidence"])),
            progress=progress,
        )
        adv = out[:, 0]
    after = reclassify(lm, adv, targets)
    norms = A.perturbation_norms(adv, x0)
    for row, p, k in zip(after, before, range(n)):
        row["original_class"] = int(p.argmax())
        row["original_name"] = lm.labels.name(int(p.argmax()))
        row["original_target_probability"] = float(p[int(row["target"])])
        row["linf"], row["linf_255"] = float(norms["linf"][k]), float(norms["linf"][k] * 255)
        row["l2"], row["steps"] = float(norms["l2"][k]), int(steps_run[k])
        row["success"] = (row["predicted"] == row["target"]) if targeted else (row["predicted"] != row["target"])
    hp["targeted"] = targeted
    extra = {"reclassification": after, "originals": x0, "perturbations": adv - x0}
    labels = [f"{lm.labels.name(int(t))}" for t in targets]
    return Visualization("adversarial", hp, labels, adv[:, None], losses, steps_run, extra)


__all__ = [
    "Visualization",
    "adversarial",
    "build_param",
    "build_renderer",
    "channel_means",
    "class_model",
    "dream",
    "filters",
    "layers",
    "make_init",
    "optimize",
    "regularized",
    "style_transfer",
]
