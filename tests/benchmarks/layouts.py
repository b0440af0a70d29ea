"""Benchmark: NCHW vs NHWC (channels_last) activations for one CPU training step, side by side in one run.

The nets of the 8k-param task (tests/benchmarks/vs_hand.py): the best plain net of a search, the hand net, the plain
net's topology with depthwise-separable convs filled to 8,000 params, and a separable search winner (trial 27 of
`vs_hand.py --search seed=0` with val_fraction 0.2). One SGD step (forward, backward, update) on random 28x28
images at batch 64 and 128, with 1 and 2 torch threads: ms per step in each layout and the ratio NCHW / NHWC
(> 1: NHWC is faster). search.train.channels_last picks the layout from these numbers.

    python tests/benchmarks/layouts.py [--steps 12]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
import models  # noqa: E402
from separable_vs_plain import PLAIN  # noqa: E402
from vs_hand import HAND_NET  # noqa: E402

BASE = PLAIN["model"]
NETS = {
    "plain, 7,860 params (search winner)": BASE,
    "hand net, 8,034 params": {**BASE, **HAND_NET},
    "separable, plain topology filled, 7,674": {**BASE, "separable": True, "widths": [12, 38, 63, 38, 53]},
    "separable search winner, 7,982": {**BASE, "separable": True, "padding": "valid", "transition": "pool", "squeeze": 1.0,
                                       "head": "gap_fc", "fc_width": 0, "dropout": 0.0219, "widths": [21, 46, 30, 23, 53],
                                       "depths": [1, 2, 1, 2, 0], "pools": [False, False, False, True, False]},
}


def ms_per_step(cfg: dict, nhwc: bool, threads: int, batch: int, steps: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = models.build("convnet", **cfg)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    if nhwc:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up: oneDNN picks and caches its kernels
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps * 1000


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=12)
    args = p.parse_args()
    print(f"{'net':42} {'threads':>7} {'batch':>5} {'NCHW ms':>8} {'NHWC ms':>8} {'NCHW/NHWC':>9}")
    for name, cfg in NETS.items():
        for threads in (1, 2):
            for batch in (64, 128):
                a = ms_per_step(cfg, False, threads, batch, args.steps)
                b = ms_per_step(cfg, True, threads, batch, args.steps)
                print(f"{name:42} {threads:>7} {batch:>5} {a:>8.1f} {b:>8.1f} {a / b:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
