"""`jaxviz visualize class|filter|layer|dream|style|adversarial`: argument parsing only.

Each sub-command loads the model, resolves units (classes by index, name or range; channels by
index or range), calls `visualize.<kind>` with the preset and overrides, and writes files with
`commands.write`. `register(subparsers)` adds the command to the main `jaxviz` parser.
"""

from __future__ import annotations

import argparse
import time

KIND_HELP = {
    "class": "class model visualization: an image per class maximizing its logit (seed 000/001/003)",
    "filter": "an image per channel of a layer maximizing its mean/median activation (seed 000/001)",
    "layer": "an image per layer maximizing the whole layer's activation (seed 000/001)",
    "dream": "DeepDream: amplify a layer's activation norm on an image, with octaves and jitter (seed 000/003)",
    "style": "neural style transfer, Gatys et al. with seed 001's normalizations",
    "adversarial": "targeted adversarial examples within an L∞ budget, FGSM, fooling images (seed 003)",
}


def register(subparsers) -> None:
    """Add `visualize` with one sub-command per kind."""
    p = subparsers.add_parser(
        "visualize",
        help="optimization-based visualization: classes, filters, layers, "
        "DeepDream, style transfer, adversarial examples",
    )
    kinds = p.add_subparsers(dest="kind", required=True)
    for kind, text in KIND_HELP.items():
        q = kinds.add_parser(
            kind,
            help=text,
            description=text + ".",
            epilog=_preset_docs(kind),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        q.add_argument("--model", help="architecture or weights name (default: the embedded shapesnet)")
        q.add_argument("--weights", help="weights name or .safetensors path")
        q.add_argument("--preset", help=f"recipe name: {_preset_help(kind)}")
        if kind in ("class", "adversarial"):
            q.add_argument(
                "--class",
                dest="classes",
                action="append",
                metavar="C",
                help="class index, name or WordNet id, or a range 0-9 (repeatable; "
                + (
                    "default: all classes, at most 16)"
                    if kind == "class"
                    else "the target; default: the class after each image's prediction)"
                ),
            )
        if kind in ("filter", "layer", "dream"):
            q.add_argument(
                "--layer",
                action="append",
                help="layer name or alias"
                + (" (repeatable)" if kind != "filter" else "")
                + " (default: one about 40%% of the way in; "
                "layer: every conv activation)",
            )
        if kind == "filter":
            q.add_argument(
                "--channel",
                action="append",
                metavar="N",
                help="channel index or range 0-15 (repeatable; default: 0-15)",
            )
        if kind in ("dream", "style", "adversarial"):
            q.add_argument(
                "--image",
                action="append",
                help=("the content image (default: scikit-learn's sample photo if installed, else a shapes image)")
                if kind == "style"
                else "input image file (repeatable; default: shapes images the model never saw)",
            )
        if kind == "style":
            q.add_argument(
                "--style-image",
                action="append",
                help="style image file (repeatable, one result each; default: a second sample photo or a shapes image)",
            )
        if kind == "adversarial":
            q.add_argument("--eps", type=float, help="L∞ budget in [0, 1] pixel units (default 8/255)")
            q.add_argument("--n", type=int, default=4, help="number of default shapes images (default 4)")
        q.add_argument("--steps", type=int, help="optimizer steps (per octave)")
        q.add_argument("--lr", type=float, help="learning rate / step size")
        q.add_argument("--octaves", type=int, help="number of octaves (1 = none)")
        q.add_argument("--size", type=int, help="image side (default: the model's input size)")
        q.add_argument(
            "--set",
            action="append",
            metavar="NAME=VALUE",
            help="any other hyperparameter, e.g. --set reduce=median --set l2=0.01 (see the JSON)",
        )
        q.add_argument("--seed", type=int, default=0, help="PRNG seed (init, transforms)")
        q.add_argument("--out", default="optvis", help="output folder (default: optvis)")
        q.add_argument("--name", help="file stem (default: KIND_PRESET)")
        q.add_argument("--quiet", action="store_true", help="no progress bar")
        q.set_defaults(func=_run)


def _preset_docs(kind: str) -> str:
    import textwrap

    from .presets import DEFAULT, list_presets

    lines = ["presets:"]
    for p in list_presets(kind):
        head = f"  {p.name}{' (default)' if p.name == DEFAULT[kind] else ''}: "
        lines.append(textwrap.fill(p.doc, 100, initial_indent=head, subsequent_indent="      "))
    return "\n".join(lines)


def _preset_help(kind: str) -> str:
    from .presets import DEFAULT, list_presets

    return ", ".join(p.name + (" (default)" if p.name == DEFAULT[kind] else "") for p in list_presets(kind))


def parse_indices(items: list[str] | None, count: int, what: str, labels=None) -> list[int] | None:
    """'3', '0-9', names (via `labels.index`), comma lists → indices in [0, count); None if no items."""
    if not items:
        return None
    out: list[int] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            if sep and lo.isdigit() and hi.isdigit():
                a, b = int(lo), int(hi)
                if a > b:
                    raise ValueError(f"--{what} {part}: empty range (write low-high)")
                out.extend(range(a, b + 1))
            elif part.isdigit() or labels is None:
                if not part.isdigit():
                    raise ValueError(f"--{what} {part!r}: write an index or a range like 0-15")
                out.append(int(part))
            else:
                from ..attribution.targets import parse_target

                t = parse_target(part, labels)
                if not isinstance(t, int):
                    raise ValueError(f"--{what} {part!r}: give a class index, name or WordNet id")
                out.append(t)
    bad = [i for i in out if not 0 <= i < count]
    if bad:
        raise ValueError(f"--{what} {bad[0]} out of range: there are {count} ({what} 0..{count - 1})")
    return out


def _overrides(args) -> dict:
    from ..cli import parse_assignments

    ov = {
        "steps": args.steps,
        "lr": args.lr,
        "octaves": args.octaves,
        "size": args.size,
        **parse_assignments(args.set, "--set", "l2=0.01"),
    }
    if getattr(args, "eps", None) is not None:
        ov["eps"] = args.eps
    return ov


def _images(lm, paths: list[str] | None, n: int, seed: int):
    """Images from files (as the model's channels) or `n` shapes/digits images the model never saw."""
    import numpy as np

    from ..data.datasets import default_dataset
    from ..data.images import load_image
    from .octaves import resize

    if paths:
        size = lm.input_shape[0]
        imgs = [np.asarray(resize(_square(load_image(p)), size)) for p in paths]
        imgs = np.stack(imgs)
        return imgs.mean(-1, keepdims=True) if lm.input_shape[2] == 1 else imgs, None
    ds = default_dataset(lm, n, seed=10_000 + seed)
    return ds.images[:n], ds.labels[:n]


def _square(img):
    h, w = img.shape[:2]
    s = min(h, w)
    return img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]


def sample_photos():
    """scikit-learn's two sample photos (china, flower) as `(2, S, S, 3)` squares in [0, 1], or None."""
    import numpy as np

    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        return None
    return np.stack([_square(im.astype(np.float32) / 255.0) for im in load_sample_images().images])


def _run(args) -> None:
    import numpy as np

    from ..models.loading import load
    from . import commands
    from . import visualize as V
    from .presets import get_preset

    preset = get_preset(args.kind, args.preset).name
    lm = load(args.model, args.weights)
    ov = _overrides(args)
    progress = not args.quiet
    kw = {"preset": preset, "seed": args.seed, "progress": progress, **ov}
    t0 = time.perf_counter()
    kind = args.kind
    if kind == "class":
        classes = parse_indices(args.classes, len(lm.labels), "class", lm.labels) or list(
            range(min(16, len(lm.labels)))
        )
        vis = V.class_model(lm, classes, **kw)
    elif kind == "filter":
        layer = args.layer[0] if args.layer else None
        channels = parse_indices(args.channel, 1 << 20, "channel") or list(range(16))
        vis = V.filters(lm, layer, channels, **kw)
    elif kind == "layer":
        vis = V.layers(lm, args.layer, **kw)
    elif kind == "dream":
        imgs, _ = _images(lm, args.image, 2, args.seed)
        vis = V.dream(lm, imgs, args.layer, **kw)
    elif kind == "style":
        content, styles = _style_inputs(lm, args)
        vis = V.style_transfer(lm, content, styles, **kw)
    else:
        imgs, _ = (None, None) if preset == "fooling" else _images(lm, args.image, args.n, args.seed)
        targets = parse_indices(args.classes, len(lm.labels), "class", lm.labels)
        if targets is None and preset == "iterative":
            from .reclassify import probabilities

            targets = ((probabilities(lm, imgs).argmax(1) + 1) % len(lm.labels)).tolist()
        if targets is None and preset == "fooling":
            targets = list(range(min(len(lm.labels), 8)))
        vis = V.adversarial(lm, imgs, targets, **kw)
    files = commands.write(vis, args.out, args.name or f"{kind}_{preset}")
    seconds = time.perf_counter() - t0
    rec = vis.extra.get("reclassification")
    summary = ""
    if rec:
        p = np.array([r["target_probability"] for r in rec])
        summary = f"; p(target) on the final images: mean {p.mean():.2f}, min {p.min():.2f}"
    print(f"visualize {kind}: {len(vis.units)} units with preset {preset} in {seconds:.1f}s{summary}")
    print(f"wrote {files['png']} (+ .npy, .json)")


def _style_inputs(lm, args):
    import numpy as np

    from ..data.images import load_image

    photos = sample_photos() if lm.input_shape[2] == 3 else None
    if args.image:
        content = _square(load_image(args.image[0]))
    elif photos is not None:
        content = photos[0]
    else:
        content = _images(lm, None, 1, args.seed)[0][0]
    if args.style_image:
        styles = [_square(load_image(p)) for p in args.style_image]
    elif photos is not None:
        styles = [photos[1]]
    else:
        styles = [_images(lm, None, 2, args.seed + 1)[0][1]]
    from .octaves import resize

    size = args.size or lm.input_shape[0]
    content = np.asarray(resize(np.asarray(content, np.float32), size))
    styles = np.stack([np.asarray(resize(np.asarray(s, np.float32), size)) for s in styles])
    if lm.input_shape[2] == 1:
        content, styles = content.mean(-1, keepdims=True), styles.mean(-1, keepdims=True)
    return content, styles


__all__ = ["parse_indices", "register", "sample_photos"]
