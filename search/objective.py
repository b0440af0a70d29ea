"""One trial: prepare the candidate (sample -> fill -> build -> budget -> duplicate), then train and record it.

Over budget: constraint values set (the sampler learns the feasible region from them), told PRUNED, zero
training steps, not counted as trained. Within budget: train for the full planned length (`search.epochs`, by
default the retrain's), report validation accuracy per epoch; the pruner stops most trials early (and, where
`search.first_epoch_floor` is set, a sampled trial near chance after its first epoch). Race runs
(enqueued by the pipeline, see race.py), `search.first_trials` designs and a warm start's candidates are never
pruned, and measured at full length: a design the user named is the reference the search has to beat, a candidate
carried from an earlier study was among its best at full length (one epoch inside OneCycle's warm-up is no verdict:
a carried winner stopped at chance after epoch 1 in the first warm-start benchmark). Trial-level trouble (divergence,
time overrun, a RuntimeError such as CUDA OOM) ends the trial and the study goes on; `search.max_failures` failures
in a row are not trial-level and stop the run. The trial's record is written through record.py.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import optuna
import torch
from optuna.trial import TrialState

from search import budget as B
from search import data as D
from search import record as rec
from search.clock import Clock
from search.record import Candidate, End
from search.space import Space
from search.train import History, train

GAVE_UP, FAILING = 3, 4  # worker exit statuses; anything else is not trial-level (storage gone, killed)
TIME_SLACK = 1.5  # a search trial may take 1.5x its share of the time budget before it is stopped


@dataclass(frozen=True)
class Nearest:
    """The rejected candidate that came nearest the budget: the limit it broke most, by how much, its value."""

    key: str
    overshoot: float  # value / limit - 1
    value: float


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
    nearest: Nearest | None = None  # the smallest overshoot seen among rejections
    _fold: tuple | None = field(default=None, repr=False)  # (race round, train, val): the last race round's splits

    # --- the trial ---

    def __call__(self, trial: optuna.Trial) -> float:
        race = rec.is_race(trial)
        if not race and (self.race_phase or self.beyond_target(trial)):  # not a rejection: nothing was sampled
            rec.end(trial, End.SURPLUS)
            raise optuna.TrialPruned()
        seed = rec.trial_seed(self.space.search.seed, trial.number)
        rec.write_start(trial, seed)
        torch.manual_seed(seed)
        if self.space.budget.tiers() and rec.read(trial).tier is None:
            rec.set_tier(trial, self.next_tier(trial.study.get_trials(deepcopy=False)))
        cand, model = self._prepare(trial)
        twin = None if race else self._twin(trial, cand)
        if twin is not None:
            self._untrained(trial, End.DUPLICATE, twin.number, raise_=False)
            if twin.state == TrialState.COMPLETE:
                return twin.value
            raise optuna.TrialPruned()
        self.rejected_in_a_row = 0
        r = rec.read(trial)  # designs and a warm start's candidates are measured at full length, as in their study
        hist = self._train(trial, cand, model.to(self.device),
                           keep_going=race or r.first_trial is not None or r.warm_from is not None)
        if hist.end_reason != End.COMPLETED:
            raise optuna.TrialPruned()
        return hist.val_acc[-1]

    def _prepare(self, trial):
        """(candidate, model) within budget; an invalid or over-budget candidate ends the trial untrained."""
        space, tier = self.space, rec.read(trial).tier
        try:
            cand, model = B.candidate_model(space, trial, self.data.meta, tier)
        except ValueError as e:
            trial.set_constraint("valid", 1.0)
            self._untrained(trial, End.INVALID, e)
        rec.write_candidate(trial, cand)
        cost, over = B.measure(model, cand.train, space.budget.tier(tier), self.data.meta,
                               n_train=self.retrain_images(), n_eval=0, epochs=space.retrain.epochs, device=self.device)
        for key, value in over.items():
            trial.set_constraint(key, value)
        rec.write_cost(trial, cost)
        if any(v > 0 for v in over.values()):
            worst = max(over, key=over.get)
            if self.nearest is None or over[worst] < self.nearest.overshoot:
                self.nearest = Nearest(worst, over[worst], getattr(cost, worst))
            self._untrained(trial, End.REJECTED, "time" if worst == "train_seconds" else worst)
        return cand, model

    def _train(self, trial, cand: Candidate, model, keep_going: bool) -> History:
        """Train at full planned length, reporting each epoch; the pruner (unless `keep_going`) and the clock may
        stop it. Records the outcome; an interrupted trial is enqueued again."""
        epochs = self.space.search.epochs
        floor = self.space.search.first_epoch_floor / self.data.meta.classes

        def on_epoch(epoch: int, val_acc: float) -> End | None:
            trial.report(val_acc, epoch + 1)  # step = epochs trained: the pruners' rungs are in epochs
            if epoch + 1 == epochs:  # a trial that reached the end is measured, not pruned
                return None
            # Near chance after an epoch, a trial has told the sampler all it will (a collapsed net, an lr far off):
            # it stops here rather than at the pruner's first rung. Checked here, not in a pruner wrapped around the
            # study's: Optuna's samplers recognise a HyperbandPruner by its type and sample per bracket.
            if epoch == 0 and not keep_going and val_acc <= floor:
                return End.BELOW_CHANCE
            if not rec.is_race(trial) and self.clock and self.clock.must_stop(trial.study.get_trials(deepcopy=False)):
                self.out_of_time = True
                return End.OUT_OF_TIME
            return End.PRUNED if not keep_going and trial.should_prune() else None

        share = self.time_share()
        deadline = time.monotonic() + share if share else None
        train_split, val = self.splits(rec.read(trial).race_fold)
        rec.write_val_images(trial, len(val))
        s = self.space.search
        cheap = 0 if keep_going or s.pruner == "none" else s.min_epochs  # the first rung decides at lower fidelity
        try:
            hist = train(model, train_split, val, self.data.mean, self.data.std, cand.train, epochs,
                         on_epoch=on_epoch, deadline=deadline, cheap_epochs=cheap, cheap_fraction=s.first_rung_fraction,
                         metric=s.metric)
        except KeyboardInterrupt:
            rec.end(trial, End.INTERRUPTED)
            trial.study.enqueue_trial(trial.params, user_attrs=rec.retry_attrs(trial))
            raise
        except RuntimeError as e:  # CUDA OOM and other failures inside the candidate
            msg = f"{type(e).__name__}: " + (str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__)
            rec.end(trial, End.ERROR, msg)
            self.failed_in_a_row += 1
            if self.failed_in_a_row >= self.space.search.max_failures:
                self.failing = msg
            raise
        self.failed_in_a_row = 0
        rec.write_training(trial, hist)
        return hist

    def next_tier(self, trials) -> str:
        """A sampled trial's ladder tier: the one with the fewest search trials trained or training, the smaller
        on a tie, so every tier gets its share of `--trials` whatever the workers do."""
        tiers = self.space.budget.tiers()
        taken = [rec.read(t).tier for t in trials if not rec.is_race(t) and not rec.is_untrained(t)]
        return min(tiers, key=lambda name: (taken.count(name), tiers.index(name)))

    def _twin(self, trial, cand):
        """An earlier search trial with the same candidate that trained or is training (another worker's)."""
        for t in trial.study.get_trials(deepcopy=False):
            if t.number != trial.number and not rec.is_race(t) and rec.read(t).candidate == cand and (
                    rec.is_trained(t) or rec.is_claimed(t)):
                return t
        return None

    def _untrained(self, trial, kind: End, detail: object = "", raise_: bool = True):
        rec.end(trial, kind, detail)
        self.rejected_in_a_row += 1
        if self.rejected_in_a_row >= self.space.search.max_rejections:
            self.gave_up = True
        if raise_:
            raise optuna.TrialPruned()

    # --- what a trial trains and validates on ---

    @functools.cached_property
    def search_split(self) -> D.Split:
        """The training split, or the fixed stratified share of it that `search.data_fraction` asks for."""
        return self._searched_share(self.data.train)

    def _searched_share(self, split: D.Split) -> D.Split:
        return D.searched_share(split, self.space.search.data_fraction, self.space.search.seed)

    def splits(self, fold: int | None) -> tuple[D.Split, D.Split]:
        """(train, val) a trial trains and is measured on: the search's, or race round `fold`'s (`D.race_fold`,
        at the search's `data_fraction`). Race runs enqueued before rounds existed (no fold) use the search's."""
        if not fold:
            return self.search_split, self.data.val
        if self._fold is None or self._fold[0] != fold:
            s = self.space.search
            size = D.race_val_size(len(self.data.val), s.race_val_fraction, self.space.data.val_fraction)
            train_split, val = D.race_fold(self.data, fold, size)
            self._fold = (fold, self._searched_share(train_split), val)
        return self._fold[1], self._fold[2]

    def retrain_images(self) -> int:
        return len(self.data.train) + (len(self.data.val) if self.space.retrain.train_on == "train+val" else 0)

    def time_share(self) -> float | None:
        """Seconds a search trial may take: its share of the retrain time budget, with slack."""
        if self.space.budget.train_seconds is None:
            return None
        s, r = self.space.search, self.space.retrain
        work = (s.epochs * len(self.search_split)) / (r.epochs * self.retrain_images())
        return self.space.budget.train_seconds * work * TIME_SLACK

    # --- the worker's stop rule (one place) ---

    def finished(self, study: optuna.Study) -> bool:
        """This worker's phase is over: it gave up or keeps failing; the race has no run left waiting; the search
        holds `trials` trained trials, or `--minutes` leaves no time for another."""
        if self.gave_up or self.failing:
            return True
        trials = study.get_trials(deepcopy=False)
        if self.race_phase:
            return not any(t.state == TrialState.WAITING for t in trials)
        return len(rec.trained(trials)) >= self.trials or not self.may_start(trials)

    def may_ask(self, study: optuna.Study) -> bool:
        """Ask the study for another trial now: the phase goes on and (search) the trials in flight, other workers'
        included, do not reach the target yet."""
        return not self.finished(study) and (
            self.race_phase or rec.count_in_flight(study.get_trials(deepcopy=False)) < self.trials)

    def beyond_target(self, trial: optuna.Trial) -> bool:
        """A sampled trial that workers which asked at the same time have left no room for."""
        trials = trial.study.get_trials(deepcopy=False)
        me = next(t for t in trials if t.number == trial.number)  # a Trial does not show its system attrs
        return not rec.is_enqueued(me) and rec.count_in_flight(trials, ahead_of=trial.number) >= self.trials

    def stop_when_done(self, study: optuna.Study, _trial) -> None:
        """Optuna callback after each trial: the same rule as `may_ask`."""
        if not self.may_ask(study):
            study.stop()

    def may_start(self, trials) -> bool:
        """Whether `--minutes` leaves time for another search trial (always without it); once it does not, the
        worker is `out_of_time`."""
        if self.clock and not self.out_of_time and not self.clock.may_start(trials):
            self.out_of_time = True
        return not self.out_of_time

    def exit_status(self) -> int:
        """A worker's exit status, the same in a process or in the parent: 0 done, GAVE_UP, FAILING."""
        return FAILING if self.failing else GAVE_UP if self.gave_up else 0

