"""Preprocessing that matches where a model's weights came from, and its exact inverse.

A model only sees inputs shaped the way its weights were trained: torchvision ports want
ImageNet mean/std in [0, 1] RGB, Keras/Caffe ports want mean-subtracted BGR in [0, 255].
`Preprocessing` names those conventions; `normalize`/`denormalize` are pure array maps
between display space (RGB in [0, 1]) and model space, so that a gradient or an optimized
input in model space can always be brought back for display.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

__all__ = [
    "CAFFE",
    "TORCHVISION",
    "TORCHVISION_224",
    "UNIT",
    "Preprocessing",
    "denormalize",
    "get_preprocessing",
    "normalize",
    "preprocess",
    "resize_and_crop",
    "to_display",
]


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How images are turned into model inputs: `x = (reorder(img * scale) - mean) / std`.

    Frozen and hashable, so it can be a static argument of `jax.jit`.

    Attributes:
      name: "torchvision", "caffe" or "unit" for the presets.
      mean: 3 values subtracted *after* scaling and channel reordering, i.e. in model space
        (BGR order and [0, 255] units for caffe).
      std: 3 divisors, also in model space.
      scale: factor from [0, 1] pixels to the model's units (255.0 for caffe, else 1.0).
      bgr: whether the model expects channels in BGR order.
      resize: length the shorter side is resized to before cropping; None skips it.
      crop: side of the square center crop; None skips it.
    """

    name: str
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0
    bgr: bool = False
    resize: int | None = None
    crop: int | None = None

    def __post_init__(self):
        # Coerce to tuples of floats so that equal settings hash equally (jit static args).
        mean = tuple(float(m) for m in self.mean)
        std = tuple(float(s) for s in self.std)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values each, got {mean} and {std}")
        if any(s == 0.0 for s in std):
            raise ValueError(f"std must be non-zero, got {std}")
        if not float(self.scale) > 0.0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        for field in ("resize", "crop"):
            value = getattr(self, field)
            if value is not None and (int(value) != value or value <= 0):
                raise ValueError(f"{field} must be a positive int or None, got {value!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "bgr", bool(self.bgr))


TORCHVISION = Preprocessing(
    name="torchvision",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    resize=256,
    crop=224,
)
"""torchvision's ImageNet recipe: Resize(256), CenterCrop(224), ToTensor, Normalize."""

TORCHVISION_224 = dataclasses.replace(TORCHVISION, name="torchvision_224", resize=224)
"""Seed 000's recipe: Resize(224), CenterCrop(224), ToTensor, Normalize with ImageNet's mean/std.

The shorter side goes to 224, so the crop keeps all of it and cuts only the longer side (the
evaluation protocol's Resize(256) also drops a 16-pixel border of the shorter side)."""

CAFFE = Preprocessing(
    name="caffe",
    mean=(103.939, 116.779, 123.68),
    scale=255.0,
    bgr=True,
    resize=256,
    crop=224,
)
"""Keras `preprocess_input(mode="caffe")`: RGB→BGR, [0, 255], subtract the BGR mean, no std.

The resize 256 / crop 224 is the usual evaluation protocol. Keras applications themselves
resize straight to 224×224 (`load_img(target_size=(224, 224))`, aspect ratio not kept); to
skip the border crop use `dataclasses.replace(CAFFE, resize=224)` (shorter side to 224,
then center crop 224), or `dataclasses.replace(CAFFE, resize=None, crop=None)` and resize
yourself.
"""

UNIT = Preprocessing(name="unit")
"""Identity: the model takes RGB in [0, 1] as is, at any size."""

CENTERED = Preprocessing(name="centered", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
"""(x − 0.5) / 0.25 of RGB in [0, 1], any size: the embedded shapes model (trains far better
centred than on raw [0, 1])."""

PRESETS = {pp.name: pp for pp in (TORCHVISION, TORCHVISION_224, CAFFE, UNIT, CENTERED)}


def get_preprocessing(name: str) -> Preprocessing:
    """The preset called `name` ("torchvision", "torchvision_224", "caffe", "unit" or "centered")."""
    try:
        return PRESETS[name]
    except KeyError:
        valid = ", ".join(sorted(PRESETS))
        raise ValueError(f"unknown preprocessing {name!r}; valid names: {valid}") from None


def resize_and_crop(img: np.ndarray, resize: int | None, crop: int | None) -> np.ndarray:
    """Resize the shorter side to `resize`, then take a `crop`×`crop` center crop.

    Follows torchvision's `Resize(resize)` + `CenterCrop(crop)` on PIL images: the longer
    side becomes `int(resize * long / short)`, interpolation is Pillow's bilinear filter
    (antialiased when shrinking), and the crop's top-left corner is
    `int(round((h - crop) / 2.0))` (Python's round: halves go to even). Each channel is
    resized as a float32 ("F" mode) image, so nothing is quantized to 8 bits; torchvision
    on a uint8 PIL image rounds to 8 bits, a difference of at most 0.5/255.

    Args:
      img: `(H, W, C)` float image (any C), NumPy or JAX.
      resize: target shorter side, or None to skip resizing.
      crop: side of the center crop, or None to skip cropping.

    Returns:
      `(crop, crop, C)` float32 NumPy array (or the resized/original size when skipped).

    Raises:
      ValueError: the crop is larger than the (resized) image, or `img` is not `(H, W, C)`.
    """
    x = np.asarray(img, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"resize_and_crop expects (H, W, C), got shape {x.shape}")
    if resize is not None:
        x = _resize_shorter_side(x, resize)
    if crop is not None:
        x = _center_crop(x, crop)
    return x


def normalize(img, pp: Preprocessing):
    """Display space → model space: `x = (reorder(img * scale) - mean) / std`.

    Args:
      img: `(..., H, W, 3)` float RGB in [0, 1], NumPy or JAX (also inside `jit`).
      pp: the model's preprocessing.

    Returns:
      float32 array of the same shape and kind (NumPy in, NumPy out; JAX in, JAX out).
    """
    x = _as_float32(img, "normalize") * np.float32(pp.scale)
    if pp.bgr and x.shape[-1] == 3:
        x = x[..., ::-1]
    return (x - _channels(pp.mean, x)) / _channels(pp.std, x)


def input_bounds(pp: Preprocessing) -> dict[str, tuple[float, ...]]:
    """`{"low": ..., "high": ...}`: the model-space values of black and white, one per channel (the
    box of LRP's z^B rule, `epsilon_gamma_box`)."""
    low, high = (
        tuple(float(v) for v in normalize(np.full((1, 1, 3), c, np.float32), pp).reshape(-1)) for c in (0.0, 1.0)
    )
    return {"low": low, "high": high}


def denormalize(x, pp: Preprocessing):
    """Model space → display space, the exact inverse of `normalize`; no clipping.

    Args:
      x: `(..., H, W, 3)` float in model space, NumPy or JAX.
      pp: the model's preprocessing.

    Returns:
      float32 RGB, in [0, 1] for inputs that came from `normalize` of such an image.
    """
    y = _as_float32(x, "denormalize")
    y = y * _channels(pp.std, y) + _channels(pp.mean, y)
    if pp.bgr and y.shape[-1] == 3:
        y = y[..., ::-1]
    return y / np.float32(pp.scale)


def to_display(x, pp: Preprocessing):
    """Model space → RGB clipped to [0, 1], ready for plotting or `save_image`."""
    y = denormalize(x, pp)
    xp = jnp if isinstance(y, jax.Array) else np
    return xp.clip(y, 0.0, 1.0)


def preprocess(img: np.ndarray, pp: Preprocessing) -> np.ndarray:
    """`resize_and_crop` with the preset's sizes, then `normalize`.

    Args:
      img: `(H, W, 3)` float RGB in [0, 1], e.g. from `load_image`.
      pp: the model's preprocessing.

    Returns:
      `(crop, crop, 3)` float32 NumPy array in model space (add a batch axis yourself).
    """
    return normalize(resize_and_crop(img, pp.resize, pp.crop), pp)


def _channels(values, x) -> np.ndarray:
    """Per-channel constants shaped `(1, ..., 1, C)` to match `x`'s rank (no implicit rank promotion).

    One-channel images (LeNet's digits) take the preset's constant when it is the same for all channels."""
    v = np.asarray(values, np.float32)
    if x.shape[-1] == 1 and np.all(v == v[0]):
        v = v[:1]
    elif x.shape[-1] != len(v):
        raise ValueError(f"image has {x.shape[-1]} channels; this preprocessing is for {len(v)}")
    return v.reshape((1,) * (x.ndim - 1) + (-1,))


def _as_float32(x, caller: str):
    """float32 array of the same kind as `x`; integer pixels are refused, not guessed at."""
    xp = jnp if isinstance(x, jax.Array) else np
    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(
            f"{caller} expects float images (RGB in [0, 1] for normalize), got dtype "
            f"{dtype}; divide uint8 images by 255 first"
        )
    x = xp.asarray(x, dtype=xp.float32)
    if x.ndim < 3 or x.shape[-1] not in (1, 3):
        raise ValueError(f"{caller} expects (..., H, W, 3) or one-channel (..., H, W, 1), got shape {x.shape}")
    return x


def _resize_shorter_side(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased) resize of `(H, W, C)` float32 so that min(H, W) == size."""
    h, w = x.shape[:2]
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_h, new_w) == (h, w):
        return x  # torchvision returns the image untouched too.
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c])).resize((new_w, new_h), Image.Resampling.BILINEAR))
        for c in range(x.shape[-1])
    ]
    return np.stack(channels, axis=-1).astype(np.float32, copy=False)


def _center_crop(x: np.ndarray, size: int) -> np.ndarray:
    """`size`×`size` center crop of `(H, W, C)` with torchvision's rounding."""
    h, w = x.shape[:2]
    if size > h or size > w:
        raise ValueError(f"center crop {size} is larger than the image ({h}×{w})")
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return x[top : top + size, left : left + size]
