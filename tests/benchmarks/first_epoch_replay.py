"""The first-epoch stop (`search.first_epoch_floor`) replayed on finished studies: which sampled search trials it
would have stopped after their first epoch, whether any of them reached the race (or won it), and the epochs it
saves. A study written before the stop existed shows what it would have changed; one written after it, what it did.

    python tests/benchmarks/first_epoch_replay.py sqlite:///studies/NAME.db [more storages ...] [--floor 2]

Every storage's studies are read (never written); the classes come from the study's stored space.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from search import record as rec  # noqa: E402
from search import space as S  # noqa: E402
from search.catalogue import builtin_meta  # noqa: E402


def classes_of(study, space) -> int:
    """The class count: the built-in dataset's, else the stored winner's or any candidate's model config."""
    meta = builtin_meta(space.data)
    if meta is not None:
        return meta.classes
    cand = next(c for t in study.trials if (c := rec.read(t).candidate) is not None)
    return cand.model["num_classes"]


def replay(study: optuna.Study, floor: float) -> dict:
    text, file = rec.stored_space(study)
    space = S.parse(S.read_yaml(text), file, text)
    trials = study.get_trials(deepcopy=False)
    limit = floor / classes_of(study, space)
    sampled = [t for t in rec.trained(trials) if rec.read(t).first_trial is None]
    stopped = [t for t in sampled if 1 in t.intermediate_values and t.intermediate_values[1] <= limit
               and (len(t.intermediate_values) > 1 or rec.read(t).end_reason == "below_chance")]
    raced = {rec.read(t).race_of for t in trials if rec.is_race(t)}
    winners = {r.trial for tier in space.budget.each_tier() if (r := rec.retrain_results(study, tier))}
    ran = sum(max(rec.read(t).epochs_run, len(t.intermediate_values)) for t in rec.trained(trials))
    saved = sum(max(rec.read(t).epochs_run, len(t.intermediate_values)) - 1 for t in stopped)
    return {"study": study.study_name, "limit": limit, "sampled": len(sampled), "stopped": len(stopped),
            "raced": len([t for t in stopped if t.number in raced]), "won": len([t for t in stopped if t.number in winners]),
            "saved": saved, "ran": ran}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("storages", nargs="+")
    p.add_argument("--floor", type=float, default=2.0, help="x chance (1 / classes)")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(f"{'study':22} {'floor':>6} {'sampled':>7} {'stopped':>7} {'raced':>5} {'won':>3} {'epochs saved':>20}")
    for url in args.storages:
        for summary in optuna.get_all_study_summaries(url):
            study = optuna.load_study(study_name=summary.study_name, storage=url)
            if rec.stored_space(study) is None:
                continue
            r = replay(study, args.floor)
            print(f"{r['study']:22} {r['limit']:6.3f} {r['sampled']:7} {r['stopped']:7} {r['raced']:5} {r['won']:3} "
                  f"{r['saved']:6} of {r['ran']:5} ({r['saved'] / max(1, r['ran']):.0%})", flush=True)


if __name__ == "__main__":
    main()
