"""Optvis presets and the inspect tools on a ResNet-50 (random weights, small images): layers by
module path, blocks as layers, receptive fields of a residual net from the gradient's support."""

import dataclasses

import numpy as np
import pytest

from jaxviz import taps
from jaxviz.data.datasets import Dataset
from jaxviz.inspect import commands as C
from jaxviz.inspect import topk
from jaxviz.models.loading import load
from jaxviz.optvis import visualize as V
from jaxviz.optvis.presets import default_layer, style_layers

pytestmark = pytest.mark.slow  # optvis and inspect tools on a ResNet-50

SIZE = 64


@pytest.fixture(scope="module")
def resnet():
    lm = load("resnet50", random_init=True)
    return dataclasses.replace(lm, input_shape=(SIZE, SIZE, 3))


def test_feature_layers_are_the_blocks(resnet):
    layers = taps.feature_layers(resnet.model, resnet.variables, resnet.input_shape)
    assert layers == [f"layer{s}.{b}" for s, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for b in range(n)]
    assert default_layer(resnet, "filter") == "layer2.3"  # 40% of the way in: block 6 of 16
    assert style_layers(resnet) == ("layer3.1", ("layer1.0", "layer2.0", "layer3.0", "layer4.0"))
    assert taps.conv_layers(resnet.model, resnet.variables, resnet.input_shape)[:2] == ["conv1", "layer1.0.conv1"]


def test_optvis_presets_run_on_a_block(resnet):
    vis = V.filters(resnet, "layer2.1", [3, 7], steps=3, size=SIZE)
    means = np.asarray(vis.extra["channel_means"])
    assert vis.images.shape[:2] == (2, 1) and means.shape == (2, 512)
    assert all(e > s for s, e in zip(vis.extra["target_activation_start"], vis.extra["target_activation_end"]))
    dream = V.dream(
        resnet, np.random.default_rng(0).uniform(size=(1, SIZE, SIZE, 3)), ["layer3"], steps=2, size=SIZE, octaves=1
    )
    assert dream.extra["norm_end"][0] > dream.extra["norm_start"][0]


def test_receptive_field_of_a_residual_block(resnet):
    """By hand: conv1 (7x7, stride 2) sees 7 px; the 3x3 stride-2 max-pool 7 + 2·2 = 11 at jump 4; each
    bottleneck's one 3x3 conv adds 2·4 (the shortcut sees less, the union is the conv path)."""
    rf = topk.receptive_field(resnet.model, resnet.variables, (SIZE, SIZE, 3), "layer1.0")
    assert rf.jump == 4 and rf.size == 19  # 7 + 2·2 (pool) + 2·4 (layer1.0.conv2)
    rf2 = topk.receptive_field(resnet.model, resnet.variables, (SIZE, SIZE, 3), "layer1.2")
    assert rf2.size == 19 + 2 * 2 * 4


def test_inspect_topk_on_a_block(resnet, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    ds = Dataset(
        rng.uniform(size=(6, SIZE, SIZE, 3)).astype(np.float32),
        np.zeros(6, np.int32),
        (),
        tuple(f"img{i}" for i in range(6)),
    )
    monkeypatch.setattr(C, "dataset_for", lambda lm, data, n, seed=0: ds)
    info = C.topk(resnet, tmp_path, "layer2", [0, 1], None, 6, 3, False)
    assert info["layer"] == "layer2" and len(info["units"]) == 2
    assert (tmp_path / "topk_layer2.png").stat().st_size > 1000
    values = [u["values"] for u in info["units"]]
    assert all(v == sorted(v, reverse=True) for v in values)
