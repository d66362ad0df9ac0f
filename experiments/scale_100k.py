"""Scale test: a 100 000-image attribution job, killed with SIGKILL three times, equals an uninterrupted run.

    python experiments/scale_100k.py --work /tmp/scale            # 100 000 images (about an hour on 2 cores)
    python experiments/scale_100k.py --work /tmp/scale --n 2000   # a quick look

Steps: (1) write the shapes images to disk (`jaxviz.data.shapes.write_folder`, resumable); (2) run
`jaxviz attribute` (embedded model, saliency + Grad-CAM, float16 map store) once without interruption, with a
fresh compilation cache; (3) run the same job into a second folder, SIGKILL it at `--kills` random moments,
restart each time with `jaxviz attribute --resume`, and let the last one finish; (4) check that both folders hold
the same records (no duplicates, none missing) and bit-identical maps, and that no temp or orphan file is left.
Peak RSS of each job, images/s, and start-up time with a cold vs a warm compilation cache go to
`WORK/scale.json` and `WORK/scale.md`; the jobs' progress bars (with ETA) go to `WORK/*.log`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from jaxviz.data.shapes import write_folder
from jaxviz.store import read_maps

METHODS = ("saliency", "grad_cam")


def _records(out: Path) -> int:
    path = out / "results.jsonl"
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _job(argv: list[str], log: Path, env: dict) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-m", "jaxviz.cli", "attribute", *argv], stdout=f, stderr=f, env=env)


def _timed(proc: subprocess.Popen, out: Path, start_records: int) -> dict:
    """Wait for `proc`; seconds until its first new record (start-up incl. compilation) and in all."""
    t0, first = time.perf_counter(), None
    while proc.poll() is None:
        if first is None and _records(out) > start_records:
            first = time.perf_counter() - t0
        time.sleep(0.2)
    return {"seconds": time.perf_counter() - t0, "first_record_s": first, "rc": proc.returncode}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="working folder (images, runs, logs, results)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    images = write_folder(work / "images", args.n, seed=args.seed)
    generate_s = time.perf_counter() - t
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    env = dict(os.environ, JAXVIZ_CACHE_DIR=str(cache))
    common = [
        str(images),
        "--method",
        ",".join(METHODS),
        "--outputs",
        "store",
        "--store-dtype",
        "float16",
        "--batch-size",
        str(args.batch_size),
    ]
    clean, killed = work / "clean", work / "killed"
    for d in (clean, killed):
        shutil.rmtree(d, ignore_errors=True)

    print(f"uninterrupted run into {clean} (cold compilation cache)", flush=True)
    cold = _timed(_job([*common, "--out", str(clean)], work / "clean.log", env), clean, 0)
    rss_clean = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if cold["rc"] != 0:
        sys.exit(f"clean run failed, see {work / 'clean.log'}")

    rng = random.Random(args.seed)
    segments = []
    for k in range(args.kills + 1):
        before = _records(killed)
        argv = ["--resume", str(killed)] if k else [*common, "--out", str(killed)]
        proc = _job(argv, work / "killed.log", env)
        if k < args.kills:  # kill at a random moment of the remaining work
            at = time.perf_counter() + rng.uniform(0.1, 0.9) * cold["seconds"] / (args.kills + 1)
            while proc.poll() is None and time.perf_counter() < at:
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            segments.append({"killed_after_records": _records(killed) - before})
            print(f"  killed (-9) after {segments[-1]['killed_after_records']} new records", flush=True)
        else:
            segments.append(_timed(proc, killed, before))
    warm = segments[-1]
    rss_all = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

    print("comparing records and maps", flush=True)
    check = {}
    for method in METHODS:
        a_records, a_maps = read_maps(clean, method)
        b_records, b_maps = read_maps(killed, method)
        b_by_stem = {r["stem"]: r for r in b_records}
        same = sum(bool((a_maps(r) == b_maps(b_by_stem[r["stem"]])).all()) for r in a_records if r["stem"] in b_by_stem)
        check[method] = {"clean": len(a_records), "resumed": len(b_records), "identical_maps": same}
    lines = [json.loads(line) for line in (killed / "results.jsonl").read_text().splitlines()]
    pairs = [(r["stem"], r["method"]) for r in lines]
    referenced = {r["store"]["chunk"] for r in lines}
    on_disk = {str(p.relative_to(killed)) for p in (killed / "store").rglob("*.npy")}
    temps = [str(p) for p in killed.rglob("*.tmp")]
    summary = json.loads((clean / "summary.json").read_text())
    result = {
        "images": args.n,
        "methods": list(METHODS),
        "batch_size": args.batch_size,
        "generate_seconds": round(generate_s, 1),
        "clean": {**cold, "images_per_second": summary["images_per_second"], "peak_rss_mib": rss_clean // 1024},
        "killed_segments": segments,
        "peak_rss_mib_all_jobs": rss_all // 1024,
        "startup_cold_cache_s": cold["first_record_s"],
        "startup_warm_cache_s": warm["first_record_s"],
        "check": check,
        "records": len(pairs),
        "duplicates": len(pairs) - len(set(pairs)),
        "orphan_chunks": len(on_disk - referenced),
        "missing_chunks": len(referenced - on_disk),
        "temp_files": temps,
    }
    ok = (
        result["duplicates"] == 0
        and not temps
        and on_disk == referenced
        and all(c["clean"] == c["resumed"] == c["identical_maps"] == args.n for c in check.values())
    )
    result["equal"] = ok
    (work / "scale.json").write_text(json.dumps(result, indent=2))
    md = [
        f"| {args.n} images × {len(METHODS)} methods | value |",
        "|---|---|",
        f"| uninterrupted run | {cold['seconds']:.0f} s, {summary['images_per_second']:.0f} images/s, "
        f"peak RSS {rss_clean // 1024} MiB |",
        f"| killed -9 at {args.kills} random points, resumed | "
        f"{'identical records and maps' if ok else 'DIFFERENT'}, {result['duplicates']} duplicates, "
        f"{len(temps)} temp files |",
        f"| start-up to first record, cold / warm compile cache | {cold['first_record_s']:.1f} s / "
        f"{warm['first_record_s']:.1f} s |",
    ]
    (work / "scale.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
