"""An all-convolutional ShapesNet (Springenberg et al. 2015, "Striving for Simplicity: The All
Convolutional Net"): every max-pool replaced by a learned downsampling.

ShapesNet's stages, but where ShapesNet has `pool{b}` this net has `down{b}`, a 3×3 convolution of
stride 2 (padding 1) of the stage's width, and its ReLU `relu_down{b}` — the "All-CNN" change of their
section 3.1 — then the same head: GAP → dense, so CAM applies at `relu4_2`:

    conv1_1 relu1_1 down1 relu_down1  conv2_1 relu2_1 down2 relu_down2
    conv3_1 relu3_1 conv3_2 relu3_2 down3 relu_down3  conv4_1 relu4_1 conv4_2 relu4_2  gap fc

With no max-pool, the deconvnet has no switches to pass: seed 004's comparison of deconvnet and
guided backprop with and without pooling. Trained on 64×64 shapes by
`experiments/train_shapesnet.py --arch allconv`.
"""

from __future__ import annotations

from .base import ACT, CONV, DENSE, GAP, Layer, SequentialNet
from .shapesnet import WIDTHS


class AllConvNet(SequentialNet):
    num_classes: int = 10
    widths: tuple[tuple[int, ...], ...] = WIDTHS

    def layers(self) -> tuple[Layer, ...]:
        layers = []
        for b, stage in enumerate(self.widths, start=1):
            for c, width in enumerate(stage, start=1):
                layers.append(Layer(f"conv{b}_{c}", CONV, width, kernel=3, padding=1))
                layers.append(Layer(f"relu{b}_{c}", ACT))
            if b < len(self.widths):
                layers.append(Layer(f"down{b}", CONV, stage[-1], kernel=3, padding=1, stride=2))
                layers.append(Layer(f"relu_down{b}", ACT))
        return (*layers, Layer(GAP, GAP), Layer("fc", DENSE, self.num_classes, aliases=("logits",)))
