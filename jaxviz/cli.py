"""Command line: argument parsing only; every command calls into the library."""

from __future__ import annotations

import argparse
import json
import sys
import time


def _demo(args) -> None:
    from .demo import run_demo

    t0 = time.perf_counter()
    summary = run_demo(args.out, n=args.n, seed=args.seed, methods=args.method)
    print(f"demo: {summary['images']} images x {len(summary['methods'])} methods with {summary['model']} "
          f"(accuracy on these images {summary['accuracy']:.0%}) in {time.perf_counter() - t0:.1f}s")
    print(f"wrote {args.out}/ (comparison figure: {summary['comparison']})")


def _models(args) -> None:
    from . import weights as W
    from .models import ARCHS, DEFAULT_INPUT, build, layer_table

    present = W.list_weights()
    archs = [args.model] if args.model else list(ARCHS)
    for arch in archs:
        model = build(arch)
        shape = tuple(args.input) if args.input else DEFAULT_INPUT[arch]
        have = [e["name"] for e in present if e.get("arch") == arch and e.get("present")]
        if arch == "shapesnet":
            have.insert(0, "embedded (default)")
        print(f"{arch}  input {shape[0]}x{shape[1]}x{shape[2]}  weights: {', '.join(have) or 'none (jaxviz weights list)'}")
        if args.model or args.layers:
            rows = layer_table(model, None, shape)
            for r in rows:
                aliases = ", ".join(r["aliases"])
                print(f"  {r['name']:<10} {r['kind']:<12} {'x'.join(map(str, r['shape'])):<14} "
                      f"{r['params']:>11,}  {aliases}")
            print(f"  total params {sum(r['params'] for r in rows):,}")


def _weights(args) -> None:
    from . import weights as W

    if args.action == "list":
        for e in W.list_weights():
            mark = "present" if e.get("present") else "-"
            print(f"{e['name']:<22} {e.get('arch', '?'):<8} {e.get('source', ''):<12} {mark}")
        print(f"(folder: {W.weights_dir()})")
    elif args.action == "fetch":
        print(f"wrote {W.fetch(args.name, force=args.force)}")
    elif args.action == "port":
        print(f"wrote {W.port(args.file, args.arch, out=args.out, name=args.name)}")
    elif args.action == "verify":
        print(json.dumps(W.verify(args.name), indent=2, default=str))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="jaxviz", description="Explain convolutional networks with JAX/Flax.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="every attribution method on shapes images with the embedded model (offline)")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--n", type=int, default=8, help="number of images (default: 8)")
    p.add_argument("--seed", type=int, default=424_242, help="seed of the generated images")
    p.add_argument("--method", action="append", help="only this method (repeatable; default: all)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("models", help="models, their layers with output shapes, and which weights are present")
    p.add_argument("--model", help="one architecture, with its layer table")
    p.add_argument("--layers", action="store_true", help="print every model's layer table")
    p.add_argument("--input", type=int, nargs=3, metavar=("H", "W", "C"), help="input shape for the table")
    p.set_defaults(func=_models)

    p = sub.add_parser("weights", help="list, fetch, port or verify weight files")
    wsub = p.add_subparsers(dest="action", required=True)
    wsub.add_parser("list", help="known weights and which are present")
    q = wsub.add_parser("fetch", help="download known weights (needs a network) and port them")
    q.add_argument("name")
    q.add_argument("--force", action="store_true", help="download again even if present")
    q = wsub.add_parser("port", help="convert a file you have (torchvision .pth, safetensors, Keras .h5)")
    q.add_argument("file")
    q.add_argument("--arch", required=True, help="vgg16 | vgg19")
    q.add_argument("--name", help="name of the ported weights (default: from the file name)")
    q.add_argument("--out", help="output path (default: the weights folder)")
    q = wsub.add_parser("verify", help="checksum, shapes and forward-pass fingerprint")
    q.add_argument("name", help="weights name or .safetensors path")
    p.set_defaults(func=_weights)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.images import ImageError
    from .models.base import LayerError

    expected = (ValueError, LayerError, ImageError, FileNotFoundError)
    try:
        args.func(args)
    except expected as e:  # user errors: one clear line, no traceback
        print(f"jaxviz {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
