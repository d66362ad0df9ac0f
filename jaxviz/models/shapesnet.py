"""The embedded default: a small VGG-style CNN with a global-average-pooling head.

conv(16) pool conv(32) pool conv(64)x2 pool conv(128)x2 -> GAP -> fc. The head is
GAP followed by one dense layer, so CAM (Zhou et al. 2016) applies exactly: the class map is
Σ_k w_k^c A^k over `relu4_2`. Any input size works; it is trained on 64x64 shapes images.
`pool="gmp"` swaps the head's pooling for global max pooling (layer `gmp`; seed 004's CAM-GMP).
"""

from __future__ import annotations

from .base import ACT, CONV, DENSE, GAP, GMP, POOL, Layer, SequentialNet

WIDTHS = ((16,), (32,), (64, 64), (128, 128))


class ShapesNet(SequentialNet):
    num_classes: int = 10
    widths: tuple[tuple[int, ...], ...] = WIDTHS
    pool: str = "gap"  # the head's global pooling: "gap" (average) or "gmp" (max)

    def layers(self) -> tuple[Layer, ...]:
        layers = []
        for b, stage in enumerate(self.widths, start=1):
            for c, width in enumerate(stage, start=1):
                layers.append(Layer(f"conv{b}_{c}", CONV, width, kernel=3, padding=1))
                layers.append(Layer(f"relu{b}_{c}", ACT))
            if b < len(self.widths):
                layers.append(Layer(f"pool{b}", POOL, 2))
        if self.pool not in (GAP, GMP):
            raise ValueError(f"ShapesNet pool must be 'gap' or 'gmp', got {self.pool!r}")
        layers += [Layer(self.pool, self.pool), Layer("fc", DENSE, self.num_classes, aliases=("logits",))]
        return tuple(layers)
