"""XLA:CPU settings jaxviz adds to `XLA_FLAGS` when it is imported (before JAX starts a backend).

jaxlib 0.10 runs each convolution on CPU through YNNPACK; XLA's own (Eigen) convolutions are faster
on every CNN shape we measured on a 2-core x86 CPU: ResNet-50 saliency at batch 8 1.47 s instead of
2.20 s, VGG16 4.45 s instead of 4.8–5.4 s, ShapesNet 64 unchanged or faster (README, "Speed"). The
flag exists only in that jaxlib series, and XLA aborts on a flag it does not know, so it is added
only there. Nothing is added where `XLA_FLAGS` already sets it, or with
`JAXVIZ_XLA_FLAGS=0`; GPU and TPU backends ignore it. It takes effect only if jaxviz is imported
before the first JAX computation of the process.
"""

from __future__ import annotations

import os

CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)
TESTED_JAXLIB = (0, 10)  # the (major, minor) series that has these flags


def add_cpu_flags() -> None:
    if os.environ.get("JAXVIZ_XLA_FLAGS", "1") == "0":
        return
    try:
        from jaxlib.version import __version__
    except ImportError:
        return
    if tuple(int(p) for p in __version__.split(".")[:2]) != TESTED_JAXLIB:
        return
    current = os.environ.get("XLA_FLAGS", "")
    extra = [f for f in CPU_FLAGS if f.split("=")[0] not in current]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([current, *extra]).strip()
