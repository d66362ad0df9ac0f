"""A PyTorch twin of any `SequentialNet`, for checking against Captum and for benchmarks.

    peer = to_torch(model, params)                  # torch.nn.Module, NCHW, eval mode, same weights
    logits = peer(nhwc_to_nchw(x))                  # equals model.apply(...) on x (N, H, W, C)
    LayerGradCam(peer, peer.layer("relu4_2"))       # Captum targets layers by our semantic names

The peer is built generically from `model.layers()`: each `Layer` becomes one torch module whose
attribute name is the layer's semantic name, so `peer.relu4_2` and `peer.layer("features.28")`
(aliases and indices resolve as in `SequentialNet.resolve`) give the module Captum hooks.
`flatten` permutes NCHW to NHWC before flattening so the Flax dense kernels, which expect
`(H, W, C)` order, work unchanged. Torch is imported lazily (`pip install 'jaxviz-cnn[torch]'`).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Any

import numpy as np

from .models.base import (
    ACT,
    ADAPTIVE_AVG,
    CONV,
    DENSE,
    DROPOUT,
    FLATTEN,
    GAP,
    GMP,
    PAD,
    POOL,
    SequentialNet,
)

_INSTALL = "PyTorch is needed for jaxviz.torch_peer: pip install 'jaxviz-cnn[torch]'"


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL) from e
    return torch


def nhwc_to_nchw(x: Any, device: str | None = None):
    """A `(N, H, W, C)` array (NumPy, JAX or torch) as a contiguous `(N, C, H, W)` torch tensor.

    float64 stays float64 (for exact comparisons); everything else becomes float32.
    """
    torch = _torch()
    if isinstance(x, torch.Tensor):
        t = x.permute(0, 3, 1, 2)
        t = t if t.dtype == torch.float64 else t.to(torch.float32)
    else:
        a = np.asarray(x)
        a = a if a.dtype == np.float64 else a.astype(np.float32)
        t = torch.from_numpy(np.array(a.transpose(0, 3, 1, 2), order="C"))
    t = t.contiguous()
    return t if device is None else t.to(device)


def nchw_to_nhwc(t: Any) -> np.ndarray:
    """A `(N, C, H, W)` torch tensor (or array) as a NumPy `(N, H, W, C)` array; other ranks unchanged."""
    torch = _torch()
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


@functools.lru_cache(maxsize=1)
def _classes():
    """The torch module classes, defined once torch is imported."""
    torch = _torch()
    nn = torch.nn

    class NHWCFlatten(nn.Module):
        """Flatten in (H, W, C) order, as the Flax models do, so dense kernels carry over."""

        def forward(self, x):
            return x.permute(0, 2, 3, 1).flatten(1) if x.ndim == 4 else x.flatten(1)

    class GlobalPool(nn.Module):
        """Global average or max pooling over H and W: `(N, C, H, W)` → `(N, C)`."""

        def __init__(self, kind: str):
            super().__init__()
            self.kind = kind

        def forward(self, x):
            return x.mean(dim=(2, 3)) if self.kind == GAP else x.amax(dim=(2, 3))

        def extra_repr(self) -> str:
            return self.kind

    class TorchPeer(nn.Sequential):
        """`nn.Sequential` of the model's layers, named by their semantic names.

        `layer(name)` resolves names, aliases and indices like the Flax model; `forward(x,
        stop_at=name)` runs the prefix up to a layer (its activation, NCHW for spatial layers).
        """

        def __init__(self, model: SequentialNet, modules):
            super().__init__(modules)
            self.flax_model = model

        def layer(self, name: str | int):
            return getattr(self, self.flax_model.layers()[self.flax_model.resolve(name)].name)

        def forward(self, x, stop_at: str | int | None = None):
            last = len(self) - 1 if stop_at is None else self.flax_model.resolve(stop_at)
            for i, module in enumerate(self):
                x = module(x)
                if i == last:
                    break
            return x

    return NHWCFlatten, GlobalPool, TorchPeer


def _act_module(fn, name: str):
    """The torch activation with the same forward as the Flax one, found by probing `fn`.

    Backward-rule ReLUs (`guided_relu`, your own `relu_rule`) have ReLU's forward, so they map to
    `nn.ReLU`; Captum applies its own rules to those modules.
    """
    nn = _torch().nn
    probe = np.array([-3.0, -0.5, 0.0, 0.25, 2.0], np.float32)
    try:
        y = np.asarray(fn(probe))
    except Exception as e:  # noqa: BLE001 - report which layer could not be mapped
        raise ValueError(f"to_torch: cannot evaluate the activation of layer {name!r}: {e}") from e
    known = {
        "relu": (np.maximum(probe, 0), nn.ReLU),
        "tanh": (np.tanh(probe), nn.Tanh),
        "sigmoid": (1 / (1 + np.exp(-probe)), nn.Sigmoid),
    }
    for want, cls in known.values():
        if y.shape == probe.shape and np.allclose(y, want, rtol=1e-5, atol=1e-6):
            return cls()
    raise ValueError(
        f"to_torch: no torch equivalent for activation {fn!r} at layer {name!r} "
        f"(known: {', '.join(known)} and backward-rule ReLUs)"
    )


def _conv_padding(padding: str | int) -> int | str:
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return 0
        if padding.upper() == "SAME":
            return "same"
        raise ValueError(f"to_torch: unsupported conv padding {padding!r}")
    return int(padding)


def to_torch(model: SequentialNet, params, device: str | None = None):
    """An equivalent `torch.nn.Module` (NCHW input, eval mode, float32) with copies of `params`.

    Args:
      model: any `SequentialNet` (its `layers()` define the network; `act` is its activation:
        ReLU — including the backward-rule ReLUs, whose forward is ReLU — tanh or sigmoid).
      params: its Flax params `{name: {"kernel", "bias"}}` (or the variables dict); conv kernels
        HWIO, dense `(in, out)`.
      device: torch device for the module (default CPU).

    Returns a `TorchPeer` (an `nn.Sequential`) whose submodules are named by the semantic layer
    names; `peer.layer(name)` accepts aliases too.
    """
    torch = _torch()
    nn = torch.nn
    NHWCFlatten, GlobalPool, TorchPeer = _classes()
    params = params.get("params", params)

    def tensor(a, perm=None):
        a = np.asarray(a, np.float32)
        return torch.from_numpy(np.array(a if perm is None else a.transpose(perm), order="C"))

    modules: dict[str, Any] = {}
    for layer in model.layers():
        kind, name = layer.kind, layer.name
        if kind == CONV:
            k = np.asarray(params[name]["kernel"])  # (kh, kw, in, out)
            m = nn.Conv2d(
                k.shape[2],
                k.shape[3],
                (k.shape[0], k.shape[1]),
                stride=layer.stride,
                padding=_conv_padding(layer.padding),
            )
            with torch.no_grad():
                m.weight.copy_(tensor(k, (3, 2, 0, 1)))
                m.bias.copy_(tensor(params[name]["bias"]))
        elif kind == ACT:
            m = _act_module(model.act, name)
        elif kind == POOL:
            m = nn.MaxPool2d(layer.size, stride=layer.size)
        elif kind == ADAPTIVE_AVG:
            m = nn.AdaptiveAvgPool2d(tuple(layer.size) if not isinstance(layer.size, int) else layer.size)
        elif kind in (GAP, GMP):
            m = GlobalPool(kind)
        elif kind == FLATTEN:
            m = NHWCFlatten()
        elif kind == DENSE:
            k = np.asarray(params[name]["kernel"])  # (in, out)
            m = nn.Linear(k.shape[0], k.shape[1])
            with torch.no_grad():
                m.weight.copy_(tensor(k, (1, 0)))
                m.bias.copy_(tensor(params[name]["bias"]))
        elif kind == DROPOUT:
            m = nn.Dropout(layer.rate)
        elif kind == PAD:
            m = nn.ZeroPad2d(int(layer.size))
        else:
            raise ValueError(f"to_torch: unknown layer kind {kind!r} at {name!r}")
        modules[name] = m

    peer = TorchPeer(model, OrderedDict(modules)).eval()
    return peer if device is None else peer.to(device)


__all__ = ["nchw_to_nhwc", "nhwc_to_nchw", "to_torch"]
