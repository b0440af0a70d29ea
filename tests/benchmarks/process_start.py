"""How long a worker process takes to be ready to train: spawn (a fresh interpreter importing torch and the
trainer) against the forkserver that search/workers.py uses (one server imports them once; each process forks
from it), side by side in one run.

A run starts processes three times (search workers, race runs, retrain seeds); each wave here starts K processes
that import what a worker needs (search.workers, search.retrain, torch._dynamo, which torch.optim imports at its
first optimizer) and then return. Seconds from start() to all K joined, per wave.

    python tests/benchmarks/process_start.py [--k 2] [--waves 3]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def ready() -> None:
    import importlib

    from search.workers import PRELOAD

    for module in PRELOAD:
        importlib.import_module(module)


def waves(context, k: int, n: int) -> list[float]:
    seconds = []
    for _ in range(n):
        t0 = time.perf_counter()
        procs = [context.Process(target=ready) for _ in range(k)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        seconds.append(time.perf_counter() - t0)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--waves", type=int, default=3)
    args = ap.parse_args()
    from search.workers import process_context

    rows = {"spawn": waves(mp.get_context("spawn"), args.k, args.waves),
            "forkserver (search.workers)": waves(process_context(), args.k, args.waves)}
    print(f"| start method | {args.k} processes, wave by wave (s) | all waves (s) |")
    print("|---|---|---|")
    for name, s in rows.items():
        print(f"| {name} | {' / '.join(f'{x:.2f}' for x in s)} | {sum(s):.1f} |")
    base, new = (sum(s) for s in rows.values())
    print(f"\nspawn / forkserver: {base / new:.1f}x over {args.waves} waves; "
          f"a forkserver wave after the first: {statistics.fmean(rows['forkserver (search.workers)'][1:]):.2f} s")


if __name__ == "__main__":
    main()
