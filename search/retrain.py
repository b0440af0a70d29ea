"""Retrain the winner at full fidelity on several seeds; the only place the test split is touched.

Every seed trains the same candidate for `retrain.epochs` on the training split (plus the validation
split with `train_on: train+val`) and is measured once on the test split, in fp32 as the exported model runs.
With K workers the seeds run in parallel processes with the workers' thread count each: K on GPUs, one per
seed on CPU where the seeds do not fill whole waves, so no core idles in a last short wave
(search.workers.processes_for). Alone, a seed takes the time the budget's `train_seconds` estimate describes (it
was timed in a worker). The model of the first seed is the one exported: choosing the seed by its test accuracy
would select on the test set.
"""
from __future__ import annotations

import statistics
import time

import torch

from search import data as D
from search import metrics
from search import record as rec
from search.record import Candidate, RetrainResult, SeedRun
from search.train import predict, train


def one_seed(cand: Candidate, space, data: D.Data, seed: int) -> tuple[SeedRun, torch.nn.Module]:
    r = space.retrain
    train_split, val = data.train, data.val
    if r.train_on == "train+val":
        train_split = D.Split(torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y]))
        val = None
    torch.manual_seed(seed)
    model = cand.build().to(data.mean.device)
    started, t0 = time.time(), time.perf_counter()
    metric = space.search.metric
    hist = train(model, train_split, val, data.mean, data.std, cand.train, r.epochs, metric=metric)
    cm = metrics.confusion(predict(model, data.test, data.mean, data.std, fp32=True), data.test.y, data.meta.classes)
    run = SeedRun(seed, metrics.accuracy(cm), hist.end_reason.value, round(started, 2), round(time.perf_counter() - t0, 1),
                  [round(v, 5) for v in hist.train_loss], hist.val_acc[-1] if hist.val_acc else None,
                  metrics.balanced_accuracy(cm) if metric == "balanced_accuracy" else None)
    return run, model


def _seed_process(cand: Candidate, space, seed: int, device: str, threads: int, worker: int):
    from search.workers import pick_device

    torch.set_num_threads(threads)
    dev = pick_device(device, worker)
    run, model = one_seed(cand, space, D.load(space.data, dev, space.search.seed), seed)
    return run, {k: v.cpu() for k, v in model.state_dict().items()}


def retrain(trial, space, data: D.Data, base_seed: int, log=print, workers: int = 1, threads: int = 1,
            device: str = "cpu"):
    """Retrain a trained trial's candidate on retrain.seeds seeds -> (results, model of the first seed). `log`
    receives one line per seed."""
    cand, r = rec.read(trial).candidate, space.retrain
    seeds = [base_seed + i for i in range(r.seeds)]
    runs, first = [], None

    def done(run):
        runs.append(run)
        balanced = f", balanced accuracy {run.test_balanced_acc:.4f}" if run.test_balanced_acc is not None else ""
        log(f"retrain seed {run.seed}: test accuracy {run.test_acc:.4f}{balanced} ({run.end_reason}, {run.seconds:.0f} s)")

    if workers > 1 and len(seeds) > 1:
        from search.workers import process_context, processes_for

        with process_context().Pool(processes_for(len(seeds), workers, device)) as pool:
            jobs = [(cand, space, s, device, threads, i) for i, s in enumerate(seeds)]
            for i, (run, state) in enumerate(pool.starmap(_seed_process, jobs)):
                done(run)
                if i == 0:
                    first = cand.build()
                    first.load_state_dict(state)
    else:
        for seed in seeds:
            run, model = one_seed(cand, space, data, seed)
            done(run)
            if first is None:
                first = model
    accs = [run.test_acc for run in runs]
    results = RetrainResult(trial.number, trial.value, r.epochs, r.train_on, runs, statistics.fmean(accs),
                            statistics.stdev(accs) if len(accs) > 1 else 0.0, metric=space.search.metric)
    return results, first.eval()
