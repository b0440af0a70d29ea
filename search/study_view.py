"""A study as a wrapped sampler or pruner sees it: its trial list changed (one ladder tier's trials, an earlier
study's evidence added), the rest the study's own; and the sampler that shows it one (warm.py's evidence and
neighbourhood.py's start-up wrap Optuna's sampler this way, study.py's ladder tiers its pruner)."""
from __future__ import annotations

import optuna


class StudyView:
    """`study` with the trials it lists passed through `shown`; everything else is the study's."""

    def __init__(self, study: optuna.Study):
        self._study = study

    def shown(self, trials: list, states) -> list:
        return trials

    def get_trials(self, deepcopy: bool = True, states=None) -> list:
        return self.shown(self._study.get_trials(deepcopy=deepcopy, states=states), states)

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False) -> list:  # samplers read this
        return self.shown(self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache), states)

    def __getattr__(self, name):
        return getattr(self._study, name)


class ViewSampler(optuna.samplers.BaseSampler):
    """`sampler`, shown `view(study, trial)` where it samples and after each trial. before_trial runs before the
    Objective has set anything on the trial: the sampler's reseeding there sees the study."""

    def __init__(self, sampler: optuna.samplers.BaseSampler):
        self.sampler = sampler

    def view(self, study, trial):
        return study

    def infer_relative_search_space(self, study, trial):
        return self.sampler.infer_relative_search_space(self.view(study, trial), trial)

    def sample_relative(self, study, trial, search_space):
        return self.sampler.sample_relative(self.view(study, trial), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.sampler.sample_independent(self.view(study, trial), trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.sampler.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.sampler.after_trial(self.view(study, trial), trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()
