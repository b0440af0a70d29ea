"""How often does one race round put the better of two finalists first, by the number of images it validates on?

The vs_hand.py task (8,000 Fashion-MNIST training images, 15 epochs). Two finalists the seed-3 study could not
tell apart: the hand net and recipe filled to the shipped space's budget, and the same with separable convs.
Each is trained on all 8,000 images on `--seeds` seeds (1 thread per process, 2 processes). Every trained
model's per-image correctness on the official 10,000 test images is kept; which net is better "in truth" is
the mean over all seeds on all 10,000 images. A race round is simulated as what it is: one fresh training seed
per finalist, both measured on the same `n` held-out images (drawn at random from the 10,000; the benchmark
stands them in for fresh held-out training images, nas-run never selects on test images). Printed per `n`: the
chance the round ranks the better net first (over every seed pair and `--draws` image draws), and the std of
the measured difference, beside two rounds of 800 images (race_seeds 3 at val_fraction 0.1: twice the cost).

What it leaves out: a race round at race_val_fraction 0.25 trains on 6,000 images (not 8,000) and validates
on 2,000; at 0.1 on 7,200 (+800 held out). The training-set size is the same for both finalists here.

    python tests/benchmarks/race_noise.py [--seeds 6] [--draws 2000] [--work /tmp/nas-run-vs-hand]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
import models  # noqa: E402
from search import budget as B  # noqa: E402
from search.train import predict, train  # noqa: E402
from vs_hand import HAND_NET, build_task, load_task, seed_recipe  # noqa: E402

BUDGET = {"params": 8000, "macs": 2_000_000}  # spaces/mnist_8k.yaml's
SIZES = (800, 2000, 10000)


def finalists(meta) -> dict[str, dict]:
    base = {"family": "convnet", "model": {"in_channels": 1, "num_classes": 10, "image_size": 28, "bn": True,
                                           "bias": False, **HAND_NET}, "train": seed_recipe()}
    sep = {**base, "model": {**base["model"], "separable": True}}
    return {"hand net filled": B.fill(base, BUDGET, meta), "separable hand net filled": B.fill(sep, BUDGET, meta)}


def correct_on_test(job) -> tuple[str, int, torch.Tensor, float]:
    """One finalist, one seed: train on all 8,000 images, -> per-image correctness on the 10,000 test images."""
    name, cand, seed, root = job
    torch.set_num_threads(1)
    data, full = load_task(Path(root))
    torch.manual_seed(seed)
    model = models.build(cand["family"], **cand["model"])
    t0 = time.perf_counter()
    train(model, full, None, data.mean, data.std, cand["train"], 15)
    ok = predict(model, data.test, data.mean, data.std, fp32=True).cpu() == data.test.y.cpu()
    return name, seed, ok, time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--work", default="/tmp/nas-run-vs-hand")
    args = p.parse_args()
    root = build_task(Path(args.work) / "fashion8k")
    data, _ = load_task(root)
    nets = finalists(data.meta)
    for name, cand in nets.items():
        m = models.build(cand["family"], **cand["model"])
        print(f"{name}: widths {cand['model']['widths']}, {B.count_params(m):,} params", flush=True)
    jobs = [(name, cand, seed, str(root)) for seed in range(args.seeds) for name, cand in nets.items()]
    ok = {}
    with ProcessPoolExecutor(2) as pool:
        for name, seed, correct, secs in pool.map(correct_on_test, jobs):
            ok[name, seed] = correct.float()
            print(f"  {name} seed {seed}: test {correct.float().mean():.4f} ({secs:.0f} s)", flush=True)
    a, b = list(nets)
    acc = {n: [ok[n, s].mean().item() for s in range(args.seeds)] for n in nets}
    for n in nets:
        print(f"{n}: test {statistics.fmean(acc[n]):.4f} ± {statistics.stdev(acc[n]):.4f} over {args.seeds} seeds")
    gap = statistics.fmean(acc[a]) - statistics.fmean(acc[b])
    better = 1 if gap > 0 else -1
    print(f"truth: {a if gap > 0 else b} better by {abs(gap) * 100:.2f} pt (mean of {args.seeds} seeds on 10,000 images)")

    g = torch.Generator().manual_seed(0)
    n_test = len(data.test)

    def diffs(n: int, rounds: int) -> list[float]:
        """Measured a - b, averaged over `rounds` rounds: each round a seed of each finalist not used in another
        round, and n images of its own."""
        out = []
        for _ in range(args.draws):
            sa, sb = (torch.randperm(args.seeds, generator=g)[:rounds].tolist() for _ in range(2))
            idx = torch.randperm(n_test, generator=g)[: n * rounds].view(rounds, -1)
            out.append(statistics.fmean((ok[a, sa[r]][idx[r]].mean() - ok[b, sb[r]][idx[r]].mean()).item()
                                        for r in range(rounds)))
        return out

    print(f"\n{'race':34} {'P(better net first)':>20} {'std of measured gap':>20}")
    for label, n, rounds in [*((f"1 round on {n:,} images", n, 1) for n in SIZES), ("2 rounds on 800 images each", 800, 2)]:
        d = diffs(n, rounds)
        right = sum((x * better > 0) + 0.5 * (x == 0) for x in d) / len(d)
        print(f"{label:34} {right:>19.0%} {statistics.stdev(d) * 100:>17.2f} pt")


if __name__ == "__main__":
    main()
