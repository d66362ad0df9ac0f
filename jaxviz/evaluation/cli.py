"""Sub-commands `jaxviz evaluate`, `jaxviz experiment run` and `jaxviz report` (argument parsing only).

jaxviz experiment run experiments/seed002.py --out runs/seed002
jaxviz experiment run experiments/seed002_coco.py --set coco=/data/coco   # seed 002's protocol
jaxviz report runs/seed002
jaxviz report out/ --compare out_bf16/                   # explorer of `jaxviz attribute` runs
jaxviz evaluate out/ --masks masks/                      # maps of `jaxviz attribute --out out/`
jaxviz evaluate out/ --coco instances_val2017.json --preprocessing torchvision
jaxviz evaluate --model shapesnet --model minivgg --n 50 --out runs/quick   # a model on data
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(subparsers) -> None:
    """Add `evaluate`, `experiment` and `report` to the `jaxviz` parser's sub-commands."""
    from ..attribution.cam import CAM_NORMS
    from ..metrics import CHANNELS
    from .datasets import ORIGINAL, TARGET_RULES
    from .experiment import SEED002_METHODS

    p = subparsers.add_parser(
        "evaluate",
        help="score attribution maps against object masks (energy concentration, pointing game)",
        description="Score maps against ground-truth masks. Either the maps of a `jaxviz attribute` run "
        "(RUN_OUT with --masks or --coco), or a model on data (--model, run as an experiment).",
    )
    p.add_argument("run_out", nargs="?", help="the --out folder of `jaxviz attribute` (holds results.jsonl)")
    p.add_argument("--masks", help="folder of mask PNGs named like the run's outputs (<stem>.png)")
    p.add_argument("--coco", help="COCO annotation file (for a run: images matched by file name)")
    p.add_argument(
        "--preprocessing",
        default="stretch",
        help="geometry the run used: stretch (default; centered/unit models) or torchvision/caffe",
    )
    p.add_argument("--dilation", type=float, default=0.2, help="mask dilation, fraction of object size (0.2)")
    p.add_argument("--tolerance", type=float, default=15, help="pointing-game tolerance in pixels (15)")
    p.add_argument(
        "--channels",
        choices=CHANNELS,
        default="energy",
        help="a pixel's energy: 'energy' = Σ_c I_c² (seed 002's summed squares, default) or "
        "'sum' = (Σ_c I_c)² (signed channels summed first)",
    )
    p.add_argument(
        "--targets",
        choices=TARGET_RULES,
        default="category",
        help="ImageNet target of a COCO object (with --model): 'category' = the one class named for "
        "it (seed 002, default) or 'best' = the best-scoring class that depicts it",
    )
    p.add_argument(
        "--class-table",
        help="category → class table for --targets category (.tsv or .json; "
        "default: the class column of coco_to_imagenet.tsv)",
    )
    p.add_argument(
        "--cam-norm",
        choices=CAM_NORMS,
        help="Grad-CAM scaling (with --model): 'max' (default) or 'minmax' (seed 002: − min, then ÷ max)",
    )
    p.add_argument("--model", action="append", help="model(s) to evaluate on data (repeat the flag)")
    p.add_argument("--methods", nargs="+", default=list(SEED002_METHODS), help="methods (with --model)")
    p.add_argument("--sizes", nargs="+", default=[ORIGINAL], help="'original' and/or ints (with --model)")
    p.add_argument("--images", help="COCO images folder (with --model and --coco)")
    p.add_argument("--categories", nargs="+", help="COCO categories to use (with --model and --coco)")
    p.add_argument("--per-category", type=int, help="images per COCO category (with --model and --coco)")
    p.add_argument("--n", type=int, default=100, help="shapes benchmark images (with --model, no --coco)")
    p.add_argument("--size", type=int, default=64, help="shapes benchmark image size (with --model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run folder (with --model; default runs/evaluate)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser("experiment", help="run a study from a config (seed 002's, or your copy)")
    sub = p.add_subparsers(dest="experiment_command", required=True)
    r = sub.add_parser(
        "run",
        help="run or resume an experiment config (.py with get_config(), .json, .toml)",
        description="Run (or resume: finished records are skipped) an experiment config; "
        "writes records.jsonl, tables, charts and report.html into --out.",
    )
    r.add_argument("config", help="config file, e.g. experiments/seed002.py")
    r.add_argument("--out", help="run folder (default runs/<config name>)")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable): dotted keys reach into sections "
        "(data.per_category=5), values are JSON where they parse (sizes='[\"original\", 64]'), "
        "else strings; a .py config may read its own keys (seed002_coco.py: coco=DIR)",
    )
    r.add_argument("--no-report", action="store_true", help="skip tables, charts and the HTML report")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=_experiment_run)

    p = subparsers.add_parser(
        "report",
        help="browse an attribution run (a static explorer site), or rebuild an experiment's report.html",
        description="On a `jaxviz attribute` run folder: write a static explorer (images × methods, filters, "
        "detail view; opens from disk) to --out, default RUN_DIR/explorer; a rebuild draws only new "
        "pages. On an experiment run folder: rebuild its tables, charts and report.html.",
    )
    p.add_argument("run_dir", help="an attribution run's --out folder, or an experiment's")
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="RUN_DIR",
        help="another attribution run to show beside it, matched by image (repeatable)",
    )
    p.add_argument("--out", help="explorer folder (default RUN_DIR/explorer)")
    p.add_argument("--methods", help="comma list of the method columns (default: all of each run)")
    p.add_argument("--thumb", type=int, default=64, help="grid thumbnail side in pixels (64)")
    p.add_argument("--detail", type=int, default=224, help="largest detail-view tile side in pixels (224)")
    p.add_argument("--workers", type=int, help="processes drawing thumbnails (default: the CPU count)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_report)


def _int_or_original(text: str):
    return text if text == "original" else int(text)


def _evaluate(args: argparse.Namespace) -> None:
    if args.run_out is not None:
        if args.model:
            raise ValueError("give either RUN_OUT (maps of `jaxviz attribute`) or --model, not both")
        from .attribution_run import evaluate_attribution_run
        from .summary import format_markdown

        if args.cam_norm or args.class_table or args.targets != "category":
            raise ValueError(
                "--targets, --class-table and --cam-norm choose how maps are made: they go with --model "
                "(a run's maps and targets are already made)"
            )
        result = evaluate_attribution_run(
            args.run_out,
            masks=args.masks,
            coco=args.coco,
            dilation=args.dilation,
            tolerance=args.tolerance,
            preprocessing=args.preprocessing,
            channels=args.channels,
            progress=not args.quiet,
        )
        for image, method, reason in result["skipped"][:20]:
            print(f"skipped {image} ({method}): {reason}")
        if len(result["skipped"]) > 20:
            print(f"... and {len(result['skipped']) - 20} more skipped")
        if not result["records"]:
            raise ValueError(f"no map of {args.run_out} had a mask: check --masks/--coco")
        print(format_markdown(result["tables"]["method_model"]))
        print(
            f"wrote {Path(args.run_out) / 'evaluation.jsonl'} ({len(result['records'])} records) "
            f"and {Path(args.run_out) / 'evaluation'}/"
        )
        return
    if not args.model:
        raise ValueError("give RUN_OUT (a `jaxviz attribute` folder) or --model NAME to evaluate a model on data")
    if args.coco:
        if not args.images:
            raise ValueError("--coco with --model needs --images FOLDER (the COCO images)")
        data = {
            "source": "coco",
            "images": args.images,
            "annotations": args.coco,
            "seed": args.seed,
            "categories": args.categories,
            "per_category": args.per_category,
        }
    else:
        data = {"source": "shapes", "n": args.n, "size": args.size, "seed": args.seed}
    config = {
        "name": "evaluate",
        "models": args.model,
        "methods": args.methods,
        "data": data,
        "sizes": [_int_or_original(s) for s in args.sizes],
        "dilation": args.dilation,
        "pointing_tolerance": args.tolerance,
        "seed": args.seed,
        "channels": args.channels,
        "targets": args.targets,
        "class_table": args.class_table,
        "method_options": {"cam_norm": args.cam_norm} if args.cam_norm else {},
    }
    _run(config, args.out or "runs/evaluate", report=True, quiet=args.quiet)


def _experiment_run(args: argparse.Namespace) -> None:
    from .experiment import load_config, parse_overrides

    config = load_config(args.config, overrides=parse_overrides(args.set))
    _run(config, args.out or str(Path("runs") / config["name"]), report=not args.no_report, quiet=args.quiet)


def _run(config: dict, out: str, *, report: bool, quiet: bool) -> None:
    from .experiment import read_records, run_experiment
    from .summary import format_markdown, summarize

    summary = run_experiment(config, out, progress=not quiet, report=report)
    print(format_markdown(summarize(read_records(out), ("method",))))
    print(
        f"{summary['records_written']} new records ({summary['records_total']} in all) in {summary['seconds']} s; "
        f"run folder {out}" + (f", report {Path(out) / 'report.html'}" if report else "")
    )


def _report(args: argparse.Namespace) -> None:
    from ..ledger import RESULTS_GLOB

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} not found")
    if not any(run_dir.glob(RESULTS_GLOB)) and (run_dir / "records.jsonl").is_file():
        from .report import write_report
        from .summary import write_summaries

        if args.compare:
            raise ValueError(f"--compare works on attribution runs; {run_dir} is an experiment run")
        write_summaries(run_dir)
        print(f"wrote {write_report(run_dir)}")
        return
    from ..explorer import build_explorer

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    index = build_explorer(
        [run_dir, *args.compare],
        args.out,
        methods=methods,
        thumb=args.thumb,
        detail=args.detail,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(f"wrote {index} (open it in a browser; the folder can be copied or served as it is)")
