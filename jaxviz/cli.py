"""Command line: argument parsing only; every command calls into the library."""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import shutil
import sys
import time


def _demo(args) -> None:
    from .demo import run_demo

    t0 = time.perf_counter()
    summary = run_demo(args.out, n=args.n, seed=args.seed, methods=args.method, model=args.model)
    print(
        f"demo: {summary['images']} images x {len(summary['methods'])} methods with {summary['model']} "
        f"(accuracy on these images {summary['accuracy']:.0%}) in {time.perf_counter() - t0:.1f}s"
    )
    print(f"wrote {args.out}/ (comparison figure: {summary['comparison']}; browse it: {summary['explorer']})")


def parse_assignments(items: list[str] | None, flag: str = "--opt", example: str = "n=25") -> dict:
    """`NAME=VALUE` arguments (`--opt`, `--set`); values parsed as JSON when they can be (numbers,
    true/false, lists), else kept as strings."""
    opts = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r}: write NAME=VALUE, e.g. {flag} {example}")
        try:
            opts[key] = json.loads(value)
        except json.JSONDecodeError:
            opts[key] = value
    return opts


def _size(text: str) -> int | str:
    if text == "original":
        return text
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 8:
        raise argparse.ArgumentTypeError(f"--size {text!r}: give a number of pixels (at least 8) or 'original'")
    return size


# `attribute` flags that define a job: with --resume the job comes from RUN_DIR/config.json instead
_JOB_FLAGS = (
    "model",
    "weights",
    "method",
    "target",
    "layer",
    "opt",
    "batch_size",
    "size",
    "seed",
    "outputs",
    "store_dtype",
    "store_downsample",
    "devices",
    "dtype",
    "memory_budget",
    "out",
)  # --distributed & co. say where it runs


def _absolute(spec: str) -> str:
    """An input spelled so that it means the same from any directory (`@list.txt`, globs too)."""
    prefix = "@" if spec.startswith("@") else ""
    return prefix + os.path.abspath(os.path.expanduser(spec[len(prefix) :]))


def _attribute(args) -> int:
    from .job import AttributeJob, enable_compilation_cache, load_job, run_job

    if args.resume:
        if args.inputs:
            raise ValueError("--resume RUN_DIR takes the inputs and options from RUN_DIR/config.json; give no inputs")
        defaults = vars(build_parser().parse_args(["attribute", "--resume", args.resume]))
        given = [f"--{k.replace('_', '-')}" for k in _JOB_FLAGS if getattr(args, k) != defaults[k]]
        if given:
            raise ValueError(
                f"--resume RUN_DIR runs the job saved in RUN_DIR/config.json; {', '.join(given)} "
                "would be ignored: drop them, or start a new run with another --out"
            )
        job, out = load_job(args.resume), args.resume
        if args.distributed and not job.distributed:
            raise ValueError("--resume RUN_DIR: the saved job is not --distributed; start a new run with another --out")
    elif not args.inputs:
        raise ValueError("give image files, folders, globs or @list.txt files (or --resume RUN_DIR)")
    else:
        options = parse_assignments(args.opt)
        if args.layer:
            options["layer"] = args.layer
        outputs = [o for item in args.outputs.split(",") if (o := item.strip())]
        weights = args.weights
        if weights and os.path.exists(os.path.expanduser(weights)):  # a file, not a name: --resume from anywhere
            weights = os.path.abspath(os.path.expanduser(weights))
        job = AttributeJob(
            inputs=[_absolute(i) for i in args.inputs],
            inputs_given=list(args.inputs),
            methods=[m for item in args.method or ["saliency"] for m in item.split(",") if m],
            model=args.model,
            weights=weights,
            target=args.target,
            options=options,
            batch_size=args.batch_size,
            size=args.size,
            seed=args.seed,
            outputs=outputs,
            store_dtype=args.store_dtype,
            store_downsample=args.store_downsample,
            devices=args.devices,
            dtype=args.dtype,
            distributed=args.distributed,
            memory_budget=args.memory_budget,
        )
        out = args.out
    if args.compile_cache != "off":
        enable_compilation_cache(args.compile_cache)
    cluster = {
        "coordinator_address": args.coordinator,
        "num_processes": args.num_processes,
        "process_id": args.process_id,
    }
    if any(v is not None for v in cluster.values()) and not (args.distributed or job.distributed):
        raise ValueError(
            "--coordinator, --num-processes and --process-id launch a --distributed run: add --distributed"
        )
    s = run_job(
        job,
        out,
        progress=not args.quiet,
        retry_failed=args.retry_failed,
        cluster=cluster if job.distributed else None,
        engine=_engine(args, job),
    )
    print(
        f"attribute: {s.done} images done, {s.skipped_existing} already done, {s.skipped_failed} failed before, "
        f"{len(s.failed)} failed in {s.seconds:.1f}s ({s.images_per_second:.1f} images/s); "
        f"results in {out}/results.jsonl"
    )
    if len(s.failed) <= 10:
        for image, reason in s.failed:
            print(f"  failed: {image}: {reason}", file=sys.stderr)
    else:  # at scale: the reasons and their counts; every image is in errors.jsonl
        for reason, n in s.failure_reasons().items():
            print(f"  failed x{n}: {reason}", file=sys.stderr)
        print(f"  (every failed image is listed in {out}/errors*.jsonl)", file=sys.stderr)
    if s.failed and not args.allow_failures:
        print(
            f"attribute: {len(s.failed)} image(s) failed: exit status 1 (--allow-failures accepts a partial run)",
            file=sys.stderr,
        )
        return 1
    return 0


def _engine(args, job):
    """The `Engine` of `--engine` (None: this process)."""
    ray_flags = {
        "--ray-address": args.ray_address,
        "--workers": args.workers,
        "--gpus-per-worker": args.gpus_per_worker,
    }
    if args.engine == "local":
        given = [flag for flag, value in ray_flags.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)} go with --engine ray")
        return None
    from .integrations.ray import RayEngine

    return RayEngine(
        job,
        workers=args.workers or 2,
        gpus_per_worker=args.gpus_per_worker or 0,
        address=args.ray_address,
        compile_cache=args.compile_cache,
    )


def _inspect(args) -> None:
    from pathlib import Path

    from .inspect import commands as C
    from .models.loading import load

    lm = load(args.model, args.weights)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.quiet
    what = args.what
    if what == "filters":
        info = C.filters(lm, out, args.layer)
    elif what == "maps":
        info = C.maps(lm, out, args.layer, args.data, args.index)
    elif what == "stats":
        info = C.stats(lm, out, args.data, args.n, progress)
    elif what == "topk":
        info = C.topk(lm, out, args.layer, args.unit, args.data, args.n, args.k, progress)
    elif what == "neighbours":
        info = C.neighbours(lm, out, args.layer, args.data, args.n, args.k, args.queries)
    else:
        info = C.embed(lm, out, args.layer, args.data, args.n, args.seed)
    pngs = info["png"] if isinstance(info["png"], list) else [info["png"]]
    print(f"inspect {what}: wrote {', '.join(pngs)} (numbers beside it as JSON)")


def _models(args) -> None:
    from . import weights as W
    from .models import ARCHS, DEFAULT_INPUT, build
    from .taps import layer_table

    present = W.list_weights()
    archs = [args.model] if args.model else list(ARCHS)
    for arch in archs:
        model = build(arch)
        shape = tuple(args.input) if args.input else DEFAULT_INPUT[arch]
        have = [e["name"] for e in present if e.get("arch") == arch and e.get("present")]
        if arch == "shapesnet":
            have.insert(0, "embedded (default)")
        print(
            f"{arch}  input {shape[0]}x{shape[1]}x{shape[2]}  weights: "
            f"{', '.join(have) or 'none (jaxviz weights list)'}"
        )
        if args.model or args.layers:
            rows = layer_table(model, None, shape)
            for r in rows:
                aliases = ", ".join(r["aliases"])
                print(
                    f"  {r['name']:<22} {r['kind']:<12} {'x'.join(map(str, r['shape'])):<14} "
                    f"{r['params']:>11,}  {aliases}"
                )
            names = [r["name"] for r in rows]
            leaves = [r for r in rows if not any(n.startswith(r["name"] + ".") for n in names)]
            print(f"  total params {sum(r['params'] for r in leaves):,}")


def _weights(args) -> None:
    from . import weights as W

    if args.action == "list":
        for e in W.list_weights():
            mark = "present" if e.get("present") else "-"
            print(f"{e['name']:<22} {e.get('arch', '?'):<8} {e.get('source', ''):<12} {mark}")
        print(f"(folder: {W.weights_dir()})")
    elif args.action == "fetch":
        for name in args.name:
            print(f"wrote {W.fetch(name, force=args.force)}")
    elif args.action == "port":
        print(f"wrote {W.port(args.file, args.arch, out=args.out, name=args.name)}")
    elif args.action == "verify":
        print(json.dumps(W.verify(args.name), indent=2, default=str))


def _predict(args) -> None:
    """The `--top` classes of each image as the model sees it (resized and cropped as `attribute` does)."""
    import jax
    import numpy as np

    from .batch import display_and_input, shorter_side_needed
    from .data.images import load_image
    from .models.loading import load

    if args.top < 1:
        raise ValueError(f"--top {args.top}: give at least 1")
    for path in args.images:  # every file checked before the model is loaded
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such image file")
    lm = load(args.model, args.weights)
    if args.top > len(lm.labels):
        raise ValueError(f"--top {args.top}: {lm.name} has only {len(lm.labels)} classes")
    fn = jax.jit(lambda x: jax.nn.softmax(lm.logits(x), -1))
    for path in args.images:
        _, x = display_and_input(load_image(path, shorter_side_needed(lm, None)), lm, None)
        p = np.asarray(fn(x[None]))[0]
        for rank, c in enumerate(np.argsort(-p, kind="stable")[: args.top], start=1):
            print(f"{path}\t{rank}\t{int(c)}\t{lm.labels.name(int(c))}\t{float(p[c]):.4f}")


def _bench(args) -> None:
    from .bench import run_configured

    result = run_configured(
        quick=args.quick,
        gpu=args.gpu_table,
        models=args.model,
        methods=args.method,
        batches=args.batch,
        dtypes=args.dtype,
        bundle=args.bundle,
        smoothgrad_n=args.smoothgrad_n,
        ig_steps=args.ig_steps,
        repeats=args.repeats,
        captum=False if args.no_captum else None,
        out=args.out,
        pass_images=args.pass_images,
        torch_threads=args.torch_threads,
        time_budget_s=args.time_budget,
        case_budget_s=args.case_budget,
        deviation=False if args.no_deviation else None,
        paired=args.paired,
        log=None if args.quiet else print,
    )
    print(result["markdown"])
    print(f"wrote {args.out}/bench.json and {args.out}/bench.md")


# Modules with a `register(subparsers)` that adds sub-commands whose `func(args)` calls the library.
_COMMAND_MODULES: list[str] = ["jaxviz.optvis.cli", "jaxviz.evaluation.cli"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="jaxviz", description="Explain convolutional networks with JAX/Flax.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="every attribution method on shapes images with the embedded model (offline)")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--n", type=int, default=8, help="number of images (default: 8)")
    p.add_argument("--seed", type=int, default=424_242, help="seed of the generated images")
    p.add_argument("--method", action="append", help="only this method (repeatable; default: all)")
    p.add_argument("--model", help="shapesnet (default, on shapes images) or lenet5 / lenet5_3x3 (on digits)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("attribute", help="attribution maps for many images, batched, sharded, resumable")
    p.add_argument("inputs", nargs="*", help="image files, folders, globs, or @list.txt files")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the job saved in RUN_DIR (no other argument needed)")
    p.add_argument("--model", help="architecture or weights name (default: the embedded shapesnet)")
    p.add_argument("--weights", help="weights name or .safetensors path")
    p.add_argument(
        "--method", action="append", help="method name, comma list, or 'all' (repeatable; default: saliency)"
    )
    p.add_argument(
        "--target",
        help="class index, name or WordNet id; topN; or a unit layer:channel[:y:x] (default: each image's top class)",
    )
    p.add_argument(
        "--layer",
        help="layer (module path or alias, e.g. layer4, features.28, relu5_3) for the CAM family "
        "(default: the model's CAM layer, else its last spatial layer)",
    )
    p.add_argument("--opt", action="append", metavar="NAME=VALUE", help="method option, e.g. n=25, steps=32")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--size",
        type=_size,
        help="input size for models without a fixed crop (default: the model's), "
        "or 'original': each image's own size, rounded to a multiple of 32",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of sample-based methods (SmoothGrad, IG noise)")
    p.add_argument(
        "--outputs",
        default="npy,png",
        help="comma list of npy, png (one file per image and method) and store (one array chunk per "
        "batch: for millions of maps); default npy,png",
    )
    p.add_argument("--store-dtype", default="float32", choices=["float32", "float16"], help="dtype of stored maps")
    p.add_argument("--store-downsample", type=int, default=1, help="average-pool stored maps by this factor")
    p.add_argument("--devices", help="'all' or N: shard each batch over local devices (default: one device)")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="compute dtype of the model (bfloat16: faster on GPU/TPU, maps differ slightly)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="multi-host: call jax.distributed.initialize() and take this process's share of the images",
    )
    p.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="with --distributed: process 0's address (default: detected from the cluster's environment)",
    )
    p.add_argument("--num-processes", type=int, metavar="N", help="with --distributed: how many processes run the job")
    p.add_argument("--process-id", type=int, metavar="I", help="with --distributed: this process's index, 0..N-1")
    p.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="where batches are computed: this process (default) or a pool of Ray actors "
        "(pip install 'jaxviz-cnn[ray]'); this process writes the run folder either way",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --engine ray: the cluster (auto, ray://HOST:10001; default: a new local Ray instance)",
    )
    p.add_argument("--workers", type=int, metavar="N", help="with --engine ray: actors, each one model (default: 2)")
    p.add_argument(
        "--gpus-per-worker",
        type=float,
        metavar="G",
        help="with --engine ray: GPUs per actor (default 0: CPU actors; more than 1 shards each batch)",
    )
    p.add_argument(
        "--compile-cache",
        default=None,
        metavar="DIR|off",
        help="persistent XLA compilation cache (default: ~/.cache/jaxviz/xla, or $JAXVIZ_CACHE_DIR/xla)",
    )
    p.add_argument(
        "--memory-budget",
        metavar="SIZE",
        help="bytes one forward/backward pass may hold, e.g. 6G (default: a quarter of this machine's "
        "memory); sets each method's chunk and, if need be, lowers the batch size",
    )
    p.add_argument("--retry-failed", action="store_true", help="try again images that failed in an earlier run")
    p.add_argument(
        "--allow-failures",
        action="store_true",
        help="exit 0 even when some images failed (they are logged in errors.jsonl); default: exit 1",
    )
    p.add_argument("--out", default="attributions", help="output folder; a rerun resumes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_attribute)

    p = sub.add_parser("inspect", help="filters, feature maps, activation stats, top-k patches, neighbours, t-SNE")
    p.add_argument("what", choices=["filters", "maps", "stats", "topk", "neighbours", "embed"])
    p.add_argument(
        "--model",
        help="architecture or weights name (default: the embedded shapesnet; "
        "lenet5 / lenet5_3x3 use the shipped digits weights)",
    )
    p.add_argument("--weights", help="weights name or .safetensors path")
    p.add_argument("--layer", help="layer name or alias (default: first conv for filters, last activation otherwise)")
    p.add_argument("--unit", type=int, action="append", help="channel for topk (repeatable; default: 0..7)")
    p.add_argument("--data", help="shapes, digits, a folder, a glob or @list.txt (default: the model's own data)")
    p.add_argument("--n", type=int, help="number of dataset images")
    p.add_argument("--k", type=int, default=8, help="top-k images / neighbours (default: 8)")
    p.add_argument("--queries", type=int, default=4, help="neighbours: query images (default: 4)")
    p.add_argument("--index", type=int, default=0, help="maps: which dataset image")
    p.add_argument("--seed", type=int, default=0, help="t-SNE seed")
    p.add_argument("--out", default="inspect", help="output folder (default: inspect)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("models", help="models, their layers with output shapes, and which weights are present")
    p.add_argument("--model", help="one architecture, with its layer table")
    p.add_argument("--layers", action="store_true", help="print every model's layer table")
    p.add_argument("--input", type=int, nargs=3, metavar=("H", "W", "C"), help="input shape for the table")
    p.set_defaults(func=_models)

    p = sub.add_parser("weights", help="list, fetch, port or verify weight files")
    wsub = p.add_subparsers(dest="action", required=True)
    wsub.add_parser("list", help="known weights and which are present")
    q = wsub.add_parser("fetch", help="download known weights (needs a network) and port them")
    q.add_argument("name", nargs="+", help="one or more names of `jaxviz weights list`")
    q.add_argument("--force", action="store_true", help="download again even if present")
    q = wsub.add_parser(
        "port",
        help="convert a file you have (torchvision .pth, safetensors, Keras .h5, "
        ".weights.h5 or .keras, a KerasHub preset folder)",
    )
    q.add_argument("file")
    q.add_argument(
        "--arch",
        required=True,
        help="architecture the file holds: vgg16, vgg19, resnet50, squeezenet1_0, ... (`jaxviz models` lists them)",
    )
    q.add_argument("--name", help="name of the ported weights (default: from the file name)")
    q.add_argument("--out", help="output path (default: the weights folder)")
    q = wsub.add_parser("verify", help="checksum, shapes and forward-pass fingerprint")
    q.add_argument("name", help="weights name or .safetensors path")
    p.set_defaults(func=_weights)

    p = sub.add_parser("predict", help="the top classes and probabilities of images (e.g. a class model, reclassified)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--model", help="architecture or weights name (default: the embedded shapesnet)")
    p.add_argument("--weights", help="weights name or .safetensors path")
    p.add_argument(
        "--top",
        type=int,
        default=3,
        help="classes per image (default: 3); one line each: IMAGE, rank, class index, class name, probability (tabs)",
    )
    p.set_defaults(func=_predict)

    p = sub.add_parser("bench", help="images/s per method (random weights), beside Captum when it is installed")
    p.add_argument(
        "--quick",
        action="store_true",
        help="small CPU run: shapesnet batch 8, SmoothGrad n=8, IG steps=8, plus VGG16 saliency at batch 1",
    )
    p.add_argument(
        "--model",
        action="append",
        metavar="NAME[:SIZE]",
        help="model and input size, e.g. vgg16:224 (repeatable; default: shapesnet:64 and vgg16:224)",
    )
    p.add_argument(
        "--method",
        action="append",
        help="method or comma list (default: saliency, guided_backprop, "
        "grad_cam, smoothgrad, integrated_gradients, occlusion)",
    )
    p.add_argument(
        "--gpu-table",
        action="store_true",
        help="the whole GPU table: VGG16 224 and shapesnet, every method and the seed-002 bundle, "
        "batches 64 8 32 1 (largest first), bf16 rows; cut to --time-budget",
    )
    p.add_argument(
        "--bundle",
        action="store_true",
        help="add bundle002: seed 002's five methods fused (one forward, three backward passes)",
    )
    p.add_argument("--batch", type=int, nargs="+", help="batch sizes (default: 1 8 32)")
    p.add_argument(
        "--dtype", nargs="+", choices=["float32", "bfloat16", "float16"], help="compute dtypes (default: float32)"
    )
    p.add_argument("--time-budget", type=float, metavar="S", help="stop starting new cases after S seconds")
    p.add_argument("--case-budget", type=float, metavar="S", help="skip a case predicted to take longer than S")
    p.add_argument("--no-deviation", action="store_true", help="skip measuring bf16 deviation from float32")
    p.add_argument("--smoothgrad-n", type=int, help="SmoothGrad samples (default 50; 8 with --quick)")
    p.add_argument("--ig-steps", type=int, help="Integrated Gradients steps (default 50; 8 with --quick)")
    p.add_argument("--repeats", type=int, help="timed calls per case (default 5; 3 with --quick)")
    p.add_argument(
        "--paired",
        type=int,
        metavar="N",
        help="after timing both sides, N rounds of one jaxviz and "
        "one Captum call back to back; their median time ratio is the 'paired speed-up' (default 0)",
    )
    p.add_argument("--pass-images", type=int, default=64, help="images per forward/backward pass (default 64)")
    p.add_argument("--no-captum", action="store_true", help="skip the Captum comparison")
    p.add_argument("--torch-threads", type=int, help="torch.set_num_threads for Captum (default: torch's own)")
    p.add_argument("--out", default="bench", help="output folder for bench.json and bench.md (default: bench)")
    p.add_argument("--quiet", action="store_true", help="no line per finished case")
    p.set_defaults(func=_bench)

    for module in _COMMAND_MODULES:  # larger command groups register their own sub-parsers
        importlib.import_module(module).register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .core import LayerError
    from .data.images import ImageError

    expected = (ValueError, LayerError, ImageError, FileNotFoundError, ImportError)
    try:
        return args.func(args) or 0
    except expected as e:  # user errors: one clear line, no traceback
        print(f"jaxviz {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"jaxviz {args.command}: interrupted; finished work is kept (run the same command again to resume)",
            file=sys.stderr,
        )
        return 130
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = os.path.dirname(os.path.abspath(e.filename)) if e.filename else "."
        free = shutil.disk_usage(where).free if os.path.isdir(where) else 0
        print(
            f"jaxviz {args.command}: error: no space left writing {e.filename} ({free / 2**20:.0f} MiB free "
            "there); free some space and run the same command again: finished work is kept and the run resumes",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
