"""Attribution as a Ray Data job: `jaxviz attribute ... --engine ray`, writing the same run folder.

    ray.init()                                                   # or an address: a running cluster
    job = AttributeJob(inputs=["/data/photos"], methods=["saliency", "grad_cam"], outputs=["store"])
    run_job(job, "runs/a", engine=RayEngine(job, workers=8, gpus_per_worker=1))

The driver (this process) does what it does in a local run: it discovers the images, reads the
ledgers, names the outputs, and writes every map, view and ledger line itself, so the folder
(`results.jsonl`, the store, `summary.json`) is the one a local run writes, and `--resume`,
`jaxviz report` and `jaxviz evaluate` work on it unchanged. What moves to the cluster is the work:
the pending images go into a Ray Dataset, one row per batch, and `map_batches` sends each row to an
actor of an `ActorPoolStrategy` pool (`Attributor`), built once per worker (model loaded, methods
bound, the compilation cache on), which decodes the batch's images and runs the compiled methods on
it exactly as the local runner does, returning the maps, classes and logits.

Ray restarts an actor that dies and runs its batch again (`max_restarts=-1`, `max_task_retries=-1`);
the driver writes each image once, whichever attempt delivered it first, so a killed worker costs
time, never a duplicate or a lost image. An image that does not decode is reported back and logged
and skipped as locally.

The workers read the image paths themselves: the inputs must be at the same paths on every node
(a shared filesystem, or an object store mounted with e.g. gcsfuse or s3fs).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..batch import _batches, _entries, _Item, _launch, _load_all

__all__ = ["Attributor", "RayEngine"]


class Attributor:
    """A Ray Data actor: built once per worker, called on batches of rows (one row = one batch of images).

    `spec` is plain data (JSON-like): the job (`AttributeJob` as a dict), the methods, the batch size, the
    input size, whether display images are needed (PNG views), and the compilation cache folder."""

    def __init__(self, spec: dict):
        from ..job import AttributeJob, bind_job, enable_compilation_cache, resolve_devices
        from ..models.loading import load

        if spec["compile_cache"] != "off":  # a folder, or None: this worker's default cache folder
            enable_compilation_cache(spec["compile_cache"])
        job = AttributeJob.from_json(spec["job"])
        self.lm = load(job.model, job.weights)
        devices = resolve_devices("all") if spec["gpus_per_worker"] > 1 else None
        _, self.methods = bind_job(job, self.lm, spec["methods"], devices)
        self.batch_size, self.size, self.display = spec["batch_size"], spec["size"], spec["display"]
        self.pool = ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1)))

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"payload": np.array([pickle.dumps(self.compute(pickle.loads(r))) for r in rows["items"]], dtype=object)}

    def compute(self, items: list[_Item]) -> dict:
        """The batch's load errors `[(stem, reason)]` and computed parts `[(entries, outputs)]`, where
        `entries` are `(stem, display, input_hw)` and `outputs` the NumPy rows of those images."""
        errors, parts = [], []
        loaded = _load_all(
            self.pool,
            items,
            self.lm,
            self.size,
            window=len(items),
            on_error=lambda item, reason: errors.append((item.stem, reason)),
            display=self.display,
        )
        for batch in _batches(loaded, self.batch_size):
            launched = _launch(batch, self.methods, self.batch_size)
            n = len(batch)
            outputs = {m: tuple(np.asarray(a)[:n] for a in value) for m, value in launched.items()}
            parts.append(([(item.stem, display, hw) for item, display, hw in _entries(batch)], outputs))
        return {"errors": errors, "parts": parts}


@dataclasses.dataclass
class RayEngine:
    """An `Engine` for `run_attribution` / `run_job`: the batches run on a pool of `workers` Ray actors.

    Args:
      job: the `AttributeJob` being run (each actor loads its model and binds its methods from it).
      workers: actors in the pool (each holds one model and its compiled methods).
      gpus_per_worker: GPUs reserved per actor (0: CPU actors); more than one shards each batch over them.
      cpus_per_worker: CPUs reserved per actor.
      address: a Ray cluster to connect to ("auto", "ray://host:10001", ...); None: the running Ray instance
        of this process, else a new local one (stopped at the end).
      compile_cache: the persistent XLA cache folder each actor uses (None: each machine's default folder,
        `job.default_cache_dir()`; "off": none), as `--compile-cache`.
    """

    job: object
    workers: int = 2
    gpus_per_worker: float = 0
    cpus_per_worker: float = 1
    address: str | None = None
    compile_cache: str | None = None

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError(f"--workers {self.workers}: give at least 1")
        if self.gpus_per_worker < 0 or self.cpus_per_worker < 0:
            raise ValueError("--gpus-per-worker and --cpus-per-worker cannot be negative")

    def __call__(self, pool, items: list[_Item], context: dict, on_load_error) -> Iterator[tuple[list, dict]]:
        try:
            import ray
            import ray.data
        except ImportError:
            raise ImportError("--engine ray needs Ray Data: pip install 'jaxviz-cnn[ray]'") from None
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-dataset INFO lines; the runner reports
        started = False
        if not ray.is_initialized():
            with warnings.catch_warnings():  # Ray starts its processes by fork + exec: JAX's fork warning is moot
                warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
                ray.init(address=self.address, logging_level="WARNING", log_to_driver=False)
            started = True
        try:
            yield from self._run(ray, items, context, on_load_error)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray, items: list[_Item], context: dict, on_load_error) -> Iterator[tuple[list, dict]]:
        ray.data.DataContext.get_current().enable_progress_bars = False  # the runner shows its own
        batch_size = context["batch_size"]
        spec = {
            "job": dataclasses.asdict(self.job),
            "methods": list(context["methods"]),
            "batch_size": batch_size,
            "size": context["size"],
            "display": "png" in context["outputs"],
            "compile_cache": self.compile_cache,
            "gpus_per_worker": self.gpus_per_worker,
        }
        # One row per batch of the local run's size: each actor call sees the batches a local run would.
        rows = [{"items": pickle.dumps(items[i : i + batch_size])} for i in range(0, len(items), batch_size)]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows))).map_batches(
            Attributor,
            fn_constructor_kwargs={"spec": spec},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_gpus=self.gpus_per_worker or None,
            num_cpus=self.cpus_per_worker,
        )
        by_stem, seen = {item.stem: item for item in items}, set()
        for block in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for payload in block["payload"]:
                result = pickle.loads(payload)
                for stem, reason in result["errors"]:
                    if stem not in seen:
                        seen.add(stem)
                        on_load_error(by_stem[stem], reason)
                for entries, outputs in result["parts"]:
                    fresh = [i for i, (stem, _, _) in enumerate(entries) if stem not in seen]
                    if not fresh:  # a retried batch whose images were already delivered
                        continue
                    seen.update(entries[i][0] for i in fresh)
                    yield (
                        [(by_stem[entries[i][0]], *entries[i][1:]) for i in fresh],
                        {m: tuple(a[fresh] for a in value) for m, value in outputs.items()},
                    )
