"""Image loading: any Pillow mode becomes (H, W, 3) float32 RGB in [0, 1]; errors name the file."""

import os

import numpy as np
import pytest
from PIL import Image

from jaxviz.data.images import ImageError, _to_rgb, load_image, save_image


def _save(tmp_path, im, name, **kwargs):
    path = tmp_path / name
    im.save(path, **kwargs)
    return path


def _mode_on_disk(path):
    with Image.open(path) as im:
        return im.mode


def _assert_rgb01(img, shape):
    assert img.shape == shape
    assert img.dtype == np.float32
    assert img.min() >= 0.0 and img.max() <= 1.0


def test_exif_orientation_rotates_and_moves_marked_corner(tmp_path):
    # Stored 40 high, 60 wide, red block at the stored top-left. Orientation 6 means the
    # viewer rotates 90° clockwise, so the block must end up top-right of a 60×40 image.
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:10, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path, Image.fromarray(pixels), "rot.jpg", exif=exif, quality=95)

    img = load_image(path)

    _assert_rgb01(img, (60, 40, 3))
    np.testing.assert_allclose(img[3, -4], [1, 0, 0], atol=0.05)
    np.testing.assert_allclose(img[3, 3], [0, 0, 0], atol=0.05)
    np.testing.assert_allclose(img[-4, -4], [0, 0, 0], atol=0.05)


def test_rgb_png_exact(tmp_path):
    pixels = np.array([[[0, 128, 255], [10, 20, 30]]], np.uint8)
    img = load_image(_save(tmp_path, Image.fromarray(pixels), "rgb.png"))
    _assert_rgb01(img, (1, 2, 3))
    np.testing.assert_array_equal(img, pixels / np.float32(255))


def test_tiny_1x1(tmp_path):
    img = load_image(_save(tmp_path, Image.new("RGB", (1, 1), (255, 0, 0)), "one.png"))
    np.testing.assert_array_equal(img, [[[1, 0, 0]]])


def test_mode_L_is_gray(tmp_path):
    im = Image.fromarray(np.array([[0, 51, 255]], np.uint8))
    assert im.mode == "L"
    img = load_image(_save(tmp_path, im, "l.png"))
    _assert_rgb01(img, (1, 3, 3))
    np.testing.assert_allclose(img[0, :, 0], [0, 0.2, 1], atol=1e-7)
    np.testing.assert_array_equal(img[..., 0], img[..., 2])


def test_mode_LA_composites_over_white(tmp_path):
    # (gray 0, alpha 0) → white; (gray 0, alpha 255) → black; (gray 0, alpha 51) → 0.8.
    la = np.array([[[0, 0], [0, 255], [0, 51]]], np.uint8)
    im = Image.frombytes("LA", (3, 1), la.tobytes())
    img = load_image(_save(tmp_path, im, "la.png"))
    _assert_rgb01(img, (1, 3, 3))
    np.testing.assert_allclose(img[0, :, 1], [1.0, 0.0, 0.8], atol=1e-6)


def test_mode_RGBA_composites_over_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 255, 102]]], np.uint8)
    img = load_image(_save(tmp_path, Image.fromarray(rgba), "rgba.png"))
    _assert_rgb01(img, (1, 3, 3))
    a = 102 / 255
    expected = [[1, 0, 0], [1, 1, 1], [1 - a, 1 - a, 1.0]]
    np.testing.assert_allclose(img[0], expected, atol=1e-6)


def test_mode_P_palette_with_transparency(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([0, 255, 0, 0, 0, 255] + [0] * (254 * 3))
    im.putpixel((0, 0), 0)  # green, transparent
    im.putpixel((1, 0), 1)  # blue, opaque
    path = _save(tmp_path, im, "p.png", transparency=0)
    assert _mode_on_disk(path) == "P"
    img = load_image(path)
    _assert_rgb01(img, (1, 2, 3))
    np.testing.assert_array_equal(img[0], [[1, 1, 1], [0, 0, 1]])


def test_mode_P_palette_opaque(tmp_path):
    im = Image.new("P", (1, 1))
    im.putpalette([255, 128, 0] + [0] * (255 * 3))
    img = load_image(_save(tmp_path, im, "p.gif"))
    np.testing.assert_allclose(img[0, 0], [1, 128 / 255, 0], atol=1e-7)


def test_mode_CMYK(tmp_path):
    # Pure cyan ink → RGB (0, 1, 1) in Pillow's naive conversion; no ink → white.
    im = Image.new("CMYK", (2, 1))
    im.putpixel((0, 0), (255, 0, 0, 0))
    im.putpixel((1, 0), (0, 0, 0, 0))
    path = _save(tmp_path, im, "cmyk.tif")
    assert _mode_on_disk(path) == "CMYK"
    img = load_image(path)
    _assert_rgb01(img, (1, 2, 3))
    np.testing.assert_array_equal(img[0], [[0, 1, 1], [1, 1, 1]])


def test_16bit_grayscale_png_keeps_all_bits(tmp_path):
    values = np.array([[0, 32768, 65535, 257]], np.uint16)
    im = Image.fromarray(values)
    assert im.mode == "I;16"
    path = _save(tmp_path, im, "g16.png")
    img = load_image(path)
    _assert_rgb01(img, (1, 4, 3))
    np.testing.assert_allclose(img[0, :, 0], [0.0, 32768 / 65535, 1.0, 257 / 65535], rtol=1e-6)
    # 257/65535 would be 0.0 or 1/255 if the data had been squeezed to 8 bits.
    assert abs(img[0, 3, 0] - 1 / 255) < 1e-6 and img[0, 3, 0] != 0.0
    np.testing.assert_array_equal(img[..., 0], img[..., 1])


def test_16bit_big_endian_tiff(tmp_path):
    values = np.array([[0, 65535]], ">u2")
    im = Image.fromarray(values)
    assert im.mode == "I;16B"
    img = load_image(_save(tmp_path, im, "g16b.tif"))
    np.testing.assert_allclose(img[0, :, 0], [0.0, 1.0])


def test_32bit_int_tiff_scaled_by_type_max(tmp_path):
    values = np.array([[0, 2**30, 2**31 - 1, -5]], np.int32)
    im = Image.fromarray(values)
    assert im.mode == "I"
    img = load_image(_save(tmp_path, im, "i32.tif"))
    np.testing.assert_allclose(img[0, :, 0], [0.0, 0.5, 1.0, 0.0], atol=1e-6)


def test_mode_I_without_stated_depth_is_taken_as_16_bit():
    # Older Pillow opened 16-bit PNGs as "I"; with no TIFF tag to say otherwise, values
    # that fit in 16 bits are scaled by 65535, not by the int32 max.
    im = Image.fromarray(np.array([[0, 32768, 65535]], np.int32))
    np.testing.assert_allclose(_to_rgb(im, None)[0, :, 0], [0.0, 32768 / 65535, 1.0], rtol=1e-6)


def test_float_tiff(tmp_path):
    values = np.array([[0.0, 0.25, 1.0, 3.0, -1.0]], np.float32)
    im = Image.fromarray(values)
    assert im.mode == "F"
    img = load_image(_save(tmp_path, im, "f.tif"))
    _assert_rgb01(img, (1, 5, 3))
    np.testing.assert_allclose(img[0, :, 2], [0.0, 0.25, 1.0, 1.0, 0.0])


def test_corrupt_bytes_named_jpg(tmp_path):
    path = tmp_path / "noise_photo.jpg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageError, match="noise_photo.jpg") as info:
        load_image(path)
    assert info.value.path == str(path)
    assert isinstance(info.value, ValueError)


def test_truncated_png(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = _save(tmp_path, Image.fromarray(pixels), "full.png").read_bytes()
    path = tmp_path / "cut_short.png"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(ImageError, match="cut_short.png.*(corrupt|truncated)"):
        load_image(path)


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "page.png"
    path.write_text("<html>404 not found</html>")
    with pytest.raises(ImageError, match="page.png.*not an image"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="nowhere.png.*no such file"):
        load_image(tmp_path / "nowhere.png")


@pytest.mark.parametrize("side", [4, 8])  # 16 px: Pillow warns; 64 px: Pillow errors.
def test_decompression_bomb(tmp_path, monkeypatch, side):
    path = _save(tmp_path, Image.new("RGB", (side, side)), "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with pytest.raises(ImageError, match="bomb.png.*MAX_IMAGE_PIXELS"):
        load_image(path)


def test_save_image_round_trip_rgb(tmp_path):
    img = np.random.default_rng(1).random((5, 7, 3)).astype(np.float32)
    path = tmp_path / "out.png"
    save_image(path, img)
    back = load_image(path)
    assert back.shape == (5, 7, 3)
    np.testing.assert_allclose(back, np.round(img * 255) / 255, atol=1e-7)
    assert os.listdir(tmp_path) == ["out.png"]


def test_save_image_gray_clips_and_overwrites(tmp_path):
    path = tmp_path / "gray.png"
    path.write_bytes(b"old contents")
    save_image(path, np.array([[-1.0, 0.5, 2.0]], np.float32))
    assert _mode_on_disk(path) == "L"
    np.testing.assert_allclose(load_image(path)[0, :, 0], [0.0, 128 / 255, 1.0], atol=1e-7)
    assert sorted(os.listdir(tmp_path)) == ["gray.png"]


def test_save_image_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        assert os.path.exists(src)  # the temp file was written next to the target
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        save_image(tmp_path / "x.png", np.zeros((2, 2, 3)))
    monkeypatch.undo()
    with pytest.raises(ValueError, match="shape"):
        save_image(tmp_path / "bad.png", np.zeros((4, 4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        save_image(tmp_path / "nan.png", np.full((2, 2), np.nan))
    assert os.listdir(tmp_path) == []
