"""Batch jobs that never lose or mix data: one run per folder (real processes), settings in the ledger.

Each test reproduces a way the runner lost or mixed data before, found by trying to break it.
"""

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxviz
from jaxviz import batch
from jaxviz.cli import main
from jaxviz.data.shapes import write_folder
from jaxviz.runlock import RunLockedError, run_lock

SIZE = 32
BATCH = 4
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("shapes"), 12, size=40, seed=3, progress=False)


@pytest.fixture(scope="module")
def lm():
    return jaxviz.load()


def _files(folder, n=6):
    return [str(p) for p in sorted(folder.rglob("*.png"))[:n]]


def _snapshot(out: Path) -> dict:
    """Every file under `out` (the lock file aside) with its bytes."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def _attribute(out, *args):
    return [
        "attribute",
        *args,
        "--size",
        str(SIZE),
        "--batch-size",
        str(BATCH),
        "--outputs",
        "npy",
        "--out",
        str(out),
        "--quiet",
    ]


HOLDER = textwrap.dedent("""
    import sys, time
    from jaxviz.runlock import run_lock
    process = tuple(int(v) for v in sys.argv[2].split(",")) if len(sys.argv) > 2 else (0, 1)
    with run_lock(sys.argv[1], process):
        print("locked", flush=True)
        sys.stdin.readline()            # hold until told (or killed)
""")


def _hold(out, process=None):
    """A real process holding `out`'s lock until its stdin is closed; returns it once it holds it."""
    argv = [sys.executable, "-c", HOLDER, str(out)] + ([",".join(map(str, process))] if process else [])
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == "locked"
    return proc


# --------------------------------------------------------------------------- 1. one run per folder


@pytest.mark.slow
def test_second_process_on_the_same_out_is_refused_naming_the_holder(tmp_path, folder, capsys):
    out = tmp_path / "run"
    holder = _hold(out)
    try:
        assert main(_attribute(out, *_files(folder))) == 2
        err = capsys.readouterr().err
        assert f"is in use by another jaxviz run (PID {holder.pid} on" in err and "another --out" in err
        assert _snapshot(out) == {}  # nothing written: no config, no ledger, no maps
    finally:
        holder.stdin.close()
        holder.wait()
    assert main(_attribute(out, *_files(folder))) == 0  # released: the run goes ahead


@pytest.mark.slow
def test_lock_of_a_killed_run_is_recovered(tmp_path, folder):
    out = tmp_path / "run"
    holder = _hold(out)
    holder.kill()  # SIGKILL: no cleanup ran, the lock file stays
    holder.wait()
    assert (out / ".jaxviz.lock").read_text().startswith(f"PID {holder.pid}")
    with run_lock(out):
        assert (out / ".jaxviz.lock").read_text().startswith(f"PID {os.getpid()}")


@pytest.mark.slow
def test_two_real_runs_started_together_never_both_write(tmp_path):
    """Two `jaxviz attribute` processes on one folder: one is refused (or, if the first had already
    finished, finds everything done); every (image, method) is recorded once, its files intact."""
    data = write_folder(tmp_path / "in", 120, size=SIZE, seed=4, progress=False)
    out = tmp_path / "run"
    # SmoothGrad keeps the run busy for seconds after the 40th record (saliency + Grad-CAM alone finished
    # 600 images at 415 images/s, before the signal came: exit 0)
    methods = ["--method", "saliency,smoothgrad", "--opt", "n=16"]
    argv = [sys.executable, "-m", "jaxviz.cli", *_attribute(out, str(data), *methods)]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)
    ]
    outs = [p.communicate() for p in procs]
    results = [(p.returncode, stdout, stderr) for p, (stdout, stderr) in zip(procs, outs)]
    codes = sorted(rc for rc, _, _ in results)
    refused = [err for rc, _, err in results if rc == 2]
    assert codes in ([0, 2], [0, 0]), results
    if codes == [0, 2]:
        assert "is in use by another jaxviz run" in refused[0]
    else:  # the second started after the first ended: it resumed and did nothing
        assert any("0 images done, 120 already done" in o for _, o, _ in results)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    pairs = [(r["stem"], r["method"]) for r in records]
    assert len(pairs) == len(set(pairs)) == 240
    assert all((out / r["files"]["npy"]).is_file() for r in records)


@pytest.mark.slow
def test_processes_of_one_multi_process_run_share_the_folder_but_not_an_index(tmp_path, lm, folder):
    out = tmp_path / "run"
    other = _hold(out, (1, 2))  # process 1 of 2, a real process
    try:
        methods = batch.bind_methods(lm, ["saliency"])
        kw = dict(batch_size=BATCH, size=SIZE, progress=False, log=lambda _: None, outputs=("store",))
        s = batch.run_attribution(lm, _files(folder), methods, out, process=(0, 2), **kw)  # beside it: fine
        assert s.done == 3
        with pytest.raises(RunLockedError, match=f"PID {other.pid}"):
            batch.run_attribution(lm, _files(folder), methods, out, process=(1, 2), **kw)  # the same index
        with pytest.raises(RunLockedError, match="in use"):
            batch.run_attribution(lm, _files(folder), methods, out, **kw)  # a single-process run
    finally:
        other.stdin.close()
        other.wait()


# --------------------------------------------------------------------------- 2. settings in the ledger


@pytest.mark.parametrize(
    "first, second, differs",
    [
        (
            ["--method", "smoothgrad", "--opt", "n=2"],
            ["--method", "smoothgrad", "--opt", "n=3"],
            "options.n: 2 in the folder, 3 now (--opt)",
        ),
        (
            ["--method", "smoothgrad", "--opt", "n=2"],
            ["--method", "smoothgrad", "--opt", "n=2", "--seed", "1"],
            "seed: 0 in the folder, 1 now (--seed)",
        ),
        (
            ["--method", "saliency"],
            ["--method", "saliency", "--dtype", "bfloat16"],
            'dtype: "float32" in the folder, "bfloat16" now (--dtype)',
        ),
        (
            ["--method", "saliency"],
            ["--method", "saliency", "--target", "3"],
            "target: null in the folder, 3 now (--target)",
        ),
    ],
)
@pytest.mark.slow
def test_rerun_with_other_settings_is_refused_and_changes_nothing(tmp_path, folder, capsys, first, second, differs):
    out = tmp_path / "run"
    files = _files(folder, 3)
    assert main(_attribute(out, *files, *first)) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert main(_attribute(out, *files, *second)) == 2
    err = capsys.readouterr().err
    assert differs in err and "another --out" in err
    assert _snapshot(out) == before  # config.json too: --resume still means the first job
    assert main(["attribute", "--resume", str(out), "--quiet"]) == 0
    assert "0 images done, 3 already done" in capsys.readouterr().out


def test_size_is_part_of_the_identity(tmp_path, folder, capsys):
    out = tmp_path / "run"
    files = _files(folder, 2)
    assert main(_attribute(out, *files)) == 0
    argv = _attribute(out, *files)
    argv[argv.index("--size") + 1] = "48"
    assert main(argv) == 2
    assert f"size: {SIZE} in the folder, 48 now (--size)" in capsys.readouterr().err


def test_settings_that_do_not_change_maps_may_change(tmp_path, folder, capsys):
    """Batch size, outputs and the equivalent spelling of a default option resume; a new method adds to the folder."""
    out = tmp_path / "run"
    files = _files(folder, 4)
    assert main(_attribute(out, *files, "--method", "smoothgrad", "--opt", "n=2")) == 0
    argv = _attribute(out, *files, "--method", "smoothgrad", "--opt", "n=2", "--opt", "chunk=1")
    argv[argv.index("--batch-size") + 1] = "2"
    capsys.readouterr()
    assert main(argv) == 0
    assert "0 images done, 4 already done" in capsys.readouterr().out
    assert main(_attribute(out, *files, "--method", "saliency")) == 0  # a method the folder does not hold yet
    assert "4 images done" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    known = json.loads((out / "settings.json").read_text())
    assert {r["settings"] for r in records} == set(known)
    assert {known[r["settings"]]["method"] for r in records} == {"smoothgrad", "saliency"}
    assert known[records[0]["settings"]]["options"]["n"] == 2


def test_a_default_option_spelled_out_is_the_same_identity(tmp_path, lm, folder):
    """`options={"n": 50}` is SmoothGrad's default written out: the same maps, so the run resumes."""
    kw = dict(batch_size=BATCH, size=SIZE, progress=False, log=lambda _: None, outputs=("npy",))
    files = _files(folder, 2)
    assert batch.run_attribution(lm, files, batch.bind_methods(lm, ["smoothgrad"]), tmp_path / "r", **kw).done == 2
    again = batch.run_attribution(
        lm, files, batch.bind_methods(lm, ["smoothgrad"], options={"n": 50}), tmp_path / "r", **kw
    )
    assert again.done == 0 and again.skipped_existing == 2


# --------------------------------------------------------------------------- 4, 6, 7. what discovery reads


def test_out_inside_the_input_folder_is_not_read_back(tmp_path, folder, capsys):
    data = tmp_path / "photos"
    data.mkdir()
    for f in _files(folder, 5):
        (data / Path(f).name).write_bytes(Path(f).read_bytes())
    out = data / "maps"
    for _ in range(2):
        assert main(_attribute(out, str(data))) == 0
        assert sum(1 for _ in open(out / "results.jsonl")) == 5  # not 10, 15, ...: no maps of maps
    other = data / "older_run"  # any folder holding a jaxviz run is not an input either
    other.mkdir()
    (other / ".jaxviz.lock").touch()
    (other / "x.png").write_bytes((data / Path(_files(folder, 1)[0]).name).read_bytes())
    assert len(batch.discover_images([data])) == 5


def test_fifo_and_symlink_loops_are_skipped_with_a_reason(tmp_path, folder):
    data = tmp_path / "in"
    data.mkdir()
    for f in _files(folder, 2):
        (data / Path(f).name).write_bytes(Path(f).read_bytes())
    os.mkfifo(data / "fifo.png")  # opening it would block forever
    (data / "a.png").symlink_to(data / "b.png")
    (data / "b.png").symlink_to(data / "a.png")
    (data / "gone.png").symlink_to(data / "nothing.png")
    logged = []
    images = batch.discover_images([data, str(data / "*.png")], log=logged.append)
    assert len(images) == 2
    text = "\n".join(logged)
    assert "fifo.png: a FIFO, not an image file" in text
    assert "a.png: a symlink loop" in text and "gone.png: a broken symbolic link" in text
    with pytest.raises(ValueError, match="fifo.png: a FIFO, not an image file"):
        batch.discover_images([data / "fifo.png"])


# --------------------------------------------------------------------------- 5. --resume from anywhere


def test_resume_from_another_directory_finds_the_same_inputs(tmp_path, folder, capsys, monkeypatch):
    work = tmp_path / "work"
    (work / "in").mkdir(parents=True)
    for f in _files(folder, 3):
        (work / "in" / Path(f).name).write_bytes(Path(f).read_bytes())
    monkeypatch.chdir(work)
    assert main(_attribute("run", "in", "--allow-failures")) == 0
    saved = json.loads((work / "run" / "config.json").read_text())
    assert saved["inputs"] == [str(work / "in")] and saved["inputs_given"] == ["in"]
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "in").mkdir(parents=True)  # a folder of the same name must not be picked up
    (elsewhere / "in" / "other.png").write_bytes((work / "in" / Path(_files(folder, 1)[0]).name).read_bytes())
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["attribute", "--resume", str(work / "run"), "--quiet"]) == 0
    assert "0 images done, 3 already done" in capsys.readouterr().out


# --------------------------------------------------------------------------- 9. one-line errors, exit codes


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "smoothgrad", "--opt", "n=abc"], "option n='abc': smoothgrad's n takes int values"),
        (["--method", "integrated_gradients", "--opt", "step=8"], "no chosen method takes 'step'"),
        (["--size", "0"], "--size '0': give a number of pixels"),
        (["--size", "-5"], "--size '-5': give a number of pixels"),
        (["--workers", "4"], "--workers go with --engine ray"),
        (
            ["--engine", "ray", "--devices", "all"],
            "with another engine (--engine ray) each worker uses its own devices",
        ),
    ],
)
def test_bad_arguments_are_one_line_errors_before_any_work(tmp_path, folder, capsys, argv, message):
    out = tmp_path / "run"
    base = _attribute(out, *_files(folder, 2))
    if "--size" in argv:  # replace the default --size
        base[base.index("--size") + 1] = argv[1]
        argv = []
    with pytest.raises(SystemExit) if message.startswith("--size") else contextlib.nullcontext():  # argparse exits 2
        assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (out / "results.jsonl").exists()


def test_out_that_is_a_file_and_resume_with_job_flags_are_refused(tmp_path, folder, capsys):
    afile = tmp_path / "passwd"
    afile.write_text("root:x:0:0\n")
    assert main(_attribute(afile, *_files(folder, 1))) == 2
    assert "an existing file, not a folder" in capsys.readouterr().err
    assert afile.read_text() == "root:x:0:0\n"
    out = tmp_path / "run"
    assert main(_attribute(out, *_files(folder, 1))) == 0
    capsys.readouterr()
    assert main(["attribute", "--resume", str(out), "--method", "grad_cam", "--target", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--method, --target would be ignored" in err


def test_failed_images_exit_non_zero_unless_allowed(tmp_path, folder, capsys):
    data = tmp_path / "in"
    data.mkdir()
    (data / "good.png").write_bytes(Path(_files(folder, 1)[0]).read_bytes())
    (data / "bad.png").write_bytes(b"not a png")
    assert main(_attribute(tmp_path / "a", str(data))) == 1
    err = capsys.readouterr().err
    assert "bad.png" in err and "--allow-failures" in err
    assert main(_attribute(tmp_path / "b", str(data), "--allow-failures")) == 0
    capsys.readouterr()
    assert main(_attribute(tmp_path / "b", str(data), "--allow-failures")) == 0  # the failure is not retried...
    assert "--retry-failed" in capsys.readouterr().out  # ...and the hint names the flag


# --------------------------------------------------------------------------- 10. a 600-byte file that claims TiB


class _StorageRef:
    pass


class _Tensor:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...), as torch.save writes."""

    def __init__(self, storage, size, stride):
        self.storage, self.size, self.stride = storage, size, stride

    def __reduce__(self):
        import collections

        import torch

        return torch._utils._rebuild_tensor_v2, (
            self.storage,
            0,
            self.size,
            self.stride,
            False,
            collections.OrderedDict(),
        )


def test_pth_whose_strides_expand_its_storage_is_refused_without_allocating(tmp_path):
    torch = pytest.importorskip("torch")
    import io
    import pickle
    import zipfile

    from jaxviz import _torch_pickle
    from jaxviz.weights import WeightsError

    storage = _StorageRef()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 4) if obj is storage else None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"features.0.weight": _Tensor(storage, (10**7, 10**7), (0, 0))})
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("bomb/data.pkl", buf.getvalue())
        zf.writestr("bomb/data/0", np.arange(4, dtype="<f4").tobytes())
        zf.writestr("bomb/byteorder", "little")
        zf.writestr("bomb/version", "3\n")
    assert path.stat().st_size < 1000
    with pytest.raises(WeightsError, match=r"shape \(10000000, 10000000\) \(strides \(0, 0\)\) repeats the 4 elements"):
        _torch_pickle.load(path)


# --------------------------------------------------------------------------- 11. NaN never becomes a record


def test_non_finite_weights_are_refused_at_save_and_at_verify(tmp_path, lm):
    from jaxviz import weights
    from jaxviz.weights import WeightsError

    params = jax.tree.map(np.array, lm.params)
    meta = {"arch": "shapesnet", "preprocessing": "unit"}
    good = weights.save_weights(tmp_path / "good.safetensors", params, meta)
    assert weights.verify(good)["finite"] == "ok"
    layer = next(iter(params))
    params[layer]["kernel"].flat[0] = np.nan
    with pytest.raises(WeightsError, match=f"tensor '{layer}.kernel' holds 1 NaN and 0 infinite values"):
        weights.save_weights(tmp_path / "nan.safetensors", params, meta)
    assert not (tmp_path / "nan.safetensors").exists()
    raw = bytearray(good.read_bytes())  # the same NaN written into a file's bytes
    n = int.from_bytes(raw[:8], "little")
    begin, _ = json.loads(raw[8 : 8 + n])[f"{layer}.kernel"]["data_offsets"]
    raw[8 + n + begin : 8 + n + begin + 4] = np.array([np.nan], np.float32).tobytes()
    good.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="holds 1 NaN.*fingerprint differs"):
        weights.verify(good)


def test_non_finite_logits_are_failed_items_and_json_stays_strict(tmp_path, lm, folder):
    """A NaN logit (here: an input that overflows) is a failed item with a reason, never a record."""
    methods = batch.bind_methods(lm, ["saliency"])
    real = methods["saliency"]

    def poisoned(x, ids, t=None):  # the first image of each batch gives NaN logits
        maps, classes, logits = real(x, ids, t)
        return maps, classes, logits.at[0].set(np.nan)

    poisoned.settings = real.settings
    s = batch.run_attribution(
        lm,
        _files(folder, 4),
        {"saliency": poisoned},
        tmp_path / "r",
        batch_size=BATCH,
        size=SIZE,
        progress=False,
        log=lambda _: None,
        outputs=("npy",),
    )
    assert len(s.failed) == 1 and "NaN or infinite logits" in s.failed[0][1]
    lines = (tmp_path / "r" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3
    for line in lines:
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


@pytest.mark.slow
def test_a_nan_pixel_through_the_python_api_is_refused(lm):
    from jaxviz.attribution import grad_cam, saliency

    x = np.zeros((2, SIZE, SIZE, 3), np.float32)
    x[1, 3, 4, 0] = np.nan
    for method in (saliency, grad_cam):
        with pytest.raises(ValueError, match="the input holds 1 NaN or infinite value"):
            method(lm.model, lm.variables, x)
    assert np.isfinite(np.asarray(saliency(lm.model, lm.variables, np.nan_to_num(x)).maps)).all()


# --------------------------------------------------------------------------- 3. links inside --out


@pytest.mark.parametrize("link", ["store/saliency", "results.jsonl", "saliency"])
def test_a_symlink_inside_out_is_refused_and_its_target_untouched(tmp_path, lm, folder, link):
    out = tmp_path / "run"
    methods = batch.bind_methods(lm, ["saliency"])
    kw = dict(batch_size=BATCH, size=SIZE, progress=False, log=lambda _: None, outputs=("store", "npy"))
    batch.run_attribution(lm, _files(folder, 2), methods, out, **kw)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "00000000.npy").write_bytes(b"precious")
    (victim / "notes.jsonl").write_text('{"a": 1}\n{"b": 2')  # no final newline: a truncation target
    target = victim / "notes.jsonl" if link.endswith(".jsonl") else victim
    place = out / link
    if place.is_dir():
        import shutil

        shutil.rmtree(place)
    else:
        place.unlink()
    place.symlink_to(target)
    with pytest.raises(ValueError, match=f"{place} is a symbolic link"):
        batch.run_attribution(lm, _files(folder, 3), methods, out, **kw)
    assert (victim / "00000000.npy").read_bytes() == b"precious"
    assert (victim / "notes.jsonl").read_text() == '{"a": 1}\n{"b": 2'


# --------------------------------------------------------------------------- 8. disk full


def test_disk_full_is_one_line_and_the_run_resumes_to_the_same_maps(tmp_path, folder, capsys, monkeypatch):
    files = _files(folder, 8)
    assert main(_attribute(tmp_path / "clean", *files)) == 0
    real_save, calls = np.save, []

    def save(f, a, *args, **kwargs):  # the disk fills up after 5 maps
        calls.append(1)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(f, a, *args, **kwargs)

    out = tmp_path / "full"
    monkeypatch.setattr(np, "save", save)
    capsys.readouterr()
    assert main(_attribute(out, *files)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no space left writing" in err and str(out) in err and ".npy" in err
    assert "MiB free there" in err and "run the same command again" in err
    monkeypatch.setattr(np, "save", real_save)
    assert main(_attribute(out, *files)) == 0
    clean, resumed = (
        {r["stem"]: np.load(d / r["files"]["npy"]) for r in map(json.loads, open(d / "results.jsonl"))}
        for d in (tmp_path / "clean", out)
    )
    assert clean.keys() == resumed.keys() and len(clean) == 8
    for stem in clean:
        np.testing.assert_array_equal(clean[stem], resumed[stem])
    assert not list(out.rglob("*.tmp"))


# --------------------------------------------------------------------------- 6. Ctrl-C


@pytest.mark.slow
def test_ctrl_c_stops_within_seconds_and_the_run_resumes(tmp_path):
    data = write_folder(tmp_path / "in", 600, size=SIZE, seed=6, progress=False)  # long enough to interrupt
    (data / "fifo.png").unlink(missing_ok=True)
    os.mkfifo(data / "fifo.png")  # hung the whole run before: now skipped at discovery
    out = tmp_path / "run"
    methods = ["--method", "saliency,grad_cam"]
    argv = [sys.executable, "-m", "jaxviz.cli", *_attribute(out, str(data), *methods)]
    # Ctrl-C as in a terminal: a parent started in the background without job control (`cmd &` in a
    # script) passes SIGINT on ignored, and Python then never raises KeyboardInterrupt (the run ended 0)
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    results = out / "results.jsonl"
    deadline = time.monotonic() + 120
    while (
        proc.poll() is None
        and time.monotonic() < deadline
        and (not results.exists() or results.read_text().count("\n") < 40)
    ):
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 5 and proc.returncode == 130, (stdout, err)
    assert "interrupted; finished work is kept" in err and "Traceback" not in err
    assert main(_attribute(out, str(data), *methods, "--allow-failures")) == 0
    records = [json.loads(line) for line in results.read_text().splitlines()]
    pairs = [(r["stem"], r["method"]) for r in records]
    assert len(pairs) == len(set(pairs)) == 1200


def test_keras_h5_listing_a_missing_layer_is_a_clear_error(tmp_path):
    h5py = pytest.importorskip("h5py")
    from jaxviz import weights
    from jaxviz.weights import WeightsError

    path = tmp_path / "vgg16_weights.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"block1_conv1", b"block1_conv2"]
        g = f.create_group("block1_conv1")
        g.attrs["weight_names"] = [b"block1_conv1/kernel:0", b"block1_conv1/bias:0"]
        g["block1_conv1/kernel:0"] = np.zeros((3, 3, 3, 64), np.float32)
        g["block1_conv1/bias:0"] = np.zeros(64, np.float32)
    with pytest.raises(WeightsError, match="lists layer 'block1_conv2' in `layer_names` but holds no group"):
        weights.port(path, "vgg16", out=tmp_path / "out.safetensors")
    assert main(["weights", "port", str(path), "--arch", "vgg16", "--out", str(tmp_path / "o.safetensors")]) == 2


# --------------------------------------------------------------------------- 12. a short last batch


@pytest.mark.parametrize("n, size", [(1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (16, 16), (17, 16)])
def test_a_short_batch_runs_at_the_next_power_of_two(n, size):
    assert batch.padded_size(n, 16) == size


# --------------------------------------------------------------------------- 14. a real multi-process run


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _distributed(out, data, n_processes=2):
    """`n_processes` real `jaxviz attribute --distributed` processes, coordinated on this machine."""
    port = _free_port()
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jaxviz.cli",
                *_attribute(out, str(data)),
                "--distributed",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                str(n_processes),
                "--process-id",
                str(i),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for i in range(n_processes)
    ]


def _npy_maps(out: Path) -> dict:
    return {
        r["stem"]: np.load(out / r["files"]["npy"])
        for p in sorted(out.glob("results*.jsonl"))
        for r in map(json.loads, p.read_text().splitlines())
    }


@pytest.mark.slow
def test_two_real_processes_share_the_images_and_equal_one_process_bit_for_bit(tmp_path):
    data = write_folder(tmp_path / "in", 40, size=SIZE, seed=8, progress=False)
    single = tmp_path / "single"
    assert main(_attribute(single, str(data))) == 0
    out = tmp_path / "two"
    procs = _distributed(out, data)
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert {p.name for p in out.glob("results*.jsonl")} == {"results.p0.jsonl", "results.p1.jsonl"}
    counts = [sum(1 for _ in open(out / f"results.p{i}.jsonl")) for i in (0, 1)]
    assert counts == [20, 20]  # each its share
    a, b = _npy_maps(single), _npy_maps(out)
    assert a.keys() == b.keys() and len(a) == 40
    for stem in a:
        np.testing.assert_array_equal(a[stem], b[stem])


@pytest.mark.slow
def test_a_killed_process_of_a_multi_process_run_is_recovered_by_a_rerun(tmp_path):
    data = write_folder(tmp_path / "in", 120, size=SIZE, seed=9, progress=False)
    out = tmp_path / "run"
    procs = _distributed(out, data)
    ledger = out / "results.p1.jsonl"
    deadline = time.monotonic() + 180
    while (
        procs[1].poll() is None
        and time.monotonic() < deadline
        and (not ledger.exists() or ledger.read_text().count("\n") < 8)
    ):
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait()
    summary = out / "summary.p0.json"  # process 0 finishes its share; at exit it would wait for its dead
    while procs[0].poll() is None and time.monotonic() < deadline and not summary.exists():  # peer (JAX's
        time.sleep(0.1)  # heartbeat timeout, 100 s): it need not
    procs[0].kill()
    procs[0].communicate()
    rerun = _distributed(out, data)
    outs = [p.communicate(timeout=300) for p in rerun]
    assert [p.returncode for p in rerun] == [0, 0], outs
    maps = _npy_maps(out)
    pairs = [
        (r["stem"], r["method"])
        for p in out.glob("results*.jsonl")
        for r in map(json.loads, p.read_text().splitlines())
    ]
    assert len(pairs) == len(set(pairs)) == 120 and len(maps) == 120


# --------------------------------------------------------------------------- 13. very large images


LARGE = textwrap.dedent("""
    import resource, sys
    import jaxviz
    from jaxviz import batch
    lm = jaxviz.load()
    item = batch._Item(batch.Path(sys.argv[1]), sys.argv[1], "big", ("saliency",))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    shown, x = batch._load_one(item, lm, 32, True)
    print(x.shape, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
""")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.slow
def test_a_huge_image_is_decoded_at_the_size_the_model_needs(tmp_path, fmt):
    from PIL import Image

    h, w = 4000, 6000  # 24 Mpx: 288 MB as float32 RGB
    ramp = (np.arange(w, dtype=np.uint32)[None, :] * 255 // w).astype(np.uint8)
    pixels = np.stack([np.broadcast_to(ramp, (h, w))] * 3, -1)
    path = tmp_path / f"big.{fmt.lower()}"
    Image.fromarray(pixels).save(path, fmt)
    del pixels
    res = subprocess.run([sys.executable, "-c", LARGE, str(path)], capture_output=True, text=True, env=ENV, check=True)
    shape, grown_mib = res.stdout.split(")")[0] + ")", int(res.stdout.split()[-1])
    assert shape == "(32, 32, 3)"
    assert grown_mib < 350, f"decoding grew RSS by {grown_mib} MiB"  # 172 MiB measured; decoded whole: 721

    from jaxviz.data.images import load_image

    small = load_image(path, shorter_side=64)
    assert min(small.shape[:2]) >= 64 and small.shape[1] / small.shape[0] == pytest.approx(w / h, rel=0.02)
    assert abs(float(small.mean()) - ramp.mean() / 255) < 0.01  # the same picture, smaller


def test_two_runs_in_one_process_exclude_each_other_too(tmp_path):
    with run_lock(tmp_path):
        with pytest.raises(RunLockedError, match=f"PID {os.getpid()}"):
            with run_lock(tmp_path):
                pass
    with run_lock(tmp_path):  # released
        pass


# --------------------------------------------------------------------------- 12. one memory budget


@pytest.mark.parametrize("text, n", [("6G", 6 * 2**30), ("512M", 512 * 2**20), ("1.5GiB", 3 * 2**29), ("800", 800)])
def test_memory_budget_sizes(text, n):
    from jaxviz.memory import parse_bytes

    assert parse_bytes(text) == n
    with pytest.raises(ValueError, match="give a size such as 6G"):
        parse_bytes("lots")


@pytest.mark.parametrize(
    "name, options",
    [
        ("guided_backprop", {}),
        ("smoothgrad", {"n": 4, "chunk": 4}),
        ("integrated_gradients", {"steps": 4, "chunk": 4}),
        ("score_cam", {"chunk": 4}),
    ],
)
@pytest.mark.slow
def test_a_pass_holds_at_most_the_budgeted_bytes_per_image(lm, name, options):
    """XLA's own accounting of the compiled pass: temp bytes per image row <= PASS_FACTOR x module outputs."""
    from jaxviz.attribution.engine import compiled
    from jaxviz.memory import PASS_FACTOR, activation_bytes

    shape = (64, 64, 3)
    per_image = activation_bytes(lm.model, lm.variables, shape)
    x = np.zeros((2, *shape), np.float32)
    keys = jax.random.split(jax.random.key(0), 2)
    temp = compiled(name, lm.model, **options).lower(lm.variables, x, None, keys).compile().memory_analysis()
    rows = 2 * options.get("chunk", 1)
    assert temp.temp_size_in_bytes / rows <= PASS_FACTOR * per_image


@pytest.mark.slow
def test_chunks_and_batch_size_follow_the_memory_budget(tmp_path, lm, folder, monkeypatch):
    from jaxviz.attribution import engine
    from jaxviz.job import AttributeJob, run_job
    from jaxviz.memory import activation_bytes

    per_image = activation_bytes(lm.model, lm.variables, (SIZE, SIZE, 3))
    seen = []
    real = engine.compiled
    monkeypatch.setattr(
        engine, "compiled", lambda name, model, **kw: seen.append((name, kw.get("chunk"))) or real(name, model, **kw)
    )
    logged = []
    job = AttributeJob(
        inputs=_files(folder, 4),
        methods=["smoothgrad", "score_cam"],
        options={"n": 4},
        batch_size=4,
        size=SIZE,
        outputs=["npy"],
        memory_budget=int(3.5 * per_image),
    )
    s = run_job(job, tmp_path / "r", progress=False, log=logged.append)
    assert s.done == 4
    assert any("batch size 4 lowered to 3" in line for line in logged)
    # 3 images a pass: Score-CAM's batch of 3 one channel at a time, then the last image 3 at a time.
    # SmoothGrad on CPU splits the batch on the host (4 samples > 3 rows): one image at a time, 3 samples a pass
    import jax

    sg = {("smoothgrad", 3)} if jax.default_backend() == "cpu" else {("smoothgrad", 1), ("smoothgrad", 3)}
    assert set(seen) == {("score_cam", 1), ("score_cam", 3)} | sg


def test_method_all_skips_the_cam_methods_a_models_head_rules_out():
    """`--method all` on a flatten → dense head (MiniVGG, VGG) runs every method but CAM / CAM-GMP, and
    says so; on a GAP head (ShapesNet) it keeps CAM."""
    from jaxviz.attribution import METHODS
    from jaxviz.job import _applicable
    from jaxviz.models.loading import load

    said = []
    kept = _applicable(list(METHODS), load("minivgg", random_init=True), said.append)
    assert kept == [m for m in METHODS if m not in ("cam", "cam_gmp")]
    assert "cam, cam_gmp skipped" in said[0]
    assert "cam" in _applicable(list(METHODS), load("shapesnet", random_init=True), said.append)


@pytest.mark.slow
def test_sample_methods_split_the_batch_to_fit_the_budget_on_cpu():
    """SmoothGrad / IG on CPU: XLA unrolls their sample chunks and then holds them all (49.5 GB asked on
    VGG16 at batch 16), so a batch job splits the batch on the host to fit the budget — same maps."""
    import jax

    from jaxviz.batch import bind_methods
    from jaxviz.memory import activation_bytes
    from jaxviz.models.loading import load

    lm = load("shapesnet", random_init=True)
    x = jax.random.normal(jax.random.key(0), (4, *lm.input_shape))
    ids = jax.numpy.arange(4)
    per = activation_bytes(lm.model, lm.variables, lm.input_shape)
    opts = {"n": 4, "steps": 4}
    for name in ("smoothgrad", "integrated_gradients"):
        whole = bind_methods(lm, [name], None, options=opts, memory_budget=10**12)[name](x, ids)
        for rows in (8, 3):  # 2 images a pass; then fewer rows than samples: 1 image, 3 samples a pass
            small = bind_methods(lm, [name], None, options=opts, memory_budget=int((rows + 0.5) * per))[name](x, ids)
            np.testing.assert_allclose(np.asarray(small[0]), np.asarray(whole[0]), rtol=1e-5, atol=1e-7)
            np.testing.assert_array_equal(np.asarray(small[1]), np.asarray(whole[1]))
