"""The run's wall-clock budget, `nas-run SPACE --minutes M`: the search stops in time for the race and the retrain.

What follows the search is priced from the search's own trials, not from a model of the machine: each trained
trial records its seconds per epoch (while the other workers trained beside it), so the finalists that would race
if the search stopped now, and the slowest of them as the retrain's candidate, cost what they cost here. Then:

- a worker starts no new search trial once the time left, less that tail, is shorter than a trained trial took
  on average (the trial would be cut before it told the pruner much);
- a running search trial stops after the epoch at which the time left no longer covers the tail (end_reason
  `out_of_time`, pruned; its epochs count like a pruned trial's);
- the race and the retrain are never cut: they are what the time was kept for. They are sized to the budget
  instead: where the space's race and retrain would take more than TAIL_SHARE of the command's minutes, they
  shrink step by step (retrain seeds to 2, finalists to 1, race rounds to 1, then none, retrain seeds to 1) until
  they fit, so the search keeps the larger share (`plan`); where none fits, the first of the cheapest: a step that
  saves no time is not taken (on 2 CPU workers, 2 retrain seeds, or one finalist's 2 race rounds, run side by side
  in the time of 1). With no race rounds left the best sampled trial and the first_trials designs are compared on
  their search values (a design is kept unless beaten by more than race_margin): the winner is known when the
  search stops, so the retrain is priced on it, not on the slowest finalist. The rounds go before the second
  retrain seed: one round is a run per finalist and design, the seed one run (none on 2 CPU workers).

The budget belongs to one command: a rerun resumes toward `--trials` with its own `--minutes`.
"""
from __future__ import annotations

import dataclasses
import statistics
import time

from search import record as rec
from search.cost import PhaseSizes, race_runs, tail_seconds
from search.record import TailPlan
from search.space import Space

TAIL_SHARE = 0.4  # the race and the retrain are sized to at most this share of a --minutes command: the search >= 60%


def mean_trial_seconds(trials) -> float:
    """Wall seconds a trained search trial took on average (0 before any finished)."""
    took = [(t.datetime_complete - t.datetime_start).total_seconds() for t in rec.trained(trials)
            if t.datetime_complete and t.datetime_start]
    return statistics.fmean(took) if took else 0.0


def own_plan(space: Space) -> TailPlan:
    return TailPlan(space.search.race_top, space.search.race_seeds, space.retrain.seeds)


def smaller_plans(space: Space) -> list[TailPlan]:
    """The space's own plan, then each step smaller: retrain seeds down to 2 (a mean and a std), finalists down to 1
    (the designs race besides), race rounds down to 1, then to none (race_seeds 1), retrain seeds to 1."""
    plans = [own_plan(space)]

    def step(**change):
        plans.append(dataclasses.replace(plans[-1], **change))

    while plans[-1].retrain_seeds > 2:
        step(retrain_seeds=plans[-1].retrain_seeds - 1)
    while plans[-1].race_top > 1:
        step(race_top=plans[-1].race_top - 1)
    while plans[-1].race_top and plans[-1].race_seeds > 1:
        step(race_seeds=plans[-1].race_seeds - 1)
    if plans[-1].retrain_seeds > 1:
        step(retrain_seeds=1)
    return plans


def sized(space: Space, plan: TailPlan) -> Space:
    """The space with the race and the retrain of `plan`."""
    return dataclasses.replace(
        space, search=dataclasses.replace(space.search, race_top=plan.race_top, race_seeds=plan.race_seeds),
        retrain=dataclasses.replace(space.retrain, seeds=plan.retrain_seeds))


class Clock:
    """The deadline of one `nas-run --minutes M` command, and what the search may still do before it."""

    def __init__(self, deadline: float, space: Space, n: PhaseSizes, workers: int, cpu: bool = True,
                 started: float | None = None):
        self.deadline, self.space, self.n, self.workers, self.cpu = deadline, space, n, workers, cpu
        self.budget = None if started is None else deadline - started  # seconds of the whole command

    def tail(self, trials) -> float:
        """Seconds of the race and the retrain as `plan` sizes them."""
        return self.sized_tail(trials)[1]

    def plan(self, trials) -> TailPlan:
        return self.sized_tail(trials)[0]

    def sized_tail(self, trials) -> tuple[TailPlan, float]:
        """(plan, its seconds): the largest of the space's own race and retrain and the smaller ones (smaller_plans)
        priced within TAIL_SHARE of the command's minutes, else the first of the cheapest; the space's own without a
        start time (see the module docstring for why the first of the cheapest)."""
        plans = smaller_plans(self.space) if self.budget is not None else [own_plan(self.space)]
        priced = []
        for plan in plans:
            seconds = self._price(trials, sized(self.space, plan))
            if self.budget is None or seconds <= TAIL_SHARE * self.budget:
                return plan, seconds
            priced.append((plan, seconds))
        return min(priced, key=lambda p: p[1])  # min keeps the first of equal prices

    def _price(self, trials, space: Space) -> float:
        from search import race as R

        s, price = space.search, 0.0
        for tier in space.budget.each_tier():
            of_tier = rec.of_tier(trials, tier)
            known = R.winner(of_tier, s) if not race_runs(s, 1) else None  # no round can change it
            price += tail_seconds(R.finalists(of_tier, s), space, self.n, self.workers, self.cpu, retrained=known)
        return price

    def left(self, trials, now: float | None = None) -> float:
        """Seconds the search has left: until the deadline, less the tail."""
        return self.deadline - (time.time() if now is None else now) - self.tail(trials)

    def may_start(self, trials, now: float | None = None) -> bool:
        return self.left(trials, now) > mean_trial_seconds(trials)

    def must_stop(self, trials, now: float | None = None) -> bool:
        return self.left(trials, now) <= 0
