"""A second shapes classifier: a small VGG with a flatten + dense head (seed 002's second architecture).

conv(16) pool conv(32) pool conv(64)x2 pool -> adaptive average pool to 4x4 -> flatten ->
fc(128) -> relu -> fc. It differs from `ShapesNet` where seed 002 needed a second model to differ:
the head is a fully-connected classifier over a spatial grid (as in VGG16, Simonyan & Zisserman 2015),
not global average pooling, so CAM does not apply but every gradient method and Grad-CAM (at
`relu3_2`, the last activation before the head) do. The adaptive pool makes any input size at least
8x8 work (like torchvision's VGG), so the same weights run on 64x64 shapes and on resized 224x224
images. Trained on 64x64 shapes by `experiments/train_minivgg.py`.
"""

from __future__ import annotations

from .base import ACT, ADAPTIVE_AVG, CONV, DENSE, FLATTEN, POOL, Layer, SequentialNet

WIDTHS = ((16,), (32,), (64, 64))


class MiniVGG(SequentialNet):
    num_classes: int = 10
    widths: tuple[tuple[int, ...], ...] = WIDTHS
    hidden: int = 128
    grid: int = 4  # the adaptive pool's output side: the flattened feature is grid*grid*widths[-1][-1]

    def layers(self) -> tuple[Layer, ...]:
        layers = []
        for b, stage in enumerate(self.widths, start=1):
            for c, width in enumerate(stage, start=1):
                layers.append(Layer(f"conv{b}_{c}", CONV, width, kernel=3, padding=1))
                layers.append(Layer(f"relu{b}_{c}", ACT))
            layers.append(Layer(f"pool{b}", POOL, 2))
        layers += [
            Layer("avgpool", ADAPTIVE_AVG, (self.grid, self.grid)),
            Layer("flatten", FLATTEN),
            Layer("fc4", DENSE, self.hidden),
            Layer("relu4", ACT),
            Layer("fc5", DENSE, self.num_classes, aliases=("logits",)),
        ]
        return tuple(layers)
