"""The one training loop. Flat on purpose: every step is visible here.

Batches are `randperm` slices of uint8 tensors already on the device; augmentation and normalization run
batched there. Per-epoch validation accuracy (search.metric's) goes to `on_epoch(epoch, val_acc)`, which may return an end
reason to stop (the objective returns End.PRUNED or End.OUT_OF_TIME there). A NaN/inf loss ends training with
End.DIVERGED; a deadline ends it with End.TIME_SHARE as soon as the next epoch would overrun it. KeyboardInterrupt propagates.
No DataLoader, no PIL, no .item() per step: the loss is summed on the device and read every 32 steps.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from search import augment, metrics
from search.data import Split
from search.record import End, Recipe

CHECK_EVERY = 32  # steps between host reads of the running loss (NaN check, deadline check)


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)  # mean per epoch
    val_acc: list[float] = field(default_factory=list)  # search.metric per epoch (empty without a val split)
    epoch_seconds: list[float] = field(default_factory=list)
    end_reason: End = End.COMPLETED  # COMPLETED, DIVERGED, TIME_SHARE, or what on_epoch returned
    images: int = 0  # training images processed (for images/s)
    epoch_images: list[int] = field(default_factory=list)  # per epoch: fewer in the cheap epochs before a first rung
    cheap_epochs: int = 0  # how many of the first epochs trained on a share of the images
    images_per_full_epoch: int = 0

    def seconds_per_full_epoch(self) -> float | None:
        """Mean seconds of an epoch on all the training images (what the race and the retrain are priced from): the
        full epochs', else the cheap epochs' seconds per image times a full epoch's images."""
        full = self.epoch_seconds[self.cheap_epochs:]
        if full:
            return sum(full) / len(full)
        if not self.epoch_seconds:
            return None
        return sum(self.epoch_seconds) / sum(self.epoch_images[:len(self.epoch_seconds)]) * self.images_per_full_epoch


def make_optimizer(model: nn.Module, r: Recipe) -> torch.optim.Optimizer:
    """On GPUs the fused kernels: one launch updates every parameter (small nets are launch-bound there)."""
    params, lr, wd = list(model.parameters()), r.lr, r.weight_decay
    fused = bool(params) and params[0].is_cuda
    if r.optimizer == "sgd":
        nesterov = r.nesterov and r.momentum > 0
        return torch.optim.SGD(params, lr=lr, momentum=r.momentum, nesterov=nesterov, weight_decay=wd, fused=fused)
    if r.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=fused)
    if r.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=fused)
    raise ValueError(f"unknown optimizer {r.optimizer!r}")


def make_scheduler(opt, r: Recipe, epochs: int, steps_per_epoch: int, total_steps: int | None = None):
    """(scheduler or None, stepped per batch?). Shapes are relative to the run, so a recipe means the same
    at search fidelity (few epochs) and at retrain: step drops by gamma every step_fraction of the run,
    multistep at 50% and 75%, exponential decays to lr * gamma at the end. `total_steps`: the run's steps where
    its epochs differ in length (cheap first epochs)."""
    kind, total = r.scheduler, total_steps or epochs * steps_per_epoch
    S = torch.optim.lr_scheduler
    if kind == "onecycle":  # momentum stays what the recipe says (torch would cycle it 0.95 -> 0.85 -> 0.95)
        warmup = max(r.warmup_fraction, 1e-3)
        if abs(warmup * total - 1) < 1e-9:  # a warm-up of exactly one step divides by zero in torch: make it 1.5
            warmup = 1.5 / total
        return S.OneCycleLR(opt, max_lr=r.lr, total_steps=total, pct_start=warmup, cycle_momentum=False), True
    if kind == "cosine":
        return S.CosineAnnealingLR(opt, T_max=total), True
    if kind == "step":
        return S.StepLR(opt, step_size=max(1, round(r.step_fraction * epochs)), gamma=r.gamma), False
    if kind == "multistep":
        return S.MultiStepLR(opt, milestones=[max(1, round(epochs * f)) for f in (0.5, 0.75)], gamma=r.gamma), False
    if kind == "exponential":
        return S.ExponentialLR(opt, gamma=r.gamma ** (1 / epochs)), False
    if kind == "none":
        return None, False
    raise ValueError(f"unknown scheduler {kind!r}")


def bf16(device: torch.device) -> bool:
    """bf16 autocast on GPUs that support it (Ampere and later); fp32 everywhere else."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def channels_last(device: torch.device) -> bool:
    """NHWC activations on GPUs and on single-thread CPU workers, where oneDNN's NHWC kernels are faster; CPU
    processes with more threads keep NCHW, where NHWC was slower (RESULTS.md, "Layouts and the data path on CPU")."""
    return device.type == "cuda" or torch.get_num_threads() == 1


def class_weights(y: torch.Tensor, classes: int) -> torch.Tensor:
    """`class_weight: balanced`: n / (classes present x n_c) per class (scikit-learn's "balanced"), so every class
    weighs as much in the loss whatever its count; 0 for a class without training images."""
    counts = torch.bincount(y, minlength=classes).float()
    present = (counts > 0).sum()
    return torch.where(counts > 0, len(y) / (present * counts.clamp(min=1)), torch.zeros_like(counts))


def make_step(model: nn.Module, opt, r: Recipe, mean: torch.Tensor, std: torch.Tensor,
              weight: torch.Tensor | None = None):
    """One training step on a uint8 batch: augment, normalize, forward, backward, update -> loss tensor. `weight`:
    per-class loss weights (class_weight: balanced)."""
    nhwc = channels_last(mean.device)
    half = bf16(mean.device)
    if nhwc:
        model.to(memory_format=torch.channels_last)
    aug, smoothing = r.augment, r.label_smoothing
    mean, std = mean[None, :, None, None], std[None, :, None, None]

    def step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        x = augment.pixels(xb.float().div_(255), aug)
        x = augment.cutout((x - mean) / std, aug.cutout)
        if nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=half):
            loss = F.cross_entropy(model(x), yb, weight=weight, label_smoothing=smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


@torch.inference_mode()
def predict(model: nn.Module, split: Split, mean: torch.Tensor, std: torch.Tensor, batch: int = 1024,
            fp32: bool = True) -> torch.Tensor:
    """Predicted class of every image of `split`, on its device (model left in eval mode); fp32 as the exported
    model runs, or bf16 where training uses it when `fp32` is false."""
    model.eval()
    half = bf16(mean.device) and not fp32
    m, s = mean[None, :, None, None], std[None, :, None, None]
    preds = []
    for i in range(0, len(split), batch):
        x = (split.x[i : i + batch].float().div_(255) - m) / s
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=half):
            preds.append(model(x).argmax(1))
    return torch.cat(preds) if preds else split.y[:0]


def evaluate(model: nn.Module, split: Split, mean: torch.Tensor, std: torch.Tensor, batch: int = 1024,
             fp32: bool = False, metric: str = "accuracy") -> float:
    """`metric` (metrics.py) of the top-1 predictions on `split`; bf16 where training uses it unless `fp32` (the test
    split is measured in fp32, as the exported model runs)."""
    return metrics.score(predict(model, split, mean, std, batch, fp32), split.y, metric, model.config.num_classes)


def train(
    model: nn.Module,
    train_split: Split,
    val_split: Split | None,
    mean: torch.Tensor,
    std: torch.Tensor,
    recipe: Recipe,
    epochs: int,
    on_epoch: Callable[[int, float], End | None] | None = None,
    deadline: float | None = None,
    cheap_epochs: int = 0,
    cheap_fraction: float = 1.0,
    metric: str = "accuracy",
) -> History:
    """Train `model` in place. Seed torch before building the model; batches use the global RNG too. The first
    `cheap_epochs` epochs each train on `cheap_fraction` of the images (a fresh random share each epoch): a pruner's
    first rung then compares trials at that cheaper fidelity, and the survivors go on at full. Validation reports
    `metric` (search.metric) to `on_epoch`."""
    device = mean.device
    n, bs = len(train_split), recipe.batch_size
    bs = min(bs, n)
    steps = max(1, n // bs)  # drop the ragged last batch: a batch of 1 breaks BatchNorm
    cheap_epochs = min(cheap_epochs, epochs) if cheap_fraction < 1 else 0
    cheap_steps = max(1, round(cheap_fraction * n) // bs)
    opt = make_optimizer(model, recipe)
    sched, per_step = make_scheduler(opt, recipe, epochs, steps, cheap_epochs * cheap_steps + (epochs - cheap_epochs) * steps)
    weight = class_weights(train_split.y, model.config.num_classes) if recipe.class_weight == "balanced" else None
    step = make_step(model, opt, recipe, mean, std, weight)
    hist = History(cheap_epochs=cheap_epochs, images_per_full_epoch=steps * bs)
    for epoch in range(epochs):
        epoch_steps = cheap_steps if epoch < cheap_epochs else steps
        t0 = time.perf_counter()
        if deadline is not None and hist.epoch_seconds and time.monotonic() + hist.epoch_seconds[-1] > deadline:
            hist.end_reason = End.TIME_SHARE
            break
        model.train()
        perm = torch.randperm(n, device=device)
        loss_sum = torch.zeros((), device=device)
        for i in range(epoch_steps):
            idx = perm[i * bs : (i + 1) * bs]
            loss_sum += step(train_split.x[idx], train_split.y[idx])
            if sched is not None and per_step:
                sched.step()
            if (i + 1) % CHECK_EVERY == 0 or i + 1 == epoch_steps:
                if not math.isfinite(loss_sum.item()):
                    hist.end_reason = End.DIVERGED
                    break
                if deadline is not None and time.monotonic() > deadline:
                    hist.end_reason = End.TIME_SHARE
                    break
        hist.images += bs * (i + 1)
        hist.epoch_images.append(bs * (i + 1))
        if hist.end_reason != End.COMPLETED:
            break
        if sched is not None and not per_step:
            sched.step()
        hist.train_loss.append(loss_sum.item() / epoch_steps)
        if val_split is not None:
            hist.val_acc.append(evaluate(model, val_split, mean, std, metric=metric))
        hist.epoch_seconds.append(time.perf_counter() - t0)
        if on_epoch is not None and val_split is not None:
            reason = on_epoch(epoch, hist.val_acc[-1])
            if reason:
                hist.end_reason = reason
                break
    return hist
