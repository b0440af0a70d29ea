"""`resnet`: CIFAR-style residual network of basic blocks (two 3x3 convs + identity / 1x1 shortcut).

stem 3x3 conv -> stages of `depths[i]` basic blocks at `widths[i]` channels (stride 2 entering every
stage but the first) -> GAP -> linear. ResNet-20 is widths (16, 32, 64), depths (3, 3, 3).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from models import register
from models.staged import check_staged, gap_head, staged_features


@dataclass
class ResNetConfig:
    in_channels: int = 3
    num_classes: int = 10
    image_size: int | tuple = 32  # or (height, width)
    stem_width: int = 16
    widths: tuple = (16, 32, 64)
    depths: tuple = (3, 3, 3)  # basic blocks per stage
    dropout: float = 0.0  # before the classifier

    def __post_init__(self):
        check_staged(self)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@register("resnet", ResNetConfig)
class ResNet(nn.Module):
    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.config = c = config
        self.features, cin = staged_features(c, BasicBlock, nn.ReLU)
        self.head = gap_head(cin, c.num_classes, c.dropout)

    def forward(self, x):
        return self.head(self.features(x))
