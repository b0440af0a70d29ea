"""Benchmark: storage overhead of the distributed study. K worker processes run a 0.1 s dummy objective
(3 reports per trial, heartbeats on, random sampler) against PostgreSQL, vs the same processes doing the
same sleeps with no storage. Each process times its own work after start-up and connection; overhead =
(last end - first start) with storage / the same without - 1.

    python tests/benchmarks/storage_overhead.py --storage postgresql://postgres@127.0.0.1:54329/nas_run_test
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time
import uuid

def with_storage(url: str, name: str, trials: int, seconds: float, seed: int, start_at: float, out):
    import optuna

    from search.storage import make_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=make_storage(url, heartbeat=10),
                              sampler=optuna.samplers.RandomSampler(seed=seed))

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        for step in range(3):
            time.sleep(seconds / 3)
            trial.report(x * step, step)
        return x

    time.sleep(max(0.0, start_at - time.time()))  # every worker starts together, after its set-up
    t0 = time.time()
    study.optimize(objective, n_trials=trials)
    out.put((t0, time.time()))


def without_storage(trials: int, seconds: float, start_at: float, out):
    time.sleep(max(0.0, start_at - time.time()))
    t0 = time.time()
    for _ in range(trials * 3):
        time.sleep(seconds / 3)
    out.put((t0, time.time()))


def span(target, args_list) -> float:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, out)) for a in args_list]
    for p in procs:
        p.start()
    times = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return max(e for _, e in times) - min(s for s, _ in times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--storage", required=True)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--trials", type=int, default=50, help="per worker")
    p.add_argument("--seconds", type=float, default=0.1, help="duration of the dummy objective")
    p.add_argument("--startup", type=float, default=15, help="seconds allowed for workers to import and connect")
    args = p.parse_args()
    import optuna

    from search.storage import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"overhead_{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=make_storage(args.storage))
    plain = span(without_storage, [(args.trials, args.seconds, time.time() + 3)] * args.workers)
    stored = span(with_storage, [(args.storage, name, args.trials, args.seconds, i, time.time() + args.startup)
                                 for i in range(args.workers)])
    n = len(optuna.load_study(study_name=name, storage=args.storage).trials)
    print(f"{args.workers} workers x {args.trials} trials of a {args.seconds} s objective: no storage {plain:.2f} s, "
          f"{args.storage.split('@')[-1]} {stored:.2f} s ({n} trials stored) -> overhead {stored / plain - 1:.1%}")


if __name__ == "__main__":
    main()
