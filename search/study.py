"""Optuna glue: open or resume a study, its sampler and its pruner.

What a trial records and the questions asked of trials live in record.py.
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from search import metrics
from search.errors import UserError
from search.neighbourhood import NeighbourhoodSampler
from search import record as rec
from search.record import STUDY_SEED_STRIDE
from search.space import SearchConfig, Space
from search.study_view import StudyView
from search.warm import EvidenceSampler, WarmStart

optuna.logging.set_verbosity(optuna.logging.WARNING)


def default_storage(name: str, studies: str) -> str:
    """The SQLite file a study lives in unless --storage names another."""
    return f"sqlite:///{Path(studies) / name}.db"


def sampler_seed(search: SearchConfig, worker: int, existing: int) -> int:
    """Workers of one run (index) and reruns (trials already stored) start from different seeds."""
    return (search.seed + 7919 * worker + 104_729 * existing) % 2**31


class _SeededPerTrial:
    """Reseeds the sampler's random state from the study seed and the trial's number before each trial. Trial
    numbers are handed out by the storage, so processes started at the same instant on the same study (other
    machines, other shells) draw different proposals, while a run stays reproducible: the same history and trial
    number give the same proposal. (`_rng` / `_random_sampler` are Optuna's own fields of these two samplers.)"""

    def __init__(self, *args, study_seed: int, **kw):
        super().__init__(*args, **kw)
        self._study_seed = study_seed

    def before_trial(self, study, trial) -> None:
        seed = (self._study_seed * STUDY_SEED_STRIDE + trial.number * 7919) % 2**32
        for sampler in (self, getattr(self, "_random_sampler", None)):
            if sampler is not None and hasattr(sampler, "_rng"):
                sampler._rng.rng.seed(seed)
        super().before_trial(study, trial)


class SeededTPESampler(_SeededPerTrial, optuna.samplers.TPESampler):
    pass


class SeededRandomSampler(_SeededPerTrial, optuna.samplers.RandomSampler):
    pass


def make_sampler(search: SearchConfig, seed: int, conditional: bool = False) -> optuna.samplers.BaseSampler:
    """`conditional`: the space has conditional keys; multivariate TPE then models each set of parameters that
    occur together (`group`), so a branch's parameter is modelled jointly with the rest, not sampled alone."""
    kind = search.sampler
    if kind == "tpe":
        with warnings.catch_warnings():  # `group` is experimental since Optuna 2.8, and what conditional spaces need
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return SeededTPESampler(seed=seed, multivariate=search.multivariate, constant_liar=True,
                                    group=search.multivariate and conditional,
                                    n_startup_trials=search.startup_trials, study_seed=search.seed)
    if kind == "random":
        return SeededRandomSampler(seed=seed, study_seed=search.seed)
    if kind == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise ValueError(kind)


def make_pruner(search: SearchConfig, ladder: bool = False) -> optuna.pruners.BasePruner:
    """Steps are epochs trained (1 = after the first epoch); every trial is planned for `search.epochs`. With a
    budget ladder the pruner compares a trial only with trials of its own tier (TieredPruner)."""
    kind, eta, low = search.pruner, search.reduction_factor, search.min_epochs
    if kind == "successive_halving":
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=low, reduction_factor=eta)
    elif kind == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=low, max_resource=search.epochs, reduction_factor=eta)
    elif kind == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials, n_warmup_steps=search.warmup_epochs)
    else:
        return optuna.pruners.NopPruner()
    return TieredPruner(pruner) if ladder else pruner


class _TierView(StudyView):
    """A study as one ladder tier sees it: get_trials lists that tier's trials only; the rest is the study's."""

    def __init__(self, study: optuna.Study, tier: str | None):
        super().__init__(study)
        self._tier = tier

    def shown(self, trials: list, states) -> list:
        return rec.of_tier(trials, self._tier)


class TieredPruner(optuna.pruners.BasePruner):
    """Optuna's pruner, shown only the trials of the pruned trial's ladder tier: a 2,000-param net competes with
    2,000-param nets, not with the 8,000-param ones that are ahead of it by their size. (Successive halving and
    median read the study through get_trials only; Hyperband's brackets read the storage, so a ladder refuses it.)"""

    def __init__(self, pruner: optuna.pruners.BasePruner):
        self.pruner = pruner

    def prune(self, study: optuna.Study, trial) -> bool:
        return self.pruner.prune(_TierView(study, rec.read(trial).tier), trial)


def open_study(space: Space, storage, worker: int = 0, warm: WarmStart | None = None) -> optuna.Study:
    """Create or resume the study named by the space. A resumed study must have been searched with the same
    space; see `check_same_space`. The designs are queued first, then a warm start's candidates; its evidence goes
    to the sampler (warm.py)."""
    study = optuna.create_study(study_name=space.name, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=make_pruner(space.search, ladder=bool(space.budget.tiers())))
    stored = rec.stored_space(study)
    if stored is None:
        rec.store_space(study, space.text, space.file)
        with warnings.catch_warnings():  # experimental since 3.2; it is what names the dashboard's axis
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["val " + metrics.NAMES[space.search.metric]])
    elif stored[0] != space.text:
        check_same_space(study, space)
    if warm is not None and worker == 0:
        rec.store_warm_start(study, warm.record())
    # The designs first: a carried candidate with a design's values is that design, and stays one (raced, the
    # reference the search must beat).
    queue = [(params, rec.first_trial_attrs(i)) for i, params in enumerate(space.search.first_trials)]
    queue += [(c.params, warm.attrs(c)) for c in warm.candidates] if warm is not None else []
    for tier in space.budget.each_tier():  # a candidate already in the study (in its tier) is not queued again:
        for params, attrs in queue:  # Optuna's skip_if_exists rule, seeing one tier
            if not optuna.Study._should_skip_enqueue(_TierView(study, tier), params):
                study.enqueue_trial(params, user_attrs={**attrs, **rec.tier_attr(tier)})
    existing = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))
    # A warm start's evidence lacks the parameters it dropped: TPE's `group` models those apart from the rest.
    sampler = make_sampler(space.search, sampler_seed(space.search, worker, existing),
                           bool(space.conditionals()) or warm is not None)
    startup = space.search.startup_trials
    if warm is not None:
        # The start-up is there because the sampler has nothing to learn from yet; the earlier trials stand in for
        # it, one each, as they do for TPE's own random start-up (it counts the trials it is shown). Not where the
        # earlier nets were laid out otherwise (another image size): the start-up around this space's designs found
        # what the evidence, the recipe alone, did not (RESULTS.md, "Warm start (b): the start-up kept"); the
        # sampler is shown the evidence once the start-up is done.
        if warm.startup_left:
            sampler = EvidenceSampler(sampler, warm.evidence, after=startup)
        else:
            sampler = EvidenceSampler(sampler, warm.evidence)
            startup = max(0, startup - len(warm.evidence))
    if space.search.startup == "neighbourhood":
        sampler = NeighbourhoodSampler(sampler, startup, space.search.seed)
    # A ladder's tiers share one sampler: fill gives them one shape space, and each tier's few trials alone
    # left TPE in its random start-up (RESULTS.md, "The ladder's sampler").
    study.sampler = sampler
    return study


def check_same_space(study: optuna.Study, space: Space) -> None:
    """An edited space on resume: ranges may move (Optuna allows it; the change is recorded), `trials` and
    `first_trials` may change (a new design is trained next), anything else that changes what a trial means
    is one line naming the study, the change and the two ways on."""
    from search.space import parse, read_yaml

    old_text, old_file = rec.stored_space(study)
    old = parse(read_yaml(old_text), old_file, old_text)
    how = (f"to keep both, give the edited file a new `name:` (a new study); to continue {space.name}, "
           f"restore the file as it was (nas-export {space.name} prints nothing new)")
    for section in ("data", "budget", "retrain"):
        for key in (f.name for f in dataclasses.fields(getattr(space, section))):
            a, b = getattr(getattr(old, section), key), getattr(getattr(space, section), key)
            if a != b:
                raise UserError(f"{space.file}: {section}.{key}: changed since study {space.name!r} began "
                                f"({a!r} -> {b!r}); {how}")
    for key in ("family", "target"):
        if getattr(old, key) != getattr(space, key):
            raise UserError(f"{space.file}: {key}: changed since study {space.name!r} began "
                            f"({getattr(old, key)!r} -> {getattr(space, key)!r}); {how}")
    for key in sorted(f.name for f in dataclasses.fields(space.search)):
        if key not in ("trials", "first_trials") and getattr(old.search, key) != getattr(space.search, key):
            raise UserError(f"{space.file}: search.{key}: changed since study {space.name!r} began "
                            f"({getattr(old.search, key)!r} -> {getattr(space.search, key)!r}); {how}")
    if old.conditionals() != space.conditionals():
        a, b = old.conditionals(), space.conditionals()
        name = min(set(a) ^ set(b) or {n for n in a if a[n] != b[n]})
        raise UserError(f"{space.file}: {name}: changed since study {space.name!r} began (conditional on "
                        f"{a.get(name, 'nothing')} -> {b.get(name, 'nothing')}); {how}")
    old_params, new_params = old.params(), space.params()
    for name in sorted(set(old_params) | set(new_params)):
        a, b = old_params.get(name), new_params.get(name)
        if a is None or b is None or not a.compatible(b):
            raise UserError(f"{space.file}: {name}: changed since study {space.name!r} began "
                            f"({a.domain() if a else 'absent'} -> {b.domain() if b else 'absent'}); {how}")
    rec.replace_space(study, space.text)
