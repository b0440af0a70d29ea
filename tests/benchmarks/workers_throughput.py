"""Benchmark: search throughput of `--workers 2` (one thread each) vs one worker with two threads.

Same space (small convnets on real Fashion-MNIST, 1 epoch on 10% of the training split per trial, no
pruning), same number of trials, fresh SQLite studies. Throughput = training images of all trained trials
/ wall-clock from the first trial's start to the last one's end (process start-up excluded), summed over
the machine. Also prints what `--workers auto` picks here.

    python tests/benchmarks/workers_throughput.py [--trials 8]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import optuna
import yaml

from search.study import plan_workers

SPACE = {
    "name": "throughput",
    "data": {"dataset": "fashion_mnist", "root": "/usr/share/datasets/fashion-mnist", "val_fraction": 0.1},
    "model": {"family": "convnet", "stages": [{"width": [8, 12], "depth": [1, 2]}, {"width": [12, 16], "depth": [1, 2]},
                                              {"width": 16, "depth": 1}],
              "transition": "pool_1x1", "squeeze": 0.5, "head": "gap_fc", "fc_width": 16},
    "train": {"batch_size": 128, "optimizer": "sgd", "lr": {"low": 0.01, "high": 0.1, "log": True}, "augment": {"rotate": 10.0}},
    "search": {"epochs": 1, "data_fraction": 0.1, "pruner": "none", "seed": 0},
    "retrain": {"epochs": 1, "seeds": 1},
}


def run(workers: int, trials: int, tmp: Path) -> tuple[float, int]:
    space = tmp / f"w{workers}.yaml"
    space.write_text(yaml.safe_dump({**SPACE, "name": f"throughput_w{workers}"}))
    studies = tmp / f"studies{workers}"
    r = subprocess.run([shutil.which("nas-run"), str(space), "--workers", str(workers), "--trials", str(trials),
                        "--no-retrain", "--studies", str(studies)], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr)
    study = optuna.load_study(study_name=f"throughput_w{workers}", storage=f"sqlite:///{studies}/throughput_w{workers}.db")
    done = [t for t in study.trials if t.user_attrs.get("trained")]
    images = sum(t.user_attrs["images"] for t in done)
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return images / span, len(done)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=8)
    args = p.parse_args()
    cores = os.cpu_count()
    print(f"{cores} cores; --workers auto picks {plan_workers('auto', 'cpu')} (workers, threads each) on CPU")
    with tempfile.TemporaryDirectory() as tmp:
        one, n1 = run(1, args.trials, Path(tmp))
        print(f"--workers 1 ({cores} threads): {one:7.0f} trained images/s ({n1} trials)")
        many, n2 = run(cores, args.trials, Path(tmp))
        print(f"--workers {cores} (1 thread each): {many:7.0f} trained images/s ({n2} trials)")
    print(f"ratio: {many / one:.2f}x")


if __name__ == "__main__":
    main()
