"""Benchmark variant (#34 item 3): the start-up's trials drawn by OptunaHub's CatCMAwM sampler centred on the best
full-length trial so far (the designs, at first), then the wrapped sampler, as neighbourhood.py's start-up is.
The registry package is read from a local checkout (optunahub.load_module clones GitHub: offline here), with its
float/int key-value swap in sample_relative mended (upstream at ee68019 returns {value: name})."""
from __future__ import annotations

import os

import numpy as np
import optuna
import optunahub
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from search.neighbourhood import NeighbourhoodSampler
from search.record import STUDY_SEED_STRIDE

HUB = optunahub.load_local_module(package="samplers/catcmawm",
                                  registry_root=os.environ.get("NAS_RUN_HUB", "/tmp/hub/package"))
DESIGN_WEIGHT = 0.8  # the incumbent's choice of each categorical: this probability, the rest shared


class HubCentredSampler(NeighbourhoodSampler):
    """neighbourhood.py's start-up rule (which trials, which incumbent); each start-up trial drawn by CatCMAwM."""

    def __init__(self, sampler, startup: int, study_seed: int):
        super().__init__(sampler, startup, study_seed)
        self._hub = {}

    def hub(self, study, trial):
        move = self.move(study, trial)
        if move is not None and trial.number not in self._hub:
            best = study.get_trials(deepcopy=False)[move.incumbent]
            self._hub[trial.number] = centred(best, self.study_seed * STUDY_SEED_STRIDE + trial.number)
        return self._hub.get(trial.number) if move is not None else None

    def infer_relative_search_space(self, study, trial):
        h = self.hub(study, trial)
        return h.infer_relative_search_space(study, trial) if h else self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        h = self.hub(study, trial)
        if not h:
            return self.sampler.sample_relative(study, trial, search_space)
        values = h.sample_relative(study, trial, search_space)  # numpy numbers: Python's, as Optuna's samplers return
        return {n: int(v) if isinstance(search_space[n], IntDistribution) else
                float(v) if isinstance(search_space[n], FloatDistribution) else v for n, v in values.items()}

    def sample_independent(self, study, trial, name, dist):
        h = self.hub(study, trial)
        return (h.sample_independent(study, trial, name, dist) if h
                else self.sampler.sample_independent(study, trial, name, dist))


def centred(best, seed: int):
    """A CatCMAwM whose first generation is centred on `best`: mean at its numbers, spread as CatCMAwM's default
    at a range's centre (a twelfth / tenth of the range) but for any mean, so a value at a bound still moves; its
    categorical choices at DESIGN_WEIGHT."""
    dists = {n: d for n, d in best.distributions.items() if not d.single()}
    floats = {n: d for n, d in dists.items() if isinstance(d, FloatDistribution)}
    ints = {n: d for n, d in dists.items() if isinstance(d, IntDistribution)}
    cats = {n: d for n, d in dists.items() if isinstance(d, CategoricalDistribution)}
    space = {**floats, **ints, **cats}  # the wrapper's order: floats, ints, categoricals
    mean = np.array([float(best.params[n]) for n in [*floats, *ints]])
    width = [(d.high - d.low) / 12 for d in floats.values()] + [(d.high - d.low) / 10 for d in ints.values()]
    kmax = max((len(d.choices) for d in cats.values()), default=0)
    q = np.zeros((len(cats), kmax))
    for i, (n, d) in enumerate(cats.items()):
        k = len(d.choices)
        q[i, :k] = (1 - DESIGN_WEIGHT) / (k - 1)
        q[i, d.choices.index(best.params[n])] = DESIGN_WEIGHT
    return HUB.CatCmawmSampler(search_space=space, mean=mean if len(mean) else None,
                               cov=np.diag(np.square(width)) if width else None, sigma0=1.0,
                               cat_param=q if len(cats) else None, seed=seed,
                               independent_sampler=optuna.samplers.RandomSampler(seed=seed))
