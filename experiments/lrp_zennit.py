"""LRP against zennit: every composite on torchvision's VGG16 and ResNet-50, same random weights.

    .venv/bin/python experiments/lrp_zennit.py --size 64 --out docs/lrp

For each model and composite, 2 images (standard normal, targets 1 and 3) go through jaxviz's `lrp`
and through zennit's composite of the same name (with its VGG or ResNet canonizer) on torchvision's
own model carrying the same weights (`torchvision_peer`):

- float64: both sides in float64; zennit's merged BatchNorm ε is set to 0 (exact merge, as ours —
  zennit otherwise keeps `x / √(1 + ε)` per BatchNorm, ~6e-6 relative on ResNet-50);
- float32: both sides in float32 against zennit's float64 map — ours and zennit's own float32 error,
  so "within zennit's rounding floor" can be read off.

Errors are max |a − b| / max |b| over the batch. The box bounds of epsilon_gamma_box are -2 and 2.5.
Writes `zennit.json` and `zennit.md` under `--out`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.atomic import write_text
from jaxviz.attribution.lrp import lrp
from jaxviz.bench import ZENNIT_COMPOSITES, random_params, zennit_lrp
from jaxviz.models import build
from jaxviz.torch_peer import nchw_to_nhwc, nhwc_to_nchw
from jaxviz.torchvision_peer import torchvision_model

LOW, HIGH = -2.0, 2.5
TARGETS = [1, 3]


def relative(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def compare(arch: str, size: int, names, seed: int = 2) -> list[dict]:
    import torch

    model = build(arch)
    v = random_params(model, (size, size, 3), seed=seed)
    x = np.random.default_rng(5).standard_normal((len(TARGETS), size, size, 3))
    peers = {dt: torchvision_model(arch, v, dtype=dt) for dt in (torch.float64, torch.float32)}
    rows = []
    for name in names:
        options = {"composite": name, "low": LOW, "high": HIGH}
        t0 = time.perf_counter()
        ref = {
            dt: nchw_to_nhwc(zennit_lrp(peer, options, exact_norm=True)(nhwc_to_nchw(x).to(dt), TARGETS).detach())
            for dt, peer in peers.items()
        }
        want = ref[torch.float64]
        with jax.enable_x64(True):
            v64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), v)
            ours64 = lrp(model, v64, jnp.asarray(x), jnp.asarray(TARGETS), **options).maps
        ours32 = lrp(model, v, jnp.asarray(x, jnp.float32), jnp.asarray(TARGETS), **options).maps
        rows.append(
            {
                "model": arch,
                "size": size,
                "composite": name,
                "float64": relative(ours64, want),
                "float32": relative(ours32, want),
                "zennit_float32": relative(ref[torch.float32], want),
                "seconds": time.perf_counter() - t0,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "# LRP: jaxviz vs zennit",
        "",
        f"`{command}`",
        "",
        "Max |jaxviz − zennit float64| / max |zennit float64| over 2 images, random weights, torchvision's "
        "models; zennit's merged BatchNorm ε set to 0 in float64 (exact merge).",
        "",
        "| model | size | composite | float64 | float32 (ours) | float32 (zennit's own) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['size']} | {r['composite']} | {r['float64']:.1e} | {r['float32']:.1e} | "
            f"{r['zennit_float32']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", default=["vgg16", "resnet50"])
    p.add_argument("--composite", nargs="+", default=list(ZENNIT_COMPOSITES))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--out", type=Path, default=Path("docs/lrp"))
    a = p.parse_args()
    rows = [r for arch in a.model for r in compare(arch, a.size, a.composite)]
    command = (
        f"python experiments/lrp_zennit.py --model {' '.join(a.model)} --size {a.size} "
        f"--composite {' '.join(a.composite)}"
    )
    a.out.mkdir(parents=True, exist_ok=True)
    write_text(a.out / "zennit.json", json.dumps({"command": command, "rows": rows}, indent=1))
    write_text(a.out / "zennit.md", markdown(rows, command))
    print(markdown(rows, command))


if __name__ == "__main__":
    main()
