"""torchvision's own model carrying our (JAX) weights: the reference for the zoo's parity tests and
for benchmarks beside Captum.

    tv = import_torchvision()                          # torchvision on CPU torch (see below)
    peer = torchvision_model("resnet50", variables)    # torchvision.models.resnet50, eval mode
    logits = peer(nhwc_to_nchw(x))                     # equals build("resnet50").apply(variables, x)
    sd = state_dict_from_variables("resnet50", variables)  # what peer.load_state_dict got

`variables` is `{"params": ..., "batch_stats": ...}` as `jaxviz.weights.load_variables` gives;
the layout conversion is the inverse of `jaxviz.weights.port` (`weights.torchvision_arrays`), so
a ported file round-trips to the original state dict exactly. Works for every architecture
`port` reads from torchvision (vgg16/vgg19 included).

torchvision is not a dependency: the wheel on PyPI is built against CUDA torch, so it is
installed without its dependencies (`pip install --no-deps torchvision==0.28.0`, as `.ci/run`
does) next to CPU torch 2.13.0. Its only import-time failure there is
`torchvision._meta_registrations` (fake-tensor kernels for its compiled ops, which the CPU build
lacks); `import_torchvision` replaces that module with an empty one before importing. The model
definitions are pure torch.nn and work; torchvision's compiled ops (`torchvision.ops.nms`, ...) do not.
"""

from __future__ import annotations

import sys
import types
from collections import OrderedDict
from typing import Any

from . import weights as W

_INSTALL = (
    "torchvision is needed for jaxviz.torchvision_peer: pip install --no-deps torchvision==0.28.0 "
    "(next to torch==2.13.0: pip install 'jaxviz-cnn[torch]')"
)
_STUBBED = "torchvision._meta_registrations"


def import_torchvision():
    """`torchvision`, importable on CPU torch: its `_meta_registrations` replaced by an empty module.

    Idempotent; raises ImportError saying how to install it when torch or torchvision is missing.
    """
    if "torchvision" in sys.modules and "torchvision.models" in sys.modules:
        return sys.modules["torchvision"]
    try:
        import torch  # noqa: F401 - torchvision needs it; a missing torch gets the same message
    except ImportError as e:
        raise ImportError(_INSTALL) from e
    sys.modules.setdefault(_STUBBED, types.ModuleType(_STUBBED))
    try:
        import torchvision
        import torchvision.models  # noqa: F401
    except (ImportError, RuntimeError) as e:  # RuntimeError: compiled ops that do not match this torch
        raise ImportError(f"{_INSTALL} ({type(e).__name__}: {e})") from e
    return torchvision


def state_dict_from_variables(arch: str, variables: dict, *, dtype=None) -> OrderedDict:
    """torchvision's state dict (torch tensors, torchvision's key order) for our `variables`.

    BatchNorm layers get `num_batches_tracked = 0` (torch's `load_state_dict` wants it).
    `dtype`: the float dtype (default torch.float32).
    """
    import torch

    dtype = dtype or torch.float32
    arrays = W.torchvision_arrays(arch, variables)
    out: OrderedDict = OrderedDict()
    for key, array in arrays.items():
        out[key] = torch.from_numpy(array).to(dtype)
        if key.endswith(".running_var"):
            out[key.removesuffix("running_var") + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return out


def torchvision_model(arch: str, variables: dict, *, dtype=None, **kwargs: Any):
    """`torchvision.models.<arch>(**kwargs)` in eval mode with our `variables` loaded (strictly).

    `num_classes` comes from the variables. GoogLeNet is built as our inference path is:
    `aux_logits=False` and `transform_input=True` (torchvision's setting for its pretrained
    weights, and our `GoogLeNet`'s default); pass `transform_input=False` for the other.
    `dtype`: torch.float32 (default) or torch.float64 for exact comparisons.
    """
    import torch

    tv = import_torchvision()
    dtype = dtype or torch.float32
    state = state_dict_from_variables(arch, variables, dtype=dtype)
    final = next(k for k in reversed(state) if k.endswith(".bias"))
    kwargs.setdefault("num_classes", int(state[final].shape[0]))
    if arch == "googlenet":
        kwargs = {"aux_logits": False, "transform_input": True, "init_weights": False, **kwargs}
    try:
        build = getattr(tv.models, arch)
    except AttributeError:
        raise ValueError(f"torchvision has no model {arch!r}") from None
    with torch.device("meta"):  # no random init: every tensor is replaced next
        model = build(**kwargs)
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(dtype).eval()


__all__ = ["import_torchvision", "state_dict_from_variables", "torchvision_model"]
