"""Seed 003's script (`experiments/seeds/seed003.py`) at tiny sizes, and the `yosinski` class preset's
step regularizers (Yosinski et al. 2015: blur every k steps, small-norm / small-contribution clipping)."""

import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxviz.optvis import step_regularizers as SR
from jaxviz.optvis.presets import PRESETS, hparams
from jaxviz.optvis.regularizers import gaussian_blur

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "seeds"))

import seed003  # noqa: E402

FIGURES = ("transfer.png", "transfer_rates.png", "toy_linear.png", "class_models.png")
YOSINSKI_BAR = 0.9  # p(class) of the yosinski class model on shapesnet (1.000 after 8 steps)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("seed003")
    res = seed003.main(
        [
            "--out",
            str(out),
            "--n",
            "4",
            "--eps",
            "0,16",
            "--steps",
            "4",
            "--show",
            "2",
            "--classes",
            "star",
            "--class-steps",
            "8",
        ]
    )
    return out, res


def test_toy_example_is_the_slides():
    toy = seed003.toy_example()
    assert toy["score"] == -3 and toy["adv_score"] == 2
    assert round(toy["p"], 3) == 0.047 and round(toy["p"], 4) == 0.0474
    assert round(toy["adv_p"], 3) == 0.881 and round(toy["adv_p"], 2) == 0.88
    assert toy["adv_x"] == [1.5, -1.5, 3.5, -2.5, 2.5, 1.5, 1.5, -3.5, 4.5, 1.5]


@pytest.mark.slow
def test_figures_exist_and_are_not_blank(run):
    out, _ = run
    for name in FIGURES:
        img = np.asarray(Image.open(out / name).convert("RGB"), np.float32) / 255
        assert img.shape[0] > 100 and img.shape[1] > 100, name
        assert img.std() > 0.05, f"{name} looks blank (std {img.std():.3f})"


@pytest.mark.slow
def test_results_json_and_rates(run):
    out, res = run
    saved = json.loads((out / "results.json").read_text())
    assert saved["toy"]["p"] == pytest.approx(0.0474, abs=5e-5)
    assert saved["toy"]["adv_p"] == pytest.approx(0.88, abs=5e-3)
    rates = saved["transfer"]["rates"]
    assert saved["transfer"]["figure"] == {"attack": "bim", "eps_255": 16}  # the grid shows a real perturbation
    assert set(rates) == {"shapesnet->minivgg", "minivgg->shapesnet"}
    for direction, by_attack in rates.items():
        assert set(by_attack) == set(seed003.ATTACKS)
        for name, rows in by_attack.items():
            assert [r["eps_255"] for r in rows] == [0, 16]
            for r in rows:
                for k in ("source_fooling", "target_transfer", "source_hit", "target_hit"):
                    if k in r:
                        assert 0.0 <= r[k] <= 1.0, (direction, name, k, r[k])
                assert r["linf_255"] <= r["eps_255"] + 1e-3  # within the L∞ budget
            # eps 0 changes nothing: the images are ones both models classify correctly
            assert rows[0]["source_fooling"] == 0 and rows[0]["target_transfer"] == 0
            assert rows[-1]["source_fooling"] > rows[0]["source_fooling"], (direction, name, rows)


@pytest.mark.slow
def test_yosinski_class_model_is_classified_as_its_class(run):
    _, res = run
    (row,) = res["class_models"]["yosinski"]["reclassification"]
    assert row["target_name"] == "star" and row["predicted_name"] == "star"
    assert row["target_probability"] > YOSINSKI_BAR
    assert res["class_models"]["yosinski"]["hparams"]["blur_every"] == 4


@pytest.mark.slow
def test_page_mentions_every_figure(run):
    out, _ = run
    md, html = (out / "index.md").read_text(), (out / "index.html").read_text()
    for name in FIGURES:
        assert name in md and f"src='{name}'" in html, name
    assert "0.0474" in md and "0.8808" in md


# --- the step regularizers themselves ----------------------------------------------------------


def test_step_regularizers_do_what_the_paper_says():
    rng = np.random.default_rng(0)
    img = jnp.asarray(rng.uniform(size=(1, 10, 10, 3)), jnp.float32)
    grad = jnp.asarray(rng.normal(size=(1, 10, 10, 3)), jnp.float32)
    # blur only on every k-th step (step index i: after step i + 1)
    blur = SR.blur_every(4, 1.0)
    np.testing.assert_array_equal(blur(img, grad, jnp.int32(0), None), img)
    np.testing.assert_allclose(blur(img, grad, jnp.int32(3), None), gaussian_blur(img, 1.0), atol=1e-6)
    # small-norm clipping: the 30% of pixels nearest mid-grey become mid-grey, the rest untouched
    out = np.asarray(SR.clip_small_norm(30.0)(img, grad, jnp.int32(0), None))
    norm = np.linalg.norm(np.asarray(img) - 0.5, axis=-1)
    low = norm < np.percentile(norm, 30)
    assert low.sum() == 30 and np.all(out[low] == 0.5) and np.array_equal(out[~low], np.asarray(img)[~low])
    # small-contribution clipping: |Σ_c (x − 0.5)·g| below the percentile
    out = np.asarray(SR.clip_small_contribution(50.0)(img, grad, jnp.int32(0), None))
    contrib = np.abs(((np.asarray(img) - 0.5) * np.asarray(grad)).sum(-1))
    low = contrib < np.percentile(contrib, 50)
    assert np.all(out[low] == 0.5) and np.array_equal(out[~low], np.asarray(img)[~low])
    np.testing.assert_allclose(SR.decay(0.1)(img, grad, 0, None), 0.5 + 0.9 * (img - 0.5), atol=1e-6)


def test_only_the_yosinski_preset_has_step_regularizers():
    for kind, name in PRESETS:
        hp = hparams(kind, name)
        assert (SR.from_hparams(hp) is not None) == (name == "yosinski"), (kind, name)
    with pytest.raises(ValueError, match="param=pixel"):
        SR.from_hparams({**hparams("class", "lucid"), "blur_every": 4})
