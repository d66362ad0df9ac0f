"""`jaxviz report` on attribution runs: the explorer's data, its incremental rebuild, and the page itself in
headless chromium (Debian's, driven by Playwright): grid, filters, detail view, loaded sprites, no script
from data, two runs compared. Set JAXVIZ_BENCH_EXPLORER=<explorer folder> to time the first paint of a
large run's explorer (see the README: 100 000 images), JAXVIZ_EXPLORER_SHOTS=<folder> to keep the screenshots."""

from __future__ import annotations

import collections
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import jaxviz.cli
from jaxviz.data.images import save_image
from jaxviz.data.shapes import generate
from jaxviz.explorer import build_explorer, read_run

N = 240
XSS = "<img src=x onerror=alert(1)>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _cli(*argv: str) -> None:
    assert jaxviz.cli.main([*map(str, argv)]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run A: N shapes images (one named like an HTML tag, one not an image), saliency and Grad-CAM as .npy
    files, scored by `jaxviz evaluate`; run B: the first 60 images, Grad-CAM in a float16 store."""
    tmp = tmp_path_factory.mktemp("explorer")
    data = generate(N, size=48, seed=3)
    imgs, masks = tmp / "imgs", tmp / "masks"
    imgs.mkdir(), masks.mkdir()
    names = [f"img_{i:03d}" for i in range(N)]
    names[7] = XSS
    for name, img, mask in zip(names, data.images, data.masks):
        save_image(imgs / f"{name}.png", img)
        Image.fromarray(mask.astype(np.uint8) * 255).save(masks / f"{name}.png")
    (imgs / "broken.png").write_bytes(b"not a png")
    a, b = tmp / "a", tmp / "b"
    _cli(
        "attribute",
        imgs,
        "--method",
        "saliency,grad_cam",
        "--batch-size",
        48,
        "--out",
        a,
        "--quiet",
        "--allow-failures",
    )
    _cli("evaluate", a, "--masks", masks)
    subset = tmp / "subset.txt"
    subset.write_text("".join(f"{imgs / name}.png\n" for name in names[:60]))
    _cli(
        "attribute",
        f"@{subset}",
        "--method",
        "grad_cam",
        "--outputs",
        "store",
        "--store-dtype",
        "float16",
        "--out",
        b,
        "--quiet",
    )
    return {"a": a, "b": b, "imgs": imgs, "tmp": tmp}


def _load(path: Path):
    """The JSON that a data file hands to the page."""
    text = path.read_text(encoding="utf-8")
    return json.loads(text[text.index(",") + 1 : text.rindex(")")])


@pytest.mark.slow
def test_read_run_takes_every_ledger_and_skips_a_torn_line(runs, tmp_path):
    run = read_run(runs["a"])
    assert run.methods == ["saliency", "grad_cam"] and len(run.images) == N
    assert [Path(k).name for k in run.errors] == ["broken.png"]
    assert len(run.metrics) == 2 * N and set(next(iter(run.metrics.values()))) == {"P", "E", "pointing"}
    # the same records split over two processes' ledgers, the second ending in half a line (a run still going)
    copy = tmp_path / "a"
    shutil.copytree(runs["a"], copy, ignore=shutil.ignore_patterns("explorer"))
    lines = (copy / "results.jsonl").read_text().splitlines(keepends=True)
    (copy / "results.jsonl").unlink()
    (copy / "results.p0.jsonl").write_text("".join(lines[::2]))
    (copy / "results.p1.jsonl").write_text("".join(lines[1::2]) + lines[0][:40])
    again = read_run(copy)
    assert {k: set(v) for k, v in again.images.items()} == {k: set(v) for k, v in run.images.items()}


def test_report_data_and_incremental_rebuild(runs, tmp_path):
    out = tmp_path / "site"
    index = build_explorer(runs["a"], out, progress=False, workers=1)
    assert index == out / "index.html"
    meta = _load(out / "data" / "meta.js")
    assert meta["rows"] == N + 1 and meta["pages_drawn"] == 3 and meta["detail"] is None  # 48 px maps: grid tiles
    assert [c["method"] for c in meta["columns"]] == ["saliency", "grad_cam"]
    assert [c["opacity"] for c in meta["columns"]] == [1.0, 0.5]  # Grad-CAM is drawn over its image
    assert sorted(meta["metrics"]) == ["E|c0", "E|c1", "P|c0", "P|c1", "pointing|c0", "pointing|c1"]
    shard = _load(out / "data" / "index-0000.js")
    assert XSS + ".png" in shard["name"] and shard["status"].count(2) == 1  # the broken file: failed, no records
    failed = shard["status"].index(2)
    assert "not an image" in meta["reasons"][shard["reason"][failed]]
    p = shard["name"].index("img_005.png")
    evaluation = {
        (json.loads(x)["stem"], json.loads(x)["method"]): json.loads(x)
        for x in (runs["a"] / "evaluation.jsonl").read_text().splitlines()
    }
    assert shard["metrics"]["P|c1"][p] == pytest.approx(evaluation[("img_005", "grad_cam")]["P"])
    page = _load(out / "data" / "page-00000.js")["rows"][p]
    saliency = np.load(runs["a"] / page["records"]["c0"]["files"]["npy"])
    assert page["ranges"]["c0"] == pytest.approx([saliency.min(), saliency.max()])
    # sprites: one WebP per column and page; row p's input tile is its image
    sprite = np.asarray(Image.open(out / "thumbs" / "in" / "g00000.webp").convert("RGB"), np.float32)
    assert sprite.shape == (100 * 64, 64, 3)
    tile = np.asarray(Image.fromarray(sprite[p * 64 : (p + 1) * 64].astype(np.uint8)).resize((48, 48)), np.float32)
    original = np.asarray(Image.open(runs["imgs"] / "img_005.png").convert("RGB"), np.float32)
    assert np.abs(tile - original).mean() < 12  # lossy WebP, resized twice
    # a rebuild redraws nothing; a changed map redraws its page only
    mtimes = {q: q.stat().st_mtime_ns for q in (out / "thumbs").rglob("*.webp")}
    build_explorer(runs["a"], out, progress=False, workers=1)
    assert _load(out / "data" / "meta.js")["pages_drawn"] == 0
    assert {q: q.stat().st_mtime_ns for q in (out / "thumbs").rglob("*.webp")} == mtimes
    np.save(runs["a"] / page["records"]["c0"]["files"]["npy"], saliency)  # rewritten: new mtime
    build_explorer(runs["a"], out, progress=False, workers=1)
    assert _load(out / "data" / "meta.js")["pages_drawn"] == 1


def test_compare_matches_images_across_runs(runs, tmp_path):
    out = tmp_path / "site"
    build_explorer([runs["a"], runs["b"]], out, methods=["grad_cam"], progress=False, workers=1)
    meta = _load(out / "data" / "meta.js")
    assert [(c["run"], c["method"]) for c in meta["columns"]] == [(0, "grad_cam"), (1, "grad_cam")]
    assert meta["rows"] == N + 1  # run B's images are run A's
    rows = _load(out / "data" / "page-00000.js")["rows"] + _load(out / "data" / "page-00001.js")["rows"]
    both = [r for r in rows if {"c0", "c1"} <= set(r["records"])]
    assert len(both) == 60 and all(r["records"]["c1"]["store"]["chunk"].startswith("store/grad_cam/") for r in both)
    shard = _load(out / "data" / "index-0000.js")
    assert sorted(collections.Counter(shard["cells"]).items()) == [("00", 1), ("10", N - 60), ("11", 60)]
    assert shard["status"].count(0) == N  # an image only run A has is not a failure
    with pytest.raises(ValueError, match="--methods: nope not in the run"):
        build_explorer(runs["a"], out, methods=["nope"], progress=False)


def test_report_cli_refuses_a_folder_without_a_run(tmp_path, capsys):
    assert jaxviz.cli.main(["report", str(tmp_path)]) == 2
    assert "has no results.jsonl" in capsys.readouterr().err


def _browser():
    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    return sync_api.sync_playwright()


def _not_blank(path: Path) -> None:
    img = np.asarray(Image.open(path).convert("RGB"), np.float32)
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 500, f"{path} looks blank"


@pytest.fixture(scope="module")
def site(runs):
    out = runs["tmp"] / "site"
    build_explorer([runs["a"], runs["b"]], out, progress=False)
    return out


@pytest.mark.slow
def test_explorer_in_chromium(site, runs):
    shots = Path(os.environ.get("JAXVIZ_EXPLORER_SHOTS") or runs["tmp"] / "shots")  # docs/explorer: README's
    with _browser() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems, dialogs = [], []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto((site / "index.html").as_uri())
        page.wait_for_selector(".row")
        assert page.text_content("#count") == f"showing {N + 1} of {N + 1}"
        # sprites load: the first visible cells' WebPs decode at their size
        sizes = page.evaluate("""async () => {
            const urls = [...document.querySelectorAll('.row .cell > div')].slice(0, 6)
                .map(d => getComputedStyle(d).backgroundImage.slice(5, -2));
            return Promise.all(urls.map(u => new Promise(r => { const i = new Image();
                i.onload = () => r([i.naturalWidth, i.naturalHeight]); i.onerror = () => r(null); i.src = u; })));
        }""")
        assert sizes and all(s is not None and s[0] == 64 for s in sizes), sizes
        page.wait_for_timeout(300)
        page.screenshot(path=shots / "grid.png")
        # the HTML-like file name is text: no element from it, no alert
        page.fill("#q", "onerror")
        page.wait_for_function("document.querySelector('#count').textContent.startsWith('showing 1 of')")
        assert page.locator(".row .name").first.text_content() == XSS + ".png"
        assert page.locator("img").count() == 0
        # filters narrow: by status, then by class with a metric sort
        page.fill("#q", "")
        page.select_option("#status", "2")
        page.wait_for_function("document.querySelector('#count').textContent.startsWith('showing 1 of')")
        assert page.locator(".row .name").first.text_content() == "broken.png"
        page.select_option("#status", "")
        classes = page.eval_on_selector_all("#cls option", "os => os.slice(1).map(o => o.value)")
        page.select_option("#cls", classes[0])
        page.select_option("#sort", "-P|c1")
        shown = int(page.text_content("#count").split()[1])
        assert 0 < shown < N
        order = page.evaluate("() => Array.from(S.view, i => [S.cols.cls[i], S.cols.metrics['P|c1'][i]])")
        assert {c for c, _ in order} == {int(classes[0])}
        assert [v for _, v in order] == sorted((v for _, v in order), reverse=True)
        page.screenshot(path=shots / "filter.png")
        # detail view: every column large, the record's JSON, links to the maps
        page.locator(".row").first.click()
        page.wait_for_selector("#detail:not([hidden])")
        page.wait_for_timeout(300)
        assert page.locator("#d-body figure").count() == 1 + 2 + 1  # input, A's two methods, B's Grad-CAM
        assert "range [" in page.text_content("#d-body")
        hrefs = page.eval_on_selector_all("#d-body a", "as => as.map(a => a.getAttribute('href'))")
        assert any(h.endswith(".npy") for h in hrefs) and all(not h.startswith(("javascript", "/")) for h in hrefs)
        page.screenshot(path=shots / "detail.png")
        page.keyboard.press("Escape")
        assert page.locator("#detail").is_hidden()
        browser.close()
    assert not dialogs and not problems, (dialogs, problems)
    for name in ("grid", "filter", "detail"):
        _not_blank(shots / f"{name}.png")


@pytest.mark.skipif(
    not os.environ.get("JAXVIZ_BENCH_EXPLORER"), reason="benchmark: set JAXVIZ_BENCH_EXPLORER=<explorer folder>"
)
def test_first_paint_benchmark():
    site = Path(os.environ["JAXVIZ_BENCH_EXPLORER"])
    with _browser() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        times = []
        for _ in range(3):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((site / "index.html").as_uri())
            page.wait_for_function("performance.getEntriesByName('jaxviz:indexed').length > 0", timeout=120_000)
            times.append(
                page.evaluate("""() => ({
                fcp: performance.getEntriesByName('first-contentful-paint')[0].startTime,
                grid: performance.getEntriesByName('jaxviz:grid')[0].startTime,
                indexed: performance.getEntriesByName('jaxviz:indexed')[0].startTime,
                rows: document.querySelector('#count').textContent})""")
            )
            page.close()
        browser.close()
    print(json.dumps(times, indent=1))
    assert min(t["grid"] for t in times) < 1000
