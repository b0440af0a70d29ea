"""Warm start (#37): `nas-run SPACE --from EARLIER` against the same run cold, at the same --trials, over study seeds,
in four scenarios built from Debian's dataset-fashion-mnist (each space written by `nas-init`, as a user would):

    (a) budget   fm28 (28 px grey, 10 classes) at 8,000 params, warm-started from a 4,000-param study of it;
    (b) size     fm64c (the same kind of images at 64 px, grey in R, G and B) at 25,000 params, warm-started from an
                 8,000-param study of fm28;
    (c) classes  fm28 at 8,000 params, warm-started from a study of fm28_5 (its first 5 classes only);
    (d) colour   fm32c (the same kind of images at 32 px, grey in R, G and B, 2,000 of them) at 20,000 params,
                 warm-started from the 8,000-param study of fm28: nas-init lays out a plain net there, as at 64 px.
(a) and (c) share the cold runs. Every run is `nas-run --workers auto` on this machine, one after another.

    python tests/benchmarks/warm_start.py run [--work DIR] [--seeds 5] [--first-seed 0] [--trials 16] [--epochs 8]
                                              [--variant evidence|startup | --code CHECKOUT] [--scenarios a,c]
    python tests/benchmarks/warm_start.py table [--work DIR] [--variant V | --code CHECKOUT]
    python tests/benchmarks/warm_start.py winners [--work DIR] [--variant V | --code CHECKOUT]
        The issue's measure: minutes until the warm run's winner (its best full-length trial then, retrained by
        `nas-export --trial N` as the run retrains) first reached the cold run's final test accuracy; the same for
        the cold run's own winners, as the reference (a first design may already reach it), and for another cold run
        (the next seed's) as if it were the warm run: what the measure gives by chance.

`--variant evidence`: the warm runs carry no candidate over (the sampler's evidence only), through a
sitecustomize.py that wraps warm.read in the nas-run process: what the carried candidates add, and cost.
`--variant nooptimizer`: the warm runs' evidence and carried candidate leave out the optimizer and its learning rate
(the sampler chooses them as cold): whether (b)'s shift to SGD at 40 trials is what the 28-px evidence costs there.
`--variant startup`: the warm runs keep the neighbourhood's whole start-up (10 sampled trials) before the sampler
learns from the evidence, as before 86bba41, through a sitecustomize.py the same way. Since 647c4f5 the warm start
does so itself where the stages do not carry: on (b) the variant is the shipped warm start (the evidence shown from
the start, not after the start-up).

`--code CHECKOUT`: the warm runs run another checkout's code (a folder holding search/, put first on PYTHONPATH),
named after the folder, paired with the same cold runs (this checkout's): one change measured against another in
one work folder.

For each warm/cold pair (same study seed, so the same validation split): the final retrained winner's test accuracy;
the minutes from the command's start until the best full-length search trial's validation accuracy first reached the
cold run's final best (the value selection ranks by; `never` if it did not), against the cold run's minutes to that
value and its whole wall-clock. Rows go to DIR/rows.jsonl as runs finish; a rerun skips finished runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
from vs_hand import SOURCE  # noqa: E402

from search import data as D  # noqa: E402
from search import record as rec  # noqa: E402
from search.decode import resize, to_channels  # noqa: E402

TASKS = {"fm28": (28, 1, 3000, tuple(range(10))), "fm28_5": (28, 1, 3000, (0, 1, 2, 3, 4)),
         "fm64c": (64, 3, 1000, tuple(range(10))),
         "fm32c": (32, 3, 2000, tuple(range(10)))}  # name: (side, channels, training images, classes kept)
TEST_IMAGES = 1500
SOURCES = {"src_fm28_4k": ("fm28", 4000), "src_fm28_5": ("fm28_5", 8000), "src_fm28_8k": ("fm28", 8000)}
SCENARIOS = {"a": ("fm28", 8000, "src_fm28_4k"), "b": ("fm64c", 25000, "src_fm28_8k"), "c": ("fm28", 8000, "src_fm28_5"),
             "d": ("fm32c", 20000, "src_fm28_8k")}
SOURCE_SEED, SOURCE_TRIALS = 100, 20


def build(work: Path, task: str) -> Path:
    """DIR/data/TASK.npz: a stratified draw of Fashion-MNIST's training and test images."""
    out = work / "data" / f"{task}.npz"
    if out.exists():
        return out
    side, channels, n_train, keep = TASKS[task]
    files = {k: D._read_idx(SOURCE / (stem + ".gz")) for k, stem in D.IDX_FILES.items()}
    arrays = {}
    for split, n in (("train", n_train), ("test", TEST_IMAGES)):
        x, y = files[f"{split}_x"], files[f"{split}_y"]
        mask = torch.tensor([int(v) in keep for v in y])
        x, y = x[mask], y[mask]
        _, part = D.stratified_split(y, n / len(y), 0)
        x = to_channels(x[part].unsqueeze(1), channels)
        x = resize(x, (side, side)) if side != 28 else x
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x.numpy(), y[part].numpy()
    arrays["class_names"] = np.array([f"class{c}" for c in keep])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    return out


def space(work: Path, task: str, params: int, name: str, seed: int, epochs: int) -> Path:
    """nas-init's space for the task, with the benchmark's short training and the study seed."""
    out = work / "spaces" / f"{name}.yaml"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".init.yaml")
    tmp.unlink(missing_ok=True)
    subprocess.run([shutil.which("nas-init"), str(build(work, task)), "--params", str(params), "--out", str(tmp)],
                   check=True, stdout=subprocess.DEVNULL)
    raw = yaml.safe_load(tmp.read_text())
    raw["name"] = name
    raw["search"].update(seed=seed, epochs=epochs, race_top=2, race_seeds=2)
    raw["retrain"].update(epochs=epochs, seeds=2)
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    tmp.unlink()
    return out


PATCHES = {  # variant: the sitecustomize.py its warm runs start with
    "evidence": """import dataclasses
import search.warm as W
_read = W.read
W.read = lambda *a, **k: dataclasses.replace(_read(*a, **k), candidates=())
""",
    "nooptimizer": """import dataclasses, optuna
import search.warm as W
_read = W.read
def _keep(n):
    return n != "train.optimizer" and not n.startswith("train.lr")
def _strip(t):
    e = optuna.trial.create_trial(state=t.state, value=t.value, params={n: v for n, v in t.params.items() if _keep(n)},
                                  distributions={n: d for n, d in t.distributions.items() if _keep(n)},
                                  intermediate_values=t.intermediate_values)
    e.number = t.number
    return e
def read(*a, **k):
    w = _read(*a, **k)
    return dataclasses.replace(w, evidence=tuple(_strip(t) for t in w.evidence), candidates=tuple(
        dataclasses.replace(c, params={n: v for n, v in c.params.items() if _keep(n)}) for c in w.candidates))
W.read = read
""",
    "startup": """import search.neighbourhood as N
_init = N.NeighbourhoodSampler.__init__
N.NeighbourhoodSampler.__init__ = lambda self, sampler, startup, study_seed: _init(self, sampler, 10, study_seed)
"""}


def run(work: Path, name: str, space_file: Path, trials: int, warm_from: str | None = None,
        variant: str = "both", code: str | None = None) -> dict:
    """One `nas-run` (skipped when finished before) -> its row."""
    studies = work / "studies"
    done = work / "runs" / f"{name}.json"
    if done.exists():
        return json.loads(done.read_text())
    done.parent.mkdir(parents=True, exist_ok=True)
    cmd = [shutil.which("nas-run"), str(space_file), "--trials", str(trials), "--studies", str(studies),
           "--format", "checkpoint"] + (["--from", warm_from] if warm_from else [])
    env = dict(os.environ)
    if variant in PATCHES:
        patch = work / f"patch_{variant}"
        patch.mkdir(exist_ok=True)
        (patch / "sitecustomize.py").write_text(PATCHES[variant])
        env["PYTHONPATH"] = str(patch)
    if code:
        env["PYTHONPATH"] = str(Path(code).resolve())
    started = time.time()
    with open(work / "runs" / f"{name}.log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        sys.exit(f"{name}: nas-run failed ({rc}); see {work / 'runs' / name}.log")
    row = {"name": name, "seconds": time.time() - started, "warm_from": warm_from, **measure(studies, name, started)}
    done.write_text(json.dumps(row))
    return row


def measure(studies: Path, name: str, started: float) -> dict:
    """The retrained winner's test accuracies and the best-so-far curve: (minutes from the start, the best
    full-length search trial's validation accuracy then), a point per improvement."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{studies / name}.db")
    trials = study.get_trials(deepcopy=False)
    full = sorted(rec.full_length(trials), key=lambda t: t.datetime_complete)
    curve, best = [], float("-inf")
    for t in full:
        if t.value > best:
            best = t.value
            curve.append(((t.datetime_complete.timestamp() - started) / 60, t.value, "warm_from" in t.user_attrs))
    retrain = study.user_attrs["retrain"]
    winner = trials[retrain["trial"]]
    return {"accs": [r["test_acc"] for r in retrain["runs"]], "curve": curve,
            "trained": len(rec.trained(trials)),
            "winner_carried": "warm_from" in winner.user_attrs}


def reach(curve, value: float) -> float | None:
    """Minutes until the curve first reached `value`."""
    return next((m for m, v, _ in curve if v >= value - 1e-12), None)


def winners(work: Path, run: dict, target: float) -> tuple[list, float | None]:
    """The issue's own measure: when a run's winner first reached `target` (the cold run's final test accuracy) ->
    (its winners: (minutes, trial, test accuracy) each, minutes from the command's start), the minutes or None. The
    winner at a moment is taken as the best full-length search trial then (what the race would start from),
    retrained as the run's winner is (`nas-export --trial N`: retrain.seeds, the trial's own seeds; the run's own
    retrain where it is the final winner); the final winner counts from the run's end."""
    studies, name = work / "studies", run["name"]
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{studies / name}.db")
    full = sorted(rec.full_length(study.get_trials(deepcopy=False)), key=lambda t: t.datetime_complete)
    # the curve's clock (minutes from the command's start) from its first point, the first full-length trial
    started = full[0].datetime_complete.timestamp() - 60 * run["curve"][0][0]
    retrain = study.user_attrs["retrain"]
    cache = work / "winners_test.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}

    def test_of(number: int) -> float:
        if number == retrain["trial"]:
            return statistics.fmean(r["test_acc"] for r in retrain["runs"])
        key = f"{name}#{number}"
        if key not in known:
            folder = studies / name / f"trial-{number}"
            if not (folder / "model_card.json").exists():
                subprocess.run([shutil.which("nas-export"), name, "--trial", str(number), "--studies", str(studies),
                                "--format", "checkpoint"], check=True, stdout=subprocess.DEVNULL)
            runs = json.loads((folder / "model_card.json").read_text())["metrics"]["runs"]
            known[key] = statistics.fmean(r["test_acc"] for r in runs)
            cache.write_text(json.dumps(known))
        return known[key]

    points, best = [], float("-inf")
    for t in full:  # up to the first winner that reaches the target: what comes after does not change the measure
        if t.value > best:
            best = t.value
            points.append(((t.datetime_complete.timestamp() - started) / 60, t.number, test_of(t.number)))
            if points[-1][2] >= target - 1e-12:
                break
    else:
        points.append((run["seconds"] / 60, retrain["trial"], test_of(retrain["trial"])))
    return points, next((m for m, _, acc in points if acc >= target - 1e-12), None)


def rows_file(work: Path, variant: str) -> Path:
    return work / ("rows.jsonl" if variant == "both" else f"rows_{variant}.jsonl")


def main_run(work: Path, seeds: int, trials: int, epochs: int, variant: str, scenarios: str,
             first_seed: int = 0, code: str | None = None) -> None:
    for name, (task, params) in SOURCES.items():
        run(work, name, space(work, task, params, name, SOURCE_SEED, epochs), SOURCE_TRIALS)
    rows = rows_file(work, variant)
    for seed in range(first_seed, first_seed + seeds):
        for key in scenarios.split(","):
            task, params, source = SCENARIOS[key]
            cold_name = f"cold_{task}_s{seed}"
            cold = run(work, cold_name, space(work, task, params, cold_name, seed, epochs), trials)
            warm_name = f"warm{key}{'' if variant == 'both' else variant}_{task}_s{seed}"
            warm = run(work, warm_name, space(work, task, params, warm_name, seed, epochs), trials,
                       str(work / "studies" / f"{source}.db"), variant, code)
            row = {"scenario": key, "seed": seed, "cold": cold, "warm": warm}
            with open(rows, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(line(row), flush=True)


def line(row: dict) -> str:
    cold, warm = row["cold"], row["warm"]
    target = cold["curve"][-1][1]
    w, c = reach(warm["curve"], target), reach(cold["curve"], target)
    return (f"({row['scenario']}) seed {row['seed']}: test cold {statistics.fmean(cold['accs']):.4f} warm "
            f"{statistics.fmean(warm['accs']):.4f}; cold's best val {target:.4f} reached cold {c:.1f} min of "
            f"{cold['seconds'] / 60:.1f}, warm {'never' if w is None else f'{w:.1f} min'} of {warm['seconds'] / 60:.1f}"
            f"{' (a carried candidate won)' if warm['winner_carried'] else ''}")


def table(work: Path, variant: str = "both") -> None:
    rows = [json.loads(x) for x in rows_file(work, variant).read_text().splitlines()]
    for r in rows:
        print(line(r))

    def ms(a):
        return f"{statistics.fmean(a):.4f} ± {statistics.stdev(a) if len(a) > 1 else 0:.4f}"

    print("\n| scenario | cold test (mean ± std over seeds) | warm test | warm reached cold's best val | "
          "minutes to it, warm / cold | cold wall-clock | a carried candidate won |")
    print("|---|---|---|---|---|---|---|")
    for key in SCENARIOS:
        mine = [r for r in rows if r["scenario"] == key]
        if not mine:
            continue
        cold = [statistics.fmean(r["cold"]["accs"]) for r in mine]
        warm = [statistics.fmean(r["warm"]["accs"]) for r in mine]
        times = [(reach(r["warm"]["curve"], r["cold"]["curve"][-1][1]), reach(r["cold"]["curve"], r["cold"]["curve"][-1][1]))
                 for r in mine]
        hit = [(w, c) for w, c in times if w is not None]
        ratio = f"{statistics.fmean(w for w, _ in hit):.1f} / {statistics.fmean(c for _, c in hit):.1f}" if hit else "-"
        print(f"| ({key}) | {ms(cold)} | {ms(warm)} | {len(hit)} of {len(mine)} | {ratio} | "
              f"{statistics.fmean(r['cold']['seconds'] for r in mine) / 60:.1f} min | "
              f"{sum(r['warm']['winner_carried'] for r in mine)} of {len(mine)} |")


def winners_table(work: Path, variant: str = "both") -> None:
    """Per scenario: how many warm runs' winners reached the cold run's final test accuracy, and when, as a share of
    the cold run's wall-clock; beside it, when the cold run's own winner first did (how much its search added), and
    when another cold run (the next seed's, as if it were the warm run) did: what the measure gives by chance."""
    rows = [json.loads(x) for x in rows_file(work, variant).read_text().splitlines()]
    print("| scenario | warm winner reached cold's final test | when (share of cold's wall-clock) | "
          "cold's own winner reached it | another cold run reached it | when |")
    print("|---|---|---|---|---|---|")
    for key in SCENARIOS:
        mine = [r for r in rows if r["scenario"] == key]
        shares = {"warm": [], "cold": [], "other": []}
        for i, r in enumerate(mine):
            target, cold_minutes = statistics.fmean(r["cold"]["accs"]), r["cold"]["seconds"] / 60
            runs = []
            for which, its in (("warm", r["warm"]), ("cold", r["cold"]), ("other", mine[(i + 1) % len(mine)]["cold"])):
                if which == "other" and len(mine) < 2:
                    continue
                points, reached = winners(work, its, target)
                shares[which].append(None if reached is None else reached / cold_minutes)
                runs.append(f"{which} " + ", ".join(f"{m:.1f} min #{n} {acc:.4f}" for m, n, acc in points)
                            + " -> " + ("never" if reached is None else f"{reached:.1f} min"))
            print(f"({key}) seed {r['seed']}: cold test {target:.4f} in {cold_minutes:.1f} min; " + "; ".join(runs),
                  flush=True)
        if shares["warm"]:
            n = len(shares["warm"])
            print(f"| ({key}) | {sum(x is not None for x in shares['warm'])} of {n} | {_shares(shares['warm'])} | "
                  f"{_shares(shares['cold'])} | {sum(x is not None for x in shares['other'])} of "
                  f"{len(shares['other'])} | {_shares(shares['other'])} |")


def _shares(xs: list) -> str:
    """Shares of the cold wall-clock at which a run reached the target: the median over all runs (one that never did
    counts as later than any; of an even count the higher middle one), then each run that did."""
    hit = [x for x in xs if x is not None]
    if not hit:
        return "-"
    median = statistics.median_high(float("inf") if x is None else x for x in xs)
    middle = "never" if median == float("inf") else f"{median:.0%}"
    return f"median {middle} (each {', '.join(f'{h:.0%}' for h in hit)})"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("run", "table", "winners"))
    p.add_argument("--work", default="/tmp/nas-run-warm-start")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0, help="study seeds FIRST .. FIRST + SEEDS - 1")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--variant", choices=("both", *PATCHES), default="both")
    p.add_argument("--scenarios", default="a,b,c")
    p.add_argument("--code", help="a checkout the warm runs run (named after its folder), not this one")
    args = p.parse_args()
    if args.code:
        if args.variant != "both":
            p.error("--code and --variant: one or the other")
        args.variant = Path(args.code).name  # names the warm runs and their rows
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.what == "run":
        main_run(work, args.seeds, args.trials, args.epochs, args.variant, args.scenarios, args.first_seed, args.code)
    if args.what == "winners":
        winners_table(work, args.variant)
    else:
        table(work, args.variant)


if __name__ == "__main__":
    main()
