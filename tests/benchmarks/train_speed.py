"""Benchmark: nas-run's training loop vs the loop the course reports wrote, side by side in one process.

Reference: torchvision FashionMNIST + per-sample RandomRotation / ToTensor / Normalize + DataLoader.
Ours: uint8 tensors on the device, randperm slices, batched rotation on the device (search.train).
Same model (EVA-style ~8k-param convnet), same batch size, epochs, optimizer and schedule, same train /
validation split. Prints images/s of each, the ratio, and the validation accuracy of each.

    python tests/benchmarks/train_speed.py [--epochs 2] [--workers 2] [--device cpu|cuda] [--threads 2]
"""
from __future__ import annotations

import argparse
import gzip
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import models
from search import data as D
from search.space import data_config
from search import space as S
from search.record import Recipe
from search.train import evaluate, make_optimizer, make_scheduler, train

FM = Path("/usr/share/datasets/fashion-mnist")
NET = dict(widths=[12, 16, 16], depths=[2, 2, 1], transition="pool_1x1", squeeze=0.5, head="gap_fc", fc_width=16, dropout=0.05)


def recipe(bs: int) -> Recipe:
    return S.recipe(batch_size=bs, optimizer="sgd", lr=0.05, scheduler="onecycle", augment={"rotate": 10.0})


def reference(data: D.Data, train_idx, epochs: int, bs: int, workers: int, device: torch.device):
    """The reports' loop: a Dataset of PIL images, per-sample transforms, a DataLoader."""
    import torchvision
    from torchvision import transforms as T

    with tempfile.TemporaryDirectory() as tmp:  # torchvision wants root/FashionMNIST/raw/
        raw = Path(tmp) / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for f in FM.glob("*.gz"):  # ... uncompressed
            (raw / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
        tf = T.Compose([T.RandomRotation(10), T.ToTensor(), T.Normalize((data.mean.item(),), (data.std.item(),))])
        ds = torchvision.datasets.FashionMNIST(tmp, train=True, transform=tf, download=False)
        ds = torch.utils.data.Subset(ds, train_idx.tolist())
        loader = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True, drop_last=True, num_workers=workers,
                                             pin_memory=device.type == "cuda", persistent_workers=workers > 0)
        torch.manual_seed(0)
        model = models.build("convnet", **NET).to(device)
        r = recipe(bs)
        opt = make_optimizer(model, r)
        sched, _ = make_scheduler(opt, r, epochs, len(loader))
        seconds, images = 0.0, 0
        for _ in range(epochs):
            model.train()
            t0 = time.perf_counter()
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                images += len(y)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - t0
        return images / seconds, evaluate(model, data.val, data.mean, data.std)


def ours(data: D.Data, epochs: int, bs: int):
    torch.manual_seed(0)
    model = models.build("convnet", **NET).to(data.mean.device)
    hist = train(model, data.train, None, data.mean, data.std, recipe(bs), epochs)
    return hist.images / sum(hist.epoch_seconds), evaluate(model, data.val, data.mean, data.std)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference loop")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = D.load(data_config(dataset="fashion_mnist", root=str(FM), val_fraction=0.1), device, seed=0)
    train_idx, _ = D.stratified_split(D._cached_raw("fashion_mnist", FM, False)["train_y"], 0.1, 0)
    print(f"Fashion-MNIST {len(data.train)} train / {len(data.val)} val, {args.epochs} epochs, batch {args.batch_size}, "
          f"{device}, {args.threads} threads, model {NET}")
    ref_ips, ref_acc = reference(data, train_idx, args.epochs, args.batch_size, args.workers, device)
    print(f"reference (DataLoader, {args.workers} workers, per-sample PIL transforms): {ref_ips:8.0f} images/s, val acc {ref_acc:.4f}")
    our_ips, our_acc = ours(data, args.epochs, args.batch_size)
    print(f"nas-run (device tensors, batched augmentation):                 {our_ips:8.0f} images/s, val acc {our_acc:.4f}")
    print(f"speed-up: {our_ips / ref_ips:.2f}x")


if __name__ == "__main__":
    main()
