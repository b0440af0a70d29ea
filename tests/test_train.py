"""The training loop on real images: learns, every scheduler runs, divergence and deadlines end it."""
from __future__ import annotations

import time

import pytest
import torch

import models
from search import space as S
from search.record import End
from search.space import SCHEDULERS
from search.train import evaluate, train


@pytest.fixture
def data(fm_data):
    return fm_data


def recipe(**over):
    return S.recipe(**{"lr": 0.05, "batch_size": 64, **over})


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
def test_every_scheduler_trains_above_chance(data, scheduler):
    small = data.train.subset(torch.arange(640))
    hist = train(small_net(), small, data.val, data.mean, data.std, recipe(scheduler=scheduler), 2)
    assert hist.end_reason == End.COMPLETED and hist.val_acc[-1] > 0.3  # chance is 0.10


def _lrs(scheduler: str, epochs: int = 4, steps: int = 10) -> list[list[float]]:
    """The lr at every step of every epoch as make_scheduler drives it (peak lr 0.1, gamma 0.1)."""
    from search.train import make_optimizer, make_scheduler

    r = recipe(scheduler=scheduler, lr=0.1, gamma=0.1)
    opt = make_optimizer(small_net(), r)
    sched, per_step = make_scheduler(opt, r, epochs, steps)
    out = []
    for _ in range(epochs):
        out.append([])
        for _ in range(steps):
            out[-1].append(opt.param_groups[0]["lr"])
            opt.step()
            if sched is not None and per_step:
                sched.step()
        if sched is not None and not per_step:
            sched.step()
    return out


def test_every_scheduler_shapes_the_lr_as_the_readme_says():
    """Shapes relative to the run (4 epochs here): onecycle warms up over 25% then anneals, cosine anneals to ~0,
    step drops by gamma every step_fraction (1/3 of 4 epochs: every epoch), multistep at 50% and 75%, exponential
    reaches lr * gamma at the end, none holds."""
    flat = {s: [lr for epoch in _lrs(s) for lr in epoch] for s in SCHEDULERS}
    assert flat["none"] == [0.1] * 40
    one = flat["onecycle"]
    assert one[0] < 0.01 and max(one) == pytest.approx(0.1, rel=0.05) and one.index(max(one)) in (9, 10) and one[-1] < 0.001
    cos = flat["cosine"]
    assert cos[0] == pytest.approx(0.1) and all(a >= b for a, b in zip(cos, cos[1:])) and cos[-1] < 0.001
    per_epoch = {s: [epoch[0] for epoch in _lrs(s)] for s in ("step", "multistep", "exponential")}
    assert per_epoch["step"] == pytest.approx([0.1, 0.01, 0.001, 0.0001])
    assert per_epoch["multistep"] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert per_epoch["exponential"] == pytest.approx([0.1 * 0.1 ** (e / 4) for e in range(4)])


def _weights_after(data, **over) -> torch.Tensor:
    """The net's weights after one epoch on 256 images with the default recipe changed by `over`, from the same
    initial weights and the same batch order."""
    net = small_net()  # seeds torch: the same init and batches every time
    train(net, data.train.subset(torch.arange(256)), None, data.mean, data.std, recipe(**over), 1)
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_every_optimizer_and_augmentation_setting_changes_what_is_learned(data):
    """Each setting reaches the training step: trained from the same weights on the same batches, a net whose recipe
    differs in one setting ends with other weights, and one with the same recipe with the same ones."""
    base = _weights_after(data)
    assert torch.equal(base, _weights_after(data))  # deterministic: any difference below is the setting's
    changes = [{"optimizer": "adam", "lr": 0.003}, {"optimizer": "adamw", "lr": 0.003}, {"momentum": 0.5},
               {"nesterov": False}, {"weight_decay": 0.05}, {"label_smoothing": 0.1}, {"batch_size": 32},
               *({"augment": {key: value}} for key, value in (("crop", 2), ("flip", True), ("rotate", 10.0),
                                                              ("scale", 0.1), ("brightness", 0.1), ("contrast", 0.1),
                                                              ("cutout", 6)))]
    same = [str(change) for change in changes if torch.equal(_weights_after(data, **change), base)]
    assert same == []
    adam, adamw = _weights_after(data, optimizer="adam", lr=0.003), _weights_after(data, optimizer="adamw", lr=0.003)
    assert not torch.equal(adam, adamw)  # L2 vs decoupled weight decay


def test_cheap_first_epochs_train_on_a_share_of_the_images_and_the_rest_on_all(data):
    """A first rung at lower fidelity: the first 2 epochs on a quarter of the 640 images (5 batches of 32), the
    other 2 on all (20 batches); the lr schedule spans the run's 50 steps; an epoch is priced at full size."""
    small = data.train.subset(torch.arange(640))
    hist = train(small_net(), small, data.val, data.mean, data.std, recipe(batch_size=32), 4, cheap_epochs=2,
                 cheap_fraction=0.25)
    assert hist.end_reason == End.COMPLETED and hist.epoch_images == [160, 160, 640, 640] and hist.images == 1600
    assert hist.seconds_per_full_epoch() == pytest.approx(sum(hist.epoch_seconds[2:]) / 2)
    cut = train(small_net(), small, data.val, data.mean, data.std, recipe(batch_size=32), 4, cheap_epochs=2,
                cheap_fraction=0.25, on_epoch=lambda e, acc: End.PRUNED if e == 1 else None)  # stopped at the rung
    assert cut.epoch_images == [160, 160]
    assert cut.seconds_per_full_epoch() == pytest.approx(sum(cut.epoch_seconds) / 320 * 640)  # scaled to 640 images
    from search.train import make_optimizer, make_scheduler

    r = recipe(scheduler="onecycle", lr=0.1)
    opt = make_optimizer(small_net(), r)
    sched, _ = make_scheduler(opt, r, 4, 20, total_steps=50)
    assert sched.total_steps == 50


def test_a_diverging_lr_ends_with_diverged(data):
    model = models.build("convnet", widths=[8, 16], depths=[1, 1], bn=False)
    hist = train(model, data.train, data.val, data.mean, data.std,
                 recipe(optimizer="sgd", lr=1e6, scheduler="none", momentum=0.9), 3)
    assert hist.end_reason == "diverged" and not hist.val_acc


def test_on_epoch_can_stop_training(data):
    hist = train(small_net(), data.train.subset(torch.arange(640)), data.val, data.mean, data.std, recipe(), 5,
                 on_epoch=lambda e, acc: End.PRUNED if e == 1 else None)
    assert hist.end_reason == End.PRUNED and len(hist.val_acc) == 2


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


def test_with_balanced_accuracy_each_epoch_reports_the_mean_per_class_recall_counted_by_hand(data):
    """On an imbalanced validation split (one class at a tenth) the value the pruner and the race see is the mean of
    the per-class recalls, not the share of images right."""
    from search.data import Split
    from search.train import predict

    y = data.val.y
    keep = torch.cat([(y == c).nonzero().squeeze(1)[: 6 if c == 3 else 60] for c in range(10)])
    val = Split(data.val.x[keep], y[keep])
    model = small_net()
    seen = []
    train(model, data.train, val, data.mean, data.std, recipe(batch_size=32), 1, metric="balanced_accuracy",
          on_epoch=lambda e, value: seen.append(value))
    pred, truth = predict(model, val, data.mean, data.std, fp32=False).tolist(), val.y.tolist()
    recalls = [sum(p == c for p, t in zip(pred, truth) if t == c) / truth.count(c) for c in range(10)]
    assert seen == [pytest.approx(sum(recalls) / 10)]
    assert seen[0] != pytest.approx(sum(p == t for p, t in zip(pred, truth)) / len(truth))


def test_balanced_class_weights_weigh_every_class_alike_and_lift_a_small_classes_recall(data):
    from search.data import Split
    from search.train import class_weights, predict

    y = torch.tensor([0] * 8 + [1] * 2 + [3] * 2)  # class 2 has no images
    assert class_weights(y, 4).tolist() == pytest.approx([12 / (3 * 8), 12 / (3 * 2), 0.0, 12 / (3 * 2)])
    small = 3  # the training split with class 3 cut to a twentieth
    keep = torch.cat([(data.train.y == c).nonzero().squeeze(1)[: 12 if c == small else None] for c in range(10)])
    train_split = Split(data.train.x[keep], data.train.y[keep])
    recall = {}
    for weighting in ("none", "balanced"):
        model = small_net()
        train(model, train_split, None, data.mean, data.std, recipe(batch_size=32, class_weight=weighting), 2)
        pred = predict(model, data.val, data.mean, data.std)
        recall[weighting] = (pred[data.val.y == small] == small).float().mean().item()
    assert recall["balanced"] > recall["none"] + 0.15, recall  # measured: 0.03 -> 0.58
