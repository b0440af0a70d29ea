"""Benchmark: search throughput of `--workers N` (one thread each, N = cores) vs one worker with N threads.

Same space (the EVA-style ~7k-param convnet on real Fashion-MNIST, only lr searched so trials are equally
long; 2 epochs on 20% of the training split per trial, no pruning), same number of trials, fresh SQLite
studies. Two figures per run:
- end to end: training images of all trained trials / wall-clock from the first trial's start to the
  last one's end (validation, budget checks and storage included; process start-up excluded);
- training loop: the trials' mean images/s during their epochs x the number of workers (summed over the
  machine).
Also prints what `--workers auto` picks here.

    python tests/benchmarks/workers_throughput.py [--trials 12]
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

from search.workers import plan_workers

SPACE = {
    "name": "throughput",
    "data": {"dataset": "fashion_mnist", "root": "/usr/share/datasets/fashion-mnist", "val_fraction": 0.1},
    "model": {"family": "convnet", "stages": [{"width": 12, "depth": 2}, {"width": 16, "depth": 2}, {"width": 16, "depth": 1}],
              "transition": "pool_1x1", "squeeze": 0.5, "head": "gap_fc", "fc_width": 16, "dropout": 0.05},
    "train": {"batch_size": 128, "optimizer": "sgd", "lr": {"low": 0.01, "high": 0.1, "log": True}, "augment": {"rotate": 10.0}},
    "search": {"epochs": 2, "data_fraction": 0.2, "pruner": "none", "race_top": 0, "seed": 0},
    "retrain": {"epochs": 1, "seeds": 1},
}


def run(workers: int, trials: int, tmp: Path) -> tuple[float, float, int]:
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
    loop = sum(t.user_attrs["images_per_second"] for t in done) / len(done) * workers
    return images / span, loop, len(done)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=12)
    args = p.parse_args()
    cores = os.cpu_count()
    print(f"{cores} cores; --workers auto picks {plan_workers('auto', 'cpu')} (workers, threads each) on CPU")
    with tempfile.TemporaryDirectory() as tmp:
        one, one_loop, n1 = run(1, args.trials, Path(tmp))
        print(f"--workers 1 ({cores} threads):      end to end {one:6.0f} images/s, training loop {one_loop:6.0f} images/s ({n1} trials)")
        many, many_loop, n2 = run(cores, args.trials, Path(tmp))
        print(f"--workers {cores} (1 thread each): end to end {many:6.0f} images/s, training loop {many_loop:6.0f} images/s ({n2} trials)")
    print(f"ratio: end to end {many / one:.2f}x, training loop {many_loop / one_loop:.2f}x")


if __name__ == "__main__":
    main()
