"""`nas-run SPACE --check`: the budget table and the price of the whole run, before anything trains."""
from __future__ import annotations

import dataclasses
import random

import optuna
import pytest

from helpers import in_process, tiny_space, write_space
from search import check, cost
from search.catalogue import DATASETS
from search import space as S
from search.workers import plan_workers


def test_expected_epochs_per_pruner():
    base = S.parse(tiny_space(retrain={"epochs": 15}, search={"min_epochs": 2, "reduction_factor": 3})).search
    sh = dataclasses.replace(base, pruner="successive_halving")
    steady = 2 + 4 / 3 + 9 / 9  # rungs at 2 and 6 of 15: everyone trains 2, 1 in 3 goes on to 6, 1 in 9 to 15
    assert cost.expected_epochs(sh, 1) == 15  # the first trial has no competitor at any rung
    assert cost.expected_epochs(sh, 2) == pytest.approx((15 + (2 + 15) / 2) / 2, abs=0.4)  # the 2nd: 50% best
    assert cost.expected_epochs(sh, 1000) == pytest.approx(steady, rel=0.02)
    assert cost.expected_epochs(sh, 38) > steady + 0.3  # a 40-trial study's early trials pass rungs on few rivals
    assert cost.expected_epochs(sh, 38) == cost.expected_epochs(sh, 38)  # seeded: the same figure every time
    hb = dataclasses.replace(base, pruner="hyperband")  # Optuna's 2 brackets, starting at 2 and at 6, get 3 and 2 shares
    assert cost.expected_epochs(hb, 1000) == pytest.approx((3 * steady + 2 * (6 + 9 / 3)) / 5, rel=0.02)
    assert cost.expected_epochs(dataclasses.replace(base, pruner="none"), 38) == 15
    assert cost.expected_epochs(dataclasses.replace(base, pruner="median"), 38) == pytest.approx(15 * cost.MEDIAN_SHARE)


def test_halving_replay_prunes_where_optuna_does():
    """The replay that prices successive halving against Optuna's own pruner: the same validation accuracies
    reported epoch by epoch, trial after trial, stop at the same epochs."""
    rng = random.Random(7)
    values = [rng.random() for _ in range(40)]
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.SuccessiveHalvingPruner(
        min_resource=2, reduction_factor=3))
    trained = []

    def objective(trial):
        value = values[trial.number]
        for epoch in range(1, 16):
            trial.report(value, epoch)
            if epoch < 15 and trial.should_prune():
                trained.append(epoch)
                raise optuna.TrialPruned()
        trained.append(15)
        return value

    study.optimize(objective, n_trials=len(values))
    assert trained == cost.halving_run(values, cost.rungs(2, 3, 15), 3)
    assert 2 in trained and 6 in trained and 15 in trained  # every rung decided something


def test_first_trial_designs_are_priced_at_full_length_and_their_own_speed():
    search = {"min_epochs": 2, "reduction_factor": 3, "race_top": 0}
    plain = S.parse(tiny_space(retrain={"epochs": 15}, search=search))
    with_design = S.parse(tiny_space(retrain={"epochs": 15}, search=search | {"first_trials": [{"train.lr": 0.01}]}))
    n = cost.PhaseSizes(search=2400, val=600, retrain=3000, race=2400, race_val=600)
    a, b = (cost.run_cost(sp, 0.01, 64, n, trials=10, workers=1) for sp in (plain, with_design))
    slow = cost.run_cost(with_design, 0.01, 64, n, trials=10, workers=1, designs=[(0.03, 64)])  # 3x the step time
    per_epoch = a.per_epoch
    assert a.search == pytest.approx(10 * cost.expected_epochs(plain.search, 10) * per_epoch)
    assert b.search == pytest.approx((15 + 9 * cost.expected_epochs(plain.search, 9)) * per_epoch)
    assert b.search > a.search + per_epoch  # one design at 15 epochs costs more than a pruned trial
    assert slow.search == pytest.approx(b.search + 2 * 15 * per_epoch)
    assert b.epochs_per_trial == pytest.approx(b.search / per_epoch / 10)


def test_design_models_are_the_first_trials_completed_as_the_run_completes_them():
    space = S.parse(tiny_space(search={"first_trials": [{"train.lr": 0.01}]}))
    [(cand, model)] = check.design_models(space, DATASETS["fashion_mnist"])
    assert cand.train.lr == 0.01 and cand.family == "convnet"
    assert sum(p.numel() for p in model.parameters()) > 0  # built: what --check times


def test_check_prices_the_whole_run(tmp_path):
    space = write_space(tmp_path / "tiny.yaml", tiny_space(retrain={"epochs": 6, "seeds": 2},
                                                          search={"seed": 0, "race_top": 2, "race_seeds": 3}))
    r = in_process("nas-run", space, "--check", "--trials", 10, "--samples", 40, "--minutes", 60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert f"whole run, --trials 10 on {plan_workers('auto', 'auto')[0]} worker(s)" in out  # --workers auto by default
    assert "--minutes 60: race and retrain ~" in out and "the search the rest: ~10 of the 10 trials" in out
    per_trial = cost.expected_epochs(S.load(space).search, 10)  # min_epochs 1: rungs 1, 3 of 6, replayed
    assert f"successive_halving pruner: ~{per_trial:.1f} of 6 epochs per trained trial" in out
    assert "race" in out and "(4 full-length runs)" in out and "(2 seeds)" in out
    assert "on 2,400 images" in out  # the slice's training split (3,000 - 20% val), read from the files
    assert not (tmp_path / "studies").exists()  # --check writes nothing


def test_check_called_from_python_with_its_default_device_prices_the_run():
    """check.run's device defaults to the CPU (a str "cpu" once reached price_tier and crashed on `.type`)."""
    from rich.console import Console

    console = Console(record=True, width=200)
    assert check.run(S.parse(tiny_space()), samples=20, console=console, trials=4) == 0
    assert "whole run, --trials 4 on 1 worker(s)" in " ".join(console.export_text().split())


def test_race_is_priced_on_its_rounds_images():
    """A race round that validates on twice the search's images trains on that many fewer (the search's
    validation images join training): data_at_hand() counts them as objective.py splits them, and the race costs
    less."""
    def space(**search):
        return S.parse(tiny_space(retrain={"epochs": 15}, search={"race_top": 2, "race_seeds": 2, **search}))
    same, wide = space(), space(race_val_fraction=0.4)  # tiny_space: data.val_fraction 0.2
    n_same, n_wide = check.data_at_hand(same).sizes, check.data_at_hand(wide).sizes
    assert (n_same.race, n_same.race_val) == (n_same.search, n_same.val) == (2400, 600)
    assert (n_wide.race, n_wide.race_val) == (1800, 1200)
    a, b = cost.run_cost(same, 0.01, 64, n_same, trials=10, workers=1), cost.run_cost(wide, 0.01, 64, n_wide, trials=10, workers=1)
    assert b.race < a.race and b.search == a.search


def test_cheap_first_rungs_are_priced_at_their_share_of_the_images():
    """first_rung_fraction 0.5, first rung at 2 epochs: each sampled trial's first 2 epochs cost 1 epoch; designs
    and a search without a pruner are not cheaper."""
    n = cost.PhaseSizes(search=2400, val=600, retrain=3000, race=2400, race_val=600)

    def price(**search):
        space = S.parse(tiny_space(retrain={"epochs": 15}, search={"min_epochs": 2, "race_top": 0, **search}))
        return cost.run_cost(space, 0.01, 64, n, trials=10, workers=2)

    full, cheap = price(), price(first_rung_fraction=0.5)
    assert full.search - cheap.search == pytest.approx(10 * 0.5 * 2 * full.per_epoch / 2)
    assert price(pruner="none", first_rung_fraction=0.5).search == price(pruner="none").search


def test_first_trial_designs_are_priced_as_finalists_too():
    """The designs race wherever they ranked (search.race_first_trials): at most race_top + designs finalists."""
    def space(**search):
        return S.parse(tiny_space(retrain={"epochs": 15}, search={"race_top": 2, "race_seeds": 3, **search,
                                                                  "first_trials": [{"train.lr": 0.01}, {"train.lr": 0.02}]}))
    n = cost.PhaseSizes(search=2400, val=600, retrain=3000, race=2400, race_val=600)
    runs = [cost.run_cost(sp, 0.01, 64, n, trials=10, workers=1).race_runs
            for sp in (space(), space(race_first_trials=False), space(race_top=0))]
    assert runs == [(2 + 2) * 2, 2 * 2, 0]


def test_retrain_seeds_share_the_cores_on_cpu_and_wait_in_waves_on_gpus():
    """3 seeds on 2 CPU workers run as 3 processes at once: 1.5x one seed's time; on GPUs 2 waves of 2."""
    space = S.parse(tiny_space(retrain={"epochs": 15, "seeds": 3}))
    n = cost.PhaseSizes(search=2400, val=600, retrain=3000, race=2400, race_val=600)
    cpu, gpu, wide = (cost.run_cost(space, 0.01, 64, n, trials=10, workers=w, cpu=c) for w, c in ((2, True), (2, False), (4, True)))
    assert cpu.retrain == pytest.approx(1.5 * cpu.retrain_one)
    assert gpu.retrain == pytest.approx(2 * gpu.retrain_one)
    assert wide.retrain == pytest.approx(wide.retrain_one)  # more workers than seeds: one seed's time
