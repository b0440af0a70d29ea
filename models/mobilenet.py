"""`mobilenet`: MobileNetV2-style inverted residual blocks.

stem 3x3 conv -> stages of `depths[i]` blocks at `widths[i]` channels (stride 2 entering every stage but
the first) -> GAP -> linear. A block expands to `expansion` x its input channels with a 1x1 conv, filters
with a depthwise kxk conv, projects back with a linear 1x1 conv, and adds its input when shapes match.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from models import register
from models.staged import check_staged, gap_head, staged_features


@dataclass
class MobileNetConfig:
    in_channels: int = 3
    num_classes: int = 10
    image_size: int | tuple = 32  # or (height, width)
    stem_width: int = 16
    widths: tuple = (16, 24, 32)
    depths: tuple = (1, 2, 2)  # inverted residual blocks per stage
    expansion: int = 4  # hidden channels = expansion * input channels (1: no expand conv)
    kernel_size: int = 3  # of the depthwise conv; odd
    dropout: float = 0.0  # before the classifier

    def __post_init__(self):
        check_staged(self)
        if self.expansion < 1:
            raise ValueError(f"expansion must be >= 1, got expansion={self.expansion}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got kernel_size={self.kernel_size}")


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int, k: int):
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, k, stride, k // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


@register("mobilenet", MobileNetConfig)
class MobileNet(nn.Module):
    def __init__(self, config: MobileNetConfig):
        super().__init__()
        self.config = c = config

        def block(cin: int, cout: int, stride: int) -> nn.Module:
            return InvertedResidual(cin, cout, stride, c.expansion, c.kernel_size)

        self.features, cin = staged_features(c, block, nn.ReLU6)
        self.head = gap_head(cin, c.num_classes, c.dropout)

    def forward(self, x):
        return self.head(self.features(x))
