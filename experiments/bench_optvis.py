"""Benchmark: K filter visualizations in one vmapped call vs a loop of K single runs (and PyTorch).

    nice -n 5 .venv/bin/python experiments/bench_optvis.py --k 16 --steps 32 --out docs/optvis/bench

Three ways to render K filters of one layer (seed 000's recipe: Adam, weight decay 1e-6, mean of
the channel, from noise), same model, same image size, same number of steps:

1. **jax vmapped** — one `Renderer` call with K units: `jit(vmap(lax.scan(step)))`.
2. **jax loop** — the *same* `Renderer` called K times with one unit each (compiled once for U=1
   and reused), so the only difference from (1) is batching across units.
3. **torch loop** — seed 000's PyTorch loop, one filter at a time (`optim.Adam([image], lr,
   weight_decay=1e-6)`, `loss = -mean(subnet(image)[0, f])`) on the `jaxviz.torch_peer.to_torch`
   twin of the same model (skipped when torch is not installed).

Compilation is excluded (one warm-up call per shape). Writes `bench_optvis.json` and
`bench_optvis.md` under `--out` and prints the Markdown table. The machine may be shared: repeat
and take the best (`--repeats`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.atomic import write_text
from jaxviz.models.loading import load
from jaxviz.optvis import objectives as O
from jaxviz.optvis.presets import hparams, model_defaults
from jaxviz.optvis.render import unit_keys
from jaxviz.optvis.visualize import build_renderer


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_jax(lm, layer: str, k: int, steps: int, size: int, repeats: int, unit_batch: int | None) -> dict:
    hp = model_defaults(hparams("filter", "adam", steps=steps, size=size), lm)
    r = build_renderer(lm, hp, lambda n: O.channel(layer, n), size)
    r.chunk = steps  # one compiled scan per call: time the loop, not a progress bar
    r.unit_batch = unit_batch
    keys, units = unit_keys(0, k), jnp.arange(k)

    def vmapped():
        return jax.block_until_ready(r.run(keys, units, steps).images)

    def loop():
        return [jax.block_until_ready(r.run(keys[i : i + 1], units[i : i + 1], steps).images) for i in range(k)]

    vmapped(), loop()  # compile both shapes
    traces = r.traces
    t_v, t_l = _best(vmapped, repeats), _best(loop, repeats)
    assert r.traces == traces, "retraced while timing"
    same = np.allclose(vmapped(), np.concatenate(loop()), atol=1e-4)
    return {
        "vmapped_s": t_v,
        "loop_s": t_l,
        "speedup": t_l / t_v,
        "vmapped_equals_loop": bool(same),
        "compilations": traces,
    }


def bench_torch(
    lm, layer: str, k: int, steps: int, size: int, repeats: int, threads: int | None, device: str = "cpu"
) -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    from jaxviz.torch_peer import to_torch

    if threads:
        torch.set_num_threads(threads)
    peer = to_torch(lm.model, lm.params, device=device)
    pp = lm.preprocessing
    mean = torch.tensor(pp.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pp.std, device=device).view(1, 3, 1, 1)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rng = np.random.default_rng(0)

    def one(f):  # seed 000's loop, one filter
        image = torch.tensor(
            rng.uniform(0.4, 0.6, (1, 3, size, size)).astype(np.float32), device=device, requires_grad=True
        )
        opt = torch.optim.Adam([image], lr=0.05, weight_decay=1e-6)
        for _ in range(steps):
            opt.zero_grad()
            out = peer((image - mean) / std, stop_at=layer)
            loss = -torch.mean(out[0, f])
            loss.backward()
            opt.step()
        return image

    def loop():
        out = [one(f) for f in range(k)]
        sync()
        return out

    one(0)  # warm-up
    t = _best(loop, repeats)
    return {"loop_s": t, "threads": torch.get_num_threads(), "version": torch.__version__, "device": device}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model (default: the embedded shapesnet)")
    ap.add_argument("--layer", default="relu3_1")
    ap.add_argument("--k", type=int, default=16, help="filters (units)")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--size", type=int, default=None, help="image side (default: the model's input)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--torch-threads", type=int, default=None)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--torch-device", default="cpu", help="cpu or cuda")
    ap.add_argument("--random-init", action="store_true", help="random weights (e.g. --model vgg16 without a file)")
    ap.add_argument(
        "--unit-batch",
        type=int,
        default=None,
        help="units per vmapped group inside the call (lax.map batch_size; default: all K at once)",
    )
    ap.add_argument("--out", default="bench_optvis")
    args = ap.parse_args(argv)

    lm = load(args.model, random_init=args.random_init)
    size = args.size or lm.input_shape[0]
    res = {
        "model": lm.name,
        "layer": args.layer,
        "k": args.k,
        "steps": args.steps,
        "size": size,
        "unit_batch": args.unit_batch,
        "jax": bench_jax(lm, args.layer, args.k, args.steps, size, args.repeats, args.unit_batch),
        "torch": None
        if args.no_torch
        else bench_torch(lm, args.layer, args.k, args.steps, size, args.repeats, args.torch_threads, args.torch_device),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
            "load_avg": os.getloadavg(),
        },
    }
    j, t = res["jax"], res["torch"]
    unit_steps = args.k * args.steps
    rows = [("jax vmapped (1 call, K units)", j["vmapped_s"]), ("jax loop (K calls, 1 unit)", j["loop_s"])]
    if t:
        rows.append((f"torch loop (seed 000, {t['device']}, {t['threads']} threads)", t["loop_s"]))
    ub = f", unit batch {args.unit_batch}" if args.unit_batch else ""
    md = [
        (
            f"K={args.k} filters of `{args.layer}`{ub}, {args.steps} Adam steps each, {size}×{size}, model {lm.name}, "
            f"best of {args.repeats}, {res['machine']['device']}, {os.cpu_count()} CPUs (load {os.getloadavg()[0]:.1f})"
        ),
        "",
        "| run | seconds | unit-steps/s | time ÷ jax vmapped |",
        "|---|---:|---:|---:|",
    ]
    for name, s in rows:
        md.append(f"| {name} | {s:.2f} | {unit_steps / s:.0f} | {s / j['vmapped_s']:.2f} |")
    md.append("")
    md.append(
        f"vmapped == loop (same keys): {j['vmapped_equals_loop']}; speed-up vmapped vs jax loop: "
        f"**{j['speedup']:.1f}×**" + (f"; vs torch loop: **{t['loop_s'] / j['vmapped_s']:.1f}×**" if t else "")
    )
    res["markdown"] = "\n".join(md)
    out = Path(args.out)
    write_text(out / "bench_optvis.json", json.dumps(res, indent=2))
    write_text(out / "bench_optvis.md", res["markdown"] + "\n")
    print(res["markdown"])
    return res


if __name__ == "__main__":
    main()
