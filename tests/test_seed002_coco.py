"""The shipped seed-002 protocol (experiments/seed002_coco.py) end to end, as a user runs it.

A generated COCO-format folder (`train2017/`, `annotations/instances_train2017.json`) with seed 002's
six categories, and random torchvision weights of its four CNNs saved as `.pth` and ported with
`jaxviz weights port` into the weights folder, where the config finds them by architecture. The
overrides are the COCO folder, the second size (64 instead of 224), `save_maps`, and the models: the
run takes two of the seed's four CNNs, AlexNet (a flatten → dense head) and SqueezeNet 1.0 (Fire
concats, a convolutional head). ResNet-152 and VGG19 cost three quarters of the run's four minutes
and add no step the protocol takes differently; their `.pth` ports are checked against torchvision
in test_zoo.py and their methods (as ResNet-50 and VGG16) in test_any_model.py.
"""

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import jaxviz.cli
from jaxviz.evaluation import read_records
from jaxviz.evaluation.datasets import coco_class_table
from jaxviz.metrics import energy_concentration

pytestmark = pytest.mark.slow  # the shipped seed-002 protocol end to end on four real-size CNNs, and chromium

pytest.importorskip("pycocotools")
torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "seed002_coco.py"
SEED_CNNS = ("alexnet", "resnet152", "squeezenet1_0", "vgg19")  # what the shipped config runs
CNNS = ("alexnet", "squeezenet1_0")  # what this test runs
METHODS = ("saliency", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam")
CATEGORIES = {10: "traffic light", 13: "stop sign", 24: "zebra", 52: "banana", 59: "pizza", 88: "teddy bear"}
PER_CATEGORY, HW = 2, (72, 88)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def write_coco_train2017(root: Path) -> dict[str, np.ndarray]:
    """`PER_CATEGORY` JPEGs per seed-002 category, each with one polygon object; returns masks by file name."""
    rng = np.random.default_rng(2)
    images, anns, masks = [], [], {}
    h, w = HW
    for cid in CATEGORIES:
        for _ in range(PER_CATEGORY):
            i = len(images) + 1
            file_name = f"{i:012d}.jpg"
            y0, x0 = int(rng.integers(4, h // 2)), int(rng.integers(4, w // 2))
            y1, x1 = y0 + int(rng.integers(12, h // 2)), x0 + int(rng.integers(12, w // 2))
            img = rng.random((h, w, 3)) * 0.4
            img[y0:y1, x0:x1] = 0.6 + 0.4 * rng.random(3)
            (root / "train2017").mkdir(parents=True, exist_ok=True)
            Image.fromarray((img * 255).astype(np.uint8)).save(root / "train2017" / file_name, quality=95)
            images.append({"id": i, "file_name": file_name, "height": h, "width": w})
            anns.append(
                {
                    "id": i,
                    "image_id": i,
                    "category_id": cid,
                    "iscrowd": 0,
                    "area": float((y1 - y0) * (x1 - x0)),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                }
            )
            mask = np.zeros(HW, bool)
            mask[y0:y1, x0:x1] = True
            masks[file_name] = mask
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    cats = [{"id": c, "name": n, "supercategory": "x"} for c, n in CATEGORIES.items()] + [{"id": 1, "name": "person"}]
    (root / "annotations" / "instances_train2017.json").write_text(
        json.dumps({"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": cats})
    )
    return masks


def port_random_torchvision(folder: Path) -> None:
    """Random torchvision weights of the four CNNs as `.pth` files, ported by the command line."""
    from jaxviz.torchvision_peer import import_torchvision

    tv = import_torchvision()
    for arch in CNNS:
        torch.manual_seed(0)
        pth = folder / f"{arch}-random.pth"
        torch.save(getattr(tv.models, arch)().state_dict(), pth)
        assert jaxviz.cli.main(["weights", "port", str(pth), "--arch", arch, "--name", f"{arch}-random"]) == 0
        pth.unlink()


@pytest.fixture(scope="module")
def seed002_run(module_tmp):
    tmp = module_tmp
    masks = write_coco_train2017(tmp / "coco")
    weights = tmp / "weights"
    weights.mkdir()
    old = os.environ.get("JAXVIZ_WEIGHTS_DIR")
    os.environ["JAXVIZ_WEIGHTS_DIR"] = str(weights)
    try:
        port_random_torchvision(weights)
        out = tmp / "run"
        argv = [
            "experiment",
            "run",
            str(CONFIG),
            "--set",
            f"coco={tmp / 'coco'}",
            "--set",
            'sizes=["original", 64]',
            "--set",
            "save_maps=true",
            "--set",
            f"models={json.dumps(list(CNNS))}",
            "--out",
            str(out),
            "--quiet",
        ]
        assert jaxviz.cli.main(argv) == 0
        yield out, masks, argv
    finally:
        if old is None:
            os.environ.pop("JAXVIZ_WEIGHTS_DIR", None)
        else:
            os.environ["JAXVIZ_WEIGHTS_DIR"] = old


def test_the_shipped_config_is_the_seeds_protocol():
    from jaxviz.evaluation.experiment import load_config
    from jaxviz.models import ARCHS

    config = load_config(CONFIG)
    assert tuple(config["models"]) == SEED_CNNS and set(SEED_CNNS) <= set(ARCHS)
    assert config["methods"] == list(METHODS) and config["sizes"] == ["original", 224]
    assert config["data"]["categories"] == list(CATEGORIES.values()) and config["data"]["per_category"] == 30
    assert (config["channels"], config["targets"], config["dilation"]) == ("energy", "category", 0.2)
    assert config["method_options"] == {"cam_norm": "minmax"}


def test_every_record_of_the_protocol_with_its_definitions(seed002_run):
    out, masks, _ = seed002_run
    records = read_records(out)
    n_images = len(CATEGORIES) * PER_CATEGORY
    assert len(records) == len(METHODS) * len(CNNS) * 2 * n_images
    assert len({(r["key"], r["model"], r["size"], r["method"]) for r in records}) == len(records)
    assert {r["model"] for r in records} == set(CNNS) and {r["size"] for r in records} == {"original", "64"}
    assert all(r["channels"] == "energy" and r["target_rule"] == "category" for r in records)
    assert {r["cam_norm"] for r in records if r["method"] in ("grad_cam", "guided_grad_cam")} == {"minmax"}
    assert not any("cam_norm" in r for r in records if r["method"] not in ("grad_cam", "guided_grad_cam"))
    one = coco_class_table()
    for r in records:  # one ImageNet class per category, named for it: zebra 340, traffic light 920, ...
        assert r["class"] == one[r["category"]]
    assert {r["class"] for r in records if r["category"] == "zebra"} == {340}
    assert {r["class"] for r in records if r["category"] == "traffic light"} == {920}


def test_saved_maps_give_the_recorded_energy(seed002_run):
    out, masks, _ = seed002_run
    records = [r for r in read_records(out) if r["size"] == "original"]
    for r in records[:: len(records) // 25]:
        m = np.load(out / r["files"]["npy"])
        assert m.shape[:2] == HW and m.dtype == np.float32
        # E_total is the sum of every value squared (seed 002), from the saved map alone
        assert math.isclose(r["E_total"], float((m.astype(np.float64) ** 2).sum()), rel_tol=1e-6)
        e = energy_concentration(m[None], masks[r["image"]][None], dilation=0.2)
        assert math.isclose(r["P"], float(e.P[0]), rel_tol=1e-9, abs_tol=1e-12)
        gray = Image.open(out / r["files"]["png"])
        assert gray.mode == "L" and gray.size == (HW[1], HW[0])
        if r["method"] == "grad_cam":  # min-max scaled: spans [0, 1] exactly (or all 0: a random net's
            assert m.min() == 0 and (m.max() == 0 or math.isclose(float(m.max()), 1.0, rel_tol=1e-5))  # ReLU'd CAM)
    # the min-max check above is not vacuous: most of SqueezeNet's CAMs are not all 0 (20 of 24; random
    # AlexNet's ReLU'd CAMs are all 0 at these sizes)
    cams = [np.load(out / r["files"]["npy"]) for r in records if (r["method"], r["model"]) == ("grad_cam", CNNS[1])]
    assert sum(m.max() > 0 for m in cams) > len(cams) // 2


def test_tables_figures_vector_charts_and_exp_json(seed002_run):
    out, _, argv = seed002_run
    table = (out / "tables" / "method_category.md").read_text()
    assert table.count("all classes") == len(METHODS)
    assert all(f"| {c} |" in table for c in CATEGORIES.values())
    for name in ("bar_method", "bar_method_category", "bar_method_model_original", "bar_method_model_64"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 5000
        assert "<svg" in (out / "figures" / f"{name}.svg").read_text()[:2000]
        assert (out / "figures" / f"{name}.eps").read_bytes().startswith(b"%!PS-Adobe")
    for size in ("original", "64"):  # figure 7.8: one image, rows = CNNs, columns = the five methods
        meta = json.loads((out / "figures" / f"models_{size}.json").read_text())
        assert meta["models"] == list(CNNS) and meta["methods"] == list(METHODS)
        grid = np.asarray(Image.open(out / "figures" / f"models_{size}.png").convert("L"), np.float32)
        rows_per_column = len(CNNS) / (len(METHODS) + 1)  # rows × 6 columns (the image and five maps), not blank
        assert 0.7 * rows_per_column < grid.shape[0] / grid.shape[1] < 1.3 * rows_per_column and grid.std() > 10
    exp = json.loads((out / "exp.json").read_text())
    assert set(exp) == {"original", "resized"}
    assert all(len(v) == len(METHODS) * len(CNNS) * len(CATEGORIES) * PER_CATEGORY for v in exp.values())
    row = exp["original"][0]
    assert set(row) == {"id", "class", "method", "cnn", "P", "E", "E_celk"} and isinstance(row["id"], int)
    # a rerun of the same command finds every record and computes nothing
    before = (out / "records.jsonl").read_bytes()
    assert jaxviz.cli.main(argv) == 0
    assert (out / "records.jsonl").read_bytes() == before


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_chromium(seed002_run, tmp_path):
    out, _, _ = seed002_run
    html = (out / "report.html").read_text()
    assert "Σ_c I(x, y, c)²" in html and "kazuto1011" in html and "Definitions used" in html
    probe = out / "probe.html"
    probe.write_text(
        html.replace(
            "</body>",
            "<script>addEventListener('load', () => { const im = [...document.images];"
            "document.body.dataset.loaded = im.filter(i => i.complete && i.naturalWidth > 0).length + '/' + im.length;"
            "});</script></body>",
        )
    )
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probe.resolve().as_uri(),
    ]
    dom = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=90).stdout
    probe.unlink()
    n = dom.count("<img ")
    assert n >= 10 and f'data-loaded="{n}/{n}"' in dom
    assert "models_original.png" in dom and "bar_method_category.png" in dom and "all classes" in dom
    assert "Guided Grad-CAM" in dom and dom.count("<table") >= 7
