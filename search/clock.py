"""The run's wall-clock budget, `nas-run SPACE --minutes M`: the search stops in time for the race and the retrain.

What follows the search is priced from the search's own trials, not from a model of the machine: each trained
trial records its seconds per epoch (while the other workers trained beside it), so the finalists that would race
if the search stopped now, and the slowest of them as the retrain's candidate, cost what they cost here. Then:

- a worker starts no new search trial once the time left, less that tail, is shorter than a trained trial took
  on average (the trial would be cut before it told the pruner much);
- a running search trial stops after the epoch at which the time left no longer covers the tail (end_reason
  `out_of_time`, pruned; its epochs count like a pruned trial's);
- the race and the retrain are never cut: they are what the time was kept for.

The budget belongs to one command: a rerun resumes toward `--trials` with its own `--minutes`.
"""
from __future__ import annotations

import math
import statistics
import time

from search.budget import estimate_train_seconds
from search.data import race_val_size
from search.space import Space
from search.study import trained

# The machine's speed drifts within an hour (the same retrain seed took 232-251 s, then 309-318 s). Priced with
# this factor, the tail of the eight stored 2-core runs of tests/benchmarks/vs_hand.py was 1.04x to 1.76x what it
# took (tests/benchmarks/clock_replay.py); without it, seeds 6 and 7 were priced short (0.87x, 0.85x).
SLOW_SIDE = 1.25
# Starting the race's and the retrain's processes, loading the data in each, exporting (ONNX, torch.export) and
# writing the report: 40-60 s on those runs.
OVERHEAD_SECONDS = 60


def phase_sizes(space: Space, n_train: int, n_val: int) -> dict:
    """Images each phase trains and validates on, from the training and validation split sizes."""
    s = space.search
    n_race_val = race_val_size(n_val, s.race_val_fraction, space.data.val_fraction)
    return {"search": round(n_train * s.data_fraction), "val": n_val,
            "retrain": n_train + n_val if space.retrain.train_on == "train+val" else n_train,
            "race": round((n_train - n_race_val + n_val) * s.data_fraction), "race_val": n_race_val}


def _epoch_work(n_train: int, n_eval: int) -> float:
    """An epoch's work in trained images, as budget.py prices an epoch (at one second per image, batch 1)."""
    return estimate_train_seconds(1.0, 1, n_train, n_eval, 1)


def tail_seconds(finals: list, space: Space, n: dict, workers: int, cpu: bool = True) -> float:
    """Seconds from the end of the search to the report: `search.race_seeds - 1` race runs of each of the `finals`
    (trained trials with `seconds_per_epoch`), the retrain of the slowest of them (the winner is not known yet),
    overhead.
    Race runs and retrain seeds share the `workers` as the run shares them (on CPU one process per run, so their
    time is their core time over the workers; on GPUs in waves)."""
    s, r = space.search, space.retrain
    spe = [f.user_attrs["seconds_per_epoch"] for f in finals if f.user_attrs.get("seconds_per_epoch")]
    if not spe:
        return float(OVERHEAD_SECONDS)
    search_work = _epoch_work(n["search"], n["val"])
    each = s.race_seeds - 1 if s.race_top else 0
    race_runs = [x * s.epochs * _epoch_work(n["race"], n["race_val"]) / search_work for x in spe]
    race = max(sum(race_runs) * each / workers, max(race_runs)) if each else 0.0
    retrain_one = max(spe) * r.epochs * n["retrain"] / search_work
    waves = max(1.0, r.seeds / workers) if cpu else math.ceil(r.seeds / workers)
    return SLOW_SIDE * (race + waves * retrain_one) + OVERHEAD_SECONDS


def mean_trial_seconds(trials) -> float:
    """Wall seconds a trained search trial took on average (0 before any finished)."""
    took = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trained(trials)
            if t.datetime_complete and t.datetime_start]
    return statistics.fmean(took) if took else 0.0


class Clock:
    """The deadline of one `nas-run --minutes M` command, and what the search may still do before it."""

    def __init__(self, deadline: float, space: Space, n: dict, workers: int, cpu: bool = True):
        self.deadline, self.space, self.n, self.workers, self.cpu = deadline, space, n, workers, cpu

    def tail(self, trials) -> float:
        from search import race as R

        return tail_seconds(R.finalists(trials, self.space.search), self.space, self.n, self.workers, self.cpu)

    def left(self, trials, now: float | None = None) -> float:
        """Seconds the search has left: until the deadline, less the tail."""
        return self.deadline - (time.time() if now is None else now) - self.tail(trials)

    def may_start(self, trials, now: float | None = None) -> bool:
        return self.left(trials, now) > mean_trial_seconds(trials)

    def must_stop(self, trials, now: float | None = None) -> bool:
        return self.left(trials, now) <= 0
