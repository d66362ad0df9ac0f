"""Slow, literal NumPy VGG forward passes, each as its SOURCE framework defines it.

Deliberately independent of jaxviz (nothing here imports it): every function reads weights in
the layout of the framework that saved them and follows that framework's conventions, so a
port that gets an axis order wrong cannot agree with these by accident.

- torchvision (`torchvision.models.vgg`): NCHW input; `features.N` conv weights `(out, in, kh, kw)`,
  cross-correlation with padding 1; ReLU; MaxPool2d(2, 2) (floor); AdaptiveAvgPool2d((7, 7));
  `torch.flatten(x, 1)` of NCHW, i.e. (C, H, W) order; `classifier.0/3/6` linear `x @ W.T + b`;
  dropout is the identity in eval mode.
- timm (`timm/models/vgg.py`): the same features; `pre_logits` (ConvMlp) is a 7x7 conv `fc1`
  (adaptive-pooled up to 7x7 first when smaller), ReLU, a 1x1 conv `fc2`, ReLU; `head` is
  global average pooling and the linear `head.fc`.
- Keras (`keras.applications.vgg16`): NHWC input; `blockB_convC` kernels `(kh, kw, in, out)`
  with 'same' padding; MaxPooling2D 2x2 'valid'; Flatten of NHWC, i.e. (H, W, C) order; Dense
  `x @ K + b` for fc1, fc2, predictions. The functions return logits: Keras's `predictions`
  layer applies softmax on top, which is left out so that outputs compare linearly.

Widths are read from the weights (any widths work); `blocks` gives the convs per stage, with a
max-pool after each stage, as in both frameworks. Arithmetic is in the input's dtype.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

VGG16_BLOCKS = (2, 2, 3, 3, 3)
VGG19_BLOCKS = (2, 2, 4, 4, 4)


# --- torch semantics: NCHW ---------------------------------------------------------------


def conv2d_nchw(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, padding: int) -> np.ndarray:
    """torch.nn.functional.conv2d, stride 1: y[n,o,i,j] = b[o] + sum_{c,u,v} w[o,c,u,v] x[n,c,i+u,j+v]."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = sliding_window_view(x, weight.shape[2:], axis=(2, 3))  # (N, C, H', W', kh, kw)
    y = np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3]))  # (N, H', W', O)
    return y.transpose(0, 3, 1, 2) + bias[None, :, None, None]


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def max_pool2d_nchw(x: np.ndarray, k: int = 2) -> np.ndarray:
    """MaxPool2d(k, k): windows that do not fit are dropped (floor mode)."""
    n, c, h, w = x.shape
    x = x[:, :, : h // k * k, : w // k * k]
    return x.reshape(n, c, h // k, k, w // k, k).max(axis=(3, 5))


def adaptive_avg_pool2d_nchw(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """AdaptiveAvgPool2d: output cell (i, j) averages rows [floor(i*H/oh), ceil((i+1)*H/oh)) and
    likewise for columns."""
    n, c, h, w = x.shape
    oh, ow = out_hw
    out = np.empty((n, c, oh, ow), x.dtype)
    for i in range(oh):
        r0, r1 = math.floor(i * h / oh), math.ceil((i + 1) * h / oh)
        for j in range(ow):
            c0, c1 = math.floor(j * w / ow), math.ceil((j + 1) * w / ow)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """torch.nn.functional.linear: weight is (out, in)."""
    return x @ weight.T + bias


def torch_vgg_features(sd: dict[str, np.ndarray], x: np.ndarray, blocks=VGG16_BLOCKS) -> np.ndarray:
    """`features` of a torchvision/timm VGG: module N is a conv, a ReLU or a pool, numbered in order."""
    index = 0
    for n_convs in blocks:
        for _ in range(n_convs):
            x = relu(conv2d_nchw(x, sd[f"features.{index}.weight"], sd[f"features.{index}.bias"], padding=1))
            index += 2  # conv, relu
        x = max_pool2d_nchw(x)
        index += 1  # pool
    return x


def torchvision_classifier(sd: dict[str, np.ndarray], pool5: np.ndarray) -> np.ndarray:
    """avgpool + flatten + classifier of torchvision's VGG, from pool5 `(N, C, H, W)`."""
    x = adaptive_avg_pool2d_nchw(pool5, (7, 7))
    x = x.reshape(x.shape[0], -1)  # torch.flatten(x, 1) on NCHW: (C, H, W) order
    x = relu(linear(x, sd["classifier.0.weight"], sd["classifier.0.bias"]))
    x = relu(linear(x, sd["classifier.3.weight"], sd["classifier.3.bias"]))
    return linear(x, sd["classifier.6.weight"], sd["classifier.6.bias"])


def torchvision_vgg(sd: dict[str, np.ndarray], x_nchw: np.ndarray, blocks=VGG16_BLOCKS) -> np.ndarray:
    """Logits of torchvision's VGG (eval mode) for `x_nchw` `(N, 3, H, W)`."""
    return torchvision_classifier(sd, torch_vgg_features(sd, x_nchw, blocks))


def timm_head(sd: dict[str, np.ndarray], pool5: np.ndarray) -> np.ndarray:
    """timm's `pre_logits` (ConvMlp) and `head` from pool5 `(N, C, H, W)`."""
    k = sd["pre_logits.fc1.weight"].shape[-1]
    if pool5.shape[2] < k or pool5.shape[3] < k:
        pool5 = adaptive_avg_pool2d_nchw(pool5, (max(k, pool5.shape[2]), max(k, pool5.shape[3])))
    x = relu(conv2d_nchw(pool5, sd["pre_logits.fc1.weight"], sd["pre_logits.fc1.bias"], padding=0))
    x = relu(conv2d_nchw(x, sd["pre_logits.fc2.weight"], sd["pre_logits.fc2.bias"], padding=0))
    x = x.mean(axis=(2, 3))  # ClassifierHead: global average pool, flatten
    return linear(x, sd["head.fc.weight"], sd["head.fc.bias"])


def timm_vgg(sd: dict[str, np.ndarray], x_nchw: np.ndarray, blocks=VGG16_BLOCKS) -> np.ndarray:
    """Logits of timm's VGG (eval mode) for `x_nchw` `(N, 3, H, W)`."""
    return timm_head(sd, torch_vgg_features(sd, x_nchw, blocks))


# --- Keras semantics: NHWC ---------------------------------------------------------------


def conv2d_nhwc_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras Conv2D, stride 1, padding='same' (odd kernels): kernel `(kh, kw, in, out)`."""
    ph, pw = kernel.shape[0] // 2, kernel.shape[1] // 2
    x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    windows = sliding_window_view(x, kernel.shape[:2], axis=(1, 2))  # (N, H, W, C, kh, kw)
    return np.tensordot(windows, kernel, axes=([3, 4, 5], [2, 0, 1])) + bias


def max_pool2d_nhwc(x: np.ndarray, k: int = 2) -> np.ndarray:
    """MaxPooling2D(k), padding='valid'."""
    n, h, w, c = x.shape
    x = x[:, : h // k * k, : w // k * k]
    return x.reshape(n, h // k, k, w // k, k, c).max(axis=(2, 4))


def keras_vgg_features(layers: dict[str, list[np.ndarray]], x: np.ndarray, blocks=VGG16_BLOCKS) -> np.ndarray:
    """Output of `block5_pool` for `x` `(N, H, W, 3)`; `layers` maps Keras layer names to [kernel, bias]."""
    for b, n_convs in enumerate(blocks, start=1):
        for c in range(1, n_convs + 1):
            kernel, bias = layers[f"block{b}_conv{c}"]
            x = relu(conv2d_nhwc_same(x, kernel, bias))
        x = max_pool2d_nhwc(x)
    return x


def keras_classifier(layers: dict[str, list[np.ndarray]], pool5: np.ndarray) -> np.ndarray:
    """Flatten + fc1 + fc2 + predictions (pre-softmax) from block5_pool `(N, H, W, C)`."""
    x = pool5.reshape(pool5.shape[0], -1)  # Flatten of NHWC: (H, W, C) order
    x = relu(x @ layers["fc1"][0] + layers["fc1"][1])
    x = relu(x @ layers["fc2"][0] + layers["fc2"][1])
    return x @ layers["predictions"][0] + layers["predictions"][1]


def keras_vgg(
    layers: dict[str, list[np.ndarray]], x_nhwc: np.ndarray, blocks=VGG16_BLOCKS, include_top: bool = True
) -> np.ndarray:
    """Keras VGG: logits (pre-softmax) with the top, block5_pool `(N, h, w, 512)` without it."""
    pool5 = keras_vgg_features(layers, x_nhwc, blocks)
    return keras_classifier(layers, pool5) if include_top else pool5
