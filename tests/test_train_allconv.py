"""The all-convolutional net (strided convs instead of max-pools) and the shapes training loop
(`jaxviz.train.fit_shapes`, `experiments/train_shapesnet.py`): geometry, checkpoints, loading back."""

import importlib.util
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxviz
from jaxviz.attribution import deconvnet, guided_backprop
from jaxviz.data import shapes
from jaxviz.data.preprocess import CENTERED
from jaxviz.inspect import topk
from jaxviz.models import AllConvNet, ShapesNet
from jaxviz.models.base import CONV, POOL
from jaxviz.taps import activations
from jaxviz.train import fit_shapes
from jaxviz.weights import save_weights

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(epochs=2, per_epoch=512, batch=64, size=32, test=200, progress=False)


def _script():
    spec = importlib.util.spec_from_file_location("train_shapesnet", ROOT / "experiments" / "train_shapesnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def allconv():
    model = AllConvNet()
    return model, jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


@pytest.mark.slow
def test_allconv_downsamples_by_strided_convs(allconv):
    model, variables = allconv
    kinds = {layer.name: layer.kind for layer in model.layers()}
    assert POOL not in kinds.values()
    downs = [layer for layer in model.layers() if layer.stride == 2]
    assert [d.name for d in downs] == ["down1", "down2", "down3"]
    assert all(d.kind == CONV and d.kernel == 3 and d.padding == 1 for d in downs)
    assert model.cam_layer() == "relu4_2" and model.head() == "gap"
    names = ("relu1_1", "down1", "relu_down1", "relu2_1", "down2", "relu3_2", "down3", "relu4_2")
    acts = activations(model, variables, jnp.zeros((2, 32, 32, 3)), names)
    got = {n: acts[n].shape for n in names}
    assert got == {
        "relu1_1": (2, 32, 32, 16),
        "down1": (2, 16, 16, 16),
        "relu_down1": (2, 16, 16, 16),
        "relu2_1": (2, 16, 16, 32),
        "down2": (2, 8, 8, 32),
        "relu3_2": (2, 8, 8, 64),
        "down3": (2, 4, 4, 64),
        "relu4_2": (2, 4, 4, 128),
    }


def test_allconv_receptive_fields_by_hand(allconv):
    # r' = r + 2j at every 3x3 conv; the stride-2 ones double j. Padding 1 keeps unit 0 centred on pixel 0.
    # 3 conv1_1 → 5 down1 (j=2) → 9 conv2_1 → 13 down2 (j=4) → 21, 29 → 37 down3 (j=8) → 53, 69
    rf = topk.receptive_fields(AllConvNet())
    assert tuple(rf["relu1_1"]) == (3, 1, 0.5)
    assert tuple(rf["relu_down1"]) == (5, 2, 0.5)
    assert tuple(rf["relu2_1"]) == (9, 2, 0.5)
    assert tuple(rf["down2"]) == (13, 4, 0.5)
    assert tuple(rf["relu4_2"]) == (69, 8, 0.5)
    # the gradient's support on a real (random) net agrees where the border does not clip it
    model, variables = allconv
    assert tuple(topk.receptive_field(model, variables, (32, 32, 3), "relu2_1")) == (9.0, 2.0, 0.5)
    # stride 1 is unchanged: ShapesNet's figures (tests/test_inspect_stats.py)
    assert tuple(topk.receptive_fields(ShapesNet())["relu4_2"]) == (62, 8, 4.0)


def test_torch_peer_strided_conv(allconv):
    pytest.importorskip("torch")
    from jaxviz.torch_peer import nhwc_to_nchw, to_torch

    model, variables = allconv
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 32, 32, 3)))
    peer = to_torch(model, variables)
    import torch

    with torch.no_grad():
        got = peer(nhwc_to_nchw(x)).numpy()
    np.testing.assert_allclose(got, np.asarray(model.apply(variables, x)), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_guided_backprop_and_deconvnet_on_allconv(allconv):
    model, variables = allconv
    x = jax.random.normal(jax.random.key(2), (2, 32, 32, 3))
    g = guided_backprop(model, variables, x).maps
    d = deconvnet(model, variables, x).maps
    assert g.shape == d.shape == x.shape
    assert np.isfinite(g).all() and np.isfinite(d).all() and np.abs(g).max() > 0 and np.abs(d).max() > 0
    assert not np.allclose(g, d, atol=1e-6)


def _colour_coded(n, *, size=64, seed=0, **_):
    """A stand-in for `shapes.generate` that a few steps can learn: the label is the image's colour."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.int32)
    colours = np.array([(a, b, c) for a in (0.1, 0.9) for b in (0.1, 0.5, 0.9) for c in (0.2, 0.8)][:10], np.float32)
    noise = rng.normal(0, 0.05, (n, size, size, 3))
    images = np.clip(colours[labels][:, None, None] + noise, 0, 1).astype(np.float32)
    return shapes.ShapesBatch(images, labels, np.zeros((n, size, size), bool), np.zeros((n, 4), np.int32))


@pytest.mark.slow
def test_fit_shapes_checkpoints_and_history():
    seen = []
    params, history = fit_shapes(
        AllConvNet(),
        checkpoints=(1, 2),
        on_checkpoint=lambda e, p, a: seen.append((e, a, jax.tree_util.tree_structure(p))),
        **TINY,
    )
    assert [e for e, _, _ in seen] == [1, 2]
    assert seen[0][2] == jax.tree_util.tree_structure(params)
    assert [h["epoch"] for h in history] == [1, 2]
    assert [h["test_accuracy"] for h in history] == [a for _, a, _ in seen]
    assert all(np.isfinite(h["loss"]) and 0 <= h["test_accuracy"] <= 1 for h in history)


@pytest.mark.slow
def test_fit_shapes_lowers_the_loss(monkeypatch):
    # Real shapes sit on a plateau at ln 10 for the first few hundred steps (ShapesNet too), so the
    # loop's learning is checked on data 16 steps can learn; the recipe is the same.
    monkeypatch.setattr(shapes, "generate", _colour_coded)
    _, history = fit_shapes(AllConvNet(), lr=3e-3, **TINY)
    assert history[1]["loss"] < 0.85 * history[0]["loss"]
    assert history[1]["test_accuracy"] > 0.2  # chance is 0.1


def test_allconv_weights_load_back(tmp_path, allconv):
    _, variables = allconv
    path = tmp_path / "allconv.safetensors"
    save_weights(
        path,
        jax.tree_util.tree_map(np.asarray, variables["params"]),
        {"arch": "allconv", "preprocessing": CENTERED.name, "num_classes": "10"},
    )
    lm = jaxviz.load(weights=path)
    assert isinstance(lm.model, AllConvNet) and lm.arch == "allconv" and lm.input_shape == (64, 64, 3)
    assert lm.preprocessing.name == "centered"
    assert jaxviz.load("allconv", random_init=True).preprocessing.name == "centered"


def test_script_gmp_checkpoints_load_back(tmp_path, monkeypatch):
    out = tmp_path / "gmp.safetensors"
    argv = [
        "train_shapesnet.py",
        "--pool",
        "gmp",
        "--epochs",
        "2",
        "--per-epoch",
        "256",
        "--size",
        "32",
        "--test",
        "100",
        "--checkpoints",
        "1,2",
        "--out",
        str(out),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    script = _script()
    script.main()
    paths = [script.checkpoint_path(out, e) for e in (1, 2)]
    assert [p.name for p in paths] == ["gmp.epoch001.safetensors", "gmp.epoch002.safetensors"]
    for epoch, path in zip((1, 2, None), (*paths, out)):
        lm = jaxviz.load(weights=path)
        assert isinstance(lm.model, ShapesNet) and lm.model.pool == "gmp" and lm.model.head() == "gmp"
        assert "gmp" in [layer.name for layer in lm.model.layers()]
        assert lm.meta.get("epoch") == (str(epoch) if epoch else None)
        assert json.loads(lm.meta["train_args"])["pool"] == "gmp"
