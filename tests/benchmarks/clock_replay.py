"""How well `--minutes` prices what follows the search (search/clock.py), on finished vs_hand.py runs.

For each output of tests/benchmarks/vs_hand.py (what it printed, ending in its JSON rows; each nas-run row names
the log in the work folder that holds the study): the tail the clock prices
for the finalists that raced there (their race runs and the slowest of them retrained, from the trials' own
seconds per epoch), against the tail the run took: the whole command's seconds (vs_hand.py's
`seconds`) less the search (first search trial started to last one ended). What the run spent before its first
trial (starting, loading the data) lands in the measured tail, so the measured figure is a little high.

    python tests/benchmarks/vs_hand.py --skip-hand --work /tmp/vs6b > /tmp/vs6b.log   # earlier
    python tests/benchmarks/clock_replay.py /tmp/vs6b.log /tmp/vs7b.log ...
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from search import data as D  # noqa: E402
from search.cost import phase_sizes, tail_seconds  # noqa: E402
from search.run import load_stored  # noqa: E402
from search.record import is_race  # noqa: E402


def replay(row: dict, workers: int) -> dict:
    work, name = Path(row["log"]).parent, row["what"].removeprefix("nas-run ")
    study, space = load_stored(name, None, str(work / "studies"))
    data = D.load(space.data, "cpu", space.search.seed)
    trials = study.get_trials(deepcopy=False)
    search = [t for t in trials if not is_race(t) and t.datetime_complete]
    ended = max(t.datetime_complete for t in search if t.user_attrs.get("trained"))
    at_end = [t for t in trials if t.datetime_complete and t.datetime_complete <= ended and not is_race(t)]
    n = phase_sizes(space, len(data.train), len(data.val))
    # the finalists that did race (the rule that picks them may have changed since the run): like against like
    raced = {t.user_attrs["race_of"] for t in trials if is_race(t)}
    finals = [t for t in at_end if t.number in raced]
    total = row["seconds"]
    searched = (ended - min(t.datetime_start for t in search if t.datetime_start)).total_seconds()
    return {"study": space.name, "priced": tail_seconds(finals, space, n, workers), "took": total - searched,
            "total": total, "search": searched}


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    workers = 2
    print(f"{'study':12} {'search':>8} {'tail priced':>11} {'tail took':>9} {'priced/took':>11}")
    for out in map(Path, sys.argv[1:]):
        text = out.read_text()
        for row in json.loads(text[text.rindex("\n[") + 1:]):
            if not row["what"].startswith("nas-run "):
                continue
            r = replay(row, workers)
            print(f"{r['study']:12} {r['search'] / 60:6.1f} m {r['priced'] / 60:9.1f} m {r['took'] / 60:7.1f} m "
                  f"{r['priced'] / r['took']:11.2f}")


if __name__ == "__main__":
    main()
