"""The embedded default model: shipped file, accuracy on fresh shapes, loading by name."""

import jax
import numpy as np
import pytest

import jaxviz
from jaxviz.data import shapes
from jaxviz.data.preprocess import normalize
from jaxviz.models.loading import embedded_path
from jaxviz.weights import WeightsError, save_weights, verify

FRESH_SEED = 31_337  # used by no training epoch (seeds 0..13), the training test set or the demo


@pytest.fixture(scope="module")
def embedded():
    return jaxviz.load()


def test_embedded_file_is_small_and_verifies():
    path = embedded_path()
    assert path.stat().st_size < 3 * 2**20
    report = verify(path)
    assert report["ok"] and report["fingerprint"] == "ok" and report["shapes"] == "ok"


def test_embedded_metadata(embedded):
    assert embedded.arch == "shapesnet"
    assert embedded.preprocessing.name == "centered"
    assert embedded.labels.names == tuple(shapes.CLASSES)


@pytest.mark.slow
def test_embedded_accuracy_on_fresh_shapes(embedded):
    data = shapes.generate(1000, size=64, seed=FRESH_SEED)
    predict = jax.jit(lambda x: embedded.logits(x).argmax(-1))
    x = normalize(data.images, embedded.preprocessing)
    pred = np.concatenate([np.asarray(predict(x[i : i + 250])) for i in range(0, 1000, 250)])
    assert np.mean(pred == data.labels) >= 0.95


@pytest.mark.slow
def test_load_weights_file_with_own_classes(tmp_path, shapesnet):
    model, params = shapesnet
    path = tmp_path / "mine.safetensors"
    names = [f"class{i}" for i in range(10)]
    save_weights(
        path,
        jax.tree_util.tree_map(np.asarray, params),
        {"arch": "shapesnet", "preprocessing": "unit", "classes": names},
    )
    lm = jaxviz.load(weights=path)
    assert lm.labels.name(3) == "class3" and lm.preprocessing.name == "unit"
    np.testing.assert_allclose(
        lm.logits(np.ones((1, 64, 64, 3), np.float32)),
        model.apply({"params": params}, np.ones((1, 64, 64, 3), np.float32)),
        rtol=1e-6,
    )
    with pytest.raises(WeightsError, match="shapesnet"):
        jaxviz.load("vgg16", weights=path)


def test_missing_imagenet_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXVIZ_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="jaxviz weights fetch"):
        jaxviz.load("vgg16")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_random_init_needs_no_file():
    lm = jaxviz.load("lenet5", random_init=True)
    assert lm.logits(np.zeros((2, 28, 28, 1), np.float32)).shape == (2, 10)
