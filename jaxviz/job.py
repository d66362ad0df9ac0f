"""An attribution job as data: what `jaxviz attribute` runs, saved in its run directory so it can resume.

    job = AttributeJob(inputs=["photos/"], methods=["saliency", "grad_cam"], outputs=["store"])
    run_job(job, "runs/a")                  # writes runs/a/config.json, then the maps
    run_job(load_job("runs/a"), "runs/a")   # `jaxviz attribute --resume runs/a`: same job, picks up where it stopped

The job also decides where the work runs: `devices` shards the batch axis over local devices
(`jax.sharding.Mesh` + `NamedSharding`, params replicated); `distributed=True` calls
`jax.distributed.initialize()` and gives each process every `process_count`-th image. A persistent
XLA compilation cache (`compile_cache`) makes a second run start without recompiling.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from .batch import CONFIG, Engine, RunSummary, bind_methods, discover_images, input_shape, run_attribution
from .memory import activation_bytes, default_budget, parse_bytes
from .memory import rows as memory_rows
from .store import StoreFormat

__all__ = [
    "CONFIG",
    "AttributeJob",
    "bind_job",
    "default_cache_dir",
    "enable_compilation_cache",
    "load_job",
    "memory_budget",
    "resolve_devices",
    "run_job",
]


@dataclasses.dataclass
class AttributeJob:
    """Everything `jaxviz attribute` needs; JSON-serializable (see `jaxviz attribute --help` for each field)."""

    inputs: list[str]  # absolute when written by `jaxviz attribute` (so --resume works from any directory)
    inputs_given: list[str] | None = None  # the inputs as the user spelled them (for display)
    methods: list[str] = dataclasses.field(default_factory=lambda: ["saliency"])
    model: str | None = None
    weights: str | None = None
    target: str | None = None  # command-line form: None, "319", "dragonfly", "top2", "relu5_3:12"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    batch_size: int = 16
    size: int | str | None = None  # pixels, or "original" (each image's own size, bucketed)
    seed: int = 0
    outputs: list[str] = dataclasses.field(default_factory=lambda: ["npy", "png"])
    store_dtype: str = "float32"
    store_downsample: int = 1
    devices: str | int | None = None  # None: the default device; "all" or N: shard the batch over local devices
    dtype: str = "float32"
    distributed: bool = False
    memory_budget: str | int | None = None  # bytes a pass may hold ("6G"); None: a quarter of this machine's memory

    @classmethod
    def from_json(cls, data: dict, where: str = "config") -> AttributeJob:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
        if "inputs" not in data:
            raise ValueError(f"{where}: no 'inputs'")
        return cls(**data)


def load_job(run_dir: str | os.PathLike[str]) -> AttributeJob:
    """The job saved in `run_dir/config.json` by an earlier `run_job`."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: --resume needs a run directory written by `jaxviz attribute` "
            "(give the inputs and options instead)"
        )
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); fix or delete it") from None
    return AttributeJob.from_json(data, str(path))


def _applicable(methods: list[str], lm, log) -> list[str]:
    """`--method all` without the CAM methods a model's declared head rules out (VGG: flatten → dense)."""
    from .attribution.cam import HEAD_METHODS, declared_head
    from .core import as_net

    head = declared_head(as_net(lm.model))
    skipped = [m for m in methods if m in HEAD_METHODS and head not in (None, HEAD_METHODS[m])]
    if skipped:
        log(
            f"--method all: {', '.join(skipped)} skipped: {lm.name} has a {head!r} head, not one global pool "
            f"and one dense layer"
        )
    return [m for m in methods if m not in skipped]


def resolve_devices(devices: str | int | None) -> list | None:
    """`None` → None (default device); "all" → every local device; N (or "N") → the first N."""
    if devices is None:
        return None
    local = jax.local_devices()
    if devices == "all":
        return local
    try:
        n = int(devices)
    except (TypeError, ValueError):
        raise ValueError(f"devices must be 'all' or a number, got {devices!r}") from None
    if not 1 <= n <= len(local):
        raise ValueError(f"devices={n} but this process sees {len(local)} device(s): {local}")
    return local[:n]


def default_cache_dir() -> Path:
    """`$JAXVIZ_CACHE_DIR/xla`, else `$XDG_CACHE_HOME/jaxviz/xla`, else `~/.cache/jaxviz/xla`."""
    root = (
        os.environ.get("JAXVIZ_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxviz"
    )
    return Path(root) / "xla"


def enable_compilation_cache(path: str | os.PathLike[str] | None = None) -> Path:
    """Turn on JAX's persistent compilation cache in `path` (default `default_cache_dir()`).

    Every compiled program is kept (no minimum compile time), so a rerun of the same job, or
    `--resume`, loads its executables instead of compiling them again."""
    path = Path(path) if path is not None else default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path


def memory_budget(job: AttributeJob) -> int:
    """The bytes one pass of `job` may hold: its `memory_budget`, else a quarter of this machine's memory."""
    return parse_bytes(job.memory_budget) if job.memory_budget is not None else default_budget()


def bind_job(job: AttributeJob, lm, methods: list[str], devices: list | None = None):
    """`(target, compiled methods)` of `job` on the loaded model `lm`: what the runner calls on each batch
    (the same on every machine that runs the job: this process, or each worker of `--engine ray`)."""
    from .attribution import parse_target

    target = parse_target(job.target, lm.labels)
    return target, bind_methods(
        lm,
        methods,
        target,
        seed=job.seed,
        options=job.options,
        devices=devices,
        dtype=job.dtype,
        memory_budget=memory_budget(job),
    )


def run_job(
    job: AttributeJob,
    out: str | os.PathLike[str],
    *,
    progress: bool = True,
    log: Callable[[str], Any] = print,
    retry_failed: bool = False,
    cluster: dict[str, Any] | None = None,
    engine: Engine | None = None,
) -> RunSummary:
    """Save `job` in `out/config.json` and run it (resuming whatever `out` already holds).

    `cluster` (`coordinator_address`, `num_processes`, `process_id`, any of them) goes to
    `jax.distributed.initialize` for a `distributed` job; what is not given JAX detects from the
    cluster's environment (SLURM, Kubernetes, TPU pods). It is not saved: each process of a resumed
    run says again which process it is.

    `engine` computes the batches elsewhere (e.g. `jaxviz.integrations.ray.RayEngine(job)`); this
    process still plans, names and writes the run, so the folder is the same whichever engine ran
    it (and a run may be resumed with another)."""
    from .attribution import METHODS
    from .attribution.engine import check_options
    from .models.loading import load

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: an existing file, not a folder; give a folder for the run")
    unknown = [m for m in job.methods if m != "all" and m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    methods = list(METHODS) if job.methods == ["all"] else list(job.methods)
    check_options(methods, job.options)
    if not (job.size is None or job.size == "original" or (isinstance(job.size, int) and job.size >= 8)):
        raise ValueError(f"--size {job.size!r}: give a number of pixels (at least 8) or 'original'")
    if job.batch_size < 1:
        raise ValueError(f"--batch-size {job.batch_size}: give at least 1")
    if engine is not None and (job.distributed or job.devices is not None):
        raise ValueError(
            "--distributed and --devices say where this process computes; with another engine "
            "(--engine ray) each worker uses its own devices (--gpus-per-worker): drop them"
        )
    process = (0, 1)
    if job.distributed:
        jax.distributed.initialize(**{k: v for k, v in (cluster or {}).items() if v is not None})
        process = (jax.process_index(), jax.process_count())
    devices = resolve_devices(job.devices)
    batch_size = job.batch_size
    if devices and batch_size % len(devices):
        batch_size += len(devices) - batch_size % len(devices)
        log(f"batch size {job.batch_size} rounded up to {batch_size}, a multiple of the {len(devices)} devices")
    fmt = StoreFormat(job.store_dtype, job.store_downsample)
    images = discover_images(job.inputs, exclude=[out], log=log)
    lm = load(job.model, job.weights)
    if job.methods == ["all"]:
        methods = _applicable(methods, lm, log)
    budget = memory_budget(job)
    fits = memory_rows(budget, activation_bytes(lm.model, lm.variables, input_shape(lm, job.size)))
    if devices:  # keep a multiple of the device count
        fits = max(len(devices), fits - fits % len(devices))
    if batch_size > fits:  # the batch alone would not fit: every pass holds at least the batch
        log(
            f"batch size {batch_size} lowered to {fits}: {fits} images of {lm.name} fill the memory budget of "
            f"{budget / 2**30:.1f} GiB (--memory-budget)"
        )
        batch_size = fits
    target, bound = bind_job(job, lm, methods, devices)
    return run_attribution(
        lm,
        images,
        bound,
        out,
        target=target,
        batch_size=batch_size,
        size=job.size,
        progress=progress,
        log=log,
        retry_failed=retry_failed,
        outputs=job.outputs,
        store_format=fmt,
        process=process,
        config=dataclasses.asdict(job),
        engine=engine,
    )
