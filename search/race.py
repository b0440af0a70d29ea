"""The race: before the retrain, the top `search.race_top` distinct candidates at full fidelity, and the
`search.first_trials` designs the user named (`search.race_first_trials`), are trained again on more seeds; the
winner has the best *mean* validation accuracy over the race's own rounds, unless it is a sampled candidate
ahead of the best design by no more than `search.race_margin`: then the design wins.

One seed on a small validation split picks noise (the top of a search sits within a few tenths of a point);
`search.race_seeds - 1` race trials add seeds. Race round r (user attr `race_fold: r`) trains every finalist on
the same fresh validation split, drawn from the training split (`data.race_fold`; `search.race_val_fraction` of
the data, by default as many images as the search's): finalists are compared pairwise on the same images within
a round, and on images the search did not select on.

What counts: the race rounds, and a named design's search run (it races because it was named, not for its rank,
so its search value is an honest seed). A sampled finalist's search value only breaks ties: it was measured on
the split the finalists were *selected* on, so it carries the luck that picked it: at study seed 3 of
tests/benchmarks/vs_hand.py (800 validation images then) the finalists' search values sat -0.9 to +2.3 pt from
their race rounds' means, and counted as a third seed it tied the hand net filled with a separable net that beat
it in both fresh rounds (0.8900 / 0.8725 vs 0.8938 / 0.8825).

Why a margin: one race round on 2,000 images measures the gap between two finalists with a std of ~0.6 pt
(tests/benchmarks/race_noise.py), as large as the gaps it decides. A design the user named is the reference the
search has to beat; a candidate ahead of it by less than the round's noise has not shown that it does. At study
seed 4 of vs_hand.py a sampled net led the hand net filled by 0.35 pt on its round and retrained 0.3 pt below it.

Race trials are ordinary trials enqueued with the finalist's parameters and user attrs `race_of: N`,
`race_fold: r`: they are in storage and optuna-dashboard, resume like any trial, and are never pruned. The test
split is not read here.
"""
from __future__ import annotations

import statistics

from optuna.trial import TrialState

from search.space import SearchConfig
from search.study import is_race, trained


def finalists(trials, search: SearchConfig) -> list:
    """The `search.race_top` completed search trials with the best validation accuracy, one per distinct candidate,
    then (`search.race_first_trials`) every completed `search.first_trials` design not among them: the designs the
    user named are the reference, so the winner has to beat them on the race's fresh images, not only on the split
    that ranked them (at study seed 4 of tests/benchmarks/vs_hand.py the separable design, the winner at seeds 0 and
    2, ranked 5th there by 0.8 pt and was never raced). No race (`race_top: 0`): the best search trial alone."""
    top = search.race_top
    done = sorted((t for t in trained(trials) if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    out, seen = [], []
    for t in done:
        if t.user_attrs["candidate"] not in seen:
            seen.append(t.user_attrs["candidate"])
            out.append(t)
    best = out[:max(top, 1)]
    if top and search.race_first_trials:
        best += [t for t in out[len(best):] if "first_trial" in t.user_attrs]
    return best


def runs_of(trials, finalist) -> list:
    """Race trials of a finalist that trained or still will (waiting / running)."""
    alive = (TrialState.WAITING, TrialState.RUNNING)
    return [t for t in trials if t.user_attrs.get("race_of") == finalist.number
            and (t.user_attrs.get("trained") or t.state in alive)]


def enqueue(study, search: SearchConfig) -> int:
    """Enqueue the race trials still missing (none on a resumed race that has them); -> how many are pending."""
    trials, seeds = study.get_trials(deepcopy=False), search.race_seeds
    for f in finalists(trials, search):
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


def counts_search_run(f, search: SearchConfig) -> bool:
    """A design that races because the user named it (`race_first_trials`), not for its rank: its search run was
    measured on images no choice of it depended on, so it counts as one more seed. A finalist's search value that
    got it into the race does not: it carries the luck that picked it (see the module docstring)."""
    return bool(search.race_top and search.race_first_trials and "first_trial" in f.user_attrs)


def standings(trials, search: SearchConfig) -> list[dict]:
    """Per finalist: its trial number, its search run's validation accuracy, each race round's (by round), the mean
    and std of what counts (the rounds; a named design's search run too; the search value where no round
    finished), its first_trials index if it is one of those designs. The winner first: the best mean, ties to the
    better search value, except that a finalist the user did not name replaces the best raced design only when its
    mean is ahead by more than `search.race_margin`; otherwise that design leads, with `kept: True`."""
    rows = []
    for f in finalists(trials, search):
        runs = sorted((t for t in runs_of(trials, f) if t.state.is_finished()), key=lambda t: t.user_attrs["race_fold"])
        rounds, counts = [val_of(t) for t in runs], counts_search_run(f, search)
        vals = ([f.value] if counts else []) + rounds or [f.value]
        rows.append({"trial": f.number, "search_val": f.value, "val_accs": rounds, "search_counts": counts,
                     "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                     "params": f.user_attrs.get("params"), "first_trial": f.user_attrs.get("first_trial")})
    # rounded: means of the same accuracies summed in another order must tie, not differ in the 16th digit
    rows.sort(key=lambda r: (-round(r["mean"], 9), -r["search_val"]))
    designs = [r for r in rows if r["first_trial"] is not None]
    if rows and designs and rows[0]["first_trial"] is None and rows[0]["mean"] - designs[0]["mean"] <= search.race_margin:
        rows.remove(designs[0])
        rows.insert(0, designs[0] | {"kept": True})
    return rows


def winner(trials, search: SearchConfig):
    """The trial whose candidate wins the race, standings' first (the best search trial when there is no race)."""
    rows = standings(trials, search)
    if not rows:
        return None
    number = rows[0]["trial"]
    return next(t for t in trials if t.number == number and not is_race(t))
