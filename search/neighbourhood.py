"""Start near what works (`search.startup: neighbourhood`): the first sampled trials of a study each change 1-3
parameters of the best full-length search trial so far (the `first_trials` designs, at first), the rest copied
from it, before the model-based sampler takes over and learns from all of them.

16-40 trials cannot map ~25 dimensions from random start-up points; local search around the incumbent is what
works for small budgets (White et al. 2020 on NAS-Bench-101/201; regularized evolution, Real et al. 2019, mutates
one choice at a time). A changed categorical value is another choice than the incumbent's (the same one would be a
duplicate); a changed number is drawn anew from its range. A parameter the incumbent does not have (a conditional
key's other branch) is drawn anew too. Before any trial reached the full length, and after `search.startup_trials`
sampled trials trained, the wrapped sampler proposes as it would alone.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import optuna
from optuna.distributions import CategoricalDistribution

from search import record as rec
from search.record import STUDY_SEED_STRIDE
from search.study_view import ViewSampler

MOST_CHANGED = 3  # parameters a start-up trial changes: 1 to this many


@dataclass(frozen=True)
class Move:
    """A start-up trial's plan: the incumbent it starts from, and which of its parameters it changes."""

    incumbent: int  # its trial number
    params: dict
    changed: frozenset[str]


class NeighbourhoodSampler(ViewSampler):
    """`sampler` after the start-up; before it, neighbours of the incumbent (see the module docstring)."""

    def __init__(self, sampler: optuna.samplers.BaseSampler, startup: int, study_seed: int):
        super().__init__(sampler)
        self.startup, self.study_seed = startup, study_seed
        self._moves: dict[int, Move | None] = {}

    def _rng(self, number: int, salt: str = "") -> random.Random:
        """A generator for one trial (and parameter): reproducible from the study seed and the trial number."""
        return random.Random(f"{self.study_seed * STUDY_SEED_STRIDE + number}:{salt}")

    def move(self, study, trial) -> Move | None:
        """The trial's plan while the start-up lasts and a full-length search trial exists, else None."""
        if trial.number not in self._moves:
            trials = study.get_trials(deepcopy=False)
            sampled = [t for t in rec.trained(trials) if not rec.is_enqueued(t)]
            best = rec.best_search_trial(trials)
            move = None
            if best is not None and len(sampled) < self.startup:
                searchable = sorted(n for n, d in best.distributions.items() if not d.single())
                rng = self._rng(trial.number)
                k = rng.randint(1, min(MOST_CHANGED, len(searchable))) if searchable else 0
                move = Move(best.number, dict(best.params), frozenset(rng.sample(searchable, k)))
            self._moves[trial.number] = move
        return self._moves[trial.number]

    def infer_relative_search_space(self, study, trial):
        return {} if self.move(study, trial) else self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return {} if self.move(study, trial) else self.sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        move = self.move(study, trial)
        if move is None:
            return self.sampler.sample_independent(study, trial, param_name, param_distribution)
        current = move.params.get(param_name)
        kept = (param_name not in move.changed and current is not None
                and param_distribution._contains(param_distribution.to_internal_repr(current)))
        return current if kept else draw(param_distribution, current, self._rng(trial.number, param_name))


def draw(dist, current, rng: random.Random):
    """A value of `dist` other than `current` where it has another: another choice, or a number drawn anew from
    the range (log-uniform on a log range, on the step grid where there is one)."""
    if isinstance(dist, CategoricalDistribution):
        others = [c for c in dist.choices if c != current] or list(dist.choices)
        return rng.choice(others)
    low, high = dist.low, dist.high
    for _ in range(8):  # an int range of few values may draw the current one: draw again
        u = rng.random()
        value = math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if dist.log else low + u * (high - low)
        if dist.step is not None:
            value = low + round((value - low) / dist.step) * dist.step
        value = min(high, max(low, value))
        if isinstance(dist, optuna.distributions.IntDistribution):
            value = int(round(value))
        if value != current:
            return value
    return value
