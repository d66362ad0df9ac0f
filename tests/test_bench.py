"""The benchmark runner's output structure (not its timings: no test here measures speed)."""

import json
import mmap
import time

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
    result = bench.run([case], repeats=1, out=tmp_path, deviation=False, limits=False)
    data = json.loads((tmp_path / "bench.json").read_text())
    md = (tmp_path / "bench.md").read_text()
    assert set(data) == {"machine", "config", "limits", "rows", "deviation", "skipped"}
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
    table = [line for line in md.splitlines() if line.startswith("| shapesnet | 32x32")]
    assert len(table) == 1 and table[0].split("|")[3].strip() == "saliency"
    assert result["markdown"] == md and result["rows"] == data["rows"]


def test_paired_rounds_give_the_time_ratio_and_alternate_who_goes_first():
    order = []

    def side(name, seconds):
        def call():
            order.append(name)
            time.sleep(seconds)

        return call

    ratio, rounds = bench._paired(side("ours", 0.01), side("theirs", 0.03), 4)
    assert rounds == 4 and 2.0 < ratio < 4.0
    assert order == ["ours", "theirs", "theirs", "ours"] * 2
    assert bench._paired(side("ours", 0.01), side("theirs", 0.01), 10, budget_s=0.001)[1] == 1


@pytest.mark.skipif(not _has_captum(), reason="needs torch and captum")
def test_paired_speed_up_is_in_the_row_and_the_table(tmp_path):
    result = bench.run(
        [bench.Case("shapesnet", 32, "saliency", 2)], repeats=1, paired=3, out=None, deviation=False, limits=False
    )
    (row,) = result["rows"]
    assert row["paired_rounds"] == 3 and row["paired_speedup"] > 0
    assert result["config"]["paired"] == 3
    assert "paired speed-up |" in result["markdown"]
    assert f"| {row['paired_speedup']:.2f}x |" in result["markdown"]


def test_run_without_captum():
    result = bench.run(
        [bench.Case("shapesnet", 32, "saliency", 2)], repeats=1, captum=False, out=None, deviation=False, limits=False
    )
    (row,) = result["rows"]
    assert row["jaxviz_ips"] > 0
    assert row["captum_ips"] is None and row["speedup"] is None
    assert "| shapesnet | 32x32 | saliency | 2 |" in result["markdown"]
    assert "torch.get_num_threads()" not in result["markdown"]


def test_random_params_shapes_and_scale():
    model = VGG(blocks=(1, 1, 1, 1, 1), widths=(8, 16, 16, 32, 32), hidden=64, num_classes=7)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))["params"]
    mine = bench.random_params(model, (64, 64, 3), seed=1)["params"]
    assert {k: {kk: vv.shape for kk, vv in v.items()} for k, v in mine.items()} == {
        k: {kk: vv.shape for kk, vv in v.items()} for k, v in params.items()
    }
    k = np.asarray(mine["conv2_1"]["kernel"])  # fan_in 3·3·8 = 72
    assert k.std() == pytest.approx(np.sqrt(2 / 72), rel=0.1)


def test_plans_and_options():
    quick = bench.quick_plan()
    assert {c.method for c in quick if c.model == "shapesnet"} == {*bench.DEFAULT_METHODS, bench.BUNDLE}
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


@pytest.mark.slow
def test_bundle_case_flops_memory_and_partial_files(tmp_path):
    """The fused bundle beside Captum's five calls; FLOPs from XLA; files rewritten after every case."""
    cases = [bench.Case("shapesnet", 32, "saliency", 2), bench.Case("shapesnet", 32, bench.BUNDLE, 2)]
    seen = []

    def log(line):  # called after each case's files were written
        seen.append(len(json.loads((tmp_path / "bench.json").read_text())["rows"]))

    result = bench.run(cases, repeats=1, out=tmp_path, log=log, deviation=False, limits=False)
    assert seen == [1, 2]
    sal, bundle = result["rows"]
    assert "error" not in bundle and bundle["jaxviz_ips"] > 0
    # one forward + three backward passes ≈ 2 saliency passes (XLA's count, per call of 2 images)
    assert 1.8 < bundle["flops"] / sal["flops"] < 2.2
    assert sal["tflops"] == pytest.approx(sal["flops"] / sal["jaxviz_s"] / 1e12)
    assert bundle["xla_bytes"] > 0 and bundle["jaxviz_mem_bytes"] >= 0
    if _has_captum():
        assert "captum_error" not in bundle and bundle["captum_ips"] > 0
    assert f"| shapesnet | 32x32 | {bench.BUNDLE} | 2 |" in result["markdown"]
    assert "GFLOP/img" in result["markdown"]


def test_time_budget_skips_and_lists(tmp_path):
    cases = [bench.Case("shapesnet", 32, "saliency", 1), bench.Case("shapesnet", 32, "saliency", 10**6)]
    result = bench.run(cases, repeats=1, out=None, captum=False, time_budget_s=60, deviation=False, limits=False)
    small, huge = result["rows"]
    assert small["jaxviz_ips"] > 0
    assert huge["jaxviz_ips"] is None and "predicted" in huge["error"]  # never allocated 10^6 images
    assert "Failures and skips" in result["markdown"]
    spent = bench.run(cases, repeats=1, out=None, captum=False, time_budget_s=0, deviation=False, limits=False)
    assert spent["rows"] == [] and len(spent["skipped"]) == 2
    assert "Not run (time budget)" in spent["markdown"]


@pytest.mark.slow
def test_bf16_case_and_deviation_table():
    result = bench.run(
        [bench.Case("shapesnet", 64, "grad_cam", 2, "bfloat16")],
        repeats=1,
        out=None,
        captum=False,
        deviation=("grad_cam",),
        limits=False,
    )
    (row,) = result["rows"]
    assert row["dtype"] == "bfloat16" and row["jaxviz_ips"] > 0
    (dev,) = result["deviation"]
    assert dev["inputs"].startswith("embedded model") and dev["rank_corr_min"] > 0.9
    assert "| shapesnet | grad_cam | " in result["markdown"] and "grad_cam (bfloat16)" in result["markdown"]


def test_gpu_plan_order_and_contents():
    cases = bench.gpu_plan()
    vgg = [c for c in cases if c.model == "vgg16" and c.dtype == "float32"]
    assert {c.batch for c in vgg} == {1, 8, 32, 64} and {c.method for c in vgg} == {
        *bench.DEFAULT_METHODS,
        bench.BUNDLE,
    }
    assert cases[0] == bench.Case("vgg16", 224, bench.BUNDLE, 64) and cases[-1].batch == 1
    at = cases.index
    assert (
        at(bench.Case("shapesnet", 64, "saliency", 64))
        < at(bench.Case("vgg16", 224, "saliency", 8))
        < at(bench.Case("vgg16", 224, "saliency", 32))
        < at(bench.Case("vgg16", 224, "saliency", 1))
    )
    assert {c for c in cases if c.dtype == "bfloat16"} == {
        bench.Case("vgg16", 224, m, 64, "bfloat16") for m in ("saliency", bench.BUNDLE)
    }
    assert len(cases) == 2 * 4 * 7 + 2


@pytest.mark.slow
def test_device_limits_and_rss_peak():
    lim = bench.device_limits()
    assert lim["float32"] > 1e9 and "sgemm" in lim["source"]
    # 64 MiB of fresh pages, every one touched: a fresh anonymous mapping, because numpy's allocator may hand
    # back memory an earlier test in this process freed but kept resident (then RSS does not rise)
    with mmap.mmap(-1, 64 * 2**20) as block, bench.RssPeak() as m:  # m samples before the unmap
        np.frombuffer(block, np.uint8)[:: mmap.PAGESIZE] = 1
    assert m.rise >= 48 * 2**20


def test_captum_bundle_is_five_maps():
    pytest.importorskip("captum")
    from jaxviz.models import ShapesNet
    from jaxviz.torch_peer import nhwc_to_nchw, to_torch

    model = ShapesNet()
    params = bench.random_params(model, (32, 32, 3))
    peer = to_torch(model, params)
    fn = bench.captum_method(bench.BUNDLE, peer, peer.layer("relu4_2"), {})
    maps = fn(nhwc_to_nchw(np.ones((2, 32, 32, 3), np.float32)), [1, 2])
    assert [tuple(m.shape) for m in maps] == [(2, 3, 32, 32)] * 3 + [(2, 1, 32, 32), (2, 3, 32, 32)]


def test_run_configured_bundle_flag():
    result = bench.run_configured(
        models=["shapesnet:32"],
        methods=["saliency"],
        batches=[2],
        bundle=True,
        repeats=1,
        captum=False,
        out=None,
        deviation=False,
        limits=False,
    )
    assert [(r["method"], r["dtype"]) for r in result["rows"]] == [("saliency", "float32"), (bench.BUNDLE, "float32")]
    with pytest.raises(ValueError, match="not both"):
        bench.run_configured(quick=True, gpu=True)
