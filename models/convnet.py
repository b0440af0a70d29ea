"""`convnet`: plain stages of conv-BN-ReLU(-dropout) blocks, the family behind the seed tasks' hand-tuned nets.

stem conv -> stage 0 -> transition -> stage 1 -> ... -> head. Stage i has `depths[i]` convs of
`widths[i]` output channels. Transitions halve the spatial size (max-pool, optionally followed by a 1x1
conv that squeezes channels, as in the EVA MNIST nets; or a stride-2 first conv). Depthwise-separable
convs (depthwise kxk + pointwise 1x1) save parameters everywhere but the stem, where the input has 1-3
channels and a depthwise conv would learn almost nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from models import check_stages, register

TRANSITIONS = ("pool", "pool_1x1", "stride")
HEADS = ("gap", "gap_fc", "flatten_fc")


@dataclass
class ConvNetConfig:
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 28
    widths: tuple = (8, 16, 16)  # output channels of every conv in stage i
    depths: tuple = (2, 2, 1)  # convs in stage i (the stem counts as the first conv of stage 0)
    kernel_size: int = 3  # odd; "same" padding
    separable: bool = False  # depthwise-separable convs everywhere but the stem
    transition: str = "pool"  # pool | pool_1x1 | stride
    squeeze: float = 1.0  # pool_1x1 only: the 1x1 conv outputs round(squeeze * widths[i+1]) channels
    final_pool: bool = False  # a 2x2 max-pool after the last stage too (the CIFAR seed nets pool after every stage)
    head: str = "gap"  # gap: GAP -> linear; gap_fc: GAP -> fc_width -> linear; flatten_fc: flatten -> ...
    fc_width: int = 0  # hidden units of the fc heads (0: straight to the classifier)
    dropout: float = 0.0  # after every conv block
    fc_dropout: float = 0.0  # before the classifier of the fc heads
    bn: bool = True
    bias: bool = False  # biases of convs and linears (BN makes conv biases redundant)
    CHOICES: ClassVar[dict] = {"transition": TRANSITIONS, "head": HEADS}

    def __post_init__(self):
        check_stages(self, "widths", "depths")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got kernel_size={self.kernel_size}")
        if self.transition not in TRANSITIONS:
            raise ValueError(f"transition must be one of {TRANSITIONS}, got transition={self.transition!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got head={self.head!r}")
        if not 0 < self.squeeze <= 4:
            raise ValueError(f"squeeze must be in (0, 4], got squeeze={self.squeeze}")
        if self.final_size() < 1:
            raise ValueError(
                f"{len(self.widths) - 1} transitions shrink a {self.image_size}px input below 1 pixel"
            )

    def final_size(self) -> int:
        size = self.image_size
        for _ in range(len(self.widths) - 1):
            size = size // 2 if self.transition != "stride" else (size + 1) // 2
        return size // 2 if self.final_pool else size


def conv_block(cin: int, cout: int, k: int, c: ConvNetConfig, stride: int = 1, separable: bool = False):
    if separable:
        layers = [
            nn.Conv2d(cin, cin, k, stride, k // 2, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=c.bias),
        ]
    else:
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=c.bias)]
    if c.bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    if c.dropout > 0:
        layers.append(nn.Dropout(c.dropout))
    return layers


@register("convnet", ConvNetConfig)
class ConvNet(nn.Module):
    def __init__(self, config: ConvNetConfig):
        super().__init__()
        self.config = c = config
        k, layers, cin = c.kernel_size, [], c.in_channels
        for i, (width, depth) in enumerate(zip(c.widths, c.depths)):
            stride = 1
            if i > 0 and c.transition == "stride":
                stride = 2
            elif i > 0:
                layers.append(nn.MaxPool2d(2))
                if c.transition == "pool_1x1":
                    squeezed = max(1, round(c.squeeze * width))
                    layers += conv_block(cin, squeezed, 1, c)
                    cin = squeezed
            for j in range(depth):
                stem = i == 0 and j == 0
                layers += conv_block(cin, width, k, c, stride if j == 0 else 1, c.separable and not stem)
                cin = width
        if c.final_pool:
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = []
        if c.head == "flatten_fc":
            head.append(nn.Flatten())
            cin = cin * c.final_size() ** 2
        else:
            head += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if c.head != "gap" and c.fc_width > 0:
            head += [nn.Linear(cin, c.fc_width, bias=c.bias), nn.ReLU(inplace=True)]
            cin = c.fc_width
        if c.head != "gap" and c.fc_dropout > 0:
            head.append(nn.Dropout(c.fc_dropout))
        head.append(nn.Linear(cin, c.num_classes, bias=c.bias))
        self.head = nn.Sequential(*head)

    def forward(self, x):
        return self.head(self.features(x))
