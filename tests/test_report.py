"""The HTML report via the CLI, rendered in headless chromium: tables, loaded images, escaped names."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

import jaxviz.cli
from jaxviz.evaluation import read_records

pytest.importorskip("pycocotools")
from test_evaluation import write_coco

EVIL = "<script>alert(1)</script>.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coco_run")
    ann, _ = write_coco(tmp / "images", names=(EVIL, "b.png", "c.png"))
    config = {
        "name": "coco <b>tiny</b>",
        "models": ["shapesnet"],
        "methods": ["saliency", "grad_cam"],
        "sizes": ["original"],
        "examples": 2,
        "batch_size": 4,
        "data": {"source": "coco", "images": str(tmp / "images"), "annotations": str(ann)},
    }
    (tmp / "config.json").write_text(json.dumps(config))
    out = tmp / "run"
    assert jaxviz.cli.main(["experiment", "run", str(tmp / "config.json"), "--out", str(out), "--quiet"]) == 0
    (out / "report.html").unlink()
    assert jaxviz.cli.main(["report", str(out)]) == 0
    assert jaxviz.cli.main(["report", str(tmp / "missing")]) == 2
    return out


@pytest.mark.slow
def test_cli_run_on_coco_records_and_escaping(coco_run):
    records = read_records(coco_run)
    # a.png-like EVIL image: star; b.png: square and star; c.png: traffic light (no shapes class: skipped)
    assert sorted({(r["image"], r["category"]) for r in records}) == [
        (EVIL, "star"),
        ("b.png", "square"),
        ("b.png", "star"),
    ]
    assert json.loads((coco_run / "summary.json").read_text())["skipped_objects"] == {"shapesnet:traffic light": 1}
    html = (coco_run / "report.html").read_text()
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;.png" in html
    assert "<b>tiny</b>" not in html and "&lt;b&gt;tiny&lt;/b&gt;" in html
    assert "<script" not in html.lower()


def _chromium(*args, timeout=90):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
@pytest.mark.slow
def test_report_renders_in_headless_chromium(coco_run, tmp_path):
    url = (coco_run / "report.html").resolve().as_uri()
    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1000,1400", url)
    img = np.asarray(Image.open(shot).convert("RGB"), np.float32)
    assert img.shape[:2] == (1400, 1000) and img.std() > 10 and (img.mean(-1) < 128).mean() > 0.005  # not blank

    # The same page plus a probe that counts images that really loaded (naturalWidth > 0) once loaded.
    probe = coco_run / "probe.html"
    probe.write_text(
        (coco_run / "report.html")
        .read_text()
        .replace(
            "</body>",
            "<script>addEventListener('load', () => { const im = [...document.images];"
            "document.body.dataset.loaded = im.filter(i => i.complete && i.naturalWidth > 0).length + '/' + im.length;"
            "});</script></body>",
        )
    )
    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", probe.resolve().as_uri()).stdout
    probe.unlink()
    n_imgs = dom.count("<img ")
    assert n_imgs >= 4 and f'data-loaded="{n_imgs}/{n_imgs}"' in dom
    assert dom.count("<table") >= 5 and "mean_P" in dom and "Backpropagation" in dom.split("</table>")[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in dom  # the file name is text, not an element
    assert dom.lower().count("<script") == 1  # only the probe
