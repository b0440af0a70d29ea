"""`mobilenet`: MobileNetV2-style inverted residual blocks.

stem 3x3 conv -> stages of `depths[i]` blocks at `widths[i]` channels (stride 2 entering every stage but
the first) -> GAP -> linear. A block expands to `expansion` x its input channels with a 1x1 conv, filters
with a depthwise kxk conv, projects back with a linear 1x1 conv, and adds its input when shapes match.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from models import check_stages, hw, register


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
        check_stages(self, "widths", "depths")
        if self.expansion < 1:
            raise ValueError(f"expansion must be >= 1, got expansion={self.expansion}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got kernel_size={self.kernel_size}")
        if min(hw(self.image_size)) < 2 ** (len(self.widths) - 1):
            raise ValueError(f"{len(self.widths)} stages shrink a {self.image_size}px input below 1 pixel")


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
        layers: list[nn.Module] = [
            nn.Conv2d(c.in_channels, c.stem_width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c.stem_width),
            nn.ReLU6(inplace=True),
        ]
        cin = c.stem_width
        for i, (width, depth) in enumerate(zip(c.widths, c.depths)):
            for j in range(depth):
                layers.append(InvertedResidual(cin, width, 2 if i > 0 and j == 0 else 1, c.expansion, c.kernel_size))
                cin = width
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if c.dropout > 0:
            head.append(nn.Dropout(c.dropout))
        head.append(nn.Linear(cin, c.num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x):
        return self.head(self.features(x))
