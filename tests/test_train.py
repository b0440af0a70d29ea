"""The training loop on real images: learns, every scheduler runs, divergence and deadlines end it."""
from __future__ import annotations

import time

import pytest
import torch

import models
from conftest import FM_SLICE
from search import data as D
from search.space import data_config
from search.space import TRAIN
from search.space import SCHEDULERS
from search.train import evaluate, train


@pytest.fixture(scope="module")
def data():
    return D.load(data_config(dataset="fashion_mnist", root=str(FM_SLICE), val_fraction=0.2), "cpu", 0)


def recipe(**over) -> dict:
    r = {k: spec.default for k, spec in TRAIN.items()}
    r.update(lr=0.05, batch_size=64, augment={})
    r.update(over)
    return r


def small_net():
    torch.manual_seed(0)
    return models.build("convnet", widths=[8, 16], depths=[1, 1], head="flatten_fc")


def test_a_small_convnet_learns_well_above_chance(data):
    model = small_net()
    seen = []
    hist = train(model, data.train, data.val, data.mean, data.std, recipe(batch_size=32), 2,
                 on_epoch=lambda e, acc: seen.append((e, acc)))
    assert hist.end_reason == "completed" and len(hist.val_acc) == 2 == len(hist.epoch_seconds)
    assert seen == list(enumerate(hist.val_acc))
    assert hist.val_acc[-1] > 0.7  # chance is 0.10
    assert evaluate(model, data.test, data.mean, data.std) > 0.7
    assert hist.images == 2 * (2400 // 32) * 32


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_scheduler_runs(data, scheduler):
    small = data.train.subset(torch.arange(640))
    hist = train(small_net(), small, data.val, data.mean, data.std, recipe(scheduler=scheduler), 2)
    assert hist.end_reason == "completed" and all(0 <= a <= 1 for a in hist.val_acc)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_every_optimizer_runs_with_augmentation(data, optimizer):
    small = data.train.subset(torch.arange(640))
    aug = {"crop": 2, "flip": True, "rotate": 10.0, "scale": 0.1, "brightness": 0.1, "contrast": 0.1, "cutout": 6}
    hist = train(small_net(), small, data.val, data.mean, data.std,
                 recipe(optimizer=optimizer, lr=0.003, label_smoothing=0.1, augment=aug), 1)
    assert hist.end_reason == "completed"


def test_a_diverging_lr_ends_with_diverged(data):
    model = models.build("convnet", widths=[8, 16], depths=[1, 1], bn=False)
    hist = train(model, data.train, data.val, data.mean, data.std,
                 recipe(optimizer="sgd", lr=1e6, scheduler="none", momentum=0.9), 3)
    assert hist.end_reason == "diverged" and not hist.val_acc


def test_on_epoch_can_stop_training(data):
    hist = train(small_net(), data.train.subset(torch.arange(640)), data.val, data.mean, data.std, recipe(), 5,
                 on_epoch=lambda e, acc: "pruned:median" if e == 1 else None)
    assert hist.end_reason == "pruned:median" and len(hist.val_acc) == 2


def test_a_deadline_stops_training_with_time(data):
    hist = train(small_net(), data.train, data.val, data.mean, data.std, recipe(), 50, deadline=time.monotonic() + 0.5)
    assert hist.end_reason == "time" and len(hist.val_acc) < 50


def test_onecycle_keeps_the_recipes_momentum(data):
    """torch's OneCycleLR cycles momentum 0.95 -> 0.85 by default; nas-run's recipe says momentum, so it holds."""
    from search.train import make_optimizer, make_scheduler

    model = small_net()
    r = recipe(scheduler="onecycle", momentum=0.8)
    opt = make_optimizer(model, r)
    sched, per_step = make_scheduler(opt, r, epochs=2, steps_per_epoch=10)
    seen = set()
    for _ in range(20):
        opt.step()
        sched.step()
        seen.add(opt.param_groups[0]["momentum"])
    assert per_step and seen == {0.8}


def test_onecycle_runs_when_the_warm_up_is_exactly_one_step(data):
    """4 steps with a 25% warm-up (a small split, one epoch): torch's OneCycleLR divides by zero on a one-step
    phase; the schedule still warms up from the start lr to near the peak, then anneals."""
    from search.train import make_optimizer, make_scheduler

    r = recipe(scheduler="onecycle", warmup_fraction=0.25, lr=0.1)
    opt = make_optimizer(small_net(), r)
    sched, _ = make_scheduler(opt, r, epochs=1, steps_per_epoch=4)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(3):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] < 0.01 and lrs[1] > 0.05 and lrs[1] > lrs[2] > lrs[3]
