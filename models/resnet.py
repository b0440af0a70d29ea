"""`resnet`: CIFAR-style residual network of basic blocks (two 3x3 convs + identity / 1x1 shortcut).

stem 3x3 conv -> stages of `depths[i]` basic blocks at `widths[i]` channels (stride 2 entering every
stage but the first) -> GAP -> linear. ResNet-20 is widths (16, 32, 64), depths (3, 3, 3).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from models import check_stages, hw, register


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
        check_stages(self, "widths", "depths")
        if self.stem_width < 1:
            raise ValueError(f"stem_width must be >= 1, got stem_width={self.stem_width}")
        if min(hw(self.image_size)) < 2 ** (len(self.widths) - 1):
            raise ValueError(f"{len(self.widths)} stages shrink a {self.image_size}px input below 1 pixel")


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
        layers: list[nn.Module] = [
            nn.Conv2d(c.in_channels, c.stem_width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c.stem_width),
            nn.ReLU(inplace=True),
        ]
        cin = c.stem_width
        for i, (width, depth) in enumerate(zip(c.widths, c.depths)):
            for j in range(depth):
                layers.append(BasicBlock(cin, width, 2 if i > 0 and j == 0 else 1))
                cin = width
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if c.dropout > 0:
            head.append(nn.Dropout(c.dropout))
        head.append(nn.Linear(cin, c.num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x):
        return self.head(self.features(x))
