"""Keras 3 weights: `.weights.h5`, `.keras` archives and KerasHub VGG layouts port like Keras 2 files.

Every file here is written by Keras 3 itself (JAX backend) or by KerasHub, with random weights and
random biases; the ported jaxviz model must give the Keras model's own logits (or pool5 features
without the top) on the same model-space input.
"""

import json
import os
import zipfile

import jax
import numpy as np
import pytest

from jaxviz import load, weights
from jaxviz.weights import WeightsError

pytestmark = pytest.mark.slow  # real-size VGG16 files written by Keras 3 and KerasHub

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":  # pragma: no cover - depends on the environment
    pytest.skip("Keras runs on another backend in this process", allow_module_level=True)

try:  # tests/ may or may not be a package
    from .disk import OneAtATime
except ImportError:
    from disk import OneAtATime

RTOL = 1e-5


def _randomize(model, seed: int):
    """Random kernels (Keras's own initializers) and random biases, so that biases are checked too."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype("float32"))
    return model


def _keras(model, x):
    with jax.numpy_rank_promotion("allow"):  # tests run with "raise"; Keras's ops broadcast freely
        return np.asarray(model(x, training=False))


def _ours(path, x):
    lm = load(weights=path)
    return np.asarray(lm.model.apply(lm.variables, x)), lm


def _close(ours, theirs):
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=RTOL * np.abs(theirs).max())


@pytest.fixture(scope="module")
def saved(module_tmp) -> dict:
    """Every full-size file this module writes (0.4-0.5 GB each), saved when a test asks for it, one on disk
    at a time: `saved["files"].get(name)` with the saving function of each name in `saved["save"]`."""
    save: dict = {}

    def make(name: str):
        with jax.numpy_rank_promotion("allow"):
            save[name](str(module_tmp / name))
        return module_tmp / name

    return {"save": save, "files": OneAtATime(make)}


@pytest.fixture(scope="module")
def vgg16_top(saved):
    """keras.applications.VGG16 with its classifier (10 classes, logits), as .weights.h5 and .keras."""
    keras.utils.set_random_seed(0)
    with jax.numpy_rank_promotion("allow"):
        model = _randomize(keras.applications.VGG16(weights=None, classes=10, classifier_activation=None), 1)
    saved["save"].update({"vgg16.weights.h5": model.save_weights, "vgg16.keras": model.save})
    x = np.random.default_rng(2).normal(0, 30, (2, 224, 224, 3)).astype("float32")
    return saved["files"], _keras(model, x), x


@pytest.mark.parametrize("file", ["vgg16.weights.h5", "vgg16.keras"])
def test_keras_applications_vgg16_ports_with_its_logits(vgg16_top, file, weights_dir):
    files, want, x = vgg16_top
    out = weights.port(files.get(file), "vgg16")
    got, lm = _ours(out, x)
    _close(got, want)
    meta = lm.meta
    assert meta["preprocessing"] == "caffe" and meta["include_top"] is True and meta["num_classes"] == 10
    assert meta["source_keras"] == "Keras 3, keras.applications layout"


def test_keras_applications_vgg19_without_top(tmp_path, weights_dir):
    keras.utils.set_random_seed(3)
    with jax.numpy_rank_promotion("allow"):
        model = _randomize(keras.applications.VGG19(weights=None, include_top=False, input_shape=(64, 64, 3)), 4)
        model.save_weights(tmp_path / "vgg19_notop.weights.h5")
    x = np.random.default_rng(5).normal(0, 30, (2, 64, 64, 3)).astype("float32")
    got, lm = _ours(weights.port(tmp_path / "vgg19_notop.weights.h5", "vgg19"), x)
    _close(got, _keras(model, x))
    assert lm.meta["include_top"] is False
    with pytest.raises(WeightsError) as info:  # another architecture: the first tensor that does not fit
        weights.port(tmp_path / "vgg19_notop.weights.h5", "vgg16")
    assert "'block3_conv4/kernel'" in str(info.value) and "--arch vgg19" in str(info.value)


# --- KerasHub -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_hub():
    return pytest.importorskip("keras_hub")


TV_MEAN, TV_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def hub_vgg16(keras_hub, saved):
    """KerasHub's VGGImageClassifier (its avg-pool head: fc1/fc2 as 7x7 and 1x1 convolutions) with
    the image converter of its ImageNet presets, saved as weights, as a .keras archive and as a preset."""
    keras.utils.set_random_seed(6)
    with jax.numpy_rank_promotion("allow"):
        backbone = keras_hub.models.VGGBackbone(
            stackwise_num_repeats=[2, 2, 3, 3, 3],
            stackwise_num_filters=[64, 128, 256, 512, 512],
            image_shape=(224, 224, 3),
        )
        converter = keras_hub.layers.VGGImageConverter(
            image_size=(224, 224),
            scale=[1 / (255 * s) for s in TV_STD],
            offset=[-m / s for m, s in zip(TV_MEAN, TV_STD)],
        )
        pre = keras_hub.models.VGGImageClassifierPreprocessor(image_converter=converter)
        model = _randomize(keras_hub.models.VGGImageClassifier(backbone=backbone, num_classes=7, preprocessor=pre), 7)
    saved["save"].update(
        {"task.weights.h5": model.save_weights, "vgg16_hub.keras": model.save, "preset": model.save_to_preset}
    )
    x = np.random.default_rng(8).normal(0, 1, (2, 224, 224, 3)).astype("float32")
    return saved["files"], model, x


@pytest.mark.parametrize("what", ["task.weights.h5", "vgg16_hub.keras", "preset"])
def test_keras_hub_vgg16_ports_with_its_logits(hub_vgg16, what, weights_dir):
    files, model, x = hub_vgg16
    got, lm = _ours(weights.port(files.get(what), "vgg16"), x)
    _close(got, _keras(model, x))
    meta = lm.meta
    assert meta["source_keras"] == "Keras 3, keras_hub layout" and meta["num_classes"] == 7
    assert meta["preprocessing"] == "torchvision"  # the converter's scale/offset are ImageNet's mean/std
    assert ("scale=" in meta["preprocessing_from"]) == (what != "task.weights.h5")


def test_keras_hub_backbone_alone_ports_without_top(hub_vgg16, keras_hub, weights_dir):
    files, model, x = hub_vgg16
    got, lm = _ours(weights.port(files.get("preset") / "model.weights.h5", "vgg16"), x)
    _close(got, _keras(model.backbone, x))
    assert lm.meta["include_top"] is False and lm.meta["preprocessing"] == "torchvision"


def test_keras_hub_preset_of_another_depth_and_unknown_rescaling_are_refused(hub_vgg16, tmp_path, weights_dir):
    import shutil

    original = hub_vgg16[0].get("preset")
    preset = tmp_path / "preset"
    shutil.copytree(original, preset)
    config = json.loads((preset / "config.json").read_text())
    config["config"]["stackwise_num_repeats"] = [1, 1, 2, 2, 2]  # VGG11
    (preset / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=r"stackwise_num_repeats=\[1, 1, 2, 2, 2\]"):
        weights.port(preset, "vgg16")
    shutil.copy(original / "config.json", preset / "config.json")
    converter = json.loads((preset / "image_converter.json").read_text())
    converter["config"].update(scale=0.5, offset=0.0)
    (preset / "image_converter.json").write_text(json.dumps(converter))
    with pytest.raises(WeightsError, match=r"scale=0\.5, offset=0\.0, which is none of jaxviz's preprocessings"):
        weights.port(preset, "vgg16")
    assert list(weights_dir.iterdir()) == []


def test_keras_archive_refusals_name_the_member(hub_vgg16, tmp_path, weights_dir):
    src = zipfile.ZipFile(hub_vgg16[0].get("vgg16_hub.keras"))
    no_weights = tmp_path / "no_weights.keras"
    with zipfile.ZipFile(no_weights, "w") as z:
        z.writestr("config.json", src.read("config.json"))
        z.writestr("metadata.json", src.read("metadata.json"))
    with pytest.raises(WeightsError, match=r"without model\.weights\.h5 \(it has config\.json, metadata\.json\)"):
        weights.port(no_weights, "vgg16")
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("config.json", src.read("config.json"))
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(WeightsError, match=r"model\.weights\.h5\]: HDF5 cannot open it"):
        weights.port(broken, "vgg16")
    bad_config = tmp_path / "bad_config.keras"
    with zipfile.ZipFile(bad_config, "w") as z:
        z.writestr("config.json", "{not json")
        z.writestr("model.weights.h5", src.read("model.weights.h5"))
    with pytest.raises(WeightsError, match="config.json is not readable JSON"):
        weights.port(bad_config, "vgg16")
    assert list(weights_dir.iterdir()) == []
