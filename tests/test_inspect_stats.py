"""Activation statistics, dead filters, pooled-feature cache, receptive fields and top-k patches."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import jaxviz
from jaxviz.data.datasets import load_dataset
from jaxviz.inspect import extract, stats, topk
from jaxviz.models import VGG16, ShapesNet

LAYERS = ["relu1_1", "relu2_1", "relu3_2", "relu4_2"]


@pytest.fixture(scope="module")
def lm():
    return jaxviz.load("shapesnet", random_init=True)


@pytest.fixture(scope="module")
def ds():
    return load_dataset("shapes", n=45, size=32, seed=3)


def all_acts(lm, ds, layers, batch_size=8):
    """Every image's activations, computed by the batch loop `activation_stats` uses (XLA:CPU's
    convolutions round differently for other batch sizes, and the comparisons below are exact)."""
    parts = {k: [] for k in layers}
    fn = lambda p, x, valid: jaxviz.taps.activations(lm.model, p, x, layers)  # noqa: E731
    for _, n, out in extract.run_batches(lm, ds, fn, batch_size=batch_size, progress=False):
        for k in layers:
            parts[k].append(np.asarray(out[k])[:n])
    return {k: np.concatenate(v) for k, v in parts.items()}


def test_receptive_fields_vgg16_known_values():
    rf = topk.receptive_fields(VGG16())
    assert rf["conv1_1"].size == 3
    assert rf["conv2_1"].size == 10
    assert rf["conv5_3"].size == 196
    assert rf["pool5"].size == 212
    assert rf["pool5"].jump == 32 and rf["conv5_3"].jump == 16
    assert rf["features.28"] == rf["conv5_3"]  # aliases too
    assert "fc6" not in rf and "avgpool" not in rf


def test_receptive_fields_shapesnet_by_hand():
    # 3 (conv1_1) → 4 pool1 (j=2) → 8 conv2_1 → 10 pool2 (j=4) → 18, 26 → 30 pool3 (j=8) → 46, 62
    rf = topk.receptive_fields(ShapesNet())
    assert tuple(rf["relu4_2"]) == (62, 8, 4.0)
    assert tuple(rf["pool2"]) == (10, 4, 2.0)
    assert topk.receptive_box(rf["pool1"], 0, 0, (64, 64)) == (0, 0, 3, 3)  # [-1, 3) clipped
    assert topk.receptive_box(rf["pool1"], 3, 5, (64, 64)) == (5, 9, 9, 13)


@pytest.mark.slow
def test_running_stats_match_full_arrays(lm, ds):
    got = stats.activation_stats(lm, ds, LAYERS, batch_size=8, progress=False)  # 45 = 5*8 + 5
    full = all_acts(lm, ds, LAYERS)
    for name in LAYERS:
        a, s = full[name], got[name]
        flat = a.reshape(-1, a.shape[-1]).astype(np.float64)
        assert s.count == len(flat) and s.images == len(ds)
        np.testing.assert_allclose(s.mean, flat.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s.std, flat.std(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(s.max, a.reshape(-1, a.shape[-1]).max(0))
        np.testing.assert_array_equal(s.zeros, (flat <= 0).sum(0))
        np.testing.assert_array_equal(s.hist, np.histogram(a.ravel(), s.edges)[0])
    rows = stats.stats_table(got)
    assert [r["layer"] for r in rows] == LAYERS
    assert len(stats.stats_table(got, per_channel=True)) == sum(got[n].channels for n in LAYERS)


def test_update_with_arrays_equals_one_shot(lm, ds):
    a = all_acts(lm, ds, ["relu2_1"])["relu2_1"]
    s = stats.ChannelStats("relu2_1", a.shape[-1])
    for i in range(0, len(a), 7):
        s.update(a[i : i + 7])
    np.testing.assert_allclose(s.mean, a.reshape(-1, a.shape[-1]).astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(s.max, a.reshape(-1, a.shape[-1]).max(0))


def test_forced_dead_channel_is_reported(lm, ds):
    params = dict(lm.params)
    conv = dict(params["conv2_1"])
    conv["kernel"] = conv["kernel"].at[..., 5].set(0.0)
    conv["bias"] = conv["bias"].at[5].set(-1e6)
    params = {**params, "conv2_1": conv}
    dead_lm = lm.__class__(**{**lm.__dict__, "variables": {**lm.variables, "params": params}})
    got = stats.activation_stats(dead_lm, ds, ["relu2_1", "relu3_1"], batch_size=16, progress=False)
    dead = stats.dead_filters(got)
    assert 5 in dead["relu2_1"].tolist()
    assert got["relu2_1"].zero_fraction[5] == 1.0
    assert stats.dead_filters(got["relu2_1"]).tolist() == dead["relu2_1"].tolist()
    row = stats.stats_table(got)[0]
    assert 5 in row["dead_channels"] and row["dead"] >= 1


def test_stream_pads_last_batch_and_pools(lm, ds):
    full = all_acts(lm, ds, ["relu3_1"])["relu3_1"]
    parts = list(extract.stream(lm, ds, ["relu3_1"], batch_size=16, pooled="max", progress=False))
    assert [s for s, _ in parts] == [0, 16, 32]
    got = np.concatenate([p["relu3_1"] for _, p in parts])
    np.testing.assert_allclose(got, full.max(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_top_k_equals_brute_force(lm, ds):
    layer, k = "relu3_1", 5
    a = all_acts(lm, ds, [layer])[layer]
    n, h, w, c = a.shape
    res = topk.top_k_all(lm, ds, layer, k=k, batch_size=16, progress=False)
    flat = a.reshape(n, h * w, c)
    best = flat.max(1)  # (N, C)
    for ch in range(c):
        order = np.argsort(-best[:, ch], kind="stable")[:k]
        np.testing.assert_array_equal(res.indices[ch], order)
        np.testing.assert_allclose(res.values[ch], best[order, ch], rtol=1e-5)
        for i, (y, x) in zip(res.indices[ch], res.positions[ch]):
            assert a[i, y, x, ch] == pytest.approx(best[i, ch], rel=1e-5)
    one = topk.top_k(lm, ds, layer, 7, k=k, batch_size=16, progress=False)
    np.testing.assert_array_equal(one.indices[0], res.indices[7])
    # the box of each winner contains its argmax unit's centre, mapped to input pixels
    rf = topk.receptive_fields(lm.model)[layer]
    for y, x in res.positions.reshape(-1, 2):
        y0, x0, y1, x1 = topk.receptive_box(rf, y, x, ds.images.shape[1:3])
        cy, cx = rf.start + y * rf.jump, rf.start + x * rf.jump
        assert y0 <= int(cy) < y1 and x0 <= int(cx) < x1
        assert 0 <= y0 < y1 <= 32 and 0 <= x0 < x1 <= 32


def test_cache_pooled_round_trip_and_reuse(lm, ds, tmp_path, monkeypatch):
    path = tmp_path / "feats" / "relu4_2.npy"
    calls = []
    real = extract.stream
    monkeypatch.setattr(extract, "stream", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    first = extract.cache_pooled(lm, ds, "relu4_2", path, batch_size=16, progress=False)
    full = all_acts(lm, ds, ["relu4_2"])["relu4_2"].mean(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(first), full, rtol=1e-5, atol=1e-6)
    assert len(calls) == 1 and not list(path.parent.glob(".*tmp"))
    again = extract.cache_pooled(lm, ds, "relu4_2", path, batch_size=16, progress=False)
    assert len(calls) == 1
    np.testing.assert_array_equal(np.asarray(again), np.asarray(first))
    other = load_dataset("shapes", n=20, size=32, seed=4)  # wrong shape → recomputed
    assert extract.cache_pooled(lm, other, "relu4_2", path, progress=False).shape == (20, 128)
    assert len(calls) == 2


@pytest.mark.slow
def test_plots_write_pngs(lm, ds, tmp_path):
    got = stats.activation_stats(lm, ds, LAYERS, batch_size=32, progress=False)
    p = stats.plot_stats(got, tmp_path / "stats.png")
    with Image.open(p) as im:
        assert im.format == "PNG" and im.size[0] >= 300 and im.size[1] >= 150
    res = topk.top_k_all(lm, ds, "relu4_2", channels=[0, 3, 9], k=4, batch_size=32, progress=False)
    q = topk.plot_top_k(ds, res, topk.receptive_fields(lm.model), tmp_path / "top.png")
    with Image.open(q) as im:
        assert im.format == "PNG" and im.size[0] >= 200 and im.size[1] >= 150
    patch = topk.crop(ds.images[0], topk.receptive_fields(lm.model)["relu4_2"], 0, 0)
    assert patch.shape == (62, 62, 3)
