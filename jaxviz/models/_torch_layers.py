"""torch.nn layers with torch's exact semantics on NHWC arrays, for the torchvision-layout zoo.

Each helper matches one `torch.nn` layer number for number (tests/test_zoo.py compares whole
networks against torchvision), so model files read like their torchvision originals:
`conv(64, 7, stride=2, padding=3, bias=False, name="conv1")` is `nn.Conv2d(3, 64, 7, 2, 3, bias=False)`.

Conventions of the models built from these (alexnet.py, vgg_torchvision.py, squeezenet.py,
resnet.py, googlenet.py, densenet.py): inputs `(N, H, W, 3)`, `__call__(x, train=False)` -> logits
`(N, num_classes)`; every module with parameters, and every block, is a linen submodule named as
in torchvision (`features.0`, `layer4.2.conv3`), so a module path means the same in both; ReLUs,
pools and flattens are functions, not modules; `act` (default `nn.relu`) is every ReLU, a field so
that a backward rule swaps in with the same variables (`model.clone(act=...)`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from . import pool

BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d's default eps


def conv(
    features: int, kernel: int, stride: int = 1, padding: int = 0, *, bias: bool = True, name: str | None = None
) -> nn.Conv:
    """`torch.nn.Conv2d(_, features, kernel, stride, padding, bias=bias)`: symmetric zero padding."""
    return nn.Conv(
        features, (kernel, kernel), strides=(stride, stride), padding=[(padding, padding)] * 2, use_bias=bias, name=name
    )


def batch_norm(train: bool, *, name: str | None = None, epsilon: float = BN_EPSILON) -> nn.BatchNorm:
    """`torch.nn.BatchNorm2d` (momentum 0.1 there is flax's 0.9): batch statistics when `train`,
    the running ones (the `batch_stats` collection) otherwise."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon, name=name)


def _pool_out(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """torch's pooling output size (`pooling_output_shape` in ATen): with `ceil_mode` the last
    window may hang over the bottom/right edge but must start inside the input or left padding."""
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def max_pool2d(
    x: jax.Array, kernel: int, stride: int | None = None, padding: int = 0, ceil_mode: bool = False
) -> jax.Array:
    """`torch.nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)` of `(N, H, W, C)`.

    Padding (and the overhang of a ceil-mode window) is -inf, so it never wins a max, as in torch;
    the backward is `pool.max_pool`'s.
    """
    stride = stride or kernel
    pads = [(0, 0)]
    for size in x.shape[1:3]:
        out = _pool_out(size, kernel, stride, padding, ceil_mode)
        pads.append((padding, (out - 1) * stride + kernel - size - padding))
    return pool.max_pool(x, (kernel, kernel), (stride, stride), tuple(pads[1:]))


def avg_pool2d(x: jax.Array, kernel: int, stride: int | None = None) -> jax.Array:
    """`torch.nn.AvgPool2d(kernel, stride)` (no padding, floor mode) of `(N, H, W, C)`."""
    stride = stride or kernel
    return nn.avg_pool(x, (kernel, kernel), strides=(stride, stride))


def global_avg_pool(x: jax.Array) -> jax.Array:
    """`AdaptiveAvgPool2d((1, 1))` then `torch.flatten(x, 1)`: `(N, H, W, C)` -> `(N, C)`."""
    return jnp.mean(x, axis=(1, 2))


def flatten_hwc(x: jax.Array) -> jax.Array:
    """`(N, H, W, C)` -> `(N, H*W*C)` in (H, W, C) order, not torch's (C, H, W): the port reorders
    the rows of the dense kernel that follows (`jaxviz.weights._chw_rows_to_hwc`), as for VGG16."""
    return x.reshape(x.shape[0], -1)
