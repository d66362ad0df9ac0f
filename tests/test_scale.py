"""Attribution at scale: map store, run config and --resume, kill -9 recovery, sharding, multi-process, cache."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import jaxviz
from jaxviz import batch
from jaxviz.cli import main
from jaxviz.data.shapes import image_path, write_folder
from jaxviz.job import load_job
from jaxviz.store import StoreFormat, downsample, read_maps

SIZE = 32  # small input: every test here compiles for (BATCH, 32, 32, 3) only
BATCH = 4


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("shapes"), 24, size=40, seed=5, progress=False)


@pytest.fixture(scope="module")
def lm():
    return jaxviz.load()


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(out.glob("results*.jsonl")) for line in p.read_text().splitlines()]


def _maps(out: Path, method: str) -> dict[str, np.ndarray]:
    records, load = read_maps(out, method)
    return {r["stem"]: load(r) for r in records}


@pytest.mark.slow
def test_write_folder_is_resumable_and_labelled(tmp_path):
    write_folder(tmp_path, 3, size=16, seed=5, progress=False)
    first = image_path(tmp_path, 0).stat().st_mtime_ns
    write_folder(tmp_path, 5, size=16, seed=5, progress=False)  # only the two new files are written
    assert image_path(tmp_path, 0).stat().st_mtime_ns == first and image_path(tmp_path, 4).is_file()
    rows = (tmp_path / "labels.csv").read_text().splitlines()
    assert rows[0] == "file,label,class" and len(rows) == 6 and rows[1].startswith("000/000000.png,")


@pytest.mark.slow
def test_store_holds_the_same_maps_as_npy_files(tmp_path, lm, folder):
    methods = batch.bind_methods(lm, ["saliency", "grad_cam"])
    images = sorted(folder.glob("000/*.png"))[:10]
    s = batch.run_attribution(
        lm, images, methods, tmp_path, batch_size=BATCH, size=SIZE, progress=False, outputs=("npy", "store")
    )
    assert s.done == 10 and not list(tmp_path.glob("*/*.png"))  # no PNG views asked for
    for method in methods:
        records, load = read_maps(tmp_path, method)
        assert len(records) == 10
        for r in records:
            np.testing.assert_array_equal(load(r), np.load(tmp_path / r["files"]["npy"]))
    # 10 images in batches of 4: three chunks per method
    assert sorted(p.name for p in (tmp_path / "store" / "saliency").iterdir()) == [
        "00000000.npy",
        "00000001.npy",
        "00000002.npy",
    ]


def test_store_float16_and_downsampling(tmp_path, lm, folder):
    methods = batch.bind_methods(lm, ["saliency"])
    images = sorted(folder.glob("000/*.png"))[:4]
    full = tmp_path / "full"
    batch.run_attribution(lm, images, methods, full, batch_size=BATCH, size=SIZE, progress=False, outputs=("store",))
    small = tmp_path / "small"
    batch.run_attribution(
        lm,
        images,
        methods,
        small,
        batch_size=BATCH,
        size=SIZE,
        progress=False,
        outputs=("store",),
        store_format=StoreFormat("float16", 4),
    )
    chunk = np.load(small / "store" / "saliency" / "00000000.npy")
    assert chunk.dtype == np.float16 and chunk.shape == (4, SIZE // 4, SIZE // 4, 3)
    a, b = _maps(full, "saliency"), _maps(small, "saliency")
    for stem in a:
        pooled = a[stem].reshape(8, 4, 8, 4, 3).mean(axis=(1, 3))
        np.testing.assert_allclose(b[stem], pooled, rtol=1e-3, atol=1e-3 * np.abs(pooled).max())
    with pytest.raises(ValueError, match="larger than the maps"):
        downsample(np.zeros((1, 2, 2)), 4)
    with pytest.raises(ValueError, match="float16"):
        StoreFormat("int8")


def test_unreferenced_chunks_are_pruned_on_resume(tmp_path, lm, folder):
    methods = batch.bind_methods(lm, ["saliency"])
    images = sorted(folder.glob("000/*.png"))[:4]
    batch.run_attribution(
        lm, images, methods, tmp_path, batch_size=BATCH, size=SIZE, progress=False, outputs=("store",)
    )
    orphan = tmp_path / "store" / "saliency" / "00000007.npy"  # a chunk whose records a kill never wrote
    np.save(orphan, np.zeros((1,)))
    s = batch.run_attribution(
        lm, images, methods, tmp_path, batch_size=BATCH, size=SIZE, progress=False, outputs=("store",)
    )
    assert s.done == 0 and s.skipped_existing == 4 and not orphan.exists()


def test_resume_from_run_directory_needs_no_arguments(tmp_path, folder, capsys):
    out = tmp_path / "run"
    files = [str(p) for p in sorted(folder.glob("000/*.png"))[:6]]
    assert (
        main(
            [
                "attribute",
                *files[:3],
                "--method",
                "saliency,grad_cam",
                "--size",
                str(SIZE),
                "--batch-size",
                str(BATCH),
                "--outputs",
                "store",
                "--store-dtype",
                "float16",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    job = load_job(out)
    assert job.methods == ["saliency", "grad_cam"] and job.outputs == ["store"] and job.store_dtype == "float16"
    capsys.readouterr()
    assert main(["attribute", "--resume", str(out), "--quiet"]) == 0
    assert "0 images done, 3 already done" in capsys.readouterr().out
    assert main(["attribute", "--resume", str(tmp_path / "nothing"), "--quiet"]) == 2
    assert "config.json not found" in capsys.readouterr().err
    assert main(["attribute", files[0], "--resume", str(out), "--quiet"]) == 2
    assert "give no inputs" in capsys.readouterr().err
    (out / "config.json").write_text(json.dumps({"inputs": files, "colour": "red"}))
    with pytest.raises(ValueError, match="unknown field"):
        load_job(out)


def test_failure_reasons_group_without_file_names():
    s = batch.RunSummary(0, 0, [("a.png", "a.png: truncated"), ("b.png", "b.png: truncated"), ("c", "NaN")], 1.0, 0.0)
    assert s.failure_reasons() == {"<image>: truncated": 2, "NaN": 1}


@pytest.mark.slow
def test_processes_split_the_images_and_resume_each_other(tmp_path, lm, folder):
    methods = batch.bind_methods(lm, ["saliency"])
    images = sorted(folder.glob("000/*.png"))[:9]
    kw = dict(batch_size=BATCH, size=SIZE, progress=False, outputs=("store",))
    whole = batch.run_attribution(lm, images, methods, tmp_path / "one", **kw)
    parts = [batch.run_attribution(lm, images, methods, tmp_path / "two", process=(i, 2), **kw) for i in (0, 1)]
    assert whole.done == 9 and [p.done for p in parts] == [5, 4]
    assert {p.name for p in (tmp_path / "two").glob("results*.jsonl")} == {"results.p0.jsonl", "results.p1.jsonl"}
    a, b = _maps(tmp_path / "one", "saliency"), _maps(tmp_path / "two", "saliency")
    assert a.keys() == b.keys()
    for stem in a:
        np.testing.assert_array_equal(a[stem], b[stem])
    again = batch.run_attribution(lm, images, methods, tmp_path / "two", **kw)  # one process reads both ledgers
    assert again.done == 0 and again.skipped_existing == 9
    with pytest.raises(ValueError, match="process index"):
        batch.run_attribution(lm, images, methods, tmp_path / "x", process=(2, 2), **kw)


@pytest.mark.slow
def test_compilation_cache_is_written_and_reused(tmp_path):
    code = textwrap.dedent(f"""
        import jax, jax.numpy as jnp, time
        from jaxviz.job import enable_compilation_cache
        enable_compilation_cache({str(tmp_path)!r})
        f = jax.jit(lambda x: jnp.sin(x) @ x.T + 1.2345)
        t = time.perf_counter(); f(jnp.ones((8, 8))).block_until_ready(); print(time.perf_counter() - t)
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    entries = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert entries, "no compiled program was cached"
    before = {p: p.stat().st_mtime_ns for p in entries}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before  # read, not rewritten


SHARDED = textwrap.dedent("""
    import json, sys
    import numpy as np
    from jaxviz.job import AttributeJob, run_job
    from jaxviz.store import read_maps
    inputs, out, devices = sys.argv[1], sys.argv[2], sys.argv[3]
    job = AttributeJob(inputs=[inputs], methods=["saliency", "grad_cam", "smoothgrad"], options={"n": 4},
                       batch_size=6, size=32, outputs=["store"], devices=None if devices == "none" else devices)
    run_job(job, out, progress=False)
    import jax
    print(json.dumps({"devices": jax.device_count()}))
""")


@pytest.mark.slow
def test_sharded_run_equals_single_device(tmp_path, folder):
    """8 simulated CPU devices (XLA_FLAGS in a fresh process): same maps as one device."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    inputs = str(folder / "000")
    for name, devices in (("single", "none"), ("sharded", "all")):
        run = subprocess.run(
            [sys.executable, "-c", SHARDED, inputs, str(tmp_path / name), devices],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(run.stdout.strip().splitlines()[-1])["devices"] == 8
    assert "rounded up to 8" in run.stdout  # batch 6 → 8 over 8 devices
    for method in ("saliency", "grad_cam", "smoothgrad"):
        a, b = _maps(tmp_path / "single", method), _maps(tmp_path / "sharded", method)
        assert len(a) == 24 and a.keys() == b.keys()
        for stem in a:
            np.testing.assert_allclose(a[stem], b[stem], rtol=1e-5, atol=1e-6)


def _run_cli(out: Path, inputs: str) -> subprocess.Popen:
    argv = [
        sys.executable,
        "-m",
        "jaxviz.cli",
        "attribute",
        inputs,
        "--method",
        "saliency,grad_cam",
        "--size",
        str(SIZE),
        "--batch-size",
        "8",
        "--outputs",
        "npy,store",
        "--out",
        str(out),
        "--quiet",
    ]
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu")
    )


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_equals_uninterrupted_run(tmp_path):
    """SIGKILL a few hundred-image job three times mid-run; the resumed run's outputs equal a clean run's."""
    data = write_folder(tmp_path / "in", 300, size=SIZE, seed=9, progress=False)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert _run_cli(clean, str(data)).wait() == 0
    rng = random.Random(0)
    kills = 0
    for _ in range(3):
        have = len(_records(killed)) if killed.exists() else 0
        proc = _run_cli(killed, str(data))
        deadline = time.monotonic() + 120
        goal = have + rng.randint(16, 120)  # kill after a random number of new records
        while proc.poll() is None and time.monotonic() < deadline and len(_records(killed)) < goal:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2
    final = _run_cli(killed, str(data))
    assert final.wait() == 0, final.stderr.read()
    a, b = _records(clean), _records(killed)
    pairs = [(r["stem"], r["method"]) for r in b]
    assert len(pairs) == len(set(pairs)) == len(a) == 600  # no duplicate, none missing
    for method in ("saliency", "grad_cam"):
        ma, mb = _maps(clean, method), _maps(killed, method)
        assert ma.keys() == mb.keys()
        for stem in ma:
            np.testing.assert_array_equal(ma[stem], mb[stem])
    referenced = {r["store"]["chunk"] for r in b}
    assert {str(p.relative_to(killed)) for p in (killed / "store").rglob("*.npy")} == referenced
    assert not [p for p in killed.rglob("*.tmp")]  # no half-written file left behind


@pytest.mark.slow
def test_original_sizes_are_bucketed_one_shape_per_batch(tmp_path, lm):
    """size="original": each image keeps its size (rounded to 32); batches never mix shapes."""
    from jaxviz.data.shapes import generate

    imgs = generate(5, size=96, seed=3).images
    sizes = [(40, 70), (96, 96), (33, 65), (100, 90), (2000, 1000)]  # → 32x64, 96x96, 32x64, 96x96, 1024x512
    for k, (h, w) in enumerate(sizes):
        pic = (imgs[k] * 255).astype(np.uint8)
        Image.fromarray(pic).resize((w, h)).save(tmp_path / f"{k}.png")
    assert batch.original_hw(2000, 1000) == (1024, 512) and batch.original_hw(10, 10) == (32, 32)
    calls = []
    fn = batch.bind_methods(lm, ["grad_cam"])["grad_cam"]
    methods = {"grad_cam": lambda x, ids: calls.append(x.shape) or fn(x, ids)}
    s = batch.run_attribution(
        lm,
        sorted(tmp_path.glob("*.png")),
        methods,
        tmp_path / "out",
        batch_size=2,
        size="original",
        progress=False,
        outputs=("npy",),
    )
    assert s.done == 5
    assert sorted(calls) == [(1, 1024, 512, 3), (2, 32, 64, 3), (2, 96, 96, 3)]  # the lone big one: not padded
    records = {Path(r["image"]).name: r for r in _records(tmp_path / "out")}
    assert records["1.png"]["input_hw"] == [96, 96] and records["4.png"]["input_hw"] == [1024, 512]
    assert np.load(tmp_path / "out" / records["2.png"]["files"]["npy"]).shape == (32, 64)


SAMPLES = textwrap.dedent("""
    import json
    import jax, numpy as np, jaxviz
    from jax.sharding import Mesh
    from jaxviz.attribution.engine import compiled
    from jaxviz.batch import bind_methods
    lm = jaxviz.load()
    x = np.random.default_rng(0).random((1, 64, 64, 3), np.float32)
    ids = np.arange(1, dtype=np.uint32)
    out = {}
    for name, opts in [("smoothgrad", {"n": 16}), ("integrated_gradients", {"steps": 16})]:
        a = bind_methods(lm, [name], None, options=opts)[name](x, ids)[0]
        b = bind_methods(lm, [name], None, options=opts, devices=jax.devices())[name](x, ids)[0]
        out[name] = float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(a)).max())
    fn = compiled("smoothgrad", lm.model, n=16)
    lowered = lambda: jax.jit(fn).lower(lm.params, x, None, jax.random.key(0)).compile().as_text()
    plain = lowered()
    with jax.set_mesh(Mesh(np.asarray(jax.devices()), ("batch",))):
        sharded = lowered()
    out["all_reduce"] = [plain.count("all-reduce"), sharded.count("all-reduce")]
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_sample_axes_shard_over_devices_for_a_single_image(tmp_path):
    """Batch of one on 8 devices: SmoothGrad's samples and IG's steps are spread (XLA adds the cross-device
    sum) and the maps equal the single-device ones."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", SAMPLES], env=env, capture_output=True, text=True, check=True)
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["smoothgrad"] < 1e-5 and out["integrated_gradients"] < 1e-5
    plain, sharded = out["all_reduce"]
    assert plain == 0 and sharded > 0


@pytest.mark.slow
def test_bind_methods_fuses_the_seed002_bundle_into_one_call(lm, monkeypatch):
    """Several fusable methods share one compiled call per batch; maps equal the methods bound one by one."""
    from jaxviz.data.shapes import generate

    names = ["saliency", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam", "smoothgrad"]
    x = generate(4, seed=2).images - 0.5
    ids = np.arange(4, dtype=np.uint32)
    together = batch.bind_methods(lm, names, options={"n": 3})
    calls = []
    import jaxviz.batch as B

    original = B._SameArguments.__call__

    def counting(self, *args):
        calls.append(self.args is None or any(a is not b for a, b in zip(args, self.args, strict=True)))
        return original(self, *args)

    monkeypatch.setattr(B._SameArguments, "__call__", counting)
    got = {name: together[name](x, ids) for name in names}
    assert sum(calls) == 1 and len(calls) == 5  # five fused methods, one computation
    for name in names:
        alone = batch.bind_methods(lm, [name], options={"n": 3})[name](x, ids)
        for a, b in zip(got[name], alone, strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    t = np.array([1, 2, 3, 4])
    np.testing.assert_array_equal(together["grad_cam"](x, ids, t)[1], t)  # a per-call target reaches the group


def test_distributed_job_initializes_and_takes_its_share(tmp_path, folder, monkeypatch):
    """--distributed: jax.distributed.initialize() is called and this process (1 of 2) takes every other image."""
    import jax

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    files = [str(p) for p in sorted(folder.glob("000/*.png"))[:6]]
    from jaxviz.job import AttributeJob, run_job

    job = AttributeJob(
        inputs=files, methods=["saliency"], batch_size=BATCH, size=SIZE, outputs=["store"], distributed=True
    )
    s = run_job(job, tmp_path, progress=False)
    assert calls == [1] and s.done == 3
    records = _records(tmp_path)
    assert {p.name for p in tmp_path.glob("results*.jsonl")} == {"results.p1.jsonl"}
    assert sorted(Path(r["image"]).name for r in records) == [Path(f).name for f in files[1::2]]
    assert not (tmp_path / "config.json").exists()  # process 0 writes the shared config
