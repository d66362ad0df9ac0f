"""`--engine ray`: a Ray Data pipeline of attributor actors writes the run folder a local run writes.

A local Ray instance on this machine (`ray.init(num_cpus=2)`), 200 generated shapes images, two workers:
the same maps bit for bit (float32) and the same records as the local runner; a worker killed by its PID
mid-run is restarted by Ray and every image still ends up done exactly once."""

import collections
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from jaxviz.data.shapes import write_folder  # noqa: E402
from jaxviz.integrations.ray import RayEngine  # noqa: E402
from jaxviz.job import AttributeJob, run_job  # noqa: E402
from jaxviz.store import read_maps  # noqa: E402

pytestmark = pytest.mark.slow  # a local Ray instance and its worker processes

N, METHODS = 200, ["saliency", "grad_cam"]
# what an engine may change in a record: how long its batch took, and which store chunk holds its map (batches
# arrive in the order the workers finish them; the maps themselves are compared below)
VOLATILE = {"seconds", "store"}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("ray") / "imgs", N, progress=False)


@pytest.fixture(scope="module")
def local_run(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("ray") / "local"
    run_job(_job(images), out, progress=False, log=lambda _: None)
    return out


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


def _job(images, **kw):
    return AttributeJob(inputs=[str(images)], methods=METHODS, outputs=["store", "npy"], batch_size=16, **kw)


def _records(out: Path) -> dict:
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {(r["stem"], r["method"]): r for r in lines}, collections.Counter((r["stem"], r["method"]) for r in lines)


def _same_as_local(out: Path, local: Path) -> None:
    (mine, counts), (theirs, _) = _records(out), _records(local)
    assert set(mine) == set(theirs) and len(mine) == N * len(METHODS)
    assert max(counts.values()) == 1, "an image was written twice"
    for key, record in mine.items():
        want = theirs[key]
        assert {k: v for k, v in record.items() if k not in VOLATILE} == {
            k: v for k, v in want.items() if k not in VOLATILE
        }, key
    for method in METHODS:
        records, maps = read_maps(out, method)
        local_records, local_maps = read_maps(local, method)
        by_stem = {r["stem"]: r for r in local_records}
        for r in records:
            np.testing.assert_array_equal(maps(r), local_maps(by_stem[r["stem"]]), strict=True)
            np.testing.assert_array_equal(np.load(out / r["files"]["npy"]), np.load(local / r["files"]["npy"]))


def test_two_workers_write_the_local_run_bit_for_bit(cluster, images, local_run, tmp_path):
    out = tmp_path / "ray"
    job = _job(images)
    s = run_job(job, out, progress=False, log=lambda _: None, engine=RayEngine(job, workers=2))
    assert (s.done, s.failed) == (N, [])
    _same_as_local(out, local_run)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == N and summary["methods"] == METHODS


def _actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"Attributor" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_a_worker_killed_mid_run_is_retried_and_every_image_is_done_once(cluster, images, local_run, tmp_path):
    out = tmp_path / "ray"
    job = _job(images)
    killed = {}

    def kill_one_worker_mid_run():  # once the first batches are written, SIGKILL one actor process
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            ledger = out / "results.jsonl"
            lines = ledger.read_text().count("\n") if ledger.exists() else 0
            pids = _actor_pids()
            if lines >= 16 * len(METHODS) and len(pids) == 2:
                os.kill(pids[0], signal.SIGKILL)
                killed.update(pid=pids[0], lines=lines)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_one_worker_mid_run)
    watcher.start()
    s = run_job(job, out, progress=False, log=lambda _: None, engine=RayEngine(job, workers=2))
    watcher.join()
    assert killed and killed["lines"] < N * len(METHODS), f"no worker was killed mid-run: {killed}"
    assert (s.done, s.failed) == (N, [])
    _same_as_local(out, local_run)

    again = run_job(job, out, progress=False, log=lambda _: None, engine=RayEngine(job, workers=2))
    assert (again.done, again.skipped_existing) == (0, N)  # the rerun skips every finished image


def test_a_bad_image_is_logged_and_skipped_as_locally(cluster, tmp_path):
    images = write_folder(tmp_path / "imgs", 6, progress=False)
    bad = images / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    job = AttributeJob(inputs=[str(images)], methods=["saliency"], outputs=["store"], batch_size=4)
    logged = []
    s = run_job(job, tmp_path / "ray", progress=False, log=logged.append, engine=RayEngine(job, workers=1))
    assert s.done == 6 and [image for image, _ in s.failed] == [str(bad)]
    assert any(str(bad) in line for line in logged)
    errors = [json.loads(line) for line in (tmp_path / "ray" / "errors.jsonl").read_text().splitlines()]
    assert [e["image"] for e in errors] == [str(bad)]


def test_devices_and_distributed_are_refused_with_another_engine(tmp_path):
    job = AttributeJob(inputs=[str(tmp_path)], devices="all")
    with pytest.raises(ValueError, match="--gpus-per-worker"):
        run_job(job, tmp_path / "out", engine=RayEngine(job))
