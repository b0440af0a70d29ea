"""Budget accounting and rejection before training."""
from __future__ import annotations

import optuna
import pytest
import torch

import models
from helpers import tiny_space
from search import budget as B
from search import space as S
from search import objective as O
from search.catalogue import DATASETS
from search.measure import count_macs, count_params
from search.record import Candidate
from search.space import BudgetConfig


def test_violations_are_normalized_overshoots():
    cost = B.Cost(params=12_000, macs=500_000, train_seconds=30.0)
    assert B.violations(cost, BudgetConfig(8000, 1_000_000, 60, fill=False)) == {
        "params": 0.5, "macs": -0.5, "train_seconds": -0.5}
    assert B.violations(B.Cost(10, 10), BudgetConfig(None, None, 5, fill=False)) == {}  # unmeasured: no value


def test_time_is_measured_only_when_params_and_macs_fit():
    model = models.build("convnet", widths=[16, 32], depths=[2, 2])
    recipe = S.recipe(batch_size=32, optimizer="sgd", lr=0.1, weight_decay=0.0, augment={"rotate": 10.0})
    meta, cpu = DATASETS["fashion_mnist"], torch.device("cpu")
    cost, over = B.measure(model, recipe, BudgetConfig(100, None, 10, fill=False), meta, n_train=1000, n_eval=0,
                           epochs=1, device=cpu)
    assert cost.train_seconds is None and over["params"] > 0 and "train_seconds" not in over
    cost, over = B.measure(model, recipe, BudgetConfig(10**6, None, 1e6, fill=False), meta, n_train=1000, n_eval=0,
                           epochs=2, device=cpu)
    assert cost.train_seconds > 0 and over["train_seconds"] < 0
    sps = B.seconds_per_step(model, recipe, meta, "cpu")
    assert B.estimate_train_seconds(sps, 32, 3200, 0, 2) == pytest.approx(2 * B.estimate_train_seconds(sps, 32, 3200, 0, 1))


def test_a_rejected_candidate_runs_no_training_step(monkeypatch, fm_data):
    """Over budget: constraint set, reason recorded, PRUNED, and neither the trainer nor an optimizer step runs."""
    # a time budget too, so a timed step would run if the params check did not come first
    space = S.parse(tiny_space(budget={"params": 10, "train_seconds": 1000}, search={"epochs": 1, "seed": 0, "max_rejections": 5}))
    steps = []
    monkeypatch.setattr(O, "train", lambda *a, **k: steps.append("train"))
    monkeypatch.setattr(B, "make_step", lambda *a, **k: steps.append("timed step"))
    data = fm_data
    worker = O.Objective(space, data, data.mean.device, trials=1)
    study = optuna.create_study(direction="maximize")
    study.optimize(worker, n_trials=5)
    assert steps == []
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.PRUNED
        assert t.user_attrs["end_reason"] == "rejected:params"
        assert t.constraints["params"] == pytest.approx(t.user_attrs["params"] / 10 - 1)
        assert not t.intermediate_values
    assert worker.gave_up  # 5 in a row = search.max_rejections


def test_fill_scales_widths_to_just_under_the_limits():
    """The sampled widths set the shape; fill scales them so the model lands just under params (and MACs)."""
    meta = DATASETS["mnist"]
    cand = Candidate("convnet", {"in_channels": 1, "num_classes": 10, "image_size": 28, "widths": [4, 8, 16],
                                 "depths": [1, 2, 1], "head": "gap_fc", "fc_width": 8}, S.recipe(lr=0.1))
    for params_limit, macs_limit in ((8000, None), (50_000, None), (8000, 400_000)):
        budget = BudgetConfig(params_limit, macs_limit, None, fill=True)
        filled = B.fill(cand, budget, meta)
        model = filled.build()
        params, macs = count_params(model), count_macs(model, meta)
        assert params <= params_limit and macs <= (macs_limit or macs)
        bigger = filled.scaled(1.1).build()  # 10% wider breaks a limit
        assert count_params(bigger) > params_limit or count_macs(bigger, meta) > (macs_limit or 10**12)
        w = filled.widths
        assert w[0] <= w[1] <= w[2]  # the shape is kept
    too_small = B.fill(cand, BudgetConfig(20, None, None, fill=True), meta)  # even 1 channel per conv is over: returned as sampled
    assert too_small == cand


def test_fill_builds_and_traces_each_model_once_and_traces_only_where_macs_decide(monkeypatch):
    """Widths are whole channels, so late bisection steps round to a model already probed: fill builds each
    distinct model once. Where the params limit decides, one MACs trace (~15-50 ms) checks the answer; where MACs
    decide, only models within the params limit are traced. Either way the answer is the largest that fits."""
    meta = DATASETS["mnist"]
    cand = Candidate("convnet", {"in_channels": 1, "num_classes": 10, "image_size": 28, "widths": [4, 8, 16],
                                 "depths": [1, 2, 1], "head": "gap_fc", "fc_width": 8}, S.recipe(lr=0.1))
    built, traced = [], []
    real_build, real_macs = Candidate.build, B.M.count_macs
    monkeypatch.setattr(Candidate, "build", lambda self: built.append(
        (tuple(self.model["widths"]), self.model["fc_width"])) or real_build(self))
    monkeypatch.setattr(B.M, "count_macs", lambda model, meta: traced.append(count_params(model)) or real_macs(
        model, meta))
    for macs_limit, traces in ((10**9, 1), (400_000, None)):  # the params limit decides; MACs do
        built.clear(), traced.clear()
        filled = B.fill(cand, BudgetConfig(8000, macs_limit, None, fill=True), meta)
        assert len(built) == len(set(built)) and len(traced) == len(set(traced))
        assert all(params <= 8000 for params in traced)
        model, bigger = filled.build(), filled.scaled(1.1).build()
        assert count_params(model) <= 8000 and real_macs(model, meta) <= macs_limit
        assert count_params(bigger) > 8000 or real_macs(bigger, meta) > macs_limit
        if traces:
            assert len(traced) == traces
        else:
            assert real_macs(bigger, meta) > macs_limit and count_params(bigger) <= 8000
