"""The budget ladder (one study, a winner per tier) and the deployment figures (latency, peak memory, int8)."""
from __future__ import annotations

import json
import random

import optuna
import pytest
import torch
from torch import nn

import models
from helpers import in_process, tiny_space, write_space
from search import budget as B
from search import deploy, measure
from search import record as rec
from search import study as ST
from search.catalogue import Meta
from search.space import BudgetConfig, parse
from search.space import recipe as recipe_of

TIERS = [1500, 3000, 6000]


@pytest.fixture(scope="module")
def ladder_run(tmp_path_factory):
    """`nas-run` on a 3-tier ladder over the Fashion-MNIST slice: 6 trials in all, 1 epoch each, a race and a
    2-seed retrain per tier."""
    tmp = tmp_path_factory.mktemp("ladder")
    raw = tiny_space(budget={"params": TIERS, "fill": True})
    raw["name"] = "ladder"
    space = write_space(tmp / "ladder.yaml", raw)
    result = in_process("nas-run", space, "--trials", 6, "--workers", 1, "--format", "onnx", "--studies", tmp / "studies")
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="ladder", storage=f"sqlite:///{tmp}/studies/ladder.db")
    return tmp, result, study


def test_every_tier_gets_a_winner_under_its_limit_exported_in_its_own_folder(ladder_run):
    tmp, result, study = ladder_run
    searched = [t for t in study.trials if rec.is_trained(t) and not rec.is_race(t)]
    assert len(searched) == 6
    assert sorted(rec.read(t).tier for t in searched) == sorted(f"params_{p}" for p in TIERS for _ in range(2))
    for limit in TIERS:
        tier = f"params_{limit}"
        r = study.user_attrs[f"retrain:{tier}"]
        winner = study.trials[r["trial"]]
        assert rec.read(winner).tier == tier and not rec.is_race(winner)
        assert rec.read(winner).params <= limit
        folder = tmp / "studies" / "ladder" / "best" / tier
        card = json.loads((folder / "model_card.json").read_text())
        assert card["params"] == rec.read(winner).params <= limit
        assert {"checkpoint.pt", "model.onnx", "model.int8.onnx", "MODEL_CARD.md"} <= {p.name for p in folder.iterdir()}
        # the race ran within the tier: its finalists are the tier's trials
        assert all(rec.read(study.trials[row["trial"]]).tier == tier for row in study.user_attrs[f"race:{tier}"])
        assert f"tier {tier}" in result.stdout
    assert "retrain" not in study.user_attrs  # a ladder has no single winner
    html = (tmp / "studies" / "ladder" / "report.html").read_text()
    assert "The budget ladder" in html and all(f"params_{p}" in html for p in TIERS)


def test_the_int8_model_runs_in_onnxruntime_and_its_accuracy_is_reported(ladder_run, fm_data):
    tmp, _, _ = ladder_run
    folder = tmp / "studies" / "ladder" / "best" / f"params_{TIERS[-1]}"
    card = json.loads((folder / "model_card.json").read_text())
    q = card["deployment"]["int8"]
    test = fm_data.test
    assert q["test_acc"] == round(deploy.onnx_accuracy(folder / "model.int8.onnx", test.x, test.y), 4)
    assert q["fp32_test_acc"] == round(deploy.onnx_accuracy(folder / "model.onnx", test.x, test.y), 4)
    assert 0.1 < q["test_acc"] <= 1  # it learned something, and int8 kept it
    assert q["bytes"] == (folder / "model.int8.onnx").stat().st_size
    assert card["deployment"]["latency_ms"]["batch_1"]["ms"] > 0
    assert "int8" in (folder / "MODEL_CARD.md").read_text()
    ckpt = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert json.loads(ckpt["deployment"]) == card["deployment"]


def test_a_single_budget_study_is_unchanged(finished):
    """No tier anywhere: the plain pruner, the study's own retrain key, best/ holds the model itself."""
    tmp, space, _, study = finished
    assert not any("tier" in t.user_attrs for t in study.trials)
    assert "retrain" in study.user_attrs and not any(k.startswith("retrain:") for k in study.user_attrs)
    assert (tmp / "studies" / "tiny" / "best" / "checkpoint.pt").exists()
    s = parse(tiny_space(), "tiny.yaml")
    assert type(ST.make_pruner(s.search, bool(s.budget.tiers()))) is optuna.pruners.SuccessiveHalvingPruner


@pytest.mark.parametrize("kind", ["successive_halving", "median"])
def test_the_tiered_pruner_decides_as_a_replay_of_each_tier_alone(kind):
    """Trials of three tiers interleaved in one study prune exactly as the same trials, tier by tier, in a study
    of their own with Optuna's pruner."""
    space = parse(tiny_space(search={"epochs": 9, "pruner": kind, "min_epochs": 1, "reduction_factor": 3,
                                     "startup_trials": 2, "warmup_epochs": 0}), "tiny.yaml")
    rng = random.Random(0)
    tiers = ["a", "b", "c"]
    runs = [(t, [v + 0.3 * tiers.index(t) for v in curve]) for t, curve in
            ((rng.choice(tiers), [rng.random() for _ in range(9)]) for _ in range(36))]

    def play(study, trials, tiered: bool) -> list:
        decisions = []
        for tier, curve in trials:
            trial = study.ask()
            if tiered:
                trial.set_user_attr("tier", tier)
            for step, value in enumerate(curve, 1):
                trial.report(value, step)
                if trial.should_prune():
                    decisions.append(step)
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break
            else:
                decisions.append(len(curve))
                study.tell(trial, curve[-1])
        return decisions

    one = optuna.create_study(direction="maximize", pruner=ST.make_pruner(space.search, ladder=True))
    together = play(one, runs, tiered=True)
    for tier in tiers:
        alone = optuna.create_study(direction="maximize", pruner=ST.make_pruner(space.search))
        mine = [r for r in runs if r[0] == tier]
        assert play(alone, mine, tiered=False) == [d for d, r in zip(together, runs) if r[0] == tier]
    assert min(together) < 9, "the replay pruned nothing: it would show nothing"
    # and the tiers matter: one pruner over all of them decides otherwise
    mixed = optuna.create_study(direction="maximize", pruner=ST.make_pruner(space.search))
    assert play(mixed, runs, tiered=False) != together


def test_a_ladder_study_samples_all_tiers_through_one_sampler_as_a_single_budget_does(tmp_path):
    from search.storage import make_storage

    ladder = parse(tiny_space(budget={"params": TIERS, "fill": True}), "tiny.yaml")
    single = parse(tiny_space(name="one"), "tiny.yaml")
    url = f"sqlite:///{tmp_path}/s.db"
    assert isinstance(ST.open_study(ladder, make_storage(url)).sampler, ST.SeededTPESampler)
    assert isinstance(ST.open_study(single, make_storage(url)).sampler, ST.SeededTPESampler)


def test_peak_memory_of_a_small_sequential_net_equals_a_hand_count():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 10))
    # input 1x8x8 = 64; conv1 out 4x8x8 = 256 (input still live: 320); BN, ReLU in place; pool out 4x4x4 = 64
    # (+256 live: 320); conv2 out 8x4x4 = 128 (+64: 192); GAP 8; flatten a view; linear 10
    assert measure.peak_memory(net, Meta(1, 8, 8, tuple("abcdefghij"))) == {"fp32": 320 * 4, "int8": 320}


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.relu = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()

    def forward(self, x):
        a = self.relu(self.a(x))
        return self.relu(self.b(a) + a)


def test_peak_memory_keeps_a_residual_branch_alive():
    # input 64; a's output 256 (+64: 320); b writes 256 while a's output waits for the add: 512; add, ReLU in place
    assert measure.peak_activation_elements(_Residual(), Meta(1, 8, 8, tuple("abcdefghij"))) == 512


def test_latency_and_peak_memory_budgets_reject_nets_measured_over_them(torch_threads):
    torch_threads(1)
    meta = Meta(1, 28, 28, tuple("abcdefghij"))
    small = models.build("convnet", in_channels=1, num_classes=10, image_size=28, widths=(4, 8), depths=(1, 1))
    large = models.build("convnet", in_channels=1, num_classes=10, image_size=28, widths=(64, 128), depths=(2, 2),
                         pools=(False, False))
    recipe, cpu = recipe_of(lr=0.1, batch_size=32), torch.device("cpu")
    unbounded = BudgetConfig(None, None, None, False, latency_ms=1e9)
    small_cost = B.measure(small, recipe, unbounded, meta, n_train=100, n_eval=0, epochs=1, device=cpu)[0]
    t_small = small_cost.latency_ms
    t_large = B.measure(large, recipe, unbounded, meta, n_train=100, n_eval=0, epochs=1, device=cpu)[0].latency_ms
    assert t_large > 5 * t_small  # ~60x the MACs
    limit = (t_small * t_large) ** 0.5
    budget = BudgetConfig(None, None, None, False, latency_ms=limit)
    cost, over = B.measure(large, recipe, budget, meta, n_train=100, n_eval=0, epochs=1, device=cpu)  # again, over it
    assert over["latency_ms"] > 0 and cost.latency_ms > limit
    assert B.violations(small_cost, budget)["latency_ms"] <= 0
    kb = measure.peak_memory(small, meta)["fp32"] / 1000
    budget = BudgetConfig(None, None, None, False, latency_ms=None, peak_memory_kb=kb * 1.01)
    assert B.measure(small, recipe, budget, meta, n_train=100, n_eval=0, epochs=1, device=cpu)[1]["peak_memory_kb"] <= 0
    assert B.measure(large, recipe, budget, meta, n_train=100, n_eval=0, epochs=1, device=cpu)[1]["peak_memory_kb"] > 0


def test_a_ladder_tier_fills_candidates_to_its_own_limit():
    space = parse(tiny_space(budget={"params": TIERS, "fill": True}), "tiny.yaml")
    meta = Meta(1, 28, 28, tuple("abcdefghij"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for tier, limit in zip(space.budget.tiers(), TIERS):
        study.enqueue_trial({"model.head": "gap"})
        cand, model = B.candidate_model(space, study.ask(), meta, tier)
        assert cand.tier == tier
        assert 0.6 * limit < measure.count_params(model) <= limit


def test_check_prices_every_tier_of_a_ladder(torch_threads):
    from rich.console import Console

    from search import check

    torch_threads(1)
    space = parse(tiny_space(budget={"params": TIERS, "fill": True}), "tiny.yaml")
    console = Console(record=True, width=200)
    assert check.run(space, samples=30, console=console, trials=9, device=torch.device("cpu")) == 0
    out = console.export_text()
    assert all(f"tiny.yaml (tier params_{p}): 30 random candidates" in out for p in TIERS)
    assert "--trials 9 in 3 tiers (a race and a retrain each)" in out
