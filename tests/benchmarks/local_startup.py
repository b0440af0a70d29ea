"""Benchmark variant (#34 item 3): the start-up's trials as a small step around the incumbent, the shape of
CatCMAwM's first generation centred on it (hub_centred.py), written on neighbourhood.py's sampler: every number
moves by a Gaussian step of a tenth of its range (in log space on a log range), each categorical switches to
another choice with probability SWITCH; a parameter the incumbent lacks is drawn anew."""
from __future__ import annotations

import math

from optuna.distributions import CategoricalDistribution, IntDistribution

from search.neighbourhood import NeighbourhoodSampler, draw

STEP = 0.1  # of a number's range (its log range where log): CatCMAwM's initial spread at a range's centre
SWITCH = 0.2  # a categorical's chance of another choice: hub_centred.py's DESIGN_WEIGHT 0.8


class LocalStepSampler(NeighbourhoodSampler):
    def sample_independent(self, study, trial, param_name, param_distribution):
        move = self.move(study, trial)
        if move is None:
            return self.sampler.sample_independent(study, trial, param_name, param_distribution)
        dist, current = param_distribution, move.params.get(param_name)
        rng = self._rng(trial.number, param_name)
        if current is None or not dist._contains(dist.to_internal_repr(current)):
            return draw(dist, None, rng)
        if isinstance(dist, CategoricalDistribution):
            return draw(dist, current, rng) if rng.random() < SWITCH else current
        return step(dist, current, rng)


def step(dist, current, rng):
    scale = math.log if dist.log else float
    low, high = scale(dist.low), scale(dist.high)
    x = min(high, max(low, scale(current) + rng.gauss(0.0, STEP * (high - low))))
    value = math.exp(x) if dist.log else x
    if dist.step is not None:
        value = dist.low + round((value - dist.low) / dist.step) * dist.step
    value = min(dist.high, max(dist.low, value))
    return int(round(value)) if isinstance(dist, IntDistribution) else value
