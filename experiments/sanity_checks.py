"""Sanity checks (Adebayo et al. 2018) for every attribution method on the embedded model.

    nice -n 5 python experiments/sanity_checks.py --out experiments/runs/sanity_checks --n 24 --docs docs/metrics

Cascading model randomization: the embedded ShapesNet's layers are re-initialized from the top
(fc) down, cumulatively; each method's maps of `--n` shapes images are recomputed after every
step and compared with the trained model's maps (Spearman rank correlation with and without
absolute values, SSIM). Then the data-independent check: maps of the trained vs the fully random
model on random-noise inputs. Methods that do not apply to the model (CAM-GMP needs a global-max
pooling head) are skipped and listed. Reproducible from `--seed` (images, fresh weights, noise).

Writes to `--out`: `sanity.json` (summary per method and step + one record per method, step and
image), `random_inputs.json`, `sanity_curves.png` (Adebayo Fig. 2), `sanity_maps.png` (one image's
maps across the steps, Adebayo Fig. 1) and `random_inputs.png`; `--independent` adds
`independent.json` and `independent_curves.png` (one layer randomized at a time); `--docs`
copies the figures there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from jaxviz.atomic import write_text
from jaxviz.attribution import METHODS
from jaxviz.attribution.engine import compiled, method_options
from jaxviz.data.preprocess import input_bounds, normalize
from jaxviz.data.shapes import generate
from jaxviz.metrics import sanity
from jaxviz.models.loading import load


def applicable(lm, names, x, options) -> tuple[list[str], dict[str, str]]:
    """Methods that run on this model (tried on one image), and why the others do not."""
    ok, skipped = [], {}
    for name in names:
        try:
            fn = compiled(name, lm.model, **{k: v for k, v in options.items() if k in method_options(name)})
            fn(lm.params, x[:1], np.zeros(1, np.int32), jax.random.split(jax.random.key(0), 1))
            ok.append(name)
        except ValueError as e:
            skipped[name] = str(e)
    return ok, skipped


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="experiments/runs/sanity_checks", help="output folder")
    ap.add_argument("--n", type=int, default=24, help="shapes images")
    ap.add_argument("--seed", type=int, default=0, help="seed of the images, fresh weights and noise")
    ap.add_argument(
        "--methods",
        nargs="*",
        default=list(METHODS),
        help="method names or variants, e.g. lrp:epsilon_gamma_box (default: all)",
    )
    ap.add_argument("--smoothgrad-n", type=int, default=16, help="noise samples of the SmoothGrad family")
    ap.add_argument("--ig-steps", type=int, default=32, help="integrated-gradients steps")
    ap.add_argument("--batch-size", type=int, default=24)
    ap.add_argument(
        "--independent",
        action="store_true",
        help="also randomize one layer at a time (Adebayo's independent randomization)",
    )
    ap.add_argument("--docs", default=None, help="also copy the figures to this folder")
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lm = load()
    batch = generate(args.n, size=lm.input_shape[0], seed=args.seed)
    x = normalize(batch.images, lm.preprocessing)
    # low/high: the input's black and white, the box bounds of LRP's epsilon_gamma_box (lrp:epsilon_gamma_box)
    options = {"n": args.smoothgrad_n, "steps": args.ig_steps, **input_bounds(lm.preprocessing)}
    names, skipped = applicable(lm, args.methods, x, options)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")

    t0 = time.perf_counter()
    result = sanity.cascading_randomization(
        lm.model, lm.params, x, names, targets=batch.labels, seed=args.seed, batch_size=args.batch_size, options=options
    )
    t_cascade = time.perf_counter() - t0
    t0 = time.perf_counter()
    noise = sanity.random_input_check(
        lm.model,
        lm.params,
        names,
        n=args.n,
        shape=lm.input_shape,
        seed=args.seed,
        batch_size=args.batch_size,
        options=options,
    )
    t_noise = time.perf_counter() - t0

    meta = {
        "model": lm.name,
        "images": args.n,
        "seed": args.seed,
        "options": options,
        "skipped": skipped,
        "seconds": round(t_cascade, 1),
        "command": "python experiments/sanity_checks.py " + " ".join(argv or []),
    }
    write_text(out / "sanity.json", json.dumps({**meta, **json.loads(sanity.to_json(result))}) + "\n")
    write_text(
        out / "random_inputs.json",
        json.dumps({**meta, "seconds": round(t_noise, 1), **json.loads(sanity.to_json(noise))}) + "\n",
    )
    figures = [
        sanity.plot_similarity_curves(
            result,
            out / "sanity_curves.png",
            title=(f"Cascading randomization, embedded ShapesNet, {args.n} shapes images (mean over images)"),
        ),
        sanity.plot_randomization_maps(result, out / "sanity_maps.png", image=0, input_image=batch.images[0]),
        sanity.plot_similarity_bars(
            noise,
            out / "random_inputs.png",
            title=(f"Random-noise inputs: trained vs fully random model ({args.n} inputs)"),
        ),
    ]
    if args.independent:
        single = sanity.cascading_randomization(
            lm.model,
            lm.params,
            x,
            names,
            targets=batch.labels,
            seed=args.seed,
            mode="independent",
            batch_size=args.batch_size,
            options=options,
        )
        write_text(out / "independent.json", json.dumps({**meta, **json.loads(sanity.to_json(single))}) + "\n")
        figures.append(
            sanity.plot_similarity_curves(
                single,
                out / "independent_curves.png",
                title=(f"Independent layer randomization, embedded ShapesNet, {args.n} shapes images"),
            )
        )
    if args.docs:
        Path(args.docs).mkdir(parents=True, exist_ok=True)
        for f in figures:
            shutil.copyfile(f, Path(args.docs) / f.name)

    table = sanity.summary(result)
    print(
        f"cascading randomization: {len(names)} methods x {len(result.steps)} steps x {args.n} images "
        f"in {t_cascade:.0f} s; random inputs in {t_noise:.0f} s"
    )
    print("mean Spearman (abs) after randomizing: " + ", ".join(result.steps))
    for name in names:
        cells = " ".join("  nan" if v is None else f"{v:5.2f}" for v in table["spearman_abs"][name])
        print(f"  {name:22s} {cells}")
    print(f"wrote {out}/sanity.json, random_inputs.json and {', '.join(f.name for f in figures)}")


if __name__ == "__main__":
    main()
