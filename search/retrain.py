"""Retrain the winner at full fidelity on several seeds; the only place the test split is touched.

Every seed trains the same candidate for `retrain.epochs` on the training split (plus the validation
split with `train_on: train+val`) and is measured once on the test split. The model of the first seed is
the one exported: choosing the seed by its test accuracy would select on the test set.
"""
from __future__ import annotations

import statistics
import time

import torch

import models
from search import data as D
from search.train import evaluate, train


def retrain(trial, space, data: D.Data, base_seed: int, log=print):
    """Retrain a trained trial's candidate on retrain.seeds seeds -> (results dict, model of the first
    seed). `log` receives one line per seed."""
    cand, r = trial.user_attrs["candidate"], space.retrain
    train_split = data.train
    val = data.val
    if r["train_on"] == "train+val":
        train_split = D.Split(torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y]))
        val = None
    runs, first = [], None
    for i in range(r["seeds"]):
        seed = base_seed + i
        torch.manual_seed(seed)
        model = models.build(cand["family"], **cand["model"]).to(data.mean.device)
        t0 = time.perf_counter()
        hist = train(model, train_split, val, data.mean, data.std, cand["train"], r["epochs"])
        acc = evaluate(model, data.test, data.mean, data.std)
        runs.append({
            "seed": seed, "test_acc": acc, "end_reason": hist.end_reason, "seconds": round(time.perf_counter() - t0, 1),
            "final_train_loss": hist.train_loss[-1] if hist.train_loss else None,
            "val_acc": hist.val_acc[-1] if hist.val_acc else None,
        })
        log(f"retrain seed {seed}: test accuracy {acc:.4f} ({hist.end_reason}, {runs[-1]['seconds']:.0f} s)")
        if first is None:
            first = model
    accs = [run["test_acc"] for run in runs]
    results = {
        "trial": trial.number, "search_val_acc": trial.value,
        "epochs": r["epochs"], "train_on": r["train_on"], "runs": runs,
        "test_acc_mean": statistics.fmean(accs),
        "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
    }
    return results, first.eval()
