"""Throughput benchmark: images per second per method, beside Captum on the same weights.

    result = run(plan(), out="bench")          # or run(quick_plan(), repeats=3)
    print(result["markdown"])

Each case (model, input size, method, batch) runs our `engine.compiled` method once to compile
(the first call's time minus the median call is reported as "compile s"), then `repeats` timed
calls with `block_until_ready`; the median gives images/s. When torch and Captum import, the same
batch runs through Captum's equivalent on the `torch_peer.to_torch` twin of the model in this
process (torch's default thread count, recorded in the output), timed the same way.

Weights are random (`random_params`): the cost of a forward/backward pass does not depend on the
values. The methods' sample counts and occlusion windows are the options recorded per row.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .models import DEFAULT_INPUT, build
from .models.base import SequentialNet

DEFAULT_MODELS: tuple[tuple[str, int], ...] = (("shapesnet", 64), ("vgg16", 224))
DEFAULT_METHODS = ("saliency", "guided_backprop", "grad_cam", "smoothgrad", "integrated_gradients", "occlusion")
DEFAULT_BATCHES = (1, 8, 32)
SMOOTHGRAD_LEVEL = 0.15


@dataclass(frozen=True)
class Case:
    """One measurement: `method` on `model` at `size`x`size` with `batch` images per call."""

    model: str
    size: int
    method: str
    batch: int


def plan(models: Iterable[tuple[str, int | None]] = DEFAULT_MODELS, methods: Sequence[str] = DEFAULT_METHODS,
         batches: Sequence[int] = DEFAULT_BATCHES) -> list[Case]:
    """Every (model, method, batch) combination; a size of None means the model's usual input."""
    cases = []
    for name, size in models:
        size = size or DEFAULT_INPUT[name][0]
        cases += [Case(name, size, m, b) for m in methods for b in batches]
    return cases


def quick_plan() -> list[Case]:
    """A CPU-sized run: ShapesNet 64x64 at batch 8 for every default method, VGG16 saliency at batch 1.

    Meant for `run(quick_plan(), smoothgrad_n=8, ig_steps=8, repeats=3)` (what `jaxviz bench --quick` does).
    """
    return plan((("shapesnet", 64),), DEFAULT_METHODS, (8,)) + [Case("vgg16", 224, "saliency", 1)]


def random_params(model: SequentialNet, input_shape: tuple[int, int, int], seed: int = 0, bias_std: float = 0.1):
    """Random params from the shapes alone (no compiled or eager `init`, fast even for VGG16).

    Kernels are He-normal (std √(2/fan_in), so activations keep their scale through a deep ReLU
    net), biases N(0, `bias_std`²). `input_shape` is `(H, W, C)`.
    """
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape))))["params"]
    rng = np.random.default_rng(seed)

    def draw(path, s):
        z = rng.standard_normal(s.shape, dtype=np.float32)
        if getattr(path[-1], "key", None) == "kernel":
            return jnp.asarray(z * np.float32(np.sqrt(2.0 / np.prod(s.shape[:-1]))))
        return jnp.asarray(z * np.float32(bias_std))

    return jax.tree_util.tree_map_with_path(draw, shapes)


def method_options(method: str, size: int, batch: int, *, smoothgrad_n: int, ig_steps: int,
                   pass_images: int) -> dict:
    """Our options for a case. `pass_images` caps images per forward/backward pass (memory):
    sample-based methods and occlusion run `max(1, pass_images // batch)` samples or windows at once."""
    chunk = max(1, pass_images // batch)
    if method in ("smoothgrad", "smoothgrad_squared", "vargrad"):
        return {"n": smoothgrad_n, "level": SMOOTHGRAD_LEVEL, "chunk": min(chunk, smoothgrad_n)}
    if method == "integrated_gradients":
        return {"steps": ig_steps, "chunk": min(chunk, ig_steps)}
    if method == "occlusion":
        patch = max(2, size // 8)  # 8x8 at 64, 28x28 at 224: 15x15 = 225 windows either way
        return {"patch": patch, "stride": max(1, patch // 2), "chunk": chunk}
    return {}


# --- Captum equivalents ------------------------------------------------------------------------

CAPTUM_METHODS = ("saliency", "gradient_x_input", "guided_backprop", "deconvnet", "grad_cam", "smoothgrad",
                  "integrated_gradients", "occlusion")


def captum_method(method: str, model: SequentialNet, peer, options: dict) -> Callable | None:
    """`fn(x NCHW tensor, targets list) -> tensor`: Captum's counterpart of our `method` with the
    same options, or None when Captum has none. Grad-CAM adds our bilinear upsampling, ReLU and
    normalization (torch ops) so both sides produce the same map."""
    import torch
    from captum import attr as ca

    from .attribution.cam import last_conv_layer

    if method == "saliency":
        sal = ca.Saliency(peer)
        return lambda x, t: sal.attribute(x, target=t, abs=False)
    if method == "gradient_x_input":
        ixg = ca.InputXGradient(peer)
        return lambda x, t: ixg.attribute(x, target=t)
    if method == "guided_backprop":
        gb = ca.GuidedBackprop(peer)
        return lambda x, t: gb.attribute(x, target=t)
    if method == "deconvnet":
        dc = ca.Deconvolution(peer)
        return lambda x, t: dc.attribute(x, target=t)
    if method == "grad_cam":
        gc = ca.LayerGradCam(peer, peer.layer(options.get("layer") or last_conv_layer(model)))

        def grad_cam(x, t):
            m = gc.attribute(x, target=t, relu_attributions=False)
            m = torch.relu(ca.LayerAttribution.interpolate(m, tuple(x.shape[2:]), interpolate_mode="bilinear"))
            return m / (m.amax(dim=(1, 2, 3), keepdim=True) + 1e-12)

        return grad_cam
    if method == "smoothgrad":
        nt = ca.NoiseTunnel(ca.Saliency(peer))

        def smoothgrad(x, t):  # Captum takes one σ per input tensor: the batch's mean value range
            span = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).mean().item()
            return nt.attribute(x, nt_type="smoothgrad", nt_samples=options["n"],
                                nt_samples_batch_size=options["chunk"], stdevs=options["level"] * span,
                                target=t, abs=False)

        return smoothgrad
    if method == "integrated_gradients":
        ig = ca.IntegratedGradients(peer)
        return lambda x, t: ig.attribute(x, baselines=0.0, target=t, n_steps=options["steps"],
                                         method="riemann_trapezoid",
                                         internal_batch_size=options["chunk"] * x.shape[0])
    if method == "occlusion":
        occ = ca.Occlusion(lambda z: torch.softmax(peer(z), dim=-1))
        p, s = options["patch"], options["stride"]
        return lambda x, t: occ.attribute(x, sliding_window_shapes=(x.shape[1], p, p), strides=(x.shape[1], s, s),
                                          baselines=0.0, target=t, perturbations_per_eval=options["chunk"])
    return None


# --- timing ------------------------------------------------------------------------------------

def _time(fn: Callable[[], object], repeats: int, sync: Callable[[object], object]) -> tuple[float, list[float]]:
    """First call's seconds and the seconds of `repeats` further calls, each synchronised by `sync`."""
    t0 = time.perf_counter()
    sync(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - t0)
    return first, times


def _machine(torch_info: dict | None) -> dict:
    dev = jax.devices()[0]
    info = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "device": dev.device_kind,
        "device_count": jax.device_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "weights": "random (He-normal); throughput does not depend on the values",
    }
    if torch_info:
        info.update(torch_info)
    return info


def _torch_info() -> dict | None:
    try:
        import captum
        import torch
    except ImportError:
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"torch": torch.__version__, "captum": captum.__version__, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(), "torch_device": device}


def run(cases: Sequence[Case], *, smoothgrad_n: int = 50, ig_steps: int = 50, repeats: int = 5,
        captum: bool | None = None, out: str | Path | None = "bench", pass_images: int = 64, seed: int = 0,
        torch_threads: int | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Time every case; write `bench.json` and `bench.md` under `out` (None: write nothing).

    Args:
      cases: from `plan` / `quick_plan` or hand-made `Case`s.
      smoothgrad_n, ig_steps: samples of SmoothGrad and path points of Integrated Gradients.
      repeats: timed calls after the warm-up; images/s = batch / median seconds.
      captum: also time Captum on the torch twin; None = when torch and captum import.
      pass_images: images per forward/backward pass for sample and window methods (memory bound).
      torch_threads: `torch.set_num_threads` for the Captum side during the run (None: torch's
        default, one per core); recorded in the output either way.
      log: called with one line per finished case (e.g. `print`).

    Returns `{"machine": {...}, "config": {...}, "rows": [...], "markdown": str}`; a row has
    model, size, method, batch, options, jaxviz_ips, jaxviz_s (median), jaxviz_best_s, compile_s,
    captum_ips, captum_s, captum_best_s, speedup, device, and `error` / `captum_error` when a side
    failed (the run goes on). The load average before and after is in `machine`: other work on the
    machine (a training job, a test run) slows both sides, torch's OpenMP threads far more.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    from .attribution import METHODS
    from .attribution.engine import compiled

    for case in cases:
        if case.method not in METHODS:
            raise ValueError(f"unknown method {case.method!r}; known: {', '.join(METHODS)}")
        if case.model not in DEFAULT_INPUT:
            raise ValueError(f"unknown model {case.model!r}; known: {', '.join(DEFAULT_INPUT)}")
        if case.batch < 1 or case.size < 1:
            raise ValueError(f"batch and size must be >= 1: {case}")

    tinfo = _torch_info()
    if captum is None:
        captum = tinfo is not None
    elif captum and tinfo is None:
        raise ImportError("the Captum comparison needs torch and captum: pip install 'jaxviz-cnn[torch]' captum")
    if captum and torch_threads is not None:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(torch_threads)
        try:
            return run(cases, smoothgrad_n=smoothgrad_n, ig_steps=ig_steps, repeats=repeats, captum=True, out=out,
                       pass_images=pass_images, seed=seed, torch_threads=None, log=log)
        finally:
            torch.set_num_threads(before)
    machine = _machine(tinfo if captum else None)
    device = machine["device"]
    rows, models, peers = [], {}, {}
    key = jax.random.key(seed)
    for case in cases:
        shape = (case.size, case.size, DEFAULT_INPUT[case.model][2])
        if case.model not in models:
            model = build(case.model)
            models[case.model] = (model, random_params(model, DEFAULT_INPUT[case.model], seed))
        model, params = models[case.model]
        opts = method_options(case.method, case.size, case.batch, smoothgrad_n=smoothgrad_n, ig_steps=ig_steps,
                              pass_images=pass_images)
        rng = np.random.default_rng([seed, case.batch, case.size])
        x_np = rng.standard_normal((case.batch, *shape), dtype=np.float32)
        targets = (np.arange(case.batch) % model.num_classes).astype(np.int32)
        row = {**asdict(case), "options": opts, "jaxviz_ips": None, "jaxviz_s": None, "compile_s": None,
               "captum_ips": None, "captum_s": None, "speedup": None, "device": device}
        try:
            fn = compiled(case.method, model, **opts)
            x = jax.device_put(x_np)
            first, times = _time(lambda: fn(params, x, targets, key=key), repeats, jax.block_until_ready)
            med = statistics.median(times)
            row.update(jaxviz_s=med, jaxviz_best_s=min(times), jaxviz_ips=case.batch / med,
                       compile_s=max(first - med, 0.0))
        except Exception as e:  # noqa: BLE001 - one failing case (e.g. out of memory) must not end the run
            row["error"] = f"{type(e).__name__}: {e}"
        if captum:
            _run_captum(case, model, params, opts, x_np, targets, repeats, peers, row, tinfo["torch_device"])
        if row["jaxviz_ips"] and row["captum_ips"]:
            row["speedup"] = row["jaxviz_ips"] / row["captum_ips"]
        rows.append(row)
        if log:
            log(_row_line(row))
    machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    config = {"smoothgrad_n": smoothgrad_n, "ig_steps": ig_steps, "repeats": repeats, "pass_images": pass_images,
              "seed": seed, "captum": bool(captum),
              "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    result = {"machine": machine, "config": config, "rows": rows}
    result["markdown"] = markdown(result)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=2))
        (out / "bench.md").write_text(result["markdown"])
    return result


def run_configured(*, quick: bool = False, models: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                   batches: Sequence[int] | None = None, smoothgrad_n: int | None = None, ig_steps: int | None = None,
                   repeats: int | None = None, **kwargs) -> dict:
    """`run` from command-line style settings (what `jaxviz bench` calls).

    `quick` runs `quick_plan()` with SmoothGrad n=8, IG steps=8, 3 repeats unless given. Otherwise
    `models` are "name" or "name:size" strings (comma lists allowed), `methods` names (comma lists
    allowed), `batches` ints; None means the defaults (SmoothGrad n=50, IG steps=50, 5 repeats).
    Other keywords go to `run`.
    """
    small = 8 if quick else 50
    if quick:
        cases = quick_plan()
    else:
        pairs = [_model_size(m) for item in models or [] for m in item.split(",") if m] or DEFAULT_MODELS
        names = [m for item in methods or [] for m in item.split(",") if m] or DEFAULT_METHODS
        cases = plan(pairs, names, batches or DEFAULT_BATCHES)
    return run(cases, smoothgrad_n=smoothgrad_n or small, ig_steps=ig_steps or small,
               repeats=repeats or (3 if quick else 5), **kwargs)


def _model_size(text: str) -> tuple[str, int | None]:
    name, _, size = text.partition(":")
    if name not in DEFAULT_INPUT:
        raise ValueError(f"unknown model {name!r} for bench; known: {', '.join(DEFAULT_INPUT)}")
    if size and not size.isdigit():
        raise ValueError(f"bench model {text!r}: write NAME or NAME:SIZE, e.g. vgg16:224")
    return name, int(size) if size else None


def _run_captum(case, model, params, opts, x_np, targets, repeats, peers, row, device):
    import torch

    from .torch_peer import nhwc_to_nchw, to_torch

    try:
        if case.model not in peers:
            peers[case.model] = to_torch(model, params, device=device)
        peer = peers[case.model]
        fn = captum_method(case.method, model, peer, opts)
        if fn is None:
            row["captum_error"] = f"no Captum equivalent of {case.method}"
            return
        xt = nhwc_to_nchw(x_np, device=device)
        t = targets.tolist()

        def sync(r):
            if device == "cuda":
                torch.cuda.synchronize()
            return r

        _, times = _time(lambda: fn(xt, t), repeats, sync)
        med = statistics.median(times)
        row.update(captum_s=med, captum_best_s=min(times), captum_ips=case.batch / med)
    except Exception as e:  # noqa: BLE001
        row["captum_error"] = f"{type(e).__name__}: {e}"


def _fmt(v, digits=3) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}g}" if abs(v) < 10 ** digits else f"{v:.0f}"


def _row_line(r: dict) -> str:
    err = f"  error: {r['error']}" if r.get("error") else ""
    return (f"{r['model']} {r['size']} {r['method']} batch {r['batch']}: jaxviz {_fmt(r['jaxviz_ips'])} img/s, "
            f"captum {_fmt(r['captum_ips'])} img/s, compile {_fmt(r['compile_s'])} s{err}")


def markdown(result: dict) -> str:
    """The result as a Markdown note (machine, settings) and table."""
    m, c = result["machine"], result["config"]
    lines = ["# jaxviz benchmark", "",
             f"- machine: {m['cpu_count']} CPUs ({m['processor']}), {m['platform']}; load average at start "
             f"{_load(m.get('loadavg_start'))}, at end {_load(m.get('loadavg_end'))}",
             f"- jax {m['jax']} on {m['jax_backend']} ({m['device']}, {m['device_count']} device(s))"
             + (f"; XLA_FLAGS={m['xla_flags']}" if m["xla_flags"] else "")]
    if c["captum"]:
        lines.append(f"- captum {m['captum']} on torch {m['torch']} ({m['torch_device']}, "
                     f"torch.get_num_threads()={m['torch_threads']}), same process, same inputs and weights")
    lines += [f"- weights: {m['weights']}",
              f"- SmoothGrad n={c['smoothgrad_n']}, IG steps={c['ig_steps']} (riemann_trapezoid), occlusion "
              f"patch size/8, stride patch/2 (15x15 windows at 64 and 224); at most {c['pass_images']} images per pass",
              f"- images/s = batch / median of {c['repeats']} timed calls after one warm-up; "
              "compile s = first call − median call; speed-up = jaxviz / captum", "",
              "| model | size | method | batch | jaxviz img/s | captum img/s | speed-up | compile s | device |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        speed = f"{r['speedup']:.2f}x" if r["speedup"] else "–"
        lines.append(f"| {r['model']} | {r['size']}x{r['size']} | {r['method']} | {r['batch']} | "
                     f"{_fmt(r['jaxviz_ips'])} | {_fmt(r['captum_ips'])} | {speed} | {_fmt(r['compile_s'])} | "
                     f"{r['device']} |")
    errors = [r for r in result["rows"] if r.get("error") or r.get("captum_error")]
    if errors:
        lines += ["", "Failures:"]
        lines += [f"- {r['model']} {r['method']} batch {r['batch']}: {r.get('error') or r.get('captum_error')}"
                  for r in errors]
    return "\n".join(lines) + "\n"


def _load(v) -> str:
    return "n/a" if not v else "/".join(f"{x:.1f}" for x in v)


__all__ = ["CAPTUM_METHODS", "Case", "DEFAULT_BATCHES", "DEFAULT_METHODS", "DEFAULT_MODELS", "captum_method",
           "markdown", "method_options", "plan", "quick_plan", "random_params", "run", "run_configured"]
