"""How good is a stored trial, really? Its candidate trained on more seeds, tested on the 10,000 test images.

For a finished vs_hand.py run: a trial that won (or lost) a race on one or two seeds is trained again on
`--seeds` seeds, exactly as nas-run builds it from the candidate stored on the trial, once on all 8,000 images
(what the retrain trains on) and once on what a race round trains on (6,000: the 8,000 less round seed+1's
2,000 held-out images, `--race-val-fraction`). Beside race_noise.py's figures for the two designs, this tells
whether a race picked a worse net by noise or because the race's smaller training set reorders the nets.

    python tests/benchmarks/trial_seeds.py --storage sqlite:////tmp/vs4b/studies/fm8k_seed4.db --study fm8k_seed4 \\
        --trial 38 [--seeds 4] [--work /tmp/vs4b] [--race-val-fraction 0.25]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).parent))
from race_noise import correct_on_test  # noqa: E402
from vs_hand import build_task  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--storage", required=True)
    p.add_argument("--study", required=True)
    p.add_argument("--trial", type=int, required=True)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--work", default="/tmp/nas-run-vs-hand")
    p.add_argument("--race-val-fraction", type=float, default=0.25)
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    cand = next(t for t in study.get_trials(deepcopy=False) if t.number == args.trial).user_attrs["candidate"]
    root = str(build_task(Path(args.work) / "fashion8k"))
    sizes = {"all 8,000 images": 0.0, "a race round's training images": args.race_val_fraction}
    jobs = [(label, cand, seed, root, frac) for label, frac in sizes.items() for seed in range(args.seeds)]
    acc: dict[str, list[float]] = {}
    with ProcessPoolExecutor(2) as pool:
        for label, seed, correct, secs in pool.map(correct_on_test, jobs):
            acc.setdefault(label, []).append(correct.float().mean().item())
            print(f"  trial {args.trial} on {label}, seed {seed}: test {acc[label][-1]:.4f} ({secs:.0f} s)", flush=True)
    for label, accs in acc.items():
        print(f"trial {args.trial} trained on {label}: test {statistics.fmean(accs):.4f} ± {statistics.stdev(accs):.4f} "
              f"over {len(accs)} seeds")


if __name__ == "__main__":
    main()
