"""A budget ladder in one run against one run per budget, side by side on the `vs_hand.py` task.

Task: vs_hand.py's (8,000 Fashion-MNIST training images, the official 10,000 test images, 15 epochs), a copy of
spaces/mnist_8k.yaml pointed at it. Runs, one after the other on this machine:
- ladder: one nas-run with `budget.params: [2000, 4000, 8000]`, `--trials T` in all (T/3 per tier);
- separate: one nas-run per budget (`budget.params` 2000, 4000, 8000), `--trials T` each.
A run finished in an earlier call (the same --work) is not run again: its recorded wall-clock counts.
Per tier: the retrained winner's test accuracy (mean ± std over retrain.seeds seeds), and per run the epochs
trained in all (search trials, race runs and retrain seeds) and the wall-clock.

    python tests/benchmarks/ladder.py [--trials 40] [--tiers 2000,4000,8000] [--workers auto] [--work DIR]
                                      [--epochs 6]   # retrain (and search) epochs of every run, for a shorter check
                                      [--seed 1]     # search.seed of every run (default the space's), one --work each
                                      [--ladder-only] [--code CHECKOUT --label NAME]
        --ladder-only runs the ladder alone; --code runs another checkout's nas-run (a folder holding search/ and
        models/: a variant such as one TPE over all tiers), its study named ladder_T_NAME.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_per_minute import _command, _env  # noqa: E402
from vs_hand import build_task, space_copy  # noqa: E402


def run(space: dict, work: Path, trials: int, workers: str, code: str = "new") -> float:
    """nas-run, once: a run that finished in an earlier call (the same --work) is not run again; -> its seconds."""
    done = work / f"{space['name']}.seconds"
    if done.exists():
        return float(done.read_text())
    path = work / f"{space['name']}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    t0 = time.perf_counter()
    with open(work / f"{space['name']}.log", "w") as log:
        rc = subprocess.run([*_command(code, "nas-run"), str(path), "--trials", str(trials), "--workers", workers,
                             "--studies", str(work / "studies")], stdout=log, stderr=subprocess.STDOUT,
                            env=_env(code), cwd=work).returncode  # not this checkout's folder: `-c` imports from there
    if rc != 0:
        sys.exit(f"nas-run failed ({rc}); see {work / space['name']}.log")
    done.write_text(str(time.perf_counter() - t0))
    return float(done.read_text())


def epochs_trained(study) -> int:
    """Every epoch the run trained: search trials and race runs (epochs_run), and the retrain seeds of each tier."""
    trials = sum(t.user_attrs.get("epochs_run", 0) for t in study.get_trials(deepcopy=False))
    retrains = [v for k, v in study.user_attrs.items() if k == "retrain" or k.startswith("retrain:")]
    return trials + sum(r["epochs"] * len(r["runs"]) for r in retrains)


def winner_row(study, key: str) -> dict:
    r = study.user_attrs[key]
    accs = [x["test_acc"] for x in r["runs"]]
    t = study.trials[r["trial"]]
    return {"params": t.user_attrs["params"], "mean": statistics.fmean(accs), "std": statistics.stdev(accs),
            "winner": "design" if "first_trial" in t.user_attrs else "sampled",
            "int8": (r.get("deployment") or {}).get("int8", {}).get("test_acc"),
            "latency_ms": (r.get("deployment") or {}).get("latency_ms", {}).get("batch_1", {}).get("ms")}


def shorter(space: dict, epochs: int | None) -> dict:
    """The space with `epochs` retrain (and search) epochs and the first rung at one seventh of them, as the
    space's 2 of 15."""
    if epochs:
        space["retrain"]["epochs"] = epochs
        space["search"]["min_epochs"] = max(1, round(epochs / 7))
    return space


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=40, help="--trials of each separate run")
    p.add_argument("--ladder-trials", type=int, help="--trials of the ladder, all tiers together (default --trials)")
    p.add_argument("--tiers", default="2000,4000,8000")
    p.add_argument("--workers", default="auto")
    p.add_argument("--work", default="/tmp/nas-run-ladder")
    p.add_argument("--epochs", type=int, help="retrain.epochs (and so the search's) of every run; default the space's 15")
    p.add_argument("--seed", type=int, help="search.seed (the study seed) of every run; default the space's")
    p.add_argument("--ladder-only", action="store_true", help="the ladder alone, no separate runs")
    p.add_argument("--code", default="new", help="new, or a checkout folder whose nas-run runs the ladder")
    p.add_argument("--label", help="the ladder variant's name (with --code; default the folder's name)")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    root = build_task(work / "task")
    tiers = [int(v) for v in args.tiers.split(",")]
    storage = lambda name: f"sqlite:///{work}/studies/{name}.db"  # noqa: E731
    rows, totals = {}, {"separate": [0, 0.0]}
    # the ladder first: a resumed study (the same --work) is not trained again, so an interrupted benchmark goes on
    ladder_trials = args.ladder_trials or args.trials
    name = "ladder" if ladder_trials == args.trials else f"ladder_{ladder_trials}"
    if args.code != "new":
        name += "_" + (args.label or Path(args.code).name)
    seed = {} if args.seed is None else {"seed": args.seed}
    space = shorter(space_copy(root, name, **seed), args.epochs)
    space["budget"]["params"] = tiers
    seconds = run(space, work, ladder_trials, args.workers, args.code)
    study = optuna.load_study(study_name=name, storage=storage(name))
    for limit in tiers:
        rows[("ladder", limit)] = winner_row(study, f"retrain:params_{limit}")
        print(f"ladder {limit}: {rows[('ladder', limit)]}", flush=True)
    totals["ladder"] = [epochs_trained(study), seconds]
    if args.ladder_only:
        print(f"{name}: {totals['ladder'][0]:,} epochs trained, {seconds / 60:.1f} min")
        return save(work / f"{name}.json", rows, totals, ladder_trials=ladder_trials)
    for limit in tiers:
        space = shorter(space_copy(root, f"separate_{limit}", **seed), args.epochs)
        space["budget"]["params"] = limit
        seconds = run(space, work, args.trials, args.workers)
        study = optuna.load_study(study_name=space["name"], storage=storage(space["name"]))
        rows[("separate", limit)] = winner_row(study, "retrain")
        totals["separate"][0] += epochs_trained(study)
        totals["separate"][1] += seconds
        print(f"separate {limit}: {rows[('separate', limit)]}", flush=True)

    print(f"\n--trials {args.trials} per separate run, {ladder_trials} in all for the ladder")
    print(f"{'tier':>6} | {'separate: params, test acc':>34} | {'ladder: params, test acc':>34} | ladder - separate")
    for limit in tiers:
        a, b = rows[("separate", limit)], rows[("ladder", limit)]
        print(f"{limit:>6} | {a['params']:>6,} {a['mean']:.4f} ± {a['std']:.4f} (int8 {a['int8']}) | "
              f"{b['params']:>6,} {b['mean']:.4f} ± {b['std']:.4f} (int8 {b['int8']}) | {b['mean'] - a['mean']:+.4f}")
    for what, (epochs, seconds) in totals.items():
        print(f"{what}: {epochs:,} epochs trained, {seconds / 60:.1f} min")
    print(f"ladder / separate epochs: {totals['ladder'][0] / totals['separate'][0]:.0%}")
    save(work / f"{name}.json", rows, totals, trials=args.trials, ladder_trials=ladder_trials)


def save(path: Path, rows: dict, totals: dict, **run) -> None:
    path.write_text(json.dumps({"rows": {f"{k[0]}_{k[1]}": v for k, v in rows.items()}, "totals": totals, **run},
                               indent=2))


if __name__ == "__main__":
    main()
