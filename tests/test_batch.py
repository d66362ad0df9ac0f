"""Batch runner: discovery, safe unique output names, bad files, resume, padding, containment."""

import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

import jaxviz
from jaxviz import batch
from jaxviz.attribution import METHODS
from jaxviz.data.images import load_image

SIZE = 32  # model input side: small and fast; every test uses it and BATCH, so one compile each
BATCH = 4
FIELDS = {
    "image",
    "stem",
    "model",
    "method",
    "target",
    "class",
    "class_name",
    "logit",
    "probability",
    "files",
    "seconds",
}


@pytest.fixture(scope="module")
def lm():
    return jaxviz.load("shapesnet", random_init=True)


@pytest.fixture(scope="module")
def jitted(lm):
    """Jitted methods like demo.py's, shared by every test (compiled once per shape)."""
    return {
        name: jax.jit(lambda x, ids=None, f=METHODS[name]: f(lm.model, lm.params, x, None))
        for name in ("saliency", "grad_cam")
    }


class Counter:
    """Wraps functions and counts their calls."""

    def __init__(self):
        self.calls = {}
        self.shapes = set()  # shapes of array arguments seen

    def wrap(self, name, fn):
        def counted(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            self.shapes.update(a.shape for a in args if isinstance(a, np.ndarray) and a.ndim == 4)
            return fn(*args, **kwargs)

        return counted


@pytest.fixture
def counted(jitted, monkeypatch):
    """(methods whose calls are counted, counter); image loads are counted as "load"."""
    counter = Counter()
    monkeypatch.setattr(batch, "load_image", counter.wrap("load", load_image))
    return {n: counter.wrap(n, f) for n, f in jitted.items()}, counter


def _image(path, seed=0, shape=(40, 52, 3), mode=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    im = Image.fromarray(pixels)
    if mode:
        im = im.convert(mode)
    im.save(path)
    return path


def _run(lm, images, methods, out, **kwargs):
    kwargs = {"batch_size": BATCH, "size": SIZE, "progress": False, "log": lambda _: None, **kwargs}
    return batch.run_attribution(lm, images, methods, out, **kwargs)


def _results(out):
    return [json.loads(line) for line in (Path(out) / "results.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- discovery


def test_directory_globs_and_hidden_files(tmp_path):
    d = tmp_path / "photos"
    for name in [
        "b.JPG",
        "a.png",
        "sub/c.jpeg",
        "sub/deeper/d.webp",
        ".hidden.png",
        ".cache/e.png",
        "notes.txt",
        "sub/f.tiff",
    ]:
        _image(d / name, shape=(4, 4, 3)) if not name.endswith(".txt") else (d / name).write_text("x")

    found = batch.discover_images([str(d)])
    rel = [p.relative_to(d).as_posix() for p in found]
    assert rel == ["a.png", "b.JPG", "sub/c.jpeg", "sub/deeper/d.webp", "sub/f.tiff"]

    flat = batch.discover_images([str(d / "*.png"), str(d / "*.JPG")])
    assert [p.name for p in flat] == ["a.png", "b.JPG"]
    deep = batch.discover_images([str(d / "**" / "*.jpeg"), str(d / "**" / "*.webp")])
    assert [p.name for p in deep] == ["c.jpeg", "d.webp"]
    # the same file by two routes is kept once, first route first
    both = batch.discover_images([str(d / "sub" / "c.jpeg"), str(d)])
    assert [p.name for p in both] == ["c.jpeg", "a.png", "b.JPG", "d.webp", "f.tiff"]


def test_list_files_with_comments_and_relative_paths(tmp_path):
    _image(tmp_path / "imgs" / "x.png", shape=(4, 4, 3))
    _image(tmp_path / "imgs" / "y.jpg", shape=(4, 4, 3))
    _image(tmp_path / "z.png", shape=(4, 4, 3))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "inner.txt").write_text("../z.png\n")
    (lists / "main.txt").write_text(
        f"# a comment\n\n  ../imgs/y.jpg  \n#../imgs/x.png\n../imgs/*.png\n@inner.txt\n{tmp_path / 'imgs' / 'y.jpg'}\n"
    )

    for spec in (f"@{lists / 'main.txt'}", str(lists / "main.txt")):
        assert [p.name for p in batch.discover_images([spec])] == ["y.jpg", "x.png", "z.png"]


def test_missing_paths_and_empty_results_are_errors(tmp_path):
    _image(tmp_path / "ok.png", shape=(4, 4, 3))
    with pytest.raises(ValueError, match="nope.jpg"):
        batch.discover_images([str(tmp_path / "ok.png"), str(tmp_path / "nope.jpg")])
    (tmp_path / "list.txt").write_text("ok.png\nmissing/cat.png\n")
    with pytest.raises(ValueError, match=r"list.txt:2: missing/cat.png"):
        batch.discover_images([f"@{tmp_path / 'list.txt'}"])
    with pytest.raises(ValueError, match="nolist.txt"):
        batch.discover_images([f"@{tmp_path / 'nolist.txt'}"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no images found in .*empty"):
        batch.discover_images([str(tmp_path / "empty"), str(tmp_path / "empty" / "*.jpg")])
    (tmp_path / "loop.txt").write_text("@loop.txt\n")
    with pytest.raises(ValueError, match="includes itself"):
        batch.discover_images([str(tmp_path / "loop.txt")])


# --------------------------------------------------------------------------- output names


@pytest.mark.parametrize(
    "path, root, stem",
    [
        ("/data/a/cat.jpg", "/data", "a/cat"),
        ("/data/a b/ca:t?.v2.jpg", "/data", "a_b/ca_t__v2"),
        ("/data/../etc/passwd.png", "/etc", "passwd"),
        ("/data/C:/x.png", "/data", "C_/x"),
        ("/data/con.png", "/data", "con_"),
        ("/data/.hidden.png", "/data", "_hidden"),
    ],
)
def test_output_stem_is_sanitized(path, root, stem):
    assert batch.output_stem(path, root) == stem


def test_output_stem_outside_roots_is_flat_and_hashed():
    stem = batch.output_stem("/elsewhere/../x/cat.jpg", ["/data", "/data/a"])
    assert "/" not in stem and stem.startswith("cat-") and len(stem) == len("cat-") + 8
    assert batch.output_stem("/data/a/b/cat.jpg", ["/data", "/data/a"]) == "b/cat"  # deepest root
    long = batch.output_stem("/data/" + "x" * 300 + ".png", "/data")
    assert len(long) <= 100


def test_assign_stems_never_collide(tmp_path):
    paths = [tmp_path / "cat.jpg", tmp_path / "cat.png", tmp_path / "Cat.bmp", tmp_path / "cat-x.png"]
    stems = batch.assign_stems(paths, tmp_path)
    assert stems[0] == "cat" and stems[3] == "cat-x"
    assert len({s.casefold() for s in stems}) == len(stems)
    # a stem owned by an earlier run's image is not given to another image
    taken = {"cat": str((tmp_path / "old.jpg").resolve())}
    assert batch.assign_stems([tmp_path / "cat.jpg"], tmp_path, taken)[0] != "cat"
    assert batch.assign_stems([tmp_path / "cat.jpg"], tmp_path, {"cat": str(paths[0].resolve())}) == ["cat"]


# --------------------------------------------------------------------------- runs


@pytest.fixture
def mixed_dir(tmp_path):
    d = tmp_path / "mixed"
    _image(d / "photo.jpg", seed=1)
    _image(d / "gray.png", seed=2, shape=(30, 20), mode="L")
    rgba = np.random.default_rng(3).integers(0, 256, (36, 36, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
    good = (d / "photo.jpg").read_bytes()
    (d / "corrupt.jpg").write_bytes(good[: len(good) // 3])  # a download cut short
    return d


@pytest.mark.slow
def test_bad_files_are_skipped_and_logged(lm, counted, mixed_dir, tmp_path):
    methods, _ = counted
    out = tmp_path / "out"
    logged = []
    summary = _run(lm, batch.discover_images([str(mixed_dir)]), methods, out, log=logged.append)

    assert summary.done == 3 and summary.skipped_existing == 0
    assert [Path(img).name for img, _ in summary.failed] == ["corrupt.jpg"]
    assert any("corrupt.jpg" in line for line in logged)
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [Path(e["image"]).name for e in errors] == ["corrupt.jpg"] and errors[0]["error"]

    records = _results(out)
    assert len(records) == 3 * len(methods)
    assert {(Path(r["image"]).name, r["method"]) for r in records} == {
        (n, m) for n in ("photo.jpg", "gray.png", "rgba.png") for m in methods
    }
    for r in records:
        assert FIELDS <= set(r)
        assert r["model"] == lm.name and r["target"] is None
        assert 0.0 <= r["probability"] <= 1.0 and r["class_name"] == lm.labels.name(r["class"])
        assert r["files"] == {"npy": f"{r['method']}/{r['stem']}.npy", "png": f"{r['method']}/{r['stem']}.png"}
        m = np.load(out / r["files"]["npy"])
        assert m.dtype == np.float32
        assert m.shape == ((SIZE, SIZE, 3) if r["method"] == "saliency" else (SIZE, SIZE))
        with Image.open(out / r["files"]["png"]) as im:
            assert im.size == (SIZE, SIZE)
    summary_json = json.loads((out / "summary.json").read_text())
    assert summary_json["done"] == 3 and len(summary_json["failed"]) == 1


def test_rerun_does_no_work(lm, counted, mixed_dir, tmp_path):
    methods, counter = counted
    out = tmp_path / "out"
    images = batch.discover_images([str(mixed_dir)])
    _run(lm, images, methods, out)
    assert counter.calls["load"] == 4 and counter.calls["saliency"] == 1
    before = {p: p.read_bytes() for p in (out / "results.jsonl", out / "errors.jsonl")}
    counter.calls.clear()

    summary = _run(lm, images, methods, out)

    assert counter.calls == {}  # nothing decoded, no method called
    assert {p: p.read_bytes() for p in before} == before
    assert summary.done == 0 and summary.skipped_existing == 3 and summary.skipped_failed == 1

    summary = _run(lm, images, methods, out, retry_failed=True)  # only the bad file is tried again
    assert counter.calls == {"load": 1} and len(summary.failed) == 1


@pytest.mark.slow
def test_missing_output_file_is_redone(lm, counted, mixed_dir, tmp_path):
    methods, counter = counted
    out = tmp_path / "out"
    images = batch.discover_images([str(mixed_dir / "photo.jpg"), str(mixed_dir / "gray.png")])
    _run(lm, images, methods, out)
    record = next(r for r in _results(out) if r["method"] == "grad_cam" and r["image"].endswith("gray.png"))
    (out / record["files"]["png"]).unlink()
    counter.calls.clear()

    _run(lm, images, methods, out)

    assert counter.calls == {"load": 1, "grad_cam": 1}
    assert (out / record["files"]["png"]).exists()
    assert len(_results(out)) == 2 * len(methods) + 1


def test_truncated_last_line_is_tolerated_and_redone(lm, counted, tmp_path):
    methods, counter = counted
    images = [_image(tmp_path / "in" / f"{i}.png", seed=i) for i in range(2)]
    out = tmp_path / "out"
    _run(lm, images, methods, out)
    text = (out / "results.jsonl").read_text()
    last = json.loads(text.splitlines()[-1])
    (out / "results.jsonl").write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])  # killed mid-write
    counter.calls.clear()

    _run(lm, images, methods, out)

    assert counter.calls == {"load": 1, last["method"]: 1}
    records = _results(out)  # every line parses: the torn one was dropped, not glued to the next
    assert len(records) == 2 * len(methods)
    assert {(r["image"], r["method"]) for r in records} == {(str(p), m) for p in images for m in methods}


def test_same_names_in_different_folders_and_suffixes_keep_separate_outputs(lm, jitted, tmp_path):
    images = [
        _image(tmp_path / "in" / "a" / "cat.jpg", seed=1),
        _image(tmp_path / "in" / "b" / "cat.jpg", seed=2),
        _image(tmp_path / "in" / "a" / "cat.png", seed=3),
    ]
    out = tmp_path / "out"
    _run(lm, images, jitted, out)

    records = [r for r in _results(out) if r["method"] == "saliency"]
    stems = {Path(r["image"]).relative_to(tmp_path / "in").as_posix(): r["stem"] for r in records}
    assert stems["a/cat.jpg"] == "a/cat" and stems["b/cat.jpg"] == "b/cat"
    assert stems["a/cat.png"].startswith("a/cat-")
    maps = [np.load(out / r["files"]["npy"]) for r in records]
    assert len({r["files"]["npy"] for r in records}) == 3
    assert not np.allclose(maps[0], maps[1]) and not np.allclose(maps[0], maps[2])


def _all_files(root):
    return {p for p in Path(root).rglob("*") if p.is_file()}


def test_outputs_stay_inside_out(lm, jitted, tmp_path):
    outside = _image(tmp_path / "outside.png", seed=4)
    far = _image(tmp_path / "far" / "away" / "abs.png", seed=5)
    inside = _image(tmp_path / "work" / "in.png", seed=6)
    lst = tmp_path / "work" / "list.txt"
    lst.write_text(f"# inputs\n../outside.png\n{far.resolve()}\nin.png\n")
    out = tmp_path / "work" / "out"
    before = _all_files(tmp_path)

    _run(lm, batch.discover_images([f"@{lst}"]), jitted, out)

    records = _results(out)
    assert {Path(r["image"]).resolve() for r in records} == {outside.resolve(), far.resolve(), inside.resolve()}
    written = _all_files(tmp_path) - before
    assert written and all(p.resolve().is_relative_to(out.resolve()) for p in written)
    for r in records:
        for f in r["files"].values():
            assert (out / f).resolve().is_relative_to(out.resolve()) and ".." not in Path(f).parts


def test_symlink_in_out_falls_back_to_flat_name(lm, jitted, tmp_path):
    images = [_image(tmp_path / "in" / "a" / "cat.png", seed=1), _image(tmp_path / "in" / "b" / "dog.png", seed=2)]
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "saliency").mkdir(parents=True)
    os.symlink(elsewhere, out / "saliency" / "a")  # out/saliency/a/cat.npy would escape out

    _run(lm, images, jitted, out)

    assert list(elsewhere.iterdir()) == []
    cat = next(r for r in _results(out) if r["image"].endswith("cat.png"))
    assert "/" not in cat["stem"] and cat["stem"].startswith("cat-")


def test_padding_keeps_every_image_and_batch_independence(lm, counted, tmp_path):
    methods, counter = counted
    images = [_image(tmp_path / "in" / f"{i}.png", seed=10 + i, shape=(30 + 3 * i, 40, 3)) for i in range(5)]
    out = tmp_path / "out"
    summary = _run(lm, images, methods, out)

    assert summary.done == 5
    assert counter.calls["saliency"] == 2 and counter.calls["grad_cam"] == 2  # 4 + 1
    assert counter.shapes == {(BATCH, SIZE, SIZE, 3), (1, SIZE, SIZE, 3)}  # a short last batch costs its own size
    records = _results(out)
    assert len(records) == 5 * len(methods)
    for r in records:
        _, x = batch.display_and_input(load_image(r["image"]), lm, SIZE)
        alone = np.stack([x] * BATCH)  # a batch of only this image: same compiled shape
        expected, classes, _ = methods[r["method"]](alone, None)[:3]
        np.testing.assert_allclose(np.load(out / r["files"]["npy"]), np.asarray(expected)[0], rtol=1e-4, atol=1e-6)
        assert r["class"] == int(classes[0])


def test_other_model_or_target_in_same_out_is_refused(lm, jitted, tmp_path):
    images = [_image(tmp_path / "in" / "x.png")]
    out = tmp_path / "out"
    _run(lm, images, jitted, out)
    with pytest.raises(ValueError, match="other settings .*target: null in the folder, 3 now"):
        _run(lm, images, jitted, out, target=3)


def test_model_input_resizes_unit_presets_and_crops_torchvision(lm):
    img = np.random.default_rng(0).random((50, 70, 3), dtype=np.float32)
    display, x = batch.display_and_input(img, lm, (24, 40))
    assert display.shape == (24, 40, 3) and x.shape == (24, 40, 3)
    np.testing.assert_allclose(x, (display - 0.5) / 0.25, rtol=1e-6)  # "centered" preset
    from jaxviz.data.preprocess import TORCHVISION, preprocess

    class TV:
        preprocessing, input_shape = TORCHVISION, (224, 224, 3)

    display, x = batch.display_and_input(img, TV, None)
    assert x.shape == (224, 224, 3)
    np.testing.assert_allclose(x, preprocess(img, TORCHVISION), rtol=1e-6)


def test_bind_methods_matches_direct_call(lm, jitted):
    with pytest.raises(ValueError, match="unknown method"):
        batch.bind_methods(lm, ["saliency", "nope"])
    bound = batch.bind_methods(lm, ["grad_cam"])
    x = np.random.default_rng(0).normal(size=(BATCH, SIZE, SIZE, 3)).astype(np.float32)
    ids = np.arange(BATCH, dtype=np.uint32)
    np.testing.assert_allclose(
        np.asarray(bound["grad_cam"](x, ids)[0]), np.asarray(jitted["grad_cam"](x)[0]), rtol=1e-5, atol=1e-6
    )


@pytest.mark.slow
def test_smoothgrad_noise_follows_the_image_not_its_batch_position(lm, tmp_path):
    """Per-image keys from output names: an image's SmoothGrad map is the same alone or in a batch."""
    methods = batch.bind_methods(lm, ["smoothgrad"], options={"n": 4})
    images = [_image(tmp_path / "in" / f"{i}.png", seed=30 + i) for i in range(3)]
    _run(lm, images, methods, tmp_path / "all")
    _run(lm, images[2:], methods, tmp_path / "alone")
    together = np.load(tmp_path / "all" / "smoothgrad" / "2.npy")
    alone = np.load(tmp_path / "alone" / "smoothgrad" / "2.npy")
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-6)
    other = np.load(tmp_path / "all" / "smoothgrad" / "1.npy")
    assert not np.allclose(together, other)
