"""A network jaxviz never saw, written as users write them: linen, the same as NNX, and a plain function.

BatchNorm, a residual add, a concat of two branches, functional `nn.relu`, `jax.nn.relu` and
`jnp.maximum(x, 0)`, max-pooling, a global-average-pooling head. `torch_user_net` is the same
network in PyTorch (for Captum), `user_variables_to_torch` copies the weights.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

NUM_CLASSES = 5
INPUT = (16, 16, 3)


class Block(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.Conv(self.width, (3, 3), padding=1, use_bias=False, name="conv")(x)
        h = nn.BatchNorm(use_running_average=not train, name="bn")(h)
        h = jax.nn.relu(h)
        h = nn.Conv(self.width, (3, 3), padding=1, name="conv2")(h)
        return jnp.maximum(h + x, 0)  # residual add, ReLU written by hand


class UserNet(nn.Module):
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(8, (3, 3), padding=1, name="stem")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = Block(8, name="block")(x, train)
        a = nn.relu(nn.Conv(4, (1, 1), name="left")(x))
        b = nn.relu(nn.Conv(4, (3, 3), padding=1, name="right")(x))
        x = jnp.concatenate([a, b], axis=-1)
        x = nn.relu(nn.Conv(8, (3, 3), padding=1, name="top")(x))
        return nn.Dense(self.num_classes, name="head")(jnp.mean(x, axis=(1, 2)))


def user_variables(seed: int = 0):
    """Random variables with non-trivial BatchNorm statistics and biases."""
    v = UserNet().init(jax.random.key(seed), jnp.zeros((1, *INPUT)))
    rng = np.random.default_rng(seed)

    def jitter(path, a):
        name = jax.tree_util.keystr(path)
        if "var" in name:
            return jnp.asarray(rng.uniform(0.5, 2.0, a.shape), a.dtype)
        if "bias" in name or "mean" in name or "scale" in name:
            return jnp.asarray(rng.normal(0.1, 0.3, a.shape) + (1.0 if "scale" in name else 0.0), a.dtype)
        return a

    return jax.tree_util.tree_map_with_path(jitter, v)


class NNXBlock(nnx.Module):
    def __init__(self, width, rngs):
        self.conv = nnx.Conv(width, width, (3, 3), padding=1, use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(width, rngs=rngs)
        self.conv2 = nnx.Conv(width, width, (3, 3), padding=1, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.bn(self.conv(x)))
        return jnp.maximum(self.conv2(h) + x, 0)


class NNXUserNet(nnx.Module):
    """UserNet in NNX, same layer names."""

    def __init__(self, rngs, num_classes: int = NUM_CLASSES):
        self.stem = nnx.Conv(3, 8, (3, 3), padding=1, rngs=rngs)
        self.block = NNXBlock(8, rngs)
        self.left = nnx.Conv(8, 4, (1, 1), rngs=rngs)
        self.right = nnx.Conv(8, 4, (3, 3), padding=1, rngs=rngs)
        self.top = nnx.Conv(8, 8, (3, 3), padding=1, rngs=rngs)
        self.head = nnx.Linear(8, num_classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.stem(x))
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        x = self.block(x)
        x = jnp.concatenate([nnx.relu(self.left(x)), nnx.relu(self.right(x))], axis=-1)
        x = nnx.relu(self.top(x))
        return self.head(jnp.mean(x, axis=(1, 2)))


def nnx_from_linen(variables) -> NNXUserNet:
    """The NNX net carrying the linen net's weights and statistics."""
    m = NNXUserNet(nnx.Rngs(0))
    p, s = variables["params"], variables["batch_stats"]
    for name in ("stem", "left", "right", "top", "head"):
        getattr(m, name).kernel[...] = p[name]["kernel"]
        getattr(m, name).bias[...] = p[name]["bias"]
    m.block.conv.kernel[...] = p["block"]["conv"]["kernel"]
    m.block.conv2.kernel[...] = p["block"]["conv2"]["kernel"]
    m.block.conv2.bias[...] = p["block"]["conv2"]["bias"]
    m.block.bn.scale[...] = p["block"]["bn"]["scale"]
    m.block.bn.bias[...] = p["block"]["bn"]["bias"]
    m.block.bn.mean[...] = s["block"]["bn"]["mean"]
    m.block.bn.var[...] = s["block"]["bn"]["var"]
    return m


def function_from_linen(variables):
    """A plain function `f(x) -> logits` (no layers, no variables argument)."""
    model = UserNet()
    return lambda x: model.apply(variables, x)


def torch_user_net(variables, dtype=None):
    """The same network in PyTorch (NCHW), carrying `variables` (for Captum)."""
    import torch
    from torch import nn as tnn

    dtype = dtype or torch.float64

    def conv(p, cin, k, pad, bias=True):
        c = tnn.Conv2d(cin, p["kernel"].shape[-1], k, padding=pad, bias=bias)
        c.weight.data = torch.tensor(np.asarray(p["kernel"]).transpose(3, 2, 0, 1).copy())
        if bias:
            c.bias.data = torch.tensor(np.asarray(p["bias"]))
        return c

    p, s = variables["params"], variables["batch_stats"]

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.stem = conv(p["stem"], 3, 3, 1)
            self.conv = conv(p["block"]["conv"], 8, 3, 1, bias=False)
            self.bn = tnn.BatchNorm2d(8, eps=1e-5)
            self.bn.weight.data = torch.tensor(np.asarray(p["block"]["bn"]["scale"]))
            self.bn.bias.data = torch.tensor(np.asarray(p["block"]["bn"]["bias"]))
            self.bn.running_mean.data = torch.tensor(np.asarray(s["block"]["bn"]["mean"]))
            self.bn.running_var.data = torch.tensor(np.asarray(s["block"]["bn"]["var"]))
            self.conv2 = conv(p["block"]["conv2"], 8, 3, 1)
            self.left = conv(p["left"], 8, 1, 0)
            self.right = conv(p["right"], 8, 3, 1)
            self.top = conv(p["top"], 8, 3, 1)
            self.head = tnn.Linear(8, NUM_CLASSES)
            self.head.weight.data = torch.tensor(np.asarray(p["head"]["kernel"]).T.copy())
            self.head.bias.data = torch.tensor(np.asarray(p["head"]["bias"]))
            self.r = [tnn.ReLU() for _ in range(6)]
            for i, r in enumerate(self.r):
                self.add_module(f"relu{i}", r)
            self.pool = tnn.MaxPool2d(2)

        def forward(self, x):
            x = self.pool(self.r[0](self.stem(x)))
            h = self.r[1](self.bn(self.conv(x)))
            x = self.r[2](self.conv2(h) + x)
            x = torch.cat([self.r[3](self.left(x)), self.r[4](self.right(x))], 1)
            x = self.r[5](self.top(x))
            return self.head(x.mean((2, 3)))

    return Net().to(dtype).eval()
