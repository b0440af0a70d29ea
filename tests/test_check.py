"""`nas-run SPACE --check`: the budget table and the price of the whole run, before anything trains."""
from __future__ import annotations

import pytest

from conftest import nas_run, tiny_space, write_space
from search import check
from search import space as S


def test_expected_epochs_per_pruner():
    base = S.parse(tiny_space(retrain={"epochs": 15}, search={"min_epochs": 2, "reduction_factor": 3})).search
    sh = {**base, "pruner": "successive_halving"}
    # rungs at 2 and 6 of 15: everyone trains 2, 1 in 3 goes on to 6, 1 in 9 to 15
    assert check.expected_epochs(sh) == pytest.approx(2 + 4 / 3 + 9 / 9)
    hb = {**base, "pruner": "hyperband"}  # brackets starting at 2 and 6
    assert check.expected_epochs(hb) == pytest.approx((check.expected_epochs(sh) + (6 + 9 / 3)) / 2)
    assert check.expected_epochs({**base, "pruner": "none"}) == 15
    assert check.expected_epochs({**base, "pruner": "median"}) == pytest.approx(15 * check.MEDIAN_SHARE)


def test_first_trial_designs_are_priced_at_full_length():
    search = {"min_epochs": 2, "reduction_factor": 3, "race_top": 0}
    plain = S.parse(tiny_space(retrain={"epochs": 15}, search=search))
    with_design = S.parse(tiny_space(retrain={"epochs": 15}, search=search | {"first_trials": [{"train.lr": 0.01}]}))
    n = {"search": 2400, "val": 600, "retrain": 3000, "race": 2400, "race_val": 600}
    a, b = (check.run_cost(sp, 0.01, 64, n, trials=10, workers=1) for sp in (plain, with_design))
    per_trial = a["search"] / 10  # the pruner's expected epochs x seconds per epoch
    assert b["search"] == pytest.approx(a["search"] + (15 - a["epochs_per_trial"]) * a["per_epoch"])
    assert b["search"] > a["search"] + per_trial  # one design at 15 epochs costs more than a whole pruned trial


def test_check_prices_the_whole_run(tmp_path):
    space = write_space(tmp_path / "tiny.yaml", tiny_space(retrain={"epochs": 6, "seeds": 2},
                                                          search={"seed": 0, "race_top": 2, "race_seeds": 3}))
    r = nas_run(space, "--check", "--trials", 10, "--samples", 40, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert "whole run, --trials 10 on 1 worker(s)" in out
    assert "successive_halving pruner: ~2.0 of 6 epochs per trained trial" in out  # min_epochs 1: rungs 1, 3
    assert "race" in out and "(4 full-length runs)" in out and "(2 seeds)" in out
    assert "on 2,400 images" in out  # the slice's training split (3,000 - 20% val), read from the files
    assert not (tmp_path / "studies").exists()  # --check writes nothing


def test_race_is_priced_on_its_rounds_images():
    """A race round that validates on twice the search's images trains on that many fewer (the search's
    validation images join training): sizes() counts them as objective.py splits them, and the race costs less."""
    def space(**search):
        return S.parse(tiny_space(retrain={"epochs": 15}, search={"race_top": 2, "race_seeds": 2, **search}))
    same, wide = space(), space(race_val_fraction=0.4)  # tiny_space: data.val_fraction 0.2
    (n_same, _), (n_wide, _) = check.sizes(same), check.sizes(wide)
    assert (n_same["race"], n_same["race_val"]) == (n_same["search"], n_same["val"]) == (2400, 600)
    assert (n_wide["race"], n_wide["race_val"]) == (1800, 1200)
    a, b = check.run_cost(same, 0.01, 64, n_same, trials=10, workers=1), check.run_cost(wide, 0.01, 64, n_wide, trials=10, workers=1)
    assert b["race"] < a["race"] and b["search"] == a["search"]


def test_retrain_seeds_share_the_cores_on_cpu_and_wait_in_waves_on_gpus():
    """3 seeds on 2 CPU workers run as 3 processes at once: 1.5x one seed's time; on GPUs 2 waves of 2."""
    space = S.parse(tiny_space(retrain={"epochs": 15, "seeds": 3}))
    n = {"search": 2400, "val": 600, "retrain": 3000, "race": 2400, "race_val": 600}
    cpu, gpu, wide = (check.run_cost(space, 0.01, 64, n, trials=10, workers=w, cpu=c) for w, c in ((2, True), (2, False), (4, True)))
    assert cpu["retrain"] == pytest.approx(1.5 * cpu["retrain_one"])
    assert gpu["retrain"] == pytest.approx(2 * gpu["retrain_one"])
    assert wide["retrain"] == pytest.approx(wide["retrain_one"])  # more workers than seeds: one seed's time
