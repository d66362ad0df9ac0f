"""experiments/seeds/seed000.py: every figure of seed 000 is written, is not blank and is named on the page;
the seed's class-model recipe (81 SGD steps on the raw input tensor) is reclassified as its class; the
`--weights` (VGG16) branch runs on random VGG16 weights at 32×32; photos get the seed's Resize + CenterCrop."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "seeds" / "seed000.py"


@pytest.fixture(scope="module")
def seed000():
    spec = importlib.util.spec_from_file_location("seed000", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _not_blank(path: Path) -> None:
    """A figure whose cells hold images: many colours and spread, not a white page with titles."""
    px = np.asarray(Image.open(path).convert("RGB"), np.float32)
    assert px.std() > 10, f"{path.name} looks blank (std {px.std():.1f})"
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 1000, f"{path.name} has too few colours to hold images"


def _check_page(out: Path, figures: list[str]) -> None:
    md, page = (out / "index.md").read_text(), (out / "index.html").read_text()
    for f in figures:
        assert (out / f).is_file()
        _not_blank(out / f)
        assert f"]({f})" in md and f"src='{f}'" in page, f"{f} is not on the page"
        assert "- seed: Slika 6." in md.split(f"## {f}")[1]  # the seed's caption beside it


def test_map_convs_keeps_vgg16_numbers_and_folds_deep_ones(seed000):
    m = seed000.map_convs
    assert m([1, 2, 5, 8], 13) == [1, 2, 5, 8] and m(range(2, 11), 13) == list(range(2, 11))
    assert m([1, 2, 5, 8], 6) == [1, 2, 5, 6] and m([1, 2, 5, 8], 4) == [1, 2, 3, 4]
    assert m(range(2, 11), 6) == [2, 3, 4, 5, 6] and m(range(1, 10), 4) == [1, 2, 3, 4]


def test_photos_get_the_seeds_resize_224_center_crop_224(seed000, tmp_path):
    rows, cols = np.mgrid[0:224, 0:300]
    pixels = np.stack([rows, cols % 256, (rows + cols) % 256], -1).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "known.png")
    images, names = seed000.vgg_photos([str(tmp_path / "known.png")], 224)
    np.testing.assert_array_equal(images[0], pixels[:, 38:262] / np.float32(255))  # (300 - 224) / 2 = 38
    assert names == ["known"]


@pytest.mark.slow
def test_the_seeds_class_models_reach_their_class_on_the_embedded_model(seed000, tmp_path):
    # The seed's recipe at its full 81 steps on shapesnet: the raw tensor, unnormalized and unclipped. With
    # it, 4 of shapesnet's 10 classes end as the top class; circle, square and star do with p > 0.9.
    ctx = seed000.main(["--out", str(tmp_path), "--only", "class", "--classes", "circle,square,star"])
    _check_page(tmp_path, ["class_models.png"])
    c = ctx["class"]
    assert c["steps"] == 81 and not c["normalize"] and not c["clip"]
    assert c["predicted"] == ["circle", "square", "star"] == c["classes"], c
    assert min(c["p_target_tensor"]) > 0.9, c["p_target_tensor"]
    assert c["tensor_range"][0] < 0 or c["tensor_range"][1] > 1  # really unclipped: pixels left [0, 1]
    assert json.loads((tmp_path / "results.json").read_text())["class"]["classes"] == c["classes"]


@pytest.mark.slow
def test_embedded_run_writes_every_figure_with_the_layers_mapped(seed000, tmp_path):
    # minivgg (4 conv layers, a ReLU in its head), 1 step of every optimization, one 32x32 shapes image.
    ctx = seed000.main(
        [
            "--out",
            str(tmp_path),
            "--model",
            "minivgg",
            "--classes",
            "circle",
            "--class-steps",
            "1",
            "--steps",
            "1",
            "--images",
            "1",
            "--top",
            "1",
            "--size",
            "32",
        ]
    )
    assert ctx["figures"] == [
        "class_models.png",
        "saliency.png",
        "guided_backprop.png",
        "grad_cam.png",
        "layers.png",
        "filters.png",
        "deepdream.png",
    ]
    _check_page(tmp_path, ctx["figures"])
    assert ctx["grad_cam"]["layer"] == "relu3_2"
    g = ctx["guided_backprop"]
    assert g["all_relus"] == [*g["relus"], "relu4"]  # the head's ReLU keeps its plain gradient, as VGG16's
    assert list(ctx["filters"]) == ["conv1_1", "conv2_1", "conv3_1", "conv3_2"]  # the seed's 1, 2, 5, 8 on 4 convs
    assert ctx["deepdream"]["layers"] == ["conv2_1", "conv3_1", "conv3_2"]  # 2-10 on 4 convs
    assert [o for o, _ in ctx["seed_layers"]["layers"]] == [1, 2, 3, 4]


@pytest.fixture(scope="module")
def random_vgg16(module_tmp):
    """VGG16 with random weights as a .safetensors file (He-scaled NumPy draws: quicker than a jitted init)."""
    from jaxviz import weights
    from jaxviz.models import build

    model = build("vgg16")
    shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 32, 32, 3), np.float32))
    rng = np.random.default_rng(0)

    def draw(leaf):
        fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
        scale = np.sqrt(2.0 / fan_in) if len(leaf.shape) > 1 else 0.0
        return (rng.standard_normal(leaf.shape, np.float32) * scale).astype(np.float32)

    variables = jax.tree_util.tree_map(draw, dict(shapes))
    path = module_tmp / "vgg16-random.safetensors"
    # A stated fingerprint skips the 224×224 forward pass that save_variables would run to make one.
    weights.save_variables(
        path,
        variables,
        {"arch": "vgg16", "preprocessing": "torchvision", "fingerprint": {"note": "random test weights, not computed"}},
    )
    return path


@pytest.mark.slow
def test_vgg16_weights_branch_uses_the_seeds_classes_and_layers(seed000, random_vgg16, tmp_path):
    rows, cols = np.mgrid[0:48, 0:64]
    photo = np.stack([rows * 5, cols * 4, (rows * cols) % 256], -1).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    # Guided backprop and Grad-CAM only (the VGG16-specific choices): compiling the optimization loops for VGG16
    # on a CPU takes minutes (the Renderer closes over the weights, so XLA constant-folds the 25088x4096
    # classifier); their layers are checked.
    ctx = seed000.main(
        [
            "--out",
            str(out),
            "--weights",
            str(random_vgg16),
            "--size",
            "32",
            "--image",
            str(tmp_path / "photo.png"),
            "--top",
            "1",
            "--only",
            "guided_backprop,grad_cam",
        ]
    )
    assert ctx["vgg"] and ctx["arch"] == "vgg16"
    assert ctx["classes"] == ["dumbbell", "dumbbell", "strawberry", "pineapple"]
    assert ctx["grad_cam"]["layer"] == "features.29"
    assert len(ctx["guided_backprop"]["relus"]) == 13 and len(ctx["guided_backprop"]["all_relus"]) == 15
    layers = ctx["seed_layers"]
    assert layers["filters"] == [(1, "conv1_1"), (2, "conv1_2"), (5, "conv3_1"), (8, "conv4_1")]
    assert [n for _, n in layers["deepdream"]] == [
        "conv1_2",
        "conv2_1",
        "conv2_2",
        "conv3_1",
        "conv3_2",
        "conv3_3",
        "conv4_1",
        "conv4_2",
        "conv4_3",
    ]
    assert [o for o, _ in layers["layers"]] == list(range(1, 10))
    _check_page(out, ctx["figures"])
