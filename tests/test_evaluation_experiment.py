"""Seed 002's experiment runner: records, tables, charts, report; reproducible; resumable after SIGKILL."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxviz.evaluation import load_config, read_records, run_experiment
from jaxviz.evaluation.experiment import record_key
from jaxviz.evaluation.summary import summarize

TINY = {
    "name": "tiny",
    "models": ["shapesnet"],
    "methods": ["saliency", "grad_cam"],
    "sizes": ["original", 40],
    "data": {"source": "shapes", "n": 12, "size": 32, "seed": 5},
    "batch_size": 4,
    "examples": 2,
    "seed": 1,
    "deletion_steps": 4,
}
N_RECORDS = 12 * 2 * 2


def _values(records):
    return sorted((record_key(r), json.dumps(r, sort_keys=True)) for r in records)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    summary = run_experiment(TINY, out, progress=False)
    return out, summary


@pytest.mark.slow
def test_run_writes_records_tables_charts_report(tiny_run):
    out, summary = tiny_run
    records = read_records(out)
    assert len(records) == N_RECORDS == summary["records_written"]
    assert len({record_key(r) for r in records}) == N_RECORDS
    r = records[0]
    assert {"image", "class", "method", "model", "size", "P", "E", "E_total", "pointing"} <= set(r)
    assert all(0.0 <= x["P"] <= 1.0 and x["E"] <= x["E_total"] * (1 + 1e-9) for x in records)
    assert all(0.0 <= x["deletion_auc"] <= 1.0 and 0.0 <= x["insertion_auc"] <= 1.0 for x in records)
    assert {x["size"] for x in records} == {"original", "40"} and {x["hw"][0] for x in records} == {32, 40}
    assert json.loads((out / "config.json").read_text())["data"]["n"] == 12
    for name in ("method", "method_model", "method_size", "method_model_size"):
        assert (out / "tables" / f"{name}.md").read_text().startswith("| method")
        assert (out / "tables" / f"{name}.csv").read_text().startswith("method,")
    rows = summarize(records, ("method", "size"))
    md = (out / "tables" / "method_size.md").read_text()
    assert f"{rows[0]['mean_P']:.3f}" in md and all(row["n"] == 12 for row in rows)
    assert "insertion_auc" in md and np.isclose(
        rows[0]["uniform_P"],
        np.mean(
            [x["mask_fraction"] for x in records if x["method"] == rows[0]["method"] and x["size"] == rows[0]["size"]]
        ),
    )
    for png in (
        "figures/bar_method.png",
        "figures/bar_method_model_original.png",
        "figures/bar_method_model_40.png",
        "figures/bar_method_size.png",
        "examples/shapesnet_original.png",
        "examples/shapesnet_40.png",
    ):
        assert (out / png).stat().st_size > 2000, png
    html = (out / "report.html").read_text()
    assert "Seed 002" in html and "0.470" not in html  # guided Grad-CAM was not run: not in the comparison
    assert "0.215" in html and "figures/bar_method.png" in html


@pytest.mark.slow
def test_rerun_does_nothing_and_other_config_is_refused(tiny_run):
    out, _ = tiny_run
    again = run_experiment(TINY, out, progress=False, report=False)
    assert again["records_written"] == 0 and len(read_records(out)) == N_RECORDS
    with pytest.raises(ValueError, match="another config"):
        run_experiment({**TINY, "dilation": 0.1}, out, progress=False)


@pytest.mark.slow
def test_reproducible_from_seed_and_sigkill_resume(tiny_run, tmp_path):
    """A run killed at a random point after its first records, with a torn line appended, then
    resumed, ends with exactly the records of an uninterrupted run (which a fresh run reproduces)."""
    out, _ = tiny_run
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    killed = tmp_path / "killed"
    code = (
        "import sys; from jaxviz.evaluation import load_config, run_experiment; "
        "run_experiment(load_config(sys.argv[1]), sys.argv[2], progress=False, report=False)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(config), str(killed)], env={**os.environ, "JAX_PLATFORMS": "cpu"}
    )
    records = killed / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if records.exists() and records.stat().st_size > 0:
            break
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 1.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_records(killed)
    assert 0 < len(before) <= N_RECORDS
    with open(records, "a") as f:
        f.write('{"key": "shapes-s5-32px-00011", "model": "shapes')  # a torn write
    resumed = run_experiment(load_config(config), killed, progress=False, report=False)
    after = read_records(killed)
    assert resumed["records_before"] == len(before)
    assert len(after) == N_RECORDS and len({record_key(r) for r in after}) == N_RECORDS  # no duplicates
    assert _values(after) == _values(read_records(out))  # same final records


@pytest.mark.slow
def test_cli_evaluate_model_on_shapes_and_user_errors(tmp_path, monkeypatch, capsys):
    import jaxviz.cli

    out = tmp_path / "quick"
    assert (
        jaxviz.cli.main(
            [
                "evaluate",
                "--model",
                "minivgg",
                "--n",
                "4",
                "--size",
                "32",
                "--methods",
                "saliency",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    records = read_records(out)
    assert len(records) == 4 and {r["model"] for r in records} == {"minivgg"} and (out / "report.html").exists()
    assert "| saliency | 4 |" in capsys.readouterr().out
    assert jaxviz.cli.main(["evaluate"]) == 2
    assert jaxviz.cli.main(["experiment", "run", str(tmp_path / "missing.py")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"methods": ["saliency"], "colour": "red"}))
    assert jaxviz.cli.main(["experiment", "run", str(bad)]) == 2
    assert "unknown config keys ['colour']" in capsys.readouterr().err


@pytest.mark.slow
def test_channel_reduction_and_overrides_from_the_command_line(tmp_path, capsys):
    """`evaluate --channels sum` and `experiment run --set channels=sum` score the same maps as the
    default run, by the other reduction: E_total moves from Σ I² to Σ (Σ_c I)², maps unchanged."""
    import jaxviz.cli

    base = ["--model", "shapesnet", "--n", "3", "--size", "32", "--methods", "saliency", "--quiet"]
    assert jaxviz.cli.main(["evaluate", *base, "--out", str(tmp_path / "energy")]) == 0
    assert jaxviz.cli.main(["evaluate", *base, "--channels", "sum", "--out", str(tmp_path / "sum")]) == 0
    energy, summed = read_records(tmp_path / "energy"), read_records(tmp_path / "sum")
    assert [r["channels"] for r in energy + summed] == ["energy"] * 3 + ["sum"] * 3
    assert all(r["target_rule"] == "category" for r in energy)
    assert all(a["E_total"] != b["E_total"] for a, b in zip(energy, summed))
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "models": ["shapesnet"],
                "methods": ["saliency"],
                "sizes": ["original"],
                "data": {"source": "shapes", "n": 4, "size": 32, "seed": 0},
            }
        )
    )
    argv = [
        "experiment",
        "run",
        str(config),
        "--set",
        "channels=sum",
        "--set",
        "data.n=3",
        "--quiet",
        "--out",
        str(tmp_path / "set"),
    ]
    assert jaxviz.cli.main(argv) == 0
    assert [r["E_total"] for r in read_records(tmp_path / "set")] == [r["E_total"] for r in summed]
    saved = json.loads((tmp_path / "set" / "config.json").read_text())
    assert saved["channels"] == "sum" and saved["data"]["n"] == 3
    capsys.readouterr()
    for bad, message in (
        (["--set", "channels=l2"], "config channels must be one of energy, sum"),
        (["--set", "nonsense"], "write KEY=VALUE"),
        (["--set", "models.x=1"], "config 'models' is not a section"),
        (["--set", 'chart_formats=["gif"]'], "chart_formats: ['gif'] unknown"),
    ):
        assert jaxviz.cli.main(["experiment", "run", str(config), *bad, "--out", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err
    assert jaxviz.cli.main(["evaluate", str(tmp_path), "--masks", str(tmp_path), "--cam-norm", "minmax"]) == 2
    assert "go with --model" in capsys.readouterr().err
