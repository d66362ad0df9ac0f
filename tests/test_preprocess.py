"""Preprocessing presets, torchvision-style resize/crop, and normalize/denormalize inversion."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxviz.data.preprocess import (
    CAFFE,
    TORCHVISION,
    TORCHVISION_224,
    UNIT,
    Preprocessing,
    denormalize,
    get_preprocessing,
    normalize,
    preprocess,
    resize_and_crop,
    to_display,
)

PRESETS = [TORCHVISION, CAFFE, UNIT]


def _random_image(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


@pytest.mark.parametrize("pp", PRESETS, ids=lambda pp: pp.name)
def test_round_trip_numpy(pp):
    img = _random_image((2, 5, 6, 3))
    x = normalize(img, pp)
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == img.shape
    np.testing.assert_allclose(denormalize(x, pp), img, atol=1e-6, rtol=0)


@pytest.mark.parametrize("pp", PRESETS, ids=lambda pp: pp.name)
def test_round_trip_jax_stays_jax(pp):
    img = jnp.asarray(_random_image((4, 4, 3), seed=1))
    x = normalize(img, pp)
    assert isinstance(x, jax.Array) and x.dtype == jnp.float32
    back = denormalize(x, pp)
    assert isinstance(back, jax.Array)
    np.testing.assert_allclose(np.asarray(back), np.asarray(img), atol=1e-6, rtol=0)


def test_normalize_under_jit_with_static_preprocessing():
    img = jnp.full((2, 2, 3), 0.5, jnp.float32)
    f = jax.jit(normalize, static_argnums=1)
    np.testing.assert_allclose(np.asarray(f(img, CAFFE)), np.asarray(normalize(img, CAFFE)))
    same = Preprocessing("caffe", [103.939, 116.779, 123.68], (1, 1, 1), 255, True, 256, 224)
    assert hash(same) == hash(CAFFE) and same == CAFFE


def test_caffe_pure_red_goes_to_bgr_channel_2():
    red = np.zeros((1, 1, 3), np.float32)
    red[..., 0] = 1.0
    x = normalize(red, CAFFE)
    np.testing.assert_allclose(x[0, 0], [-103.939, -116.779, 255.0 - 123.68], atol=1e-4)
    np.testing.assert_allclose(x[0, 0, 2], 131.32, atol=1e-4)


def test_caffe_pure_blue_goes_to_bgr_channel_0():
    blue = np.zeros((1, 1, 3), np.float32)
    blue[..., 2] = 1.0
    np.testing.assert_allclose(normalize(blue, CAFFE)[0, 0], [255.0 - 103.939, -116.779, -123.68], atol=1e-4)


def test_torchvision_normalize_matches_hand_computed_values():
    img = np.array([[[0.5, 0.25, 1.0], [0.0, 0.0, 0.0]]], np.float32)
    x = normalize(img, TORCHVISION)
    # (0.5 - 0.485) / 0.229, (0.25 - 0.456) / 0.224, (1 - 0.406) / 0.225
    np.testing.assert_allclose(x[0, 0], [0.0655022, -0.9196429, 2.64], atol=1e-6)
    # -0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225
    np.testing.assert_allclose(x[0, 1], [-2.1179039, -2.0357143, -1.8044444], atol=1e-6)


def test_unit_is_identity():
    img = _random_image((3, 3, 3))
    np.testing.assert_array_equal(normalize(img, UNIT), img)
    assert preprocess(img, UNIT).shape == (3, 3, 3)


def test_to_display_clips_but_denormalize_does_not():
    x = np.full((1, 1, 3), 10.0, np.float32)
    assert denormalize(x, TORCHVISION).max() > 1.0
    np.testing.assert_array_equal(to_display(x, TORCHVISION), np.ones((1, 1, 3)))
    assert isinstance(to_display(jnp.asarray(x), CAFFE), jax.Array)


def test_integer_images_are_refused():
    with pytest.raises(TypeError, match="255"):
        normalize(np.zeros((2, 2, 3), np.uint8), TORCHVISION)


@pytest.mark.parametrize(
    "shape, resized",
    [((300, 500, 3), (256, 426, 3)), ((500, 300, 3), (426, 256, 3)), ((256, 256, 3), None)],
)
def test_torchvision_resize_then_crop_sizes(shape, resized):
    img = _random_image(shape)
    if resized is not None:
        assert resize_and_crop(img, 256, None).shape == resized
    else:  # already the right size: untouched, like torchvision
        np.testing.assert_array_equal(resize_and_crop(img, 256, None), img)
    out = preprocess(img, TORCHVISION)
    assert out.shape == (224, 224, 3) and out.dtype == np.float32


def test_resize_matches_pillow_bilinear_on_uint8():
    # torchvision on a PIL image = Pillow's antialiased bilinear on uint8; float per
    # channel must agree up to rounding (Pillow's 8-bit path uses fixed-point weights, so
    # a few pixels differ by one level).
    yy, xx = np.mgrid[0:90, 0:150]
    pixels = np.stack([xx * 1.7, yy * 2.8, (xx + yy) % 256], -1).clip(0, 255).astype(np.uint8)
    ref = np.asarray(Image.fromarray(pixels).resize((85, 51), Image.Resampling.BILINEAR))
    out = resize_and_crop(pixels / np.float32(255), 51, None)
    assert out.shape == (51, 85, 3)
    diff = np.abs(out * 255 - ref)
    assert diff.max() <= 1.0 and diff.mean() < 0.3


def test_resize_keeps_constant_image_constant():
    out = resize_and_crop(np.full((40, 70, 3), 0.3, np.float32), 17, None)
    np.testing.assert_allclose(out, 0.3, atol=1e-6)


@pytest.mark.parametrize(
    "h, w, crop, top, left",
    [
        (7, 10, 4, 2, 3),  # (7-4)/2 = 1.5 → 2, (10-4)/2 = 3
        (8, 8, 3, 2, 2),  # 2.5 → 2: Python's round, halves to even, like torchvision
        (10, 9, 3, 4, 3),  # 3.5 → 4
        (5, 5, 5, 0, 0),
    ],
)
def test_center_crop_position(h, w, crop, top, left):
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([rows, cols, rows * 100 + cols], axis=-1)
    out = resize_and_crop(img, None, crop)
    assert out.shape == (crop, crop, 3)
    assert (out[0, 0, 0], out[0, 0, 1]) == (top, left)
    assert (out[-1, -1, 0], out[-1, -1, 1]) == (top + crop - 1, left + crop - 1)


def test_crop_larger_than_image_raises():
    with pytest.raises(ValueError, match="larger"):
        resize_and_crop(np.zeros((10, 20, 3), np.float32), None, 11)


def test_get_preprocessing():
    assert get_preprocessing("caffe") is CAFFE
    assert get_preprocessing("torchvision") is TORCHVISION
    assert get_preprocessing("torchvision_224") is TORCHVISION_224
    with pytest.raises(ValueError, match="caffe, centered, torchvision, torchvision_224, unit"):
        get_preprocessing("keras")


def test_torchvision_224_is_seed_000_resize_224_then_crop_224():
    # Seed 000: Resize(224), CenterCrop(224), Normalize(ImageNet). A 224x300 image is already at
    # the size (no resampling): the result is literally columns 38..261, (300 - 224) / 2 = 38.
    assert (TORCHVISION_224.resize, TORCHVISION_224.crop) == (224, 224)
    assert (TORCHVISION_224.mean, TORCHVISION_224.std) == (TORCHVISION.mean, TORCHVISION.std)
    rows, cols = np.mgrid[0:224, 0:300].astype(np.float32)
    img = np.stack([rows / 223, cols / 299, (rows + cols) / 522], -1).astype(np.float32)
    crop = resize_and_crop(img, TORCHVISION_224.resize, TORCHVISION_224.crop)
    np.testing.assert_array_equal(crop, img[:, 38:262])
    np.testing.assert_array_equal(preprocess(img, TORCHVISION_224), normalize(img[:, 38:262], TORCHVISION_224))
    # A 448x600 photo: Pillow's bilinear to 300x224 (the shorter side to 224, not 256), then columns 38..261;
    # the 256-preset instead keeps rows 16..239 of a 256x342 resize.
    photo = _random_image((448, 600, 3), seed=3)
    ref = np.stack(
        [np.asarray(Image.fromarray(photo[..., c]).resize((300, 224), Image.Resampling.BILINEAR)) for c in range(3)], -1
    )[:, 38:262]
    np.testing.assert_allclose(resize_and_crop(photo, 224, 224), ref, atol=1e-6)
    assert not np.allclose(resize_and_crop(photo, TORCHVISION.resize, TORCHVISION.crop), ref, atol=1e-2)


def test_keras_style_variant_via_replace():
    keras = dataclasses.replace(CAFFE, resize=224)
    assert keras.crop == 224 and keras.bgr and keras.scale == 255.0
    assert preprocess(_random_image((300, 500, 3)), keras).shape == (224, 224, 3)


def test_invalid_preprocessing_rejected():
    with pytest.raises(ValueError, match="std"):
        Preprocessing("x", std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="3 values"):
        Preprocessing("x", mean=(0.0, 0.0))
