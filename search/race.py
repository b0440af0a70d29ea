"""The race: before the retrain, the top `search.race_top` distinct candidates at full fidelity, and the
`search.first_trials` designs the user named (`search.race_first_trials`), are trained again on more seeds; the
winner has the best *mean* validation accuracy over the race's own rounds, unless it is a sampled candidate
ahead of the best design by no more than `search.race_margin`: then the design wins.

Why: one seed on a small validation split picks noise, and a finalist's search value carries the luck that
selected it, so it only breaks ties (a named design's search run was selected by nobody: it counts as a seed).
Race round r trains every finalist on the same fresh validation split drawn from the training split
(`data.race_fold`), so finalists are compared pairwise on images the search did not select on. The margin: one
round measures a gap between two finalists about as noisily as the gaps it decides; a sampled net must beat a
named design by more than that. Evidence: tests/benchmarks/RESULTS.md, "The race".

Race runs are ordinary trials enqueued with the finalist's parameters (record.race_attrs): they are in storage
and optuna-dashboard, resume like any trial, and are never pruned. The test split is not read here. With a budget
ladder each tier races apart: the callers pass one tier's trials (record.of_tier).
"""
from __future__ import annotations

import dataclasses
import statistics

from optuna.trial import TrialState

from search import record as rec
from search.record import RaceRow
from search.space import SearchConfig


def finalists(trials, search: SearchConfig) -> list:
    """The `search.race_top` completed search trials with the best validation accuracy, one per distinct candidate,
    then (`search.race_first_trials`) every completed `search.first_trials` design not among them: the designs the
    user named are the reference, so the winner has to beat them on the race's fresh images, not only on the split
    that ranked them. No race (`race_top: 0`): the best search trial alone."""
    top = search.race_top
    done = sorted(rec.full_length(trials), key=lambda t: -t.value)
    out, seen = [], []
    for t in done:
        cand = rec.read(t).candidate
        if cand not in seen:
            seen.append(cand)
            out.append(t)
    best = out[:max(top, 1)]
    if top and search.race_first_trials:
        best += [t for t in out[len(best):] if rec.read(t).first_trial is not None]
    return best


def runs_of(trials, finalist) -> list:
    """Race trials of a finalist that trained or still will (waiting / running)."""
    alive = (TrialState.WAITING, TrialState.RUNNING)
    return [t for t in trials if rec.read(t).race_of == finalist.number and (rec.is_trained(t) or t.state in alive)]


def enqueue(study, search: SearchConfig, tiers: tuple = (None,)) -> int:
    """Enqueue the race trials still missing (none on a resumed race that has them), a race per ladder tier;
    -> how many are pending."""
    trials, seeds = study.get_trials(deepcopy=False), search.race_seeds
    for tier in tiers:
        for f in finalists(rec.of_tier(trials, tier), search):
            runs = runs_of(trials, f)
            have = {rec.read(t).race_fold for t in runs}
            missing = [r for r in range(1, seeds) if r not in have][: max(0, seeds - 1 - len(runs))]
            for r in missing:
                study.enqueue_trial(f.params, user_attrs=rec.race_attrs(f, r), skip_if_exists=False)
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def val_of(t) -> float:
    """A race run's validation accuracy; a run that diverged or stopped early counts with its last value."""
    if t.state == TrialState.COMPLETE:
        return t.value
    last = rec.last_value(t)
    return 0.0 if last is None else last


def counts_search_run(f, search: SearchConfig) -> bool:
    """A design that races because the user named it (`race_first_trials`), not for its rank: its search run was
    measured on images no choice of it depended on, so it counts as one more seed. A finalist's search value that
    got it into the race does not: it carries the luck that picked it (see the module docstring)."""
    return bool(search.race_top and search.race_first_trials and rec.read(f).first_trial is not None)


def standings(trials, search: SearchConfig) -> list[RaceRow]:
    """Per finalist: its trial number, its search run's validation accuracy, each race round's (by round), the mean
    and std of what counts (the rounds; a named design's search run too; the search value where no round
    finished), its first_trials index if it is one of those designs. The winner first: the best mean, ties to the
    better search value, except that a finalist the user did not name replaces the best raced design only when its
    mean is ahead by more than `search.race_margin`; otherwise that design leads, with `kept: True`."""
    rows = []
    for f in finalists(trials, search):
        runs = sorted((t for t in runs_of(trials, f) if t.state.is_finished()), key=lambda t: rec.read(t).race_fold)
        rounds, counts = [val_of(t) for t in runs], counts_search_run(f, search)
        vals = ([f.value] if counts else []) + rounds or [f.value]
        r = rec.read(f)
        rows.append(RaceRow(f.number, f.value, rounds, counts, statistics.fmean(vals),
                            statistics.stdev(vals) if len(vals) > 1 else 0.0, r.params, r.first_trial))
    # rounded: means of the same accuracies summed in another order must tie, not differ in the 16th digit
    rows.sort(key=lambda r: (-round(r.mean, 9), -r.search_val))
    designs = [r for r in rows if r.first_trial is not None]
    if rows and designs and rows[0].first_trial is None and rows[0].mean - designs[0].mean <= search.race_margin:
        rows.remove(designs[0])
        rows.insert(0, dataclasses.replace(designs[0], kept=True))
    return rows


def winner(trials, search: SearchConfig):
    """The trial whose candidate wins the race, standings' first (the best search trial when there is no race)."""
    rows = standings(trials, search)
    if not rows:
        return None
    number = rows[0].trial
    return next(t for t in trials if t.number == number and not rec.is_race(t))
