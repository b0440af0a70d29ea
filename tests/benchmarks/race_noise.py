"""How often does one race round put the better of two finalists first, by the number of images it validates on?

The vs_hand.py task (8,000 Fashion-MNIST training images, 15 epochs). Two finalists the seed-3 studies could not
tell apart, exactly as nas-run trains them: spaces/mnist_8k.yaml's first trials (the hand net and recipe, with
the space's fixed settings such as nesterov momentum), filled to its budget, plain and with separable convs.
Each is trained on all 8,000 images on `--seeds` seeds (1 thread per process, 2 processes). Every trained
model's per-image correctness on the official 10,000 test images is kept; which net is better "in truth" is
the mean over all seeds on all 10,000 images. A race round is simulated as what it is: one fresh training seed
per finalist, both measured on the same `n` held-out images (drawn at random from the 10,000; the benchmark
stands them in for fresh held-out training images, nas-run never selects on test images). Printed per `n`: the
chance the round ranks the better net first (over every seed pair and `--draws` image draws), and the std of
the measured difference, beside two rounds of 800 images (race_seeds 3 at val_fraction 0.1: twice the cost).

By default both finalists train on all 8,000 images (what the retrain uses, so "truth" is the retrained nets'
order); `--race-val-fraction 0.25` trains each seed as a race round at that share does (6,000 images: the
8,000 less round seed+1's 2,000 held-out ones), which shows whether the smaller training set reorders them.

    python tests/benchmarks/race_noise.py [--seeds 6] [--draws 2000] [--work /tmp/nas-run-vs-hand] [--race-val-fraction 0.25]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import optuna
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
from search import budget as B  # noqa: E402
from search import data as D  # noqa: E402
from search.catalogue import DATASETS  # noqa: E402
from search import space as S  # noqa: E402
from search.measure import count_params  # noqa: E402
from search.record import Candidate  # noqa: E402
from search.train import predict, train  # noqa: E402
from vs_hand import build_task, load_task  # noqa: E402

SIZES = (800, 2000, 10000)
VAL_FRACTION = 0.1  # vs_hand.load_task's split


def finalists() -> dict[str, dict]:
    """spaces/mnist_8k.yaml's two first trials as nas-run trains them: sampled from the space, then filled."""
    space = S.load(ROOT / "spaces" / "mnist_8k.yaml")
    meta = DATASETS["fashion_mnist"]
    cands = [B.fill(space.sample(optuna.trial.FixedTrial(ft), meta), space.budget, meta) for ft in space.search.first_trials]
    return {"hand net filled": cands[0].to_json(), "separable hand net filled": cands[1].to_json()}


def correct_on_test(job) -> tuple[str, int, torch.Tensor, float]:
    """One finalist, one seed: train on all 8,000 images (or a race round's training images), -> per-image
    correctness on the 10,000 test images."""
    name, cand, seed, root, race_val_fraction = job
    torch.set_num_threads(1)
    data, full = load_task(Path(root))
    if race_val_fraction:  # train as race round seed + 1 does: without its held-out images
        full, _ = D.race_fold(data, seed + 1, D.race_val_size(len(data.val), race_val_fraction, VAL_FRACTION))
    torch.manual_seed(seed)
    cand = Candidate.from_json(cand)  # as a trial stores it
    model = cand.build()
    t0 = time.perf_counter()
    train(model, full, None, data.mean, data.std, cand.train, 15)
    ok = predict(model, data.test, data.mean, data.std, fp32=True).cpu() == data.test.y.cpu()
    return name, seed, ok, time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--work", default="/tmp/nas-run-vs-hand")
    p.add_argument("--race-val-fraction", type=float, default=0.0,
                   help="train each seed on what a race round at this share trains on (0.25: 6,000 images), not all 8,000")
    args = p.parse_args()
    root = build_task(Path(args.work) / "fashion8k")
    data, full = load_task(root)
    nets = finalists()
    for name, cand in nets.items():
        c = Candidate.from_json(cand)
        print(f"{name}: widths {c.widths}, {count_params(c.build()):,} params", flush=True)
    jobs = [(name, cand, seed, str(root), args.race_val_fraction) for seed in range(args.seeds) for name, cand in nets.items()]
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
    held_out = D.race_val_size(len(data.val), args.race_val_fraction, VAL_FRACTION) if args.race_val_fraction else 0
    trained_on = len(full) - held_out
    print(f"truth: {a if gap > 0 else b} better by {abs(gap) * 100:.2f} pt (mean of {args.seeds} seeds on 10,000 images, "
          f"trained on {trained_on:,})")

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
