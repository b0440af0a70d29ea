"""Benchmark: the cost of dropout in one CPU training step, side by side in one run.

The two first trials of spaces/mnist_8k.yaml (the hand net, and the same net with separable convs filled to 7,966
params), one SGD step at batch 128 on 1 torch thread in NHWC (how a CPU worker trains, search.train.channels_last),
with three dropouts in the blocks: `nn.Dropout`, models.dropout.Dropout with its mask in NCHW order whatever x's
layout (before 2026-11-24), and models.dropout.Dropout as shipped (mask in x's layout). Rounds interleave the
variants, so a slow spell of the machine hits all of them; the median ms per step and the ratio to the shipped
one are printed.

    python tests/benchmarks/dropout_speed.py [--rounds 5] [--steps 10]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
import models.convnet as CN  # noqa: E402
import models.dropout as MD  # noqa: E402
from layouts import ms_per_step  # noqa: E402
from vs_hand import HAND_NET  # noqa: E402

SHAPE = {"in_channels": 1, "num_classes": 10, "image_size": 28}
NETS = {"hand net, 8,034 params": {**SHAPE, **HAND_NET},
        "hand net separable, 7,966": {**SHAPE, **HAND_NET, "separable": True, "widths": [20, 29, 39, 29, 39]}}


class NCHWMaskDropout(MD.Dropout):
    """models.dropout.Dropout before 2026-11-24: the mask in NCHW order whatever x's layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return x * (MD.keep_mask(x.shape, self.p, x.device).to(x.dtype) * (1 / (1 - self.p)))


VARIANTS = {"nn.Dropout": nn.Dropout, "mask in NCHW": NCHWMaskDropout, "shipped": MD.Dropout}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    for net, cfg in NETS.items():
        times = {v: [] for v in VARIANTS}
        for _ in range(a.rounds):
            for v, cls in VARIANTS.items():
                CN.Dropout = cls  # the class convnet's blocks are built with
                times[v].append(ms_per_step(cfg, nhwc=True, threads=1, batch=128, steps=a.steps))
        CN.Dropout = MD.Dropout
        ship = statistics.median(times["shipped"])
        for v, ts in times.items():
            med = statistics.median(ts)
            print(f"{net:26s} {v:14s} {med:7.1f} ms/step  {med / ship:.2f}x shipped")


if __name__ == "__main__":
    main()
