"""Read any image file Pillow understands as float RGB, and write PNGs atomically.

Loading is the edge where the outside world's variety (EXIF rotations, palettes, alpha,
16-bit scans, broken downloads) is turned into one thing: an `(H, W, 3)` float32 array in
[0, 1]. Everything after this point may assume that shape and range.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..atomic import atomic_path

__all__ = ["ImageError", "load_image", "save_image"]

# Modes that carry transparency; they are composited over white (see `load_image`).
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# Single-channel integer modes with more than 8 bits; Pillow's `convert("RGB")` would clip
# them to 255 instead of scaling, so they are scaled here by the type's white value.
_WIDE_INT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
# Modes `Image.reduce` averages as they are (palettes and bit images are converted at full size).
_REDUCIBLE = frozenset({"RGB", "RGBA", "L", "LA", "CMYK", "F"})


class ImageError(ValueError):
    """An image file could not be read; the message names the file and says what to do."""

    def __init__(self, message: str, path: str | os.PathLike[str]):
        super().__init__(message)
        self.path = os.fspath(path)


def load_image(path: str | os.PathLike[str], shorter_side: int | None = None) -> np.ndarray:
    """Load an image file as RGB in [0, 1], upright as a viewer would show it.

    Args:
      path: any file Pillow can open (JPEG, PNG, TIFF, GIF, BMP, WebP, ...). Multi-frame
        files give their first frame.
      shorter_side: the smallest shorter side the caller needs (it resizes afterwards). An image
        at least twice as large is decoded smaller, never below it: JPEG at a reduced DCT scale
        (`Image.draft`), other formats box-reduced by an integer factor (`Image.reduce`) before
        the float conversion — a 64 Mpx photo for a 224 model never becomes a 768 MB float array.

    Returns:
      `(H, W, 3)` float32 in [0, 1], with the EXIF orientation applied (so a phone photo
      stored sideways comes back upright, `H` and `W` swapped accordingly).

    Conversions, by Pillow mode:
      - `1`, `L`, `P`, `CMYK`, `YCbCr`, `HSV`, `LAB`: Pillow's own conversion to RGB
        (CMYK without colour management: embedded ICC profiles are ignored).
      - Transparent images (`RGBA`, `LA`, `PA`, premultiplied `RGBa`/`La`, and `P`/`L`/`RGB`
        with a transparent colour) are composited over **white**: `rgb * a + (1 - a)`,
        in float so that partly transparent pixels lose no precision.
      - 16-bit grayscale (`I;16*`) is divided by 65535, keeping all 16 bits. 32-bit `I`
        is divided by the file's stated depth (TIFF BitsPerSample) when known; otherwise
        by 65535 when every value fits in 16 bits (older Pillow opened 16-bit PNGs as `I`)
        and by 2**31 - 1 when not. Negative values clip to 0.
      - `F` (float) is taken to be already in [0, 1]: clipped, NaN read as 0.
      - 16-bit-per-channel RGB(A) PNGs: Pillow (up to at least 13.0) decodes these to
        8-bit `RGB`/`RGBA`, keeping the high byte, so they arrive with 8-bit precision.

    Raises:
      ImageError: the file is missing, unreadable, not an image, corrupt or truncated, or
        so large that Pillow flags it as a possible decompression bomb.
    """
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; a file this large
            # is refused either way rather than silently eating memory.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if shorter_side and min(im.size) >= 2 * shorter_side and im.format == "JPEG":
                    scale = min(im.size) / shorter_side
                    im.draft("RGB", (int(im.size[0] / scale) + 1, int(im.size[1] / scale) + 1))
                im.load()
                white = _integer_white(im) if im.mode == "I" else None
                upright = ImageOps.exif_transpose(im)
                if shorter_side and (k := min(upright.size) // shorter_side) >= 2 and upright.mode in _REDUCIBLE:
                    upright = upright.reduce(k)
        return _to_rgb(upright, white)
    except MemoryError:
        raise
    except Exception as e:  # Pillow's decoders raise many types for broken files.
        raise ImageError(_explain(path, e), path) from e


def save_image(path: str | os.PathLike[str], img: np.ndarray) -> None:
    """Write an image as an 8-bit PNG, atomically: readers see the old file or the new one.

    Args:
      path: destination; the data is PNG whatever the suffix. The directory must exist.
      img: `(H, W, 3)` RGB or `(H, W)` grayscale, float in [0, 1] (NumPy or JAX). Values
        are clipped to [0, 1] and rounded to the nearest of 256 levels.

    Raises:
      ValueError: wrong shape, or non-finite values (a NaN would otherwise become an
        arbitrary colour).
    """
    arr = np.asarray(img, dtype=np.float32)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
        raise ValueError(f"save_image expects (H, W, 3) or (H, W), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"save_image got NaN or infinite values for {os.fspath(path)}")
    pixels = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)

    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def _to_rgb(im: Image.Image, white: float | None) -> np.ndarray:
    """Any Pillow image → `(H, W, 3)` float32 in [0, 1] (rules in `load_image`)."""
    if im.mode in _WIDE_INT_MODES:
        values = np.asarray(im)
        if white is None:
            white = _integer_white(im, values)
        gray = np.clip(values.astype(np.float64) / white, 0.0, 1.0).astype(np.float32)
        return np.repeat(gray[..., None], 3, axis=-1)
    if im.mode == "F":
        gray = np.clip(np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0), 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=-1)
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        rgb, alpha = rgba[..., :3], rgba[..., 3:]
        return np.ascontiguousarray(rgb * alpha + (1.0 - alpha), dtype=np.float32)
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _integer_white(im: Image.Image, values: np.ndarray | None = None) -> float:
    """The value meaning white for integer grayscale: the type's max, not the data's max.

    Must see the image as opened (TIFF tags are lost once the image is transposed).
    """
    if values is None:
        values = np.asarray(im)
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:
        return 65535.0
    bits = getattr(im, "tag_v2", {}).get(258)  # TIFF BitsPerSample
    if isinstance(bits, tuple):
        bits = bits[0] if bits else None
    if bits:
        return float(2 ** min(int(bits), 31) - 1)
    return 65535.0 if values.size == 0 or values.max() <= 65535 else float(2**31 - 1)


def _explain(path: str | os.PathLike[str], e: Exception) -> str:
    """A message naming the file, what went wrong, and what to try."""
    where = os.fspath(path)
    if isinstance(e, FileNotFoundError):
        return f"{where}: no such file; check the path and the working directory"
    if isinstance(e, IsADirectoryError):
        return f"{where}: is a directory, not an image file"
    if isinstance(e, PermissionError):
        return f"{where}: permission denied; check the file's permissions"
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return (
            f"{where}: refused as a possible decompression bomb ({e}). If you trust the "
            "file, raise PIL.Image.MAX_IMAGE_PIXELS (or set it to None) before loading, "
            "or downscale the file first"
        )
    if isinstance(e, UnidentifiedImageError):
        return (
            f"{where}: not an image Pillow can read (wrong extension, an HTML error page "
            "saved as an image, or an unsupported format); open it to check, or re-export "
            "it as PNG/JPEG"
        )
    return f"{where}: corrupt or truncated image ({type(e).__name__}: {e}); re-download or re-export the file"
