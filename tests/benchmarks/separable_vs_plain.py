"""Plain vs depthwise-separable convs at the same parameter budget, side by side in one run.

The best plain net of a 40-trial search on the vs_hand.py task (8,000 Fashion-MNIST training images, official
10,000 test images, 15 epochs) trained as found (7,860 params), and the same topology and recipe with
`separable: true`, its widths filled to just under 8,000 params (budget.fill): test accuracy over seeds, and
the recipe variants that were tried on the plain net (batch 32, flip, cutout 8, the hand net with this recipe);
and the hand net with the seed recipe, plain and with separable convs filled to 8,000 params.

    python tests/benchmarks/separable_vs_plain.py [--seeds 2] [--work /tmp/nas-run-vs-hand]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
from search import budget as B  # noqa: E402
from vs_hand import HAND_NET, build_task, load_task, seed_recipe, train_and_test  # noqa: E402

PLAIN = {"family": "convnet",
         "model": {"in_channels": 1, "num_classes": 10, "image_size": 28, "padding": "valid", "transition": "pool_1x1",
                   "squeeze": 0.75, "head": "gap", "dropout": 0.0336, "bn": True, "bias": False,
                   "widths": [5, 16, 26, 16, 22], "depths": [2, 1, 0, 3, 0], "pools": [False, False, False, True, False]},
         "train": {"batch_size": 64, "optimizer": "adamw", "lr": 0.0097, "momentum": 0.9, "nesterov": True,
                   "weight_decay": 0.000274, "scheduler": "cosine", "warmup_fraction": 0.25, "gamma": 0.1,
                   "step_fraction": 1 / 3, "label_smoothing": 0.05,
                   "augment": {"crop": 0, "flip": False, "rotate": 13.38, "scale": 0.0, "brightness": 0.0,
                               "contrast": 0.0, "cutout": 0}}}


def variant(model=None, **changes) -> dict:
    c = copy.deepcopy(PLAIN)
    c["model"].update(model or {})
    c["train"]["augment"].update(changes.pop("augment", {}))
    c["train"].update(changes)
    return c


def hand_net(**model) -> dict:
    """The seed task's hand net with its recipe (vs_hand.py's baseline), other model keys changed."""
    cand = variant({**HAND_NET, **model})
    cand["train"] = seed_recipe()
    return cand


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--work", default="/tmp/nas-run-vs-hand")
    p.add_argument("--only", default="", help="names of the rows to run, separated by ;")
    args = p.parse_args()
    torch.set_num_threads(2)
    data, full = load_task(build_task(Path(args.work) / "fashion8k"))
    rows = {
        "plain, as found": PLAIN,
        "separable, filled to 8,000": B.fill(variant({"separable": True}), {"params": 8000}, data.meta),
        "plain, batch 32": variant(batch_size=32),
        "plain, flip": variant(augment={"flip": True}),
        "plain, cutout 8": variant(augment={"cutout": 8}),
        "hand net, this recipe": variant(HAND_NET),
        "hand net, seed recipe": hand_net(),
        "hand separable, filled": B.fill(hand_net(separable=True), {"params": 8000}, data.meta),
    }
    only = [o for o in args.only.split(";") if o]
    print(f"{'what':28} {'params':>6} {'widths':>22} {'test acc mean ± std':>20} {'s/seed':>7}")
    for name, cand in rows.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        accs, params = train_and_test(cand["family"], cand["model"], cand["train"], data, full, args.seeds, 15)
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{name:28} {params:>6,} {str(cand['model']['widths']):>22} {statistics.fmean(accs):>13.4f} ± {spread:.4f} "
              f"{(time.perf_counter() - t0) / args.seeds:>6.0f}", flush=True)


if __name__ == "__main__":
    main()
