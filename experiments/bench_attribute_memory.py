"""Benchmark: peak resident memory of `jaxviz attribute`, one row per method, VGG16 at 224.

    nice -n 5 .venv/bin/python experiments/bench_attribute_memory.py --out docs/memory

Each method runs in its own `jaxviz attribute` process — exactly the command a user types, at the
default batch size (16) and the default memory budget (a quarter of this machine's memory) — on 16
photographs (crops of scikit-learn's bundled sample images) with random VGG16 weights written as a
real weights file. The process's peak resident set (the kernel's `VmHWM`, polled every 0.2 s, so no
short peak is missed) is the row's figure, with the time it was reached.

A method's working set is set by its first compiled call: every later pass of the same program holds
the same buffers. The slow methods (Score-CAM: 512 masked forwards per image; occlusion: ~2 900) would
take an hour on the first batch of 16 on a 2-core CPU, so a process is stopped `--cap` seconds after
its compile (its first log line of progress), which covers several passes; the row says whether the
batch finished. A last row runs `--method all` in one process for `--all-cap` seconds: the fused
group and the methods after it share one process, so it shows that memory is given back between
methods. Writes `attribute_memory.json` and `attribute_memory.md` under `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from jaxviz.atomic import write_text

BATCH = 16


def write_inputs(folder: Path, n: int = BATCH, size: int = 256) -> None:
    """`n` different crops of the two photographs scikit-learn ships, as PNG files."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        photo = photos[i % len(photos)]
        y, x = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
        Image.fromarray(photo[y : y + size, x : x + size]).save(folder / f"photo{i:02d}.png")


def write_weights(path: Path) -> None:
    from jaxviz import weights as W
    from jaxviz.models.loading import load

    lm = load("vgg16", random_init=True)
    W.save_variables(path, lm.variables, {"arch": "vgg16", "preprocessing": "torchvision"})


def _peak_rss(pid: int) -> int:
    """A process's peak resident set so far (`VmHWM`), in bytes; 0 once it has gone."""
    try:
        line = next(s for s in Path(f"/proc/{pid}/status").read_text().splitlines() if s.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0
    return int(line.split()[1]) * 1024


def measure(method: str, inputs: Path, weights: Path, work: Path, cap: float) -> dict:
    """Run one `jaxviz attribute` process; its peak RSS, how far it got, and for how long."""
    out = work / f"run-{method}"
    cmd = [
        str(Path(sys.executable).with_name("jaxviz")),
        "attribute",
        str(inputs),
        "--model",
        "vgg16",
        "--weights",
        str(weights),
        "--method",
        method,
        "--outputs",
        "npy",
        "--out",
        str(out),
        "--quiet",
        "--compile-cache",
        "off",
    ]
    log = (work / f"{method}.log").open("w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    peak, peak_at, started = 0, 0.0, None
    while proc.poll() is None:
        now = _peak_rss(proc.pid)
        if now > peak:
            peak, peak_at = now, time.perf_counter() - t0
        if started is None and (out / "config.json").exists():
            started = time.perf_counter()  # the checks passed, the model is loaded: compiling now
        if started is not None and time.perf_counter() - started > cap:
            proc.kill()
            break
        time.sleep(0.2)
    proc.wait()
    log.close()
    results = out / "results.jsonl"
    done = sum(1 for _ in results.open()) if results.exists() else 0
    killed = proc.returncode == -9
    error = None if proc.returncode == 0 or killed else (work / f"{method}.log").read_text().strip().splitlines()[-1]
    return {
        "error": error,
        "method": method,
        "peak_rss_bytes": peak,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_at_seconds": round(peak_at, 1),
        "images_done": done,
        "finished": proc.returncode == 0,
        "cap": cap,
        "returncode": proc.returncode,
    }


def markdown(result: dict) -> str:
    lines = [
        f"Peak resident memory of `jaxviz attribute`, VGG16 at 224, batch {BATCH} (the default), memory "
        f"budget {result['budget_gib']:.1f} GiB (the default: a quarter of {result['ram_gib']:.1f} GiB), "
        f"{result['machine']}.",
        "",
        f"Command: `{result['command']}`",
        "",
        "| method | peak RSS (GiB) | reached after (s) | images done | run | seconds |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for r in result["rows"]:
        run = (
            "whole batch"
            if r["finished"]
            else f"failed: {r['error']}"
            if r["error"]
            else f"stopped {r['cap']:.0f} s after its compile began"
        )
        lines.append(
            f"| {r['method']} | {r['peak_rss_bytes'] / 2**30:.2f} | {r['peak_at_seconds']} | {r['images_done']} "
            f"| {run} | {r['seconds']} |"
        )
    worst = max(result["rows"], key=lambda r: r["peak_rss_bytes"])
    lines += ["", f"Largest: {worst['method']}, {worst['peak_rss_bytes'] / 2**30:.2f} GiB."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from jaxviz.attribution import METHODS
    from jaxviz.memory import default_budget

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", action="append", help="methods to measure (default: every method, then 'all')")
    p.add_argument("--cap", type=float, default=90.0, help="seconds a method may run after its compile starts")
    p.add_argument("--all-cap", type=float, default=600.0, help="seconds the '--method all' process may run")
    p.add_argument("--out", default="docs/memory")
    args = p.parse_args(argv)
    methods = args.method or [*METHODS, "all"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="jaxviz-memory-") as tmp:
        work = Path(tmp)
        write_inputs(work / "images")
        write_weights(work / "vgg16-random.safetensors")
        for method in methods:
            r = measure(
                method,
                work / "images",
                work / "vgg16-random.safetensors",
                work,
                args.all_cap if method == "all" else args.cap,
            )
            rows.append(r)
            print(
                f"{method:22s} {r['peak_rss_bytes'] / 2**30:6.2f} GiB  {r['images_done']:2d} done  "
                f"{'finished' if r['finished'] else r['error'] or 'stopped'}  {r['seconds']} s",
                flush=True,
            )
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    result = {
        "rows": rows,
        "budget_gib": default_budget() / 2**30,
        "ram_gib": ram / 2**30,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "command": "jaxviz attribute IMAGES --model vgg16 --weights W --method M --outputs npy --out RUN",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "attribute_memory.json", json.dumps(result, indent=1) + "\n")
    write_text(out / "attribute_memory.md", markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
