"""`nas-run --minutes M`: the tail after the search priced from the trials' own speed, the rules that stop the
search in time for it, and a real worker that stops searching and cuts its running trial, but never a race run."""
from __future__ import annotations

import datetime as dt

import optuna
import pytest
import torch
from optuna.trial import TrialState

from helpers import FM_SLICE, in_process, stored_candidate, tiny_space, write_space
from search import clock as C
from search import cost
from search.cost import PhaseSizes
from search import race as R
from search import space as S
from search.record import trained
from search.study import open_study
from search.workers import RunContext, run_worker

N = PhaseSizes(search=900, val=300, race=900, race_val=300, retrain=1200)  # an epoch: 900 + 300/3 = 1,000 image-works


def _trial(number: int, value: float, spe: float, seconds: float = 30.0):
    t = optuna.trial.create_trial(value=value, user_attrs={"trained": True, "candidate": stored_candidate(n=number),
                                                          "seconds_per_epoch": spe})
    t.number, t.datetime_start = number, dt.datetime(2026, 1, 1)
    t.datetime_complete = t.datetime_start + dt.timedelta(seconds=seconds)
    return t


def _space(**search):
    return S.parse(tiny_space(search={"seed": 0, "epochs": 4, "race_top": 2, "race_seeds": 3, **search},
                              retrain={"epochs": 6, "seeds": 2}))


def test_the_tail_is_the_finalists_race_runs_and_the_slowest_retrained_on_the_slow_side():
    """Finalists 2.0 and 3.0 s/epoch (the 10 s/epoch trial ranks third: not raced). Race: 2 runs each of 4 epochs
    on as many images as the search, 2 x (8 + 12) = 40 s over 2 workers = 20 s. Retrain: the slowest finalist,
    6 epochs on 1,200 images, 3.0 x 6 x 1.2 = 21.6 s; its 2 seeds on 2 workers run side by side."""
    trials = [_trial(0, 0.9, 2.0), _trial(1, 0.8, 3.0), _trial(2, 0.5, 10.0)]
    space = _space()
    tail = cost.tail_seconds(R.finalists(trials, space.search), space, N, workers=2)
    assert tail == pytest.approx(cost.SLOW_SIDE * (20 + 21.6) + cost.OVERHEAD_SECONDS)
    # 4 workers: the race takes as long as its longest run (12 s); the retrain's 2 seeds still one seed's time
    assert cost.tail_seconds(R.finalists(trials, space.search), space, N, workers=4) == pytest.approx(
        cost.SLOW_SIDE * (12 + 21.6) + cost.OVERHEAD_SECONDS)
    # no race: the best search trial is the winner (2.0 s/epoch: 14.4 s a seed); on GPUs the seeds wait in waves
    no_race = _space(race_top=0)
    assert cost.tail_seconds(R.finalists(trials, no_race.search), no_race, N, workers=1, cpu=False) == pytest.approx(
        cost.SLOW_SIDE * 2 * 14.4 + cost.OVERHEAD_SECONDS)
    assert cost.tail_seconds([], space, N, workers=2) == cost.OVERHEAD_SECONDS  # nothing trained yet: nothing to price


def test_a_trial_starts_only_if_it_fits_before_the_tail_and_a_running_one_stops_at_it():
    trials = [_trial(0, 0.9, 2.0, seconds=30), _trial(1, 0.8, 3.0, seconds=50), _trial(2, 0.5, 10.0, seconds=40)]
    space = _space()
    clock = C.Clock(1000.0, space, N, workers=2)
    tail = cost.SLOW_SIDE * (20 + 21.6) + cost.OVERHEAD_SECONDS
    assert C.mean_trial_seconds(trials) == pytest.approx(40)
    assert clock.left(trials, now=800) == pytest.approx(200 - tail)  # 200 s to the deadline, less the tail
    start_by = 1000 - tail - 40  # a trial takes 40 s on average
    assert clock.may_start(trials, now=start_by - 1) and not clock.must_stop(trials, now=start_by - 1)
    assert not clock.may_start(trials, now=start_by + 1) and not clock.must_stop(trials, now=start_by + 1)
    assert clock.must_stop(trials, now=1000 - tail + 1)


class _RunsOutInTheThirdTrial(C.Clock):
    """Time runs out while the third search trial trains: it may start, and must stop after its first epoch."""

    def may_start(self, trials, now=None):
        return len([t for t in trials if t.user_attrs.get("trained") or t.state == TrialState.RUNNING]) < 3

    def must_stop(self, trials, now=None):
        return len(trained(trials)) >= 2


def test_out_of_time_the_worker_cuts_its_trial_and_starts_none_but_race_runs_train_in_full(tmp_path, fm_data):
    raw = tiny_space(search={"seed": 0, "epochs": 3, "pruner": "none", "race_top": 2, "race_seeds": 2},
                     budget={"params": 100_000})
    space = S.parse(raw)
    url = f"sqlite:///{tmp_path / 'clock.db'}"
    data = fm_data
    clock = _RunsOutInTheThirdTrial(0.0, space, N, workers=1)
    threads = torch.get_num_threads()  # run_worker sets it for the process: keep what later tests train with
    obj = run_worker(RunContext(space, url, 10, "cpu", threads=threads, clock=clock), data=data)
    study = open_study(space, url)
    done = trained(study.get_trials())
    assert obj.out_of_time and len(done) == 3 and len(study.get_trials()) == 3  # none asked for after the cut
    assert [t.user_attrs["end_reason"] for t in done] == ["completed", "completed", "out_of_time"]
    assert done[2].state == TrialState.PRUNED and sorted(done[2].intermediate_values) == [1]
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in done[:2])
    assert R.enqueue(study, space.search) == 2  # the two completed trials race; the clock still says stop
    run_worker(RunContext(space, url, 10, "cpu", threads=threads, clock=clock), data=data, race_phase=True)
    runs = [t for t in study.get_trials() if "race_of" in t.user_attrs]
    assert len(runs) == 2 and all(t.state == TrialState.COMPLETE and sorted(t.intermediate_values) == [1, 2, 3] for t in runs)


def test_minutes_too_short_for_any_trial_is_one_line_and_keeps_the_study(tmp_path):
    space = write_space(tmp_path / "tiny.yaml", tiny_space(data={"dataset": "fashion_mnist", "root": str(FM_SLICE)}))
    r = in_process("nas-run", space, "--trials", 5, "--minutes", 0.01, "--studies", tmp_path / "studies", "--workers", 1)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "--minutes 0.01: too short: no search trial completed" in r.stderr
    assert (tmp_path / "studies" / "tiny.db").exists()  # kept: the same command with more --minutes goes on
