"""The command line: demo outputs, model tables, clear errors."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxviz.attribution import METHODS
from jaxviz.cli import main


@pytest.mark.slow
def test_demo_writes_every_method(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) | set(summary["not_applicable"]) == set(METHODS)
    assert list(summary["not_applicable"]) == ["cam_gmp"]  # the embedded model has a GAP head
    assert summary["images"] == 3 and len(list((out / "images").glob("*.png"))) == 3
    for method in summary["methods"]:
        npys = sorted((out / method).glob("*.npy"))
        assert len(npys) == 3 and len(list((out / method).glob("*.png"))) == 3
        m = np.load(npys[0])
        assert m.shape[:2] == (64, 64) and np.isfinite(m).all() and np.abs(m).max() > 0
    lrp_png = np.asarray(Image.open(sorted((out / "lrp").glob("*.png"))[0]).convert("RGB"), np.int32)
    corner = lrp_png[:4, :4].reshape(-1, 3)  # no relevance in the background: white, as batch jobs draw LRP
    assert (corner > 240).all()
    grid = Image.open(out / "comparison.png")
    assert grid.width > grid.height  # 8 columns, 3 rows
    assert not list(out.rglob("*.tmp"))
    assert "comparison figure" in capsys.readouterr().out
    # the batch runner's ledger, so `jaxviz report` browses the demo: one row per image, one column per method
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 3 * len(summary["methods"])
    assert {r["class_name"] for r in records} == {p["label"] for p in summary["predictions"]}
    assert (out / "explorer" / "index.html").is_file() and len(
        list((out / "explorer" / "thumbs").iterdir())
    ) == 1 + len(summary["methods"])


def test_demo_unknown_method_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--n", "2", "--method", "gradcam"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_models_table_has_both_names(capsys):
    assert main(["models", "--model", "vgg16"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.strip().startswith("conv5_3"))
    assert "features.28" in line and "14x14x512" in line
    assert "138,357,544" in out


def test_weights_verify_missing_name(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXVIZ_WEIGHTS_DIR", str(tmp_path))
    assert main(["weights", "verify", "vgg16-torchvision"]) == 2
    assert "jaxviz weights fetch" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["weights", "port", "nope.pth", "--arch", "vgg16"]])
def test_port_missing_file_names_it(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.setenv("JAXVIZ_WEIGHTS_DIR", str(tmp_path))
    assert main(argv) == 2
    assert "nope.pth" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def _write_images(folder):
    from jaxviz.data import shapes

    folder.mkdir(parents=True)
    data = shapes.generate(3, seed=7)
    Image.fromarray((data.images[0] * 255).astype(np.uint8)).save(folder / "rgb.jpg")
    Image.fromarray((data.images[1].mean(-1) * 255).astype(np.uint8), "L").save(folder / "gray.png")
    rgba = np.concatenate([(data.images[2] * 255).astype(np.uint8), np.full((64, 64, 1), 255, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return data.labels


def test_attribute_cli_resumes_and_logs_bad_files(tmp_path, capsys):
    labels = _write_images(tmp_path / "in")
    out = tmp_path / "out"
    argv = [
        "attribute",
        str(tmp_path / "in"),
        "--method",
        "saliency,grad_cam",
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--quiet",
    ]
    assert main(argv) == 1  # an image failed: exit status 1 (the others are done)
    text = capsys.readouterr()
    assert "3 images done" in text.out and "broken.jpg" in text.err and "--allow-failures" in text.err
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 6 and {r["method"] for r in records} == {"saliency", "grad_cam"}
    rgb = next(r for r in records if r["image"].endswith("rgb.jpg"))
    assert rgb["class"] == int(labels[0])  # the embedded model gets a clean shape right
    assert np.load(out / rgb["files"]["npy"]).shape[:2] == (64, 64)
    assert main(argv) == 0
    assert "0 images done, 3 already done" in capsys.readouterr().out
    assert len((out / "results.jsonl").read_text().splitlines()) == 6


def test_attribute_cli_targets(tmp_path, capsys):
    _write_images(tmp_path / "in")
    out = tmp_path / "out"
    assert (
        main(
            [
                "attribute",
                str(tmp_path / "in" / "rgb.jpg"),
                "--method",
                "guided_backprop",
                "--quiet",
                "--target",
                "relu3_1:7",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rec = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert rec["target"] == {"unit": {"layer": "relu3_1", "channel": 7, "y": None, "x": None}}
    assert rec["channel"] == 7 and rec["activation"] >= 0
    assert (
        main(
            [
                "attribute",
                str(tmp_path / "in" / "rgb.jpg"),
                "--target",
                "hexagon",
                "--quiet",
                "--out",
                str(tmp_path / "o2"),
            ]
        )
        == 2
    )
    assert "hexagon" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,files",
    [
        (["filters"], ["filters_conv1_1.png", "filters_conv1_1.json"]),
        (["filters", "--model", "lenet5"], ["filters_conv1.png"]),
        (["stats", "--n", "40"], ["stats.png", "stats.csv", "stats.json"]),
        (["topk", "--n", "40", "--unit", "3", "--k", "4"], ["topk_relu4_2.png", "topk_relu4_2.json"]),
        (["neighbours", "--n", "60", "--k", "3", "--queries", "2"], ["neighbours_relu4_2.png"]),
    ],
)
@pytest.mark.slow
def test_inspect_commands_write_figures_and_numbers(tmp_path, argv, files):
    assert main(["inspect", *argv, "--out", str(tmp_path), "--quiet"]) == 0
    for name in files:
        assert (tmp_path / name).stat().st_size > 0
    info = json.loads(next(tmp_path.glob("*.json")).read_text())
    if argv[0] == "topk":
        assert info["units"][0]["channel"] == 3 and len(info["units"][0]["values"]) == 4
        assert info["units"][0]["values"] == sorted(info["units"][0]["values"], reverse=True)
    if argv[0] == "neighbours":
        assert info["label_agreement"]["feature"] > info["label_agreement"]["pixel"]


def test_inspect_filters_of_a_dense_layer_is_a_clear_error(tmp_path, capsys):
    assert main(["inspect", "filters", "--layer", "fc", "--out", str(tmp_path)]) == 2
    assert "conv" in capsys.readouterr().err


def test_demo_on_lenet_digits_marks_relu_rules_not_applicable(tmp_path):
    out = tmp_path / "lenet"
    assert (
        main(
            [
                "demo",
                "--model",
                "lenet5",
                "--n",
                "2",
                "--method",
                "saliency",
                "--method",
                "guided_backprop",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"] == ["saliency"] and "no ReLU" in summary["not_applicable"]["guided_backprop"]
    assert np.load(next((out / "saliency").glob("*.npy"))).shape == (28, 28, 1)
