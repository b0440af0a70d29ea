"""The race: before the retrain, the top `search.race_top` distinct candidates at full fidelity are trained
again on more seeds, and the winner is the best *mean* validation accuracy over the race's own rounds.

One seed on a small validation split picks noise (the top of a search sits within a few tenths of a point);
a finalist's search run is its first seed, `search.race_seeds - 1` race trials add the others. Race round r
(user attr `race_fold: r`) trains every finalist on the same fresh validation split, drawn from the training
split (`data.race_fold`; `search.race_val_fraction` of the data, by default as many images as the search's):
finalists are compared pairwise on the same images within a round, and on images the search did not select on. The ranking is the mean over these rounds; the search run's value only breaks
ties. It was measured on the split the finalists were *selected* on (the top 3 of 40 on 800 images), so it
carries each finalist's luck there: at study seed 3 of tests/benchmarks/vs_hand.py the finalists' search values
sat -0.9 to +2.3 pt from their race rounds' means, and counted as a third seed it tied the hand net filled with
a separable net that beat it in both fresh rounds (0.8900 / 0.8725 vs 0.8938 / 0.8825). Race trials are
ordinary trials enqueued with the finalist's parameters and user attrs `race_of: N`, `race_fold: r`: they are in
storage and optuna-dashboard, resume like any trial, and are never pruned. The test split is not read here.
"""
from __future__ import annotations

import statistics

from optuna.trial import TrialState

from search.study import is_race, trained


def finalists(trials, top: int) -> list:
    """The `top` completed search trials with the best validation accuracy, one per distinct candidate."""
    done = sorted((t for t in trained(trials) if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    out, seen = [], []
    for t in done:
        if t.user_attrs["candidate"] not in seen:
            seen.append(t.user_attrs["candidate"])
            out.append(t)
    return out[:top]


def runs_of(trials, finalist) -> list:
    """Race trials of a finalist that trained or still will (waiting / running)."""
    alive = (TrialState.WAITING, TrialState.RUNNING)
    return [t for t in trials if t.user_attrs.get("race_of") == finalist.number
            and (t.user_attrs.get("trained") or t.state in alive)]


def enqueue(study, top: int, seeds: int) -> int:
    """Enqueue the race trials still missing (none on a resumed race that has them); -> how many are pending."""
    trials = study.get_trials(deepcopy=False)
    for f in finalists(trials, top):
        runs = runs_of(trials, f)
        have = {t.user_attrs.get("race_fold") for t in runs}
        missing = [r for r in range(1, seeds) if r not in have][: max(0, seeds - 1 - len(runs))]
        for r in missing:
            study.enqueue_trial(f.params, user_attrs={"race_of": f.number, "race_fold": r}, skip_if_exists=False)
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def val_of(t) -> float:
    """A race run's validation accuracy; a run that diverged or stopped early counts with its last value."""
    if t.state == TrialState.COMPLETE:
        return t.value
    return t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else 0.0


def standings(trials, top: int) -> list[dict]:
    """Per finalist: its trial number, its search run's validation accuracy, each race round's (by round), their
    mean and std (the search value where no round finished); best mean first, ties to the better search value."""
    rows = []
    for f in finalists(trials, top):
        runs = sorted((t for t in runs_of(trials, f) if t.state.is_finished()), key=lambda t: t.user_attrs["race_fold"])
        vals = [val_of(t) for t in runs] or [f.value]
        rows.append({"trial": f.number, "search_val": f.value, "val_accs": [val_of(t) for t in runs],
                     "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                     "params": f.user_attrs.get("params")})
    # rounded: means of the same accuracies summed in another order must tie, not differ in the 16th digit
    return sorted(rows, key=lambda r: (-round(r["mean"], 9), -r["search_val"]))


def winner(trials, top: int):
    """The trial whose candidate wins the race (the best search trial when there is no race)."""
    rows = standings(trials, max(top, 1))
    if not rows:
        return None
    number = rows[0]["trial"]
    return next(t for t in trials if t.number == number and not is_race(t))
