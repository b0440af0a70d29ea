"""`convnet`: stages of conv-BN-ReLU(-dropout) blocks, the family behind the seed tasks' hand-tuned nets.

A stage is `depths[i]` convs of `widths[i]` output channels. `pools[i]` says whether stage i starts with a
transition that halves the map (max-pool, optionally followed by a 1x1 conv that squeezes channels, as in
the EVA MNIST nets; or a stride-2 first conv). Stages without a pool are width steps at the same resolution,
so 8 -> 12 -> 16 channels before the first pool is three stages. A stage of depth 0 (not the first) is left
out with its transition: a space can vary the number of stages and pools.
`padding: valid` makes convs unpadded where the map allows it (input at least kernel + 2 pixels, so the
map never shrinks below 3 px), as in the hand-tuned MNIST nets (28 -> 26 -> 24 -> 22, pool, 11 -> 9 ...).
Depthwise-separable convs (depthwise kxk + pointwise 1x1) save parameters everywhere but the stem, where
the input has 1-3 channels and a depthwise conv would learn almost nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from models import hw, register
from models.dropout import Dropout

TRANSITIONS = ("pool", "pool_1x1", "stride")
HEADS = ("gap", "gap_fc", "flatten_fc")
PADDINGS = ("same", "valid")


@dataclass
class ConvNetConfig:
    in_channels: int = 1
    num_classes: int = 10
    image_size: int | tuple = 28  # or (height, width)
    widths: tuple = (8, 16, 16)  # output channels of every conv in stage i
    depths: tuple = (2, 2, 1)  # convs in stage i (0: the stage is left out; the stem is the first conv of stage 0)
    pools: tuple = ()  # per stage: True = starts with a transition; () = every stage but the first
    kernel_size: int = 3  # odd
    padding: str = "same"  # same | valid (unpadded where the map is >= kernel + 2 px)
    separable: bool = False  # depthwise-separable convs everywhere but the stem
    transition: str = "pool"  # pool | pool_1x1 | stride
    squeeze: float = 1.0  # pool_1x1 only: the 1x1 conv outputs round(squeeze * incoming channels)
    final_pool: bool = False  # a 2x2 max-pool after the last stage too (the CIFAR seed nets pool after every stage)
    head: str = "gap"  # gap: GAP -> linear; gap_fc: GAP -> fc_width -> linear; flatten_fc: flatten -> ...
    fc_width: int = 0  # hidden units of the fc heads (0: straight to the classifier)
    dropout: float = 0.0  # after every conv block
    fc_dropout: float = 0.0  # before the classifier of the fc heads
    bn: bool = True
    bias: bool = False  # biases of convs and hidden linears (BN makes them redundant); the classifier always has one
    CHOICES: ClassVar[dict] = {"transition": TRANSITIONS, "head": HEADS, "padding": PADDINGS}

    def __post_init__(self):
        n = len(self.widths)
        self.pools = tuple(bool(p) for p in self.pools) or tuple(i > 0 for i in range(n))
        lengths = {"widths": n, "depths": len(self.depths), "pools": len(self.pools)}
        if n == 0 or len(set(lengths.values())) != 1:
            raise ValueError(f"per-stage fields must have the same non-zero length, got {lengths}")
        if any(int(w) < 1 for w in self.widths):
            raise ValueError(f"widths must be >= 1 per stage, got widths={self.widths}")
        if self.depths[0] < 1 or any(int(d) < 0 for d in self.depths):
            raise ValueError(f"depths must be >= 1 for the first stage and >= 0 after it, got depths={self.depths}")
        if self.pools[0]:
            raise ValueError(f"the first stage cannot start with a transition, got pools={self.pools}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got kernel_size={self.kernel_size}")
        for key, allowed in self.CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {key}={getattr(self, key)!r}")
        if not 0 < self.squeeze <= 4:
            raise ValueError(f"squeeze must be in (0, 4], got squeeze={self.squeeze}")
        if min(self.final_size()) < 1:
            raise ValueError(f"{sum(self.pools) + self.final_pool} transitions shrink a {self.image_size}px input below 1 pixel")

    def plan(self):
        """[(stage, width, depth, pool)] of the stages that are built (depth > 0)."""
        return [(i, w, d, p) for i, (w, d, p) in enumerate(zip(self.widths, self.depths, self.pools)) if d > 0]

    def pad(self, size: int) -> int:
        """Padding of a kxk conv on a `size`-px map."""
        k = self.kernel_size
        return 0 if self.padding == "valid" and size >= k + 2 else k // 2

    def final_size(self) -> tuple[int, int]:
        """(height, width) of the last feature map."""
        h, w = hw(self.image_size)
        for _, _, depth, pool in self.plan():
            if pool:
                h, w = ((h + 1) // 2, (w + 1) // 2) if self.transition == "stride" else (h // 2, w // 2)
                if self.transition == "stride":
                    depth -= 1  # the strided conv keeps "same" padding
            for _ in range(depth):
                shrink = 2 * (self.kernel_size // 2 - self.pad(min(h, w)))  # one padding for both sides: symmetric
                h, w = h - shrink, w - shrink
        return (h // 2, w // 2) if self.final_pool else (h, w)


def conv_block(cin: int, cout: int, k: int, c: ConvNetConfig, stride: int = 1, separable: bool = False, pad: int | None = None):
    pad = k // 2 if pad is None else pad
    if separable:
        layers = [
            nn.Conv2d(cin, cin, k, stride, pad, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=c.bias),
        ]
    else:
        layers = [nn.Conv2d(cin, cout, k, stride, pad, bias=c.bias)]
    if c.bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    if c.dropout > 0:
        layers.append(Dropout(c.dropout))
    return layers


@register("convnet", ConvNetConfig)
class ConvNet(nn.Module):
    def __init__(self, config: ConvNetConfig):
        super().__init__()
        self.config = c = config
        k, layers, cin, (h, w) = c.kernel_size, [], c.in_channels, hw(c.image_size)
        for i, width, depth, pool in c.plan():
            stride = 1
            if pool and c.transition == "stride":
                stride = 2
            elif pool:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
                if c.transition == "pool_1x1":
                    squeezed = max(1, round(c.squeeze * cin))
                    layers += conv_block(cin, squeezed, 1, c)
                    cin = squeezed
            for j in range(depth):
                first = j == 0
                pad = k // 2 if stride > 1 and first else c.pad(min(h, w))
                layers += conv_block(cin, width, k, c, stride if first else 1, c.separable and not (i == 0 and first), pad)
                h, w = ((d + 2 * pad - k) // (stride if first else 1) + 1 for d in (h, w))
                cin = width
        if c.final_pool:
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = []
        if c.head == "flatten_fc":
            head.append(nn.Flatten())
            fh, fw = c.final_size()
            cin = cin * fh * fw
        else:
            head += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if c.head != "gap" and c.fc_width > 0:
            head += [nn.Linear(cin, c.fc_width, bias=c.bias), nn.ReLU(inplace=True)]
            cin = c.fc_width
        if c.head != "gap" and c.fc_dropout > 0:
            head.append(Dropout(c.fc_dropout))
        head.append(nn.Linear(cin, c.num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x):
        return self.head(self.features(x))
