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
from search import record as rec
from search import space as S
from search.record import trained
from search.study import open_study
from search.workers import RunContext, run_worker

N = PhaseSizes(search=900, val=300, race=900, race_val=300, retrain=1200)  # an epoch: 900 + 300/3 = 1,000 image-works


def _trial(number: int, value: float, spe: float, seconds: float = 30.0, **attrs):
    t = optuna.trial.create_trial(value=value, user_attrs={"trained": True, "candidate": stored_candidate(n=number),
                                                          "seconds_per_epoch": spe, **attrs})
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


def test_with_no_race_rounds_the_retrain_is_priced_on_the_winner_the_search_values_pick():
    """No race rounds (the clock's plan race_seeds 1): no race run, and the winner is known when the search stops,
    so its retrain is priced, not the slowest finalist's: the best trial (2.0 s/epoch, 14.4 s a seed); with a design
    (4.0 s/epoch) the best beats by no more than race_margin, the design (28.8 s a seed)."""
    trials = [_trial(0, 0.9, 2.0), _trial(1, 0.8, 3.0), _trial(2, 0.5, 10.0)]
    space = _space(race_margin=0.01)
    rounds_none = C.sized(space, rec.TailPlan(1, 1, 2))
    clock = C.Clock(1000.0, space, N, workers=2)
    assert clock._price(trials, rounds_none) == pytest.approx(cost.SLOW_SIDE * 14.4 + cost.OVERHEAD_SECONDS)
    design = _trial(3, 0.895, 4.0, first_trial=0)
    assert R.winner(trials + [design], rounds_none.search).number == 3  # kept: 0.9 is not 0.01 ahead
    assert clock._price(trials + [design], rounds_none) == pytest.approx(cost.SLOW_SIDE * 28.8 + cost.OVERHEAD_SECONDS)
    assert clock._price(trials + [_trial(3, 0.85, 4.0, first_trial=0)], rounds_none) == pytest.approx(
        cost.SLOW_SIDE * 14.4 + cost.OVERHEAD_SECONDS)  # beaten by 5 pt: the sampled trial is retrained
    # with race rounds the winner is not known yet: the slowest finalist (the design, 4.0) is priced
    one_round = C.sized(space, rec.TailPlan(1, 2, 2))
    assert clock._price(trials + [design], one_round) > cost.SLOW_SIDE * 28.8 + cost.OVERHEAD_SECONDS


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


def test_the_tail_shrinks_step_by_step_retrain_seeds_then_finalists_then_rounds():
    space = S.parse(tiny_space(search={"seed": 0, "epochs": 4, "race_top": 3, "race_seeds": 3},
                               retrain={"epochs": 6, "seeds": 3}))
    assert [(p.race_top, p.race_seeds, p.retrain_seeds) for p in C.smaller_plans(space)] == [
        (3, 3, 3), (3, 3, 2), (2, 3, 2), (1, 3, 2), (1, 2, 2), (1, 1, 2), (1, 1, 1)]
    assert [(p.race_top, p.race_seeds, p.retrain_seeds) for p in C.smaller_plans(_space(race_top=0))] == [
        (0, 3, 2), (0, 3, 1)]  # no race: only the retrain shrinks
    small = C.sized(space, C.smaller_plans(space)[-1])
    assert (small.search.race_top, small.search.race_seeds, small.retrain.seeds) == (1, 1, 1)
    assert small.search.epochs == space.search.epochs and small.budget == space.budget  # nothing else changes


def test_with_minutes_the_clock_sizes_the_tail_to_its_share_of_the_budget():
    """The largest plan priced within TAIL_SHARE of the command's seconds; when none fits, the first of the cheapest:
    on 2 CPU workers one finalist's 2 race rounds, or 2 retrain seeds, run side by side in the time of one, so the
    steps to 1 round and to 1 seed are not taken; on 1 worker each saves time and is. The space's own when it fits
    or when the clock has no start time."""
    trials = [_trial(0, 0.9, 2.0), _trial(1, 0.8, 3.0), _trial(2, 0.5, 10.0)]
    space = _space()  # race_top 2, race_seeds 3, retrain seeds 2
    plans = C.smaller_plans(space)
    assert [(p.race_top, p.race_seeds, p.retrain_seeds) for p in plans] == [
        (2, 3, 2), (1, 3, 2), (1, 2, 2), (1, 1, 2), (1, 1, 1)]
    prices = [C.Clock(1000.0, space, N, workers=2)._price(trials, C.sized(space, p)) for p in plans]
    # 1 finalist: 2 runs or 1 on 2 workers, the same time; no rounds: none, and the winner's retrain priced
    assert prices[0] > prices[1] == prices[2] > prices[3] == prices[4]
    for budget, want in ((prices[0] / C.TAIL_SHARE + 1, plans[0]), (prices[1] / C.TAIL_SHARE + 1, plans[1]),
                         (prices[3] / C.TAIL_SHARE + 1, plans[3]), (prices[-1] / C.TAIL_SHARE - 1, plans[3])):
        clock = C.Clock(1000.0 + budget, space, N, workers=2, started=1000.0)
        assert clock.plan(trials) == want
        assert clock.tail(trials) == pytest.approx(prices[plans.index(want)])
    assert C.Clock(1000.0, space, N, workers=2).plan(trials) == plans[0]
    one = C.Clock(1001.0, space, N, workers=1, started=1000.0)  # 1 s: nothing fits
    one_prices = [one._price(trials, C.sized(space, p)) for p in plans]
    assert one_prices == sorted(one_prices, reverse=True) and len(set(one_prices)) == 5
    assert one.plan(trials) == plans[-1]


def test_a_short_minutes_run_races_and_retrains_less_and_says_so(tmp_path):
    """--minutes 0.8 on the tiny space: the tail's overhead alone (20 s) is over 40% of 48 s, so the race and the retrain
    take the smallest plan (1 finalist, no race rounds: compared on search values, 1 retrain seed); the run, the study
    and the report say so, and no race run trains."""
    from search import record as rec

    raw = tiny_space(search={"seed": 0, "race_top": 2, "race_seeds": 3}, retrain={"epochs": 1, "seeds": 2})
    space = write_space(tmp_path / "tiny.yaml", raw)
    r = in_process("nas-run", space, "--trials", 3, "--minutes", 0.8, "--studies", tmp_path / "studies", "--workers", 1,
                   "--format", "checkpoint")
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    smallest = "no race rounds (the finalists compared on their search values), retrain on 1 seed(s)"
    assert "--minutes 0.8: the race and the retrain at their cheapest, still ~" in out  # the overhead alone is over 40%
    assert (f"of the time (more --minutes would leave the search more): {smallest} (the space: race of the top 2 x 2 "
            "round(s), retrain on 2 seed(s))") in out
    assert f"--minutes 0.8 sized the tail: {smallest}" in out
    assert " on the search split (no race rounds)" in out
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/studies/tiny.db")
    assert rec.tail_plan(study) == rec.TailPlan(1, 1, 1) and len(rec.retrain_results(study).runs) == 1
    assert not [t for t in study.trials if rec.is_race(t)]
    html = (tmp_path / "studies" / "tiny" / "report.html").read_text()
    assert f"{smallest}: sized by --minutes" in html and "none (--minutes)" in html
