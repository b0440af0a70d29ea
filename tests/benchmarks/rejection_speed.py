"""Benchmark: what a budget rejection costs. Samples candidates of spaces/mnist_8k.yaml and times
sample -> build -> params -> MACs (fvcore) -> violations, with a MACs budget that rejects every one, so each
candidate pays the full params + MACs check. Prints median and 90th percentile in ms.

    python tests/benchmarks/rejection_speed.py [--n 200] [--threads 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import optuna
import torch

from search import budget as B
from search import space as S
from search.catalogue import DATASETS


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--space", default="spaces/mnist_8k.yaml")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = S.load(args.space)
    budget = dataclasses.replace(space.budget, macs=1)  # everything is rejected after both counts
    meta = DATASETS[space.data.dataset]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    times, params = [], []
    for i in range(args.n + 5):
        t0 = time.perf_counter()
        trial = study.ask()
        cand = space.sample(trial, meta)
        model = cand.build()
        cost, over = B.measure(model, cand.train, budget, meta, n_train=60000, n_eval=0, epochs=15,
                               device=torch.device("cpu"))
        for k, v in over.items():
            trial.set_constraint(k, v)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        assert over["macs"] > 0
        if i >= 5:  # warm-up: first fvcore import and trace
            times.append((time.perf_counter() - t0) * 1000)
            params.append(cost.params)
    times.sort()
    print(f"{args.n} rejections of {args.space} candidates ({min(params):,}-{max(params):,} params, median "
          f"{statistics.median(params):,.0f}), {args.threads} threads: median {statistics.median(times):.1f} ms, "
          f"p90 {times[int(0.9 * len(times))]:.1f} ms (ask + sample + build + params + MACs + set_constraint + tell, in-memory storage)")


if __name__ == "__main__":
    main()
