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

import statistics
import time

from search import record as rec
from search.cost import PhaseSizes, tail_seconds
from search.space import Space


def mean_trial_seconds(trials) -> float:
    """Wall seconds a trained search trial took on average (0 before any finished)."""
    took = [(t.datetime_complete - t.datetime_start).total_seconds() for t in rec.trained(trials)
            if t.datetime_complete and t.datetime_start]
    return statistics.fmean(took) if took else 0.0


class Clock:
    """The deadline of one `nas-run --minutes M` command, and what the search may still do before it."""

    def __init__(self, deadline: float, space: Space, n: PhaseSizes, workers: int, cpu: bool = True):
        self.deadline, self.space, self.n, self.workers, self.cpu = deadline, space, n, workers, cpu

    def tail(self, trials) -> float:
        from search import race as R

        return sum(tail_seconds(R.finalists(rec.of_tier(trials, tier), self.space.search), self.space, self.n,
                                self.workers, self.cpu) for tier in self.space.budget.each_tier())

    def left(self, trials, now: float | None = None) -> float:
        """Seconds the search has left: until the deadline, less the tail."""
        return self.deadline - (time.time() if now is None else now) - self.tail(trials)

    def may_start(self, trials, now: float | None = None) -> bool:
        return self.left(trials, now) > mean_trial_seconds(trials)

    def must_stop(self, trials, now: float | None = None) -> bool:
        return self.left(trials, now) <= 0
