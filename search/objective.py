"""One trial: sample -> (fill the budget) -> build -> budget check -> train -> report.

Every trial ends with a `end_reason` user attr from the vocabulary below. Over budget: constraint values set
(the sampler learns the feasible region from them), told PRUNED, zero training steps, not counted as trained.
Within budget: train for the full planned length (`search.epochs`, by default the retrain's), report
validation accuracy per epoch; the pruner stops most trials early. Race trials (user attr `race_of`, enqueued
by the pipeline) train a finalist's parameters on another seed and race round (`race_fold`: another validation
split, see `data.race_fold`) and are never pruned; nor are `search.first_trials` designs (user attr `first_trial`):
a design the user named is the reference the search has to beat, measured at full length.
Trial-level trouble (divergence, time overrun, a RuntimeError such as CUDA OOM) ends the trial and the study
goes on; `search.max_failures` failures in a row are not trial-level and stop the run.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import optuna
import torch
from optuna.trial import TrialState

import models
from search import budget as B
from search import data as D
from search.clock import Clock
from search.space import Space
from search.study import is_race
from search.train import train

TIME_SLACK = 1.5  # a search trial may take 1.5x its share of the time budget before it is stopped

# end_reason vocabulary: untrained ...
REJECTED = "rejected:"  # + params | macs | time: over budget, never trained
INVALID = "invalid:"  # + the model's message: the sampled config does not build
DUPLICATE = "duplicate_of:"  # + trial number: an identical candidate trained (or is training) already
SURPLUS = "surplus"  # asked for after the search reached its target (race phase)
UNTRAINED = (REJECTED, INVALID, DUPLICATE, SURPLUS)
# ... trained: train.History.end_reason (completed | diverged | time) or PRUNED; or ended by trouble:
PRUNED = "pruned"  # the pruner stopped it at a rung
OUT_OF_TIME = "out_of_time"  # `--minutes` left no time for more epochs before the race and the retrain (clock.py)
INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM; the candidate is enqueued again
ERROR = "error:"  # + type and first line of a RuntimeError (CUDA OOM ...)


def trial_seed(study_seed: int, number: int) -> int:
    return (study_seed * 1_000_003 + number) % 2**31


def untrained(reason: str) -> bool:
    return reason.startswith(UNTRAINED)


@dataclass
class Objective:
    """What one worker process needs to run trials: the space, its data on its device, the phase, counters."""

    space: Space
    data: D.Data
    device: torch.device
    trials: int  # trained search trials to reach
    race_phase: bool = False  # only enqueued race trials are wanted now
    clock: Clock | None = None  # `--minutes`: the search stops in time for the race and the retrain
    out_of_time: bool = False  # the clock stopped this worker's search
    rejected_in_a_row: int = 0
    failed_in_a_row: int = 0
    gave_up: bool = False  # too many untrained candidates in a row: the space and the budget barely meet
    failing: str = ""  # the last error, once search.max_failures trials in a row failed
    nearest: dict = field(default_factory=dict)  # smallest overshoot seen among rejections
    _fold: tuple | None = field(default=None, repr=False)  # (race round, train, val): the last race round's splits

    @functools.cached_property
    def search_split(self) -> D.Split:
        """The training split, or the fixed stratified share of it that `search.data_fraction` asks for."""
        return self._searched_share(self.data.train)

    def _searched_share(self, split: D.Split) -> D.Split:
        """`split`, or the fixed stratified share of it that `search.data_fraction` asks for."""
        frac = self.space.search.data_fraction
        if frac >= 1:
            return split
        _, part = D.stratified_split(split.y, frac, self.space.search.seed)
        return split.subset(part)

    def splits(self, fold: int | None) -> tuple[D.Split, D.Split]:
        """(train, val) a trial trains and is measured on: the search's, or race round `fold`'s (`D.race_fold`,
        at the search's `data_fraction`). Race runs enqueued before rounds existed (no fold) use the search's."""
        if not fold:
            return self.search_split, self.data.val
        if self._fold is None or self._fold[0] != fold:
            s, vf = self.space.search, self.space.data.val_fraction
            train_split, val = D.race_fold(self.data, fold, D.race_val_size(len(self.data.val), s.race_val_fraction, vf))
            self._fold = (fold, self._searched_share(train_split), val)
        return self._fold[1], self._fold[2]

    def retrain_images(self) -> int:
        r = self.space.retrain
        return len(self.data.train) + (len(self.data.val) if r.train_on == "train+val" else 0)

    def time_share(self) -> float | None:
        """Seconds a search trial may take: its share of the retrain time budget, with slack."""
        if self.space.budget.train_seconds is None:
            return None
        s, r = self.space.search, self.space.retrain
        work = (s.epochs * len(self.search_split)) / (r.epochs * self.retrain_images())
        return self.space.budget.train_seconds * work * TIME_SLACK

    def __call__(self, trial: optuna.Trial) -> float:
        space, race = self.space, is_race(trial)
        if self.race_phase and not race:
            trial.set_user_attr("end_reason", SURPLUS)
            raise optuna.TrialPruned()
        seed = trial_seed(space.search.seed, trial.number)
        trial.set_user_attr("seed", seed)
        cand = space.sample(trial)
        torch.manual_seed(seed)
        try:
            if space.budget.fill:
                cand = B.fill(cand, space.budget, self.data.meta)
            trial.set_user_attr("candidate", cand)
            model = models.build(cand["family"], **cand["model"])
        except ValueError as e:
            trial.set_constraint("valid", 1.0)
            return self._untrained(trial, f"{INVALID} {e}")
        cost, over = B.check(model, cand["train"], space.budget, self.data.meta, n_train=self.retrain_images(),
                             n_eval=0, epochs=space.retrain.epochs, device=self.device)
        for key, value in over.items():
            trial.set_constraint(key, value)
        trial.set_user_attr("params", cost.params)
        if cost.macs is not None:
            trial.set_user_attr("macs", cost.macs)
        if cost.train_seconds is not None:
            trial.set_user_attr("est_train_seconds", round(cost.train_seconds, 1))
        if any(v > 0 for v in over.values()):
            worst = max(over, key=over.get)
            if not self.nearest or over[worst] < self.nearest["overshoot"]:
                self.nearest = {"key": worst, "overshoot": over[worst], "value": getattr(cost, worst)}
            return self._untrained(trial, REJECTED + ("time" if worst == "train_seconds" else worst))
        twin = None if race else self._twin(trial, cand)
        if twin is not None:
            self._untrained(trial, f"{DUPLICATE}{twin.number}", raise_=False)
            if twin.state == TrialState.COMPLETE:
                return twin.value
            raise optuna.TrialPruned()
        self.rejected_in_a_row = 0
        model.to(self.device)

        epochs = space.search.epochs

        keep = race or "first_trial" in trial.user_attrs  # a design the user named is measured at full length

        def on_epoch(epoch: int, val_acc: float) -> str | None:
            trial.report(val_acc, epoch + 1)  # step = epochs trained: the pruners' rungs are in epochs
            if epoch + 1 == epochs:  # a trial that reached the end is measured, not pruned
                return None
            if not race and self.clock and self.clock.must_stop(trial.study.get_trials(deepcopy=False)):
                self.out_of_time = True
                return OUT_OF_TIME
            return PRUNED if not keep and trial.should_prune() else None

        share = self.time_share()
        deadline = time.monotonic() + share if share else None
        train_split, val = self.splits(trial.user_attrs.get("race_fold"))
        trial.set_user_attr("val_images", len(val))
        try:
            hist = train(model, train_split, val, self.data.mean, self.data.std, cand["train"],
                         space.search.epochs, on_epoch=on_epoch, deadline=deadline)
        except KeyboardInterrupt:
            trial.set_user_attr("end_reason", INTERRUPTED)
            kept = {k: v for k, v in trial.user_attrs.items() if k in ("race_of", "race_fold", "first_trial")}
            trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, **kept})
            raise
        except RuntimeError as e:  # CUDA OOM and other failures inside the candidate
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            trial.set_user_attr("end_reason", f"{ERROR}{type(e).__name__}: {msg}")
            self.failed_in_a_row += 1
            if self.failed_in_a_row >= space.search.max_failures:
                self.failing = f"{type(e).__name__}: {msg}"
            raise
        self.failed_in_a_row = 0
        trial.set_user_attr("trained", True)
        trial.set_user_attr("end_reason", hist.end_reason)
        trial.set_user_attr("epochs_run", len(hist.val_acc))
        if hist.epoch_seconds:
            trial.set_user_attr("seconds_per_epoch", round(sum(hist.epoch_seconds) / len(hist.epoch_seconds), 2))
            trial.set_user_attr("images_per_second", round(hist.images / sum(hist.epoch_seconds)))
        trial.set_user_attr("images", hist.images)
        if hist.end_reason != "completed":
            raise optuna.TrialPruned()
        return hist.val_acc[-1]

    def _twin(self, trial, cand):
        """An earlier search trial with the same candidate that trained or is training (another worker's)."""
        for t in trial.study.get_trials(deepcopy=False):
            if t.number != trial.number and not is_race(t) and t.user_attrs.get("candidate") == cand and (
                    t.user_attrs.get("trained") or (t.state == TrialState.RUNNING and "end_reason" not in t.user_attrs)):
                return t
        return None

    def _untrained(self, trial, reason: str, raise_: bool = True):
        trial.set_user_attr("end_reason", reason)
        self.rejected_in_a_row += 1
        if self.rejected_in_a_row >= self.space.search.max_rejections:
            self.gave_up = True
        if raise_:
            raise optuna.TrialPruned()

    def stop_when_done(self, study: optuna.Study, _trial) -> None:
        from search.study import count_in_flight

        if self.gave_up or self.failing:
            study.stop()
        elif self.race_phase:
            if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                study.stop()
        elif count_in_flight(study.get_trials(deepcopy=False)) >= self.trials or not self.may_start(study):
            study.stop()

    def may_start(self, study: optuna.Study) -> bool:
        """Whether `--minutes` leaves time for another search trial (always without it); once it does not, the
        worker is `out_of_time`."""
        if self.clock and not self.out_of_time and not self.clock.may_start(study.get_trials(deepcopy=False)):
            self.out_of_time = True
        return not self.out_of_time
