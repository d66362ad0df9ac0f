"""VGG16 / VGG19 in torchvision's layout (Simonyan & Zisserman 2015).

Layer names: semantic (`conv1_1`, `relu1_1`, `pool1`, ..., `avgpool`, `flatten`, `fc6`, `relu6`,
`drop6`, `fc7`, `relu7`, `drop7`, `fc8`) with torchvision's module paths as aliases
(`features.0` ... `features.30`, `avgpool`, `classifier.0` ... `classifier.6`).
Any input of at least 32x32 works: the adaptive average pool brings pool5 to 7x7 as torchvision does.
"""

from __future__ import annotations

from .base import (
    ACT,
    ADAPTIVE_AVG,
    CONV,
    DENSE,
    DROPOUT,
    FLATTEN,
    POOL,
    Layer,
    SequentialNet,
)

VGG16_BLOCKS = (2, 2, 3, 3, 3)
VGG19_BLOCKS = (2, 2, 4, 4, 4)
WIDTHS = (64, 128, 256, 512, 512)


def vgg_layers(
    blocks: tuple[int, ...], num_classes: int, include_top: bool, widths: tuple[int, ...] = WIDTHS, hidden: int = 4096
) -> tuple[Layer, ...]:
    layers, i = [], 0
    for b, (n, width) in enumerate(zip(blocks, widths), start=1):
        for c in range(1, n + 1):
            layers.append(Layer(f"conv{b}_{c}", CONV, width, kernel=3, padding=1, aliases=(f"features.{i}",)))
            layers.append(Layer(f"relu{b}_{c}", ACT, aliases=(f"features.{i + 1}",)))
            i += 2
        layers.append(Layer(f"pool{b}", POOL, 2, aliases=(f"features.{i}",)))
        i += 1
    if include_top:
        layers += [
            Layer("avgpool", ADAPTIVE_AVG, (7, 7)),
            Layer("flatten", FLATTEN),
            Layer("fc6", DENSE, hidden, aliases=("classifier.0",)),
            Layer("relu6", ACT, aliases=("classifier.1",)),
            Layer("drop6", DROPOUT, rate=0.5, aliases=("classifier.2",)),
            Layer("fc7", DENSE, hidden, aliases=("classifier.3",)),
            Layer("relu7", ACT, aliases=("classifier.4",)),
            Layer("drop7", DROPOUT, rate=0.5, aliases=("classifier.5",)),
            Layer("fc8", DENSE, num_classes, aliases=("classifier.6",)),
        ]
    return tuple(layers)


class VGG(SequentialNet):
    """VGG with `blocks` convs per stage. `include_top=False` stops at pool5 (Keras "notop" weights).

    `widths` (channels per stage) and `hidden` (fc6/fc7 size) default to VGG's; tests shrink them.
    """

    blocks: tuple[int, ...] = VGG16_BLOCKS
    num_classes: int = 1000
    include_top: bool = True
    widths: tuple[int, ...] = WIDTHS
    hidden: int = 4096

    def layers(self) -> tuple[Layer, ...]:
        return vgg_layers(self.blocks, self.num_classes, self.include_top, self.widths, self.hidden)


def VGG16(**kwargs) -> VGG:
    return VGG(blocks=VGG16_BLOCKS, **kwargs)


def VGG19(**kwargs) -> VGG:
    return VGG(blocks=VGG19_BLOCKS, **kwargs)
