"""What the residual families share: a 3x3 conv-BN-activation stem, stages of blocks (stride 2 entering every stage
but the first) and a GAP -> dropout -> linear head. A family is its block and its config."""
from __future__ import annotations

from typing import Callable

from torch import nn

from models import check_stages, hw
from models.dropout import Dropout


def check_staged(config) -> None:
    """A staged config's shared checks: per-stage widths and depths, a stem, a map that survives the strides."""
    check_stages(config, "widths", "depths")
    if config.stem_width < 1:
        raise ValueError(f"stem_width must be >= 1, got stem_width={config.stem_width}")
    if min(hw(config.image_size)) < 2 ** (len(config.widths) - 1):
        raise ValueError(f"{len(config.widths)} stages shrink a {config.image_size}px input below 1 pixel")


def staged_features(config, block: Callable[[int, int, int], nn.Module], activation: type[nn.Module]) -> tuple[nn.Sequential, int]:
    """(stem + `block(cin, cout, stride)` per stage, output channels)."""
    layers: list[nn.Module] = [nn.Conv2d(config.in_channels, config.stem_width, 3, 1, 1, bias=False),
                               nn.BatchNorm2d(config.stem_width), activation(inplace=True)]
    cin = config.stem_width
    for i, (width, depth) in enumerate(zip(config.widths, config.depths)):
        for j in range(depth):
            layers.append(block(cin, width, 2 if i > 0 and j == 0 else 1))
            cin = width
    return nn.Sequential(*layers), cin


def gap_head(cin: int, classes: int, dropout: float) -> nn.Sequential:
    """Global average pool -> dropout (when > 0) -> linear classifier."""
    head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if dropout > 0:
        head.append(Dropout(dropout))
    head.append(nn.Linear(cin, classes))
    return nn.Sequential(*head)
