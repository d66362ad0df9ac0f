"""The second shapes architecture (`minivgg`): shipped weights, accuracy, and every seed-002 method on it."""

import jax
import numpy as np
import pytest

import jaxviz
from jaxviz.attribution.engine import compiled
from jaxviz.data import shapes
from jaxviz.data.preprocess import normalize
from jaxviz.models.loading import embedded_path
from jaxviz.weights import verify

FRESH_SEED = 27_182  # used by no training epoch (seeds 500..515), the training test set or the demo


@pytest.fixture(scope="module")
def minivgg():
    return jaxviz.load("minivgg")


def test_minivgg_file_is_small_and_verifies():
    path = embedded_path("minivgg")
    assert path.stat().st_size < 2**20
    report = verify(path)
    assert report["ok"] and report["fingerprint"] == "ok" and report["arch"] == "minivgg"


def test_minivgg_differs_from_shapesnet(minivgg):
    kinds = [layer.kind for layer in minivgg.model.layers()]
    assert "flatten" in kinds and "gap" not in kinds and kinds.count("dense") == 2
    assert minivgg.model.cam_layer() == "relu3_2"
    assert minivgg.labels.names == tuple(shapes.CLASSES) and minivgg.preprocessing.name == "centered"


@pytest.mark.slow
def test_minivgg_accuracy_on_fresh_shapes(minivgg):
    data = shapes.generate(1000, size=64, seed=FRESH_SEED)
    predict = jax.jit(lambda x: minivgg.logits(x).argmax(-1))
    x = normalize(data.images, minivgg.preprocessing)
    pred = np.concatenate([np.asarray(predict(x[i : i + 250])) for i in range(0, 1000, 250)])
    assert np.mean(pred == data.labels) >= 0.95


def test_seed002_methods_run_on_minivgg(minivgg, size=80):
    """Deconvnet and (guided) Grad-CAM give finite, non-zero maps of the input's size at a size
    it was not trained at (the adaptive pool lets the flatten head take other sizes)."""
    data = shapes.generate(2, size=size, seed=3)
    x = normalize(data.images, minivgg.preprocessing)
    for method in ("deconvnet", "grad_cam", "guided_grad_cam"):
        maps = np.asarray(compiled(method, minivgg.model)(minivgg.params, x, data.labels)[0])
        assert maps.shape[:3] == (2, size, size) and np.isfinite(maps).all() and np.abs(maps).sum() > 0, method
