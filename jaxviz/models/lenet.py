"""LeNet-5 as in seed 001: zero-pad to 32x32, two conv+pool stages, dense 400-120-84-10, tanh.

`kernel` is 5 (the original) or 3 (seed 001's comparison variant). Inputs are `(N, 28, 28, 1)`
(padded by `pad`=2 to 32x32); the dense head fixes the input size.

`batchnorm=True, dropout=(0.4, 0.3)` is seed 001's Keras listing: a BatchNormalization after each
conv (Keras' momentum 0.99 and epsilon 1e-3; its statistics live in the `batch_stats` collection)
and two Dropouts before the dense head. The defaults are the plain net of the shipped digits weights.
"""

from __future__ import annotations

import flax.linen as nn

from .base import ACT, CONV, DENSE, DROPOUT, FLATTEN, PAD, POOL, Layer, SequentialNet

BATCHNORM = "batchnorm"


class LeNet5(SequentialNet):
    act: object = nn.tanh
    kernel: int = 5
    pad: int = 2
    num_classes: int = 10
    batchnorm: bool = False
    dropout: tuple[float, ...] = ()

    def layers(self) -> tuple[Layer, ...]:
        k = self.kernel

        def bn(name: str) -> tuple[Layer, ...]:
            return (Layer(name, BATCHNORM),) if self.batchnorm else ()

        return (
            Layer("pad", PAD, self.pad),
            Layer("conv1", CONV, 6, kernel=k, padding="VALID", aliases=("conv0",)),
            *bn("bn1"),
            Layer("act1", ACT),
            Layer("pool1", POOL, 2, aliases=("max_pool_1",)),
            Layer("conv2", CONV, 16, kernel=k, padding="VALID"),
            *bn("bn2"),
            Layer("act2", ACT),
            Layer("pool2", POOL, 2),
            Layer("flatten", FLATTEN),
            *(Layer(f"drop{i}", DROPOUT, rate=r) for i, r in enumerate(self.dropout, start=1)),
            Layer("fc1", DENSE, 400, aliases=("fc_in",)),
            Layer("act3", ACT),
            Layer("fc2", DENSE, 120, aliases=("fc_mid",)),
            Layer("act4", ACT),
            Layer("fc3", DENSE, 84, aliases=("fc_out",)),
            Layer("act5", ACT),
            Layer("fc4", DENSE, self.num_classes, aliases=("fc_softmax",)),
        )

    def _module(self, layer: Layer, train: bool) -> nn.Module:
        if layer.kind == BATCHNORM:  # Keras' BatchNormalization defaults
            return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3, name=layer.name)
        return super()._module(layer, train)
