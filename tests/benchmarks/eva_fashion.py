"""An EVA-style ~8k-parameter convnet trained 15 epochs on the full Fashion-MNIST (train + val = 60k),
measured once on the 10k test split; prints parameters, test accuracy and wall-clock.

    python tests/benchmarks/eva_fashion.py [--epochs 15] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import time

import torch

import models
from search import data as D
from search.space import data_config
from search.measure import count_params
from search.record import Recipe
from search.space import TRAIN
from search.train import evaluate, train

NET = dict(widths=[12, 16, 16], depths=[2, 2, 1], transition="pool_1x1", squeeze=0.5, head="gap_fc", fc_width=16, dropout=0.05)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = D.load(data_config(dataset="fashion_mnist", root="/usr/share/datasets/fashion-mnist", val_fraction=0.1), "cpu", 0)
    full = D.Split(torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y]))
    r = {k: s.default for k, s in TRAIN.items()}
    r.update(batch_size=128, optimizer="sgd", lr=0.05, scheduler="onecycle", augment={"rotate": 10.0})
    torch.manual_seed(0)
    model = models.build("convnet", **NET)
    t0 = time.perf_counter()
    hist = train(model, full, None, data.mean, data.std, Recipe.from_json(r), args.epochs)
    seconds = time.perf_counter() - t0
    acc = evaluate(model, data.test, data.mean, data.std)
    print(f"{count_params(model):,} params, {args.epochs} epochs on {len(full):,} images: test accuracy {acc:.4f}, "
          f"{seconds:.0f} s wall-clock ({hist.images / sum(hist.epoch_seconds):.0f} images/s, {args.threads} threads)")


if __name__ == "__main__":
    main()
