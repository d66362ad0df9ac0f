"""Throughput benchmark: images per second per method, beside Captum on the same weights.

    result = run(plan(), out="bench")          # or run(quick_plan(), repeats=3), run(gpu_plan(), ...)
    print(result["markdown"])

Each case (model, input size, method, batch, dtype) runs our `engine.compiled` method — or, for
the method `bundle002`, `fused.fused_compiled` over seed 002's five methods (saliency, deconvnet,
guided backprop, Grad-CAM, guided Grad-CAM) from one forward pass — once to compile (the first
call's time minus the median call is reported as "compile s"), then up to `repeats` timed calls
with `block_until_ready`; the median gives images/s. When torch and Captum import, the same batch
runs through Captum's equivalent on the `torch_peer.to_torch` twin of the model in this process
(for the bundle: Captum's five separate calls Saliency, Deconvolution, GuidedBackprop,
LayerGradCam, GuidedGradCam; for `lrp`: zennit's composite of the same name with its canonizer —
the row's captum_* fields then hold zennit's figures), timed the same way, on `cuda` when torch
sees a GPU.

Per case it also records: XLA's FLOP count of the compiled program (`engine.program_cost`) and
the achieved FLOP/s against the device's limit (`device_limits`: on CPU the measured sgemm rate
of this machine; on GPU the measured large-matmul rate in the same dtype, beside the data-sheet
peak); memory (XLA's buffer plan of the program; on GPU the allocators' peaks, on CPU the rise of
the process's resident memory during the timed calls); and, per model and method, the deviation
of bfloat16 maps from float32 (`jaxviz.metrics.deviation`). Failures of one side (out of memory, a
missing Captum equivalent) are recorded in the row and the run goes on; with `out`, the JSON and
Markdown files are rewritten (atomically) after every case, so a killed run keeps what it did.
`time_budget_s` stops a run in time: remaining cases, or sides predicted not to fit, are skipped
and listed.

Weights are random (`random_params`): the cost of a forward/backward pass does not depend on the
values. The deviation uses the embedded model's trained weights and shapes images for
`shapesnet`, random weights and inputs for the others.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

# JAX must not take 75% of the GPU up front: Captum runs on the same GPU in the same process.
# (Only effective when set before JAX starts its GPU backend; recorded in the output.)
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax
import jax.numpy as jnp
import numpy as np

from .atomic import write_text
from .models import DEFAULT_INPUT, build

BUNDLE = "bundle002"
"""Case method name of seed 002's five methods from one forward pass (`fused.BUNDLE_002`)."""

DEFAULT_MODELS: tuple[tuple[str, int], ...] = (("shapesnet", 64), ("vgg16", 224))
DEFAULT_METHODS = ("saliency", "guided_backprop", "grad_cam", "smoothgrad", "integrated_gradients", "occlusion")
DEFAULT_BATCHES = (1, 8, 32)
GPU_BATCHES = (1, 8, 32, 64)
SMOOTHGRAD_LEVEL = 0.15
DEVIATION_METHODS = ("saliency", "guided_backprop", "grad_cam", "integrated_gradients", BUNDLE)


@dataclass(frozen=True)
class Case:
    """One measurement: `method` on `model` at `size`x`size` with `batch` images per call, in `dtype`."""

    model: str
    size: int
    method: str
    batch: int
    dtype: str = "float32"


def plan(
    models: Iterable[tuple[str, int | None]] = DEFAULT_MODELS,
    methods: Sequence[str] = DEFAULT_METHODS,
    batches: Sequence[int] = DEFAULT_BATCHES,
    dtypes: Sequence[str] = ("float32",),
) -> list[Case]:
    """Every (model, method, batch, dtype) combination; a size of None means the model's usual input."""
    cases = []
    for name, size in models:
        size = size or DEFAULT_INPUT[name][0]
        cases += [Case(name, size, m, b, d) for d in dtypes for m in methods for b in batches]
    return cases


def quick_plan() -> list[Case]:
    """A CPU-sized run: ShapesNet 64x64 at batch 8 for every default method and the seed-002 bundle,
    VGG16 saliency at batch 1.

    Meant for `run(quick_plan(), smoothgrad_n=8, ig_steps=8, repeats=3)` (what `jaxviz bench --quick` does).
    """
    return plan((("shapesnet", 64),), (*DEFAULT_METHODS, BUNDLE), (8,)) + [Case("vgg16", 224, "saliency", 1)]


def gpu_plan(batches: Sequence[int] = GPU_BATCHES) -> list[Case]:
    """The whole table for one GPU: VGG16 224x224 and ShapesNet 64x64, every default method and the
    bundle at `batches`, plus bfloat16 saliency and bundle on VGG16 at the largest batch.

    Ordered so that a time budget cuts the least important cases: largest batch first (the
    issue's GPU targets are at batch 64), then 8, then the others, batch 1 last; VGG16 before
    ShapesNet within a batch size; `markdown` sorts the rows.
    """
    methods = (BUNDLE, *DEFAULT_METHODS)
    top = max(batches)
    order = sorted(batches, key=lambda b: (b != top, b != 8, b == 1, -b))
    cases = []
    for b in order:
        cases += [Case("vgg16", 224, m, b) for m in methods]
        if b == top:
            cases += [Case("vgg16", 224, m, b, "bfloat16") for m in ("saliency", BUNDLE)]
        cases += [Case("shapesnet", 64, m, b) for m in methods]
    return cases


def random_params(model, input_shape: tuple[int, int, int], seed: int = 0, bias_std: float = 0.1) -> dict:
    """Random variables of a linen `model` from the shapes alone (no compiled or eager `init`, fast
    even for VGG16): `{"params": ..., "batch_stats": ...}` (the latter for BatchNorm nets).

    Kernels are He-normal (std √(2/fan_in), so activations keep their scale through a deep ReLU
    net), biases N(0, `bias_std`²), BatchNorm scales 1 + N(0, `bias_std`²), running means 0 and
    variances 1. `input_shape` is `(H, W, C)`.
    """
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape))))
    rng = np.random.default_rng(seed)

    def draw(path, s):
        leaf = getattr(path[-1], "key", None)
        if leaf in ("mean", "var"):
            return jnp.zeros(s.shape, s.dtype) if leaf == "mean" else jnp.ones(s.shape, s.dtype)
        z = rng.standard_normal(s.shape, dtype=np.float32)
        if leaf == "kernel":
            return jnp.asarray(z * np.float32(np.sqrt(2.0 / np.prod(s.shape[:-1]))))
        return jnp.asarray(z * np.float32(bias_std) + (1.0 if leaf == "scale" else 0.0))

    return {k: jax.tree_util.tree_map_with_path(draw, v) for k, v in shapes.items()}


def method_options(method: str, size: int, batch: int, *, smoothgrad_n: int, ig_steps: int, pass_images: int) -> dict:
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


def jaxviz_method(method: str, model, options: dict, dtype: str = "float32") -> Callable:
    """Our compiled `fn(variables, x, target, key)` for a case method (`BUNDLE`: the fused five)."""
    from .attribution.engine import compiled
    from .attribution.fused import BUNDLE_002, fused_compiled

    if method == BUNDLE:
        return fused_compiled(BUNDLE_002, model, dtype=dtype, **options)
    return compiled(method, model, dtype=dtype, **options)


# --- Captum equivalents ------------------------------------------------------------------------

CAPTUM_METHODS = (
    "saliency",
    "gradient_x_input",
    "guided_backprop",
    "deconvnet",
    "grad_cam",
    "smoothgrad",
    "integrated_gradients",
    "occlusion",
    "guided_grad_cam",
    BUNDLE,
)


def captum_method(method: str, peer, layer, options: dict) -> Callable | None:
    """`fn(x NCHW tensor, targets list) -> tensor (or list)`: Captum's counterpart of our `method`
    with the same options, or None when Captum has none. Grad-CAM adds our bilinear upsampling,
    ReLU and normalization (torch ops) so both sides produce the same map. `BUNDLE` is Captum's
    five separate calls (Saliency, Deconvolution, GuidedBackprop, LayerGradCam, GuidedGradCam).
    `layer` is the torch module of our CAM layer (`torch_layer`)."""
    import torch
    from captum import attr as ca

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
        gc = ca.LayerGradCam(peer, layer)

        def grad_cam(x, t):
            m = gc.attribute(x, target=t, relu_attributions=False)
            m = torch.relu(ca.LayerAttribution.interpolate(m, tuple(x.shape[2:]), interpolate_mode="bilinear"))
            return m / (m.amax(dim=(1, 2, 3), keepdim=True) + 1e-12)

        return grad_cam
    if method == "guided_grad_cam":
        ggc = ca.GuidedGradCam(peer, layer)
        return lambda x, t: ggc.attribute(x, target=t, interpolate_mode="bilinear")
    if method == BUNDLE:
        parts = [
            captum_method(m, peer, layer, options)
            for m in ("saliency", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam")
        ]
        return lambda x, t: [f(x, t) for f in parts]
    if method == "smoothgrad":
        nt = ca.NoiseTunnel(ca.Saliency(peer))

        def smoothgrad(x, t):  # Captum takes one σ per input tensor: the batch's mean value range
            span = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).mean().item()
            return nt.attribute(
                x,
                nt_type="smoothgrad",
                nt_samples=options["n"],
                nt_samples_batch_size=options["chunk"],
                stdevs=options["level"] * span,
                target=t,
                abs=False,
            )

        return smoothgrad
    if method == "integrated_gradients":
        ig = ca.IntegratedGradients(peer)
        return lambda x, t: ig.attribute(
            x,
            baselines=0.0,
            target=t,
            n_steps=options["steps"],
            method="riemann_trapezoid",
            internal_batch_size=options["chunk"] * x.shape[0],
        )
    if method == "lrp":
        return zennit_lrp(peer, options)
    if method == "occlusion":
        occ = ca.Occlusion(lambda z: torch.softmax(peer(z), dim=-1))
        p, s = options["patch"], options["stride"]
        return lambda x, t: occ.attribute(
            x,
            sliding_window_shapes=(x.shape[1], p, p),
            strides=(x.shape[1], s, s),
            baselines=0.0,
            target=t,
            perturbations_per_eval=options["chunk"],
        )
    return None


ZENNIT_COMPOSITES = {
    "epsilon_plus": "EpsilonPlus",
    "epsilon_plus_flat": "EpsilonPlusFlat",
    "epsilon_gamma_box": "EpsilonGammaBox",
    "epsilon_alpha2_beta1": "EpsilonAlpha2Beta1",
    "epsilon_alpha2_beta1_flat": "EpsilonAlpha2Beta1Flat",
}


def zennit_lrp(peer, options: dict, exact_norm: bool = False) -> Callable:
    """zennit's LRP (`pip install zennit`) of our `lrp` options on a torchvision model: its composite of
    the same name with its canonizer for the layout (ResNet's or VGG's), relevance from the one-hot
    target. Registered per call (zennit's hooks and merged BatchNorms are undone on exit).

    zennit's BatchNorm merge leaves each BatchNorm as `x / √(1 + ε)`, not the identity; `exact_norm`
    sets their ε to 0 while merged (the exact merge, as ours), for comparing values."""
    import torch
    import zennit.composites as zc
    import zennit.torchvision as ztv
    from zennit.attribution import Gradient

    name = options.get("composite", "epsilon_plus_flat")
    resnet = any(type(m).__name__ in ("Bottleneck", "BasicBlock") for m in peer.modules())
    canonizer = ztv.ResNetCanonizer if resnet else ztv.VGGCanonizer

    def lrp(x, t):
        box = {}
        if name == "epsilon_gamma_box":
            box = {"low": torch.full_like(x, options["low"]), "high": torch.full_like(x, options["high"])}
        composite = getattr(zc, ZENNIT_COMPOSITES[name])(canonizers=[canonizer()], **box)

        def onehot(out):
            return torch.nn.functional.one_hot(torch.as_tensor(t), out.shape[1]).to(out.dtype)

        norms = [m for m in peer.modules() if isinstance(m, torch.nn.BatchNorm2d)] if exact_norm else []
        eps = [m.eps for m in norms]
        try:
            with Gradient(peer, composite) as attributor:
                for m in norms:
                    m.eps = 0.0
                return attributor(x.detach().requires_grad_(), onehot)[1]
        finally:
            for m, e in zip(norms, eps):
                m.eps = e

    return lrp


def gradcam_lib_method(method: str, peer, layer, options: dict) -> Callable | None:
    """pytorch-grad-cam's GradCAM (`pip install grad-cam`) for `grad_cam` cases, else None.

    Its maps are ReLU'd, resized with OpenCV and min-max scaled per image on the CPU (NumPy), part
    of what it costs. Raises ImportError when the package is missing.
    """
    if method != "grad_cam":
        return None
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = GradCAM(model=peer, target_layers=[layer])
    return lambda x, t: cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])


# --- the machine's limits ----------------------------------------------------------------------

KNOWN_PEAKS = {  # dense data-sheet peaks, FLOP/s (SXM parts; H200 has H100's compute)
    "H100": {"float32": 67e12, "tf32": 494.7e12, "bfloat16": 989.4e12},
    "H200": {"float32": 67e12, "tf32": 494.7e12, "bfloat16": 989.4e12},
    "A100": {"float32": 19.5e12, "tf32": 156e12, "bfloat16": 312e12},
}


def matmul_rate(dtype: str = "float32", n: int | None = None, repeats: int = 5) -> float:
    """Best FLOP/s of an `n`x`n` JAX matmul in `dtype` on the default device (n: 2048 on CPU, 8192 on GPU)."""
    n = n or (2048 if jax.default_backend() == "cpu" else 8192)
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    mm = jax.jit(jnp.dot)
    mm(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def device_limits(dtypes: Sequence[str] = ("float32",)) -> dict:
    """The limit achieved FLOP/s are compared with, per dtype: `{"float32": FLOP/s, ..., "source": str}`.

    CPU: the measured sgemm rate (the best of JAX's and NumPy's BLAS on a 2048² matmul). GPU: the
    measured 8192² matmul rate in that dtype at JAX's default precision (TF32 tensor cores for float32
    on recent NVIDIA GPUs, as XLA's convolutions use), with the data-sheet peak (`KNOWN_PEAKS`) beside it.
    """
    out: dict = {}
    cpu = jax.default_backend() == "cpu"
    for d in dict.fromkeys(dtypes):
        rate = matmul_rate(d)
        if cpu and d == "float32":
            a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
            a @ a
            t0 = time.perf_counter()
            a @ a
            rate = max(rate, 2 * 2048**3 / (time.perf_counter() - t0))
        out[d] = rate
    kind = jax.devices()[0].device_kind
    sheet = next((v for k, v in KNOWN_PEAKS.items() if k in kind), None)
    if cpu:
        out["source"] = "measured sgemm rate of this machine (2048² matmul, best of JAX and NumPy)"
    else:
        out["source"] = "measured 8192² matmul rate per dtype (JAX default precision)"
        out["datasheet"] = sheet
    return out


# --- memory ------------------------------------------------------------------------------------


def _rss() -> int:
    """Resident set size of this process in bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class RssPeak(contextlib.AbstractContextManager):
    """Peak rise of this process's resident memory inside the block (a thread samples it every ms):
    `with RssPeak() as m: ...; m.rise` in bytes."""

    def __init__(self, interval: float = 0.001):
        self.interval, self.rise, self._stop = interval, 0, threading.Event()

    def __enter__(self):
        self.base = self.peak = _rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        self.rise = self.peak - self.base
        return False


def _jax_peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


# --- timing ------------------------------------------------------------------------------------


def _time(
    call: Callable[[], object],
    repeats: int,
    budget_s: float | None = None,
    during: contextlib.AbstractContextManager | None = None,
    min_total_s: float = 0.25,
    max_calls: int = 50,
) -> tuple[float, list[float]]:
    """First call's seconds and the seconds of the timed calls after it; `call` returns once its
    work is done (synchronised).

    Runs `repeats` timed calls — more (up to `max_calls`) while they total under `min_total_s`, so
    millisecond calls get a stable median — and stops early (after at least one) once they took
    `budget_s`. The timed calls (not the first, which compiles) run inside the context `during`.
    """
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    times = []
    with during or contextlib.nullcontext():
        while len(times) < repeats or (sum(times) < min_total_s and len(times) < max_calls):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
            if budget_s is not None and sum(times) >= budget_s:
                break
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
        "xla_preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", ""),
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
    info = {
        "torch": torch.__version__,
        "captum": captum.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_device": device,
    }
    if device == "cuda":
        info.update(
            torch_gpu=torch.cuda.get_device_name(0),
            torch_cudnn_tf32=torch.backends.cudnn.allow_tf32,
            torch_matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
        )
    try:
        import pytorch_grad_cam  # noqa: F401

        info["grad_cam_lib"] = "pytorch-grad-cam"
    except Exception as e:  # noqa: BLE001 - optional; any import failure means "not there"
        info["grad_cam_lib"] = None
        info["grad_cam_lib_missing"] = f"{type(e).__name__}: {e}"[:200]
    try:  # the reference of `lrp` cases (it imports torchvision: ours first, on CPU torch)
        from .torchvision_peer import import_torchvision

        import_torchvision()
        import zennit  # noqa: F401

        info["zennit"] = importlib.metadata.version("zennit")
    except Exception as e:  # noqa: BLE001 - optional, as above
        info["zennit"] = None
        info["zennit_missing"] = f"{type(e).__name__}: {e}"[:200]
    return info


def run(
    cases: Sequence[Case],
    *,
    smoothgrad_n: int = 50,
    ig_steps: int = 50,
    repeats: int = 5,
    captum: bool | None = None,
    out: str | Path | None = "bench",
    pass_images: int = 64,
    seed: int = 0,
    torch_threads: int | None = None,
    log: Callable[[str], None] | None = None,
    time_budget_s: float | None = None,
    case_budget_s: float | None = None,
    deviation: bool | Sequence[str] | None = True,
    limits: bool = True,
    paired: int = 0,
) -> dict:
    """Time every case; write `bench.json` and `bench.md` under `out` (None: write nothing).

    Args:
      cases: from `plan` / `quick_plan` / `gpu_plan` or hand-made `Case`s (method may be `BUNDLE`).
      smoothgrad_n, ig_steps: samples of SmoothGrad and path points of Integrated Gradients.
      repeats: timed calls after the warm-up (more while they total under 0.25 s); images/s =
        batch / median seconds.
      captum: also time Captum on the torch twin; None = when torch and captum import.
      pass_images: images per forward/backward pass for sample and window methods (memory bound).
      torch_threads: `torch.set_num_threads` for the Captum side during the run (None: torch's
        default, one per core); recorded in the output either way.
      log: called with one line per finished case (e.g. `print`).
      time_budget_s: wall-clock budget of the whole run; cases (and sides of a case) that would
        not fit — predicted from the same method at a smaller batch — are skipped and listed.
      case_budget_s: stop a side's timed calls once they took this long (at least one runs).
      deviation: measure bf16-vs-float32 deviation per (model, method) for these methods (True:
        `DEVIATION_METHODS`, also for None; False: none), right after the first case of that model
        and method.
      limits: measure the device's matmul rate for the "% of limit" column.
      paired: after both sides were timed, this many more rounds of one jaxviz call and one Captum
        call back to back (the order alternating), so both sides see the same moment of a shared
        machine (where other work moves single timings by ±15%); `paired_speedup` is the median of
        the rounds' Captum / jaxviz time ratios.

    Returns `{"machine", "config", "limits", "rows", "deviation", "skipped", "markdown"}`; a row has
    model, size, method, batch, dtype, options, jaxviz_ips, jaxviz_s (median), jaxviz_best_s,
    compile_s, flops (per call), tflops (achieved), limit_fraction, xla_bytes (XLA's plan:
    temporaries + arguments + outputs), jaxviz_mem_bytes / captum_mem_bytes (GPU allocators' peak;
    on CPU the rise in resident memory), captum_ips, captum_s, captum_best_s, speedup,
    paired_speedup and paired_rounds (with `paired`),
    gradcam_lib_ips, device, and `error` / `captum_error` / `gradcam_lib_error` when a side failed
    or was skipped (the run goes on).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    from .attribution import METHODS

    for case in cases:
        if case.method not in METHODS and case.method != BUNDLE:
            raise ValueError(f"unknown method {case.method!r}; known: {', '.join(METHODS)}, {BUNDLE}")
        if case.model not in DEFAULT_INPUT:
            raise ValueError(f"unknown model {case.model!r}; known: {', '.join(DEFAULT_INPUT)}")
        if case.batch < 1 or case.size < 1:
            raise ValueError(f"batch and size must be >= 1: {case}")
        if case.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype {case.dtype!r} not supported: float32, bfloat16 or float16")

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
            return run(
                cases,
                smoothgrad_n=smoothgrad_n,
                ig_steps=ig_steps,
                repeats=repeats,
                captum=True,
                out=out,
                pass_images=pass_images,
                seed=seed,
                torch_threads=None,
                log=log,
                time_budget_s=time_budget_s,
                case_budget_s=case_budget_s,
                deviation=deviation,
                limits=limits,
                paired=paired,
            )
        finally:
            torch.set_num_threads(before)

    start = time.perf_counter()
    machine = _machine(tinfo if captum else None)
    config = {
        "smoothgrad_n": smoothgrad_n,
        "ig_steps": ig_steps,
        "repeats": repeats,
        "paired": paired,
        "pass_images": pass_images,
        "seed": seed,
        "captum": bool(captum),
        "time_budget_s": time_budget_s,
        "case_budget_s": case_budget_s,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    result = {"machine": machine, "config": config, "limits": None, "rows": [], "deviation": [], "skipped": []}
    if limits:
        result["limits"] = device_limits(sorted({c.dtype for c in cases}))
    state = _State(models={}, peers={}, estimates={}, key=jax.random.key(seed))

    def remaining() -> float:
        return float("inf") if time_budget_s is None else time_budget_s - (time.perf_counter() - start)

    wanted = DEVIATION_METHODS if deviation in (True, None) else (deviation or ())
    deviated = set()
    for case in cases:
        if remaining() <= 0:
            result["skipped"].append({**asdict(case), "reason": "time budget spent"})
            continue
        opts = method_options(
            case.method, case.size, case.batch, smoothgrad_n=smoothgrad_n, ig_steps=ig_steps, pass_images=pass_images
        )
        row = _run_case(
            case,
            state,
            result,
            captum=captum,
            tinfo=tinfo,
            repeats=repeats,
            remaining=remaining,
            case_budget_s=case_budget_s,
            opts=opts,
            paired=paired,
        )
        result["rows"].append(row)
        _write(result, out)
        if log:
            log(_row_line(row))
        what = (case.model, case.size, case.method)
        if case.method in wanted and what not in deviated and remaining() > 0:  # once per model and method
            deviated.add(what)
            d = _deviation(
                *what,
                method_options(
                    case.method, case.size, 2, smoothgrad_n=smoothgrad_n, ig_steps=ig_steps, pass_images=pass_images
                ),
                seed,
            )
            result["deviation"].append(d)
            _write(result, out)
            if log:
                log(
                    f"bf16 deviation {case.model} {case.method}: rank corr {_fmt(d.get('rank_corr_min'))}, "
                    f"rel max err {_fmt(d.get('rel_max'))}" + (f" error: {d['error']}" if d.get("error") else "")
                )

    machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    machine["total_s"] = time.perf_counter() - start
    _write(result, out)
    result["markdown"] = markdown(result)
    return result


@dataclass
class _State:
    models: dict
    peers: dict
    estimates: dict  # (model, method, dtype, side) -> (batch, seconds per call)
    key: jax.Array


def _skip_reason(state: _State, case: Case, side: str, repeats: int, left: float) -> str | None:
    """Why a side is not run: its predicted seconds (warm-up + repeats, scaled from the same method
    at another batch) exceed the time left; None when it fits or nothing predicts it."""
    est = state.estimates.get((case.model, case.size, case.method, case.dtype, side))
    if est is None:
        return None
    batch, secs = est
    pred = secs * case.batch / batch * (1 + repeats)
    return f"skipped: predicted {pred:.0f} s > {left:.0f} s left of the time budget" if pred > left else None


def _run_case(
    case: Case,
    state: _State,
    result: dict,
    *,
    captum: bool,
    tinfo,
    repeats: int,
    remaining,
    case_budget_s,
    opts: dict,
    paired: int = 0,
) -> dict:
    from .attribution.engine import program_cost

    shape = (case.size, case.size, DEFAULT_INPUT[case.model][2])
    if case.model not in state.models:
        model = build(case.model)
        state.models[case.model] = (model, random_params(model, DEFAULT_INPUT[case.model], 0))
    model, params = state.models[case.model]  # params: the full variables
    targets = (np.arange(case.batch) % model.num_classes).astype(np.int32)
    device = result["machine"]["device"]
    row = {
        **asdict(case),
        "options": opts,
        "jaxviz_ips": None,
        "jaxviz_s": None,
        "compile_s": None,
        "captum_ips": None,
        "captum_s": None,
        "speedup": None,
        "flops": None,
        "tflops": None,
        "limit_fraction": None,
        "xla_bytes": None,
        "jaxviz_mem_bytes": None,
        "captum_mem_bytes": None,
        "gradcam_lib_ips": None,
        "paired_speedup": None,
        "paired_rounds": 0,
        "device": device,
    }
    skip = {side: _skip_reason(state, case, side, repeats, remaining()) for side in ("jaxviz", "captum")}
    if captum and case.dtype != "float32":
        skip["captum"] = "compared in float32 only"
    if skip["jaxviz"] and (skip["captum"] or not captum):
        row["error"] = skip["jaxviz"]
        if captum:
            row["captum_error"] = skip["captum"]
        return row
    x_np = np.random.default_rng([0, case.batch, case.size]).standard_normal((case.batch, *shape), dtype=np.float32)
    ours = theirs = None  # each side's timed call, once it ran
    if skip["jaxviz"]:
        row["error"] = skip["jaxviz"]
    else:
        try:
            fn = jaxviz_method(case.method, model, opts, case.dtype)
            x = jax.device_put(x_np)
            mem = RssPeak() if jax.default_backend() == "cpu" else None  # no sampling thread beside a GPU
            ours = lambda: jax.block_until_ready(fn(params, x, targets, key=state.key))  # noqa: E731
            first, times = _time(ours, repeats, case_budget_s, mem)
            med = statistics.median(times)
            row.update(
                jaxviz_s=med,
                jaxviz_best_s=min(times),
                jaxviz_ips=case.batch / med,
                compile_s=max(first - med, 0.0),
                timed_calls=len(times),
            )
            state.estimates[(case.model, case.size, case.method, case.dtype, "jaxviz")] = (case.batch, med)
            cost = program_cost(fn, params, x, targets, key=state.key)
            row["flops"] = _unrolled_flops(case, model, params, x, targets, opts, state.key, cost["flops"])
            if cost["temp_bytes"] is not None:
                row["xla_bytes"] = cost["temp_bytes"] + cost["argument_bytes"] + cost["output_bytes"]
            if cost["flops"]:
                row["tflops"] = cost["flops"] / med / 1e12
                limit = (result["limits"] or {}).get(case.dtype)
                row["limit_fraction"] = cost["flops"] / med / limit if limit else None
            if jax.default_backend() == "cpu":
                row["jaxviz_mem_bytes"] = mem.rise
            else:  # the allocator's peak only grows (no reset in JAX): the program's own plan is per case
                row["jaxviz_mem_bytes"], row["jax_process_peak_bytes"] = row["xla_bytes"], _jax_peak_bytes()
        except Exception as e:  # noqa: BLE001 - one failing case (e.g. out of memory) must not end the run
            row["error"] = _error(e)
    if captum:
        if skip["captum"]:
            row["captum_error"] = skip["captum"]
        else:
            theirs = _run_torch(
                case,
                model,
                params,
                opts,
                x_np,
                targets,
                repeats,
                state,
                row,
                tinfo["torch_device"],
                case_budget_s,
                "captum",
                captum_method,
            )
            if case.method == "grad_cam" and tinfo.get("grad_cam_lib"):
                _run_torch(
                    case,
                    model,
                    params,
                    opts,
                    x_np,
                    targets,
                    repeats,
                    state,
                    row,
                    tinfo["torch_device"],
                    case_budget_s,
                    "gradcam_lib",
                    gradcam_lib_method,
                )
    if row["jaxviz_ips"] and row["captum_ips"]:
        row["speedup"] = row["jaxviz_ips"] / row["captum_ips"]
    if paired and ours and theirs:
        row["paired_speedup"], row["paired_rounds"] = _paired(ours, theirs, paired, case_budget_s)
    return row


def _paired(
    ours: Callable[[], object], theirs: Callable[[], object], rounds: int, budget_s: float | None = None
) -> tuple[float, int]:
    """Median over `rounds` of (their seconds / our seconds), one call each back to back, who goes
    first alternating; stops early (after one round) once the rounds took `budget_s`."""
    ratios, spent, order = [], 0.0, [("ours", ours), ("theirs", theirs)]
    for i in range(rounds):
        secs = {}
        for side, call in order if i % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            call()
            secs[side] = time.perf_counter() - t0
        ratios.append(secs["theirs"] / secs["ours"])
        spent += sum(secs.values())
        if budget_s is not None and spent >= budget_s:
            break
    return statistics.median(ratios), len(ratios)


def _error(e: Exception) -> str:
    text = f"{type(e).__name__}: {e}"
    if "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower() or "OutOfMemory" in text:
        return "out of memory: " + text.splitlines()[0][:300]
    return text.splitlines()[0][:500] if text else type(e).__name__


def _unrolled_flops(case: Case, model, params, x, targets, opts: dict, key, flops: float | None) -> float | None:
    """FLOPs of the case's batch. XLA's cost analysis counts a loop body once, so for methods that
    loop over chunks of samples or windows (SmoothGrad, IG, occlusion) the same method is compiled
    without chunks for one image (FLOPs grow linearly with the batch) and counted instead."""
    from .attribution.engine import program_cost

    if "chunk" not in opts or not flops:
        return flops
    one = jaxviz_method(case.method, model, {**opts, "chunk": None}, case.dtype)
    per_image = program_cost(one, params, x[:1], targets[:1], key=key)["flops"]
    return per_image * case.batch if per_image else flops


def _run_torch(case, model, params, opts, x_np, targets, repeats, state, row, device, budget, side, make):
    """Time one torch side of a case into `row`; its timed call (synchronised), or None if it failed."""
    import torch

    from .torch_peer import nhwc_to_nchw

    try:
        if case.model not in state.peers:
            state.peers[case.model] = torch_twin(case.model, model, params, device=device)
        peer = state.peers[case.model]
        fn = make(case.method, peer, torch_layer(peer, model, params, opts.get("layer"), x_np.shape[1:]), opts)
        if fn is None:
            row[f"{side}_error"] = f"no {side} equivalent of {case.method}"
            return None
        xt = nhwc_to_nchw(x_np, device=device)
        t = targets.tolist()

        def call():
            r = fn(xt, t)
            if device == "cuda":
                torch.cuda.synchronize()
            return r

        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        mem = RssPeak() if device == "cpu" else None
        _, times = _time(call, repeats, budget, mem)
        med = statistics.median(times)
        row.update({f"{side}_s": med, f"{side}_best_s": min(times), f"{side}_ips": case.batch / med})
        if side == "captum":
            row["captum_mem_bytes"] = torch.cuda.max_memory_allocated() if device == "cuda" else mem.rise
        state.estimates[(case.model, case.size, case.method, case.dtype, side)] = (case.batch, med)
        return call
    except Exception as e:  # noqa: BLE001 - Captum running out of memory is a finding, not a crash
        row[f"{side}_error"] = _error(e)
        return None
    finally:
        if device == "cuda":
            torch.cuda.empty_cache()


def torch_twin(arch: str, model, variables, device: str = "cpu"):
    """The same network in PyTorch with the same weights: torchvision's own model for the zoo's
    torchvision-layout architectures, else `torch_peer.to_torch` (the sequential models)."""
    from .models import TORCHVISION_ARCHS

    if arch in TORCHVISION_ARCHS:
        import torch

        from .torchvision_peer import torchvision_model

        peer = torchvision_model(arch, variables)
        for m in peer.modules():  # Captum's ReLU hooks (guided backprop, deconvnet) need out-of-place ReLUs
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False
        return peer.to(device)
    from .torch_peer import to_torch

    return to_torch(model, variables["params"], device=device)


def torch_layer(peer, model, variables, layer: str | None, input_shape):
    """The torch module of our CAM layer (`layer`, or the model's default) in the twin."""
    from .core import as_net
    from .taps import default_cam_layer

    path = as_net(model).resolve(layer) if layer else default_cam_layer(model, variables, input_shape)
    return peer.layer(path) if hasattr(peer, "layer") else peer.get_submodule(path)


def _deviation(model_name: str, size: int, method: str, opts: dict, seed: int) -> dict:
    """bf16 vs float32 maps of one method on 2 images (the bundle: each of its five maps, worst reported)."""
    from .attribution.fused import BUNDLE_002, fused_compiled
    from .metrics.precision import deviation, map_deviation

    out = {"model": model_name, "size": size, "method": method, "dtype": "bfloat16"}
    try:
        model, params, x, out["inputs"] = _deviation_inputs(model_name, size, seed)
        key = jax.random.key(seed)
        if method == BUNDLE:
            ref = fused_compiled(BUNDLE_002, model, precision="highest", **opts)(params, x, None, key)
            low = fused_compiled(BUNDLE_002, model, dtype="bfloat16", **opts)(params, x, None, key)
            per = {n: map_deviation(np.asarray(ref[n][0]), np.asarray(low[n][0])) for n in BUNDLE_002}
            worst = min(per, key=lambda n: per[n]["rank_corr_min"])
            out.update(
                per[worst],
                worst=worst,
                index_agree=float(np.mean(np.asarray(ref[worst][1]) == np.asarray(low[worst][1]))),
            )
        else:
            out.update(deviation(method, model, params, x, None, key=key, **opts))
    except Exception as e:  # noqa: BLE001
        out["error"] = _error(e)
    return out


def _deviation_inputs(model_name: str, size: int, seed: int):
    if model_name == "shapesnet" and size == 64:
        from .data.preprocess import normalize
        from .data.shapes import generate
        from .models.loading import load

        lm = load()
        x = normalize(generate(2, size=64, seed=seed + 1).images, lm.preprocessing)
        return lm.model, lm.variables, jnp.asarray(x), "embedded model (trained), shapes images"
    model = build(model_name)
    params = random_params(model, DEFAULT_INPUT[model_name], seed)
    x = np.random.default_rng(seed).standard_normal((2, size, size, DEFAULT_INPUT[model_name][2]), dtype=np.float32)
    return model, params, jnp.asarray(x), "random weights and inputs"


def _write(result: dict, out) -> None:
    """`bench.json` and `bench.md` under `out`, atomically (after every case: partial results survive)."""
    if out is None:
        return
    out = Path(out)
    write_text(
        out / "bench.json", json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=2, default=str)
    )
    write_text(out / "bench.md", markdown(result))


def run_configured(
    *,
    quick: bool = False,
    gpu: bool = False,
    models: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    batches: Sequence[int] | None = None,
    dtypes: Sequence[str] | None = None,
    bundle: bool = False,
    smoothgrad_n: int | None = None,
    ig_steps: int | None = None,
    repeats: int | None = None,
    **kwargs,
) -> dict:
    """`run` from command-line style settings (what `jaxviz bench` calls).

    `quick` runs `quick_plan()` with SmoothGrad n=8, IG steps=8, 3 repeats unless given. `gpu` runs
    `gpu_plan(batches or 1 8 32 64)` with 3 repeats, `case_budget_s=15`, `time_budget_s=420` and the
    bf16 deviation of saliency and the bundle only, unless given (the whole table in ~7 minutes on one GPU).
    Otherwise `models` are "name" or
    "name:size" strings (comma lists allowed), `methods` names (comma lists allowed; `bundle002` is
    seed 002's five methods fused), `bundle` adds `bundle002`, `batches` ints, `dtypes` names; None
    means the defaults (SmoothGrad n=50, IG steps=50, 5 repeats). Other keywords go to `run`.
    """
    if quick and gpu:
        raise ValueError("choose --quick (CPU) or --gpu-table, not both")
    small = 8 if quick else 50
    if quick:
        cases = quick_plan()
    elif gpu:
        cases = gpu_plan(batches or GPU_BATCHES)
        kwargs["time_budget_s"] = kwargs.get("time_budget_s") or 420
        kwargs["case_budget_s"] = kwargs.get("case_budget_s") or 15
        if kwargs.get("deviation") is None:
            kwargs["deviation"] = ("saliency", BUNDLE)
    else:
        pairs = [_model_size(m) for item in models or [] for m in item.split(",") if m] or DEFAULT_MODELS
        names = [m for item in methods or [] for m in item.split(",") if m] or list(DEFAULT_METHODS)
        if bundle and BUNDLE not in names:
            names.append(BUNDLE)
        cases = plan(pairs, names, batches or DEFAULT_BATCHES, dtypes or ("float32",))
    return run(
        cases,
        smoothgrad_n=smoothgrad_n or small,
        ig_steps=ig_steps or small,
        repeats=repeats or (3 if quick or gpu else 5),
        **kwargs,
    )


def _model_size(text: str) -> tuple[str, int | None]:
    name, _, size = text.partition(":")
    if name not in DEFAULT_INPUT:
        raise ValueError(f"unknown model {name!r} for bench; known: {', '.join(DEFAULT_INPUT)}")
    if size and not size.isdigit():
        raise ValueError(f"bench model {text!r}: write NAME or NAME:SIZE, e.g. vgg16:224")
    return name, int(size) if size else None


# --- reporting ---------------------------------------------------------------------------------


def _fmt(v, digits=3) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}g}" if abs(v) < 10**digits else f"{v:.0f}"


def _mib(v) -> str:
    return "–" if v is None else f"{v / 2**20:.0f}"


def _label(r: dict) -> str:
    return r["method"] + ("" if r.get("dtype", "float32") == "float32" else f" ({r['dtype']})")


def _row_line(r: dict) -> str:
    err = f"  error: {r['error']}" if r.get("error") else ""
    cerr = f"  captum: {r['captum_error']}" if r.get("captum_error") else ""
    return (
        f"{r['model']} {r['size']} {_label(r)} batch {r['batch']}: jaxviz {_fmt(r['jaxviz_ips'])} img/s, "
        f"captum {_fmt(r['captum_ips'])} img/s, compile {_fmt(r['compile_s'])} s{err}{cerr}"
    )


def markdown(result: dict) -> str:
    """The result as a Markdown note (machine, settings) and tables: speed, efficiency and memory,
    bf16 deviation."""
    m, c = result["machine"], result["config"]
    cpu = m["jax_backend"] == "cpu"
    lines = [
        "# jaxviz benchmark",
        "",
        (
            f"- machine: {m['cpu_count']} CPUs ({m['processor']}), {m['platform']}; load average at start "
            f"{_load(m.get('loadavg_start'))}, at end {_load(m.get('loadavg_end'))}"
        ),
        f"- jax {m['jax']} on {m['jax_backend']} ({m['device']}, {m['device_count']} device(s))"
        + (f"; XLA_FLAGS={m['xla_flags']}" if m["xla_flags"] else ""),
    ]
    if c["captum"]:
        lines.append(
            f"- captum {m['captum']} on torch {m['torch']} ({m['torch_device']}, "
            f"torch.get_num_threads()={m['torch_threads']}), same process, same inputs and weights"
            + (
                f"; {m['torch_gpu']}, cudnn TF32 {m['torch_cudnn_tf32']}, matmul TF32 {m['torch_matmul_tf32']}"
                if m.get("torch_gpu")
                else ""
            )
        )
        lines.append(
            "- pytorch-grad-cam: "
            + ("timed on grad_cam cases (column grad-cam img/s)" if m.get("grad_cam_lib") else "not installed, skipped")
        )
        if any(r["method"] == "lrp" for r in result["rows"]):
            lines.append(
                f"- lrp rows: the captum column is zennit {m.get('zennit') or '(not installed)'} — its "
                "composite of the same name, ResNet/VGG canonizer, registered per call"
            )
    lim = result.get("limits")
    if lim:
        rates = ", ".join(f"{k} {v / 1e12:.3g} TFLOP/s" for k, v in lim.items() if isinstance(v, float))
        lines.append(
            f"- device limit: {rates} — {lim['source']}"
            + (
                f"; data sheet {', '.join(f'{k} {v / 1e12:.0f}' for k, v in lim['datasheet'].items())} TFLOP/s"
                if lim.get("datasheet")
                else ""
            )
        )
    lines += [
        f"- weights: {m['weights']}",
        (
            f"- SmoothGrad n={c['smoothgrad_n']}, IG steps={c['ig_steps']} (riemann_trapezoid), occlusion "
            f"patch size/8, stride patch/2 (15x15 windows at 64 and 224); at most {c['pass_images']} images "
            "per pass"
        ),
        (
            f"- {BUNDLE}: seed 002's saliency, deconvnet, guided backprop, Grad-CAM, guided Grad-CAM — jaxviz "
            "fused (one forward, three backward passes) vs Captum's five separate calls"
        ),
        f"- images/s = batch / median of {c['repeats']} timed calls after one warm-up (more, up to 50, "
        "while they total under 0.25 s)"
        + (f" (a side stops after {c['case_budget_s']} s of timed calls)" if c.get("case_budget_s") else "")
        + "; compile s = first call − median call; speed-up = jaxviz / captum"
        + (
            f"; paired = median captum/jaxviz time ratio of {c['paired']} rounds of one call each, back "
            "to back, who goes first alternating"
            if c.get("paired")
            else ""
        )
        + (f"; run time {m['total_s']:.0f} s" if m.get("total_s") else ""),
        "",
        "| model | size | method | batch | jaxviz img/s | captum img/s | speed-up | compile s | device |"
        + (" paired speed-up |" if c.get("paired") else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if c.get("paired") else ""),
    ]
    rows = sorted(
        result["rows"],
        key=lambda r: (r["model"], r["size"], r.get("dtype", "float32") != "float32", r["method"], r["batch"]),
    )
    for r in rows:
        speed = f"{r['speedup']:.2f}x" if r["speedup"] else "–"
        lines.append(
            f"| {r['model']} | {r['size']}x{r['size']} | {_label(r)} | {r['batch']} | "
            f"{_fmt(r['jaxviz_ips'])} | {_fmt(r['captum_ips'])} | {speed} | {_fmt(r['compile_s'])} | "
            f"{r['device']} |"
            + (f" {r['paired_speedup']:.2f}x |" if r.get("paired_speedup") else " – |" if c.get("paired") else "")
        )
    if any(r.get("flops") for r in rows):
        mem = "RSS rise MiB" if cpu else "peak MiB"
        lines += [
            "",
            "Efficiency and memory (GFLOP from XLA's cost analysis of the compiled program; % of the "
            "device limit above; XLA MiB = the program's buffer plan: arguments, temporaries, outputs; "
            + (
                "RSS rise = peak resident memory during the timed calls − before"
                if cpu
                else "jaxviz peak = XLA's plan (JAX cannot reset its allocator's peak), captum peak = "
                "torch.cuda.max_memory_allocated per case"
            )
            + "):",
            "",
            (
                f"| model | method | batch | GFLOP/img | jaxviz TFLOP/s | % of limit | XLA MiB | jaxviz {mem} | "
                f"captum {mem} | grad-cam img/s |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            frac = f"{100 * r['limit_fraction']:.0f}%" if r.get("limit_fraction") else "–"
            gf = r["flops"] / r["batch"] / 1e9 if r.get("flops") else None
            lines.append(
                f"| {r['model']} | {_label(r)} | {r['batch']} | {_fmt(gf)} | {_fmt(r.get('tflops'))} | "
                f"{frac} | {_mib(r.get('xla_bytes'))} | {_mib(r.get('jaxviz_mem_bytes'))} | "
                f"{_mib(r.get('captum_mem_bytes'))} | {_fmt(r.get('gradcam_lib_ips'))} |"
            )
    if result.get("deviation"):
        lines += [
            "",
            "bfloat16 vs float32 (precision highest) maps, 2 images (bundle: its worst method):",
            "",
            "| model | method | rank corr (min) | max abs err / max abs | rel L2 | same class | inputs |",
            "|---|---|---|---|---|---|---|",
        ]
        for d in result["deviation"]:
            if d.get("error"):
                lines.append(f"| {d['model']} | {d['method']} | error: {d['error']} | | | | |")
                continue
            name = d["method"] + (f" (worst: {d['worst']})" if d.get("worst") else "")
            lines.append(
                f"| {d['model']} | {name} | {d['rank_corr_min']:.4f} | {d['rel_max']:.3g} | "
                f"{d['rel_l2']:.3g} | {100 * d['index_agree']:.0f}% | {d['inputs']} |"
            )
    errors = [r for r in rows if r.get("error") or r.get("captum_error") or r.get("gradcam_lib_error")]
    if errors:
        lines += ["", "Failures and skips:"]
        for r in errors:
            for side in ("error", "captum_error", "gradcam_lib_error"):
                if r.get(side):
                    who = {"error": "jaxviz", "captum_error": "captum", "gradcam_lib_error": "grad-cam"}[side]
                    lines.append(f"- {r['model']} {_label(r)} batch {r['batch']} ({who}): {r[side]}")
    if result.get("skipped"):
        lines += ["", "Not run (time budget):"]
        lines += [
            f"- {s['model']} {_label(s)}" + (f" batch {s['batch']}" if "batch" in s else "") + f": {s['reason']}"
            for s in result["skipped"]
        ]
    return "\n".join(lines) + "\n"


def _load(v) -> str:
    return "n/a" if not v else "/".join(f"{x:.1f}" for x in v)


__all__ = [
    "BUNDLE",
    "CAPTUM_METHODS",
    "DEFAULT_BATCHES",
    "DEFAULT_METHODS",
    "DEFAULT_MODELS",
    "DEVIATION_METHODS",
    "GPU_BATCHES",
    "KNOWN_PEAKS",
    "Case",
    "RssPeak",
    "captum_method",
    "device_limits",
    "gpu_plan",
    "gradcam_lib_method",
    "jaxviz_method",
    "markdown",
    "matmul_rate",
    "method_options",
    "plan",
    "quick_plan",
    "random_params",
    "run",
    "run_configured",
]
