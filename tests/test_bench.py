"""The benchmark runner's output structure (not its timings: no test here measures speed)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import bench
from jaxviz.cli import main
from jaxviz.models import VGG

COLUMNS = "| model | size | method | batch | jaxviz img/s | captum img/s | speed-up | compile s | device |"


def _has_captum():
    try:
        import captum  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_run_tiny_case(tmp_path):
    case = bench.Case("shapesnet", 32, "saliency", 2)
    result = bench.run([case], repeats=1, out=tmp_path)
    data = json.loads((tmp_path / "bench.json").read_text())
    md = (tmp_path / "bench.md").read_text()
    assert set(data) == {"machine", "config", "rows"}
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["device"]
    assert "random" in data["machine"]["weights"]
    (row,) = data["rows"]
    assert (row["model"], row["size"], row["method"], row["batch"]) == ("shapesnet", 32, "saliency", 2)
    assert "error" not in row
    assert row["jaxviz_ips"] > 0 and row["jaxviz_s"] > 0 and row["compile_s"] >= 0
    assert row["jaxviz_ips"] == pytest.approx(2 / row["jaxviz_s"])
    if _has_captum():
        assert "captum_error" not in row
        assert row["captum_ips"] > 0 and row["speedup"] == pytest.approx(row["jaxviz_ips"] / row["captum_ips"])
        assert data["machine"]["torch_threads"] >= 1 and "torch.get_num_threads()" in md
    assert COLUMNS in md
    table = [line for line in md.splitlines() if line.startswith("| shapesnet")]
    assert len(table) == 1 and table[0].split("|")[3].strip() == "saliency"
    assert result["markdown"] == md and result["rows"] == data["rows"]


def test_run_without_captum():
    result = bench.run([bench.Case("shapesnet", 32, "saliency", 2)], repeats=1, captum=False, out=None)
    (row,) = result["rows"]
    assert row["jaxviz_ips"] > 0
    assert row["captum_ips"] is None and row["speedup"] is None
    assert "| shapesnet | 32x32 | saliency | 2 |" in result["markdown"]
    assert "torch.get_num_threads()" not in result["markdown"]


def test_random_params_shapes_and_scale():
    model = VGG(blocks=(1, 1, 1, 1, 1), widths=(8, 16, 16, 32, 32), hidden=64, num_classes=7)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))["params"]
    mine = bench.random_params(model, (64, 64, 3), seed=1)
    assert {k: {kk: vv.shape for kk, vv in v.items()} for k, v in mine.items()} == \
           {k: {kk: vv.shape for kk, vv in v.items()} for k, v in params.items()}
    k = np.asarray(mine["conv2_1"]["kernel"])  # fan_in 3·3·8 = 72
    assert k.std() == pytest.approx(np.sqrt(2 / 72), rel=0.1)


def test_plans_and_options():
    quick = bench.quick_plan()
    assert {c.method for c in quick if c.model == "shapesnet"} == set(bench.DEFAULT_METHODS)
    assert {c.batch for c in quick if c.model == "shapesnet"} == {8}
    assert [c for c in quick if c.model == "vgg16"] == [bench.Case("vgg16", 224, "saliency", 1)]
    assert len(bench.plan()) == 2 * len(bench.DEFAULT_METHODS) * 3
    occ = bench.method_options("occlusion", 224, 8, smoothgrad_n=50, ig_steps=50, pass_images=64)
    assert (224 - occ["patch"]) % occ["stride"] == 0 and occ["chunk"] == 8
    assert bench.method_options("smoothgrad", 64, 32, smoothgrad_n=8, ig_steps=8, pass_images=64)["chunk"] == 2
    with pytest.raises(ValueError, match="unknown method"):
        bench.run([bench.Case("shapesnet", 32, "nope", 1)], out=None)


def test_cli_bench_rejects_bad_model(capsys):
    assert main(["bench", "--model", "resnet:224", "--out", "unused"]) == 2
    assert "unknown model" in capsys.readouterr().err
