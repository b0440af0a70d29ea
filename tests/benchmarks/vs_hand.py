"""nas-run against a hand-designed net on a small real task, side by side in one run.

Task: Fashion-MNIST with 8,000 training images drawn stratified (seed 0) from the official training split and
the official 10,000 test images, built offline from Debian's dataset-fashion-mnist package as an IDX folder.
Budget <= 8,000 params, 15 epochs.
- hand: the seed reports' MNIST net (8,034 params) with the seed recipe, trained by nas-run's `train()` on
  all 8,000 images, tested once, over 3 seeds;
- nas-run: a copy of spaces/mnist_8k.yaml whose data section points at the folder, `nas-run --trials 40`
  (search, race, retrain on 3 seeds), timed end to end.
`--runs` picks the nas-run searches: `new` (the shipped space as it is), `previous` (the same space searched
the way nas-run did before: 3 epochs on half the training split, median pruner, no race) and `random` (random
sampling, no pruning, full length, no race), each at the same number of trained trials and retrained on 3
seeds. Rows print as they finish; wall-clock is the whole nas-run command.

    python tests/benchmarks/vs_hand.py [--trials 40] [--workers auto] [--runs new,previous,random] [--skip-hand]
                                       [--search min_epochs=5 ...]   # the `new` run with other search settings
                                       [--minutes 25]                # the `new` run within 25 min (nas-run --minutes)
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import optuna
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import models  # noqa: E402
from search import data as D  # noqa: E402
from search.space import data_config  # noqa: E402
from search.measure import count_params  # noqa: E402
from search.record import Recipe  # noqa: E402
from search.space import TRAIN  # noqa: E402
from search.train import evaluate, train  # noqa: E402

SOURCE = Path("/usr/share/datasets/fashion-mnist")
HAND_NET = dict(widths=[8, 12, 16, 12, 16], depths=[1, 1, 1, 1, 2], pools=[0, 0, 0, 1, 0], transition="pool_1x1",
                squeeze=0.5, padding="valid", head="gap", dropout=0.05)
HAND_RECIPE = dict(batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4,
                   scheduler="onecycle", augment={"rotate": 7.0})


def write_idx(path: Path, t: torch.Tensor) -> None:
    dims = list(t.shape)
    header = bytes([0, 0, 0x08, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    with gzip.open(path, "wb") as f:
        f.write(header + t.to(torch.uint8).numpy().tobytes())


def build_task(out: Path, n_train: int = 8000, seed: int = 0) -> Path:
    """IDX folder: n_train images stratified from the official training split + the official test split."""
    if (out / "t10k-labels-idx1-ubyte.gz").exists():
        return out
    files = {k: D._read_idx(SOURCE / (stem + ".gz")) for k, stem in D.IDX_FILES.items()}
    _, part = D.stratified_split(files["train_y"], n_train / len(files["train_y"]), seed)
    out.mkdir(parents=True, exist_ok=True)
    write_idx(out / "train-images-idx3-ubyte.gz", files["train_x"][part])
    write_idx(out / "train-labels-idx1-ubyte.gz", files["train_y"][part])
    shutil.copy(SOURCE / "t10k-images-idx3-ubyte.gz", out)
    shutil.copy(SOURCE / "t10k-labels-idx1-ubyte.gz", out)
    return out


def load_task(root: Path):
    """The task's data (train / val / test splits) and train + val as one split: what a retrain trains on."""
    data = D.load(data_config(dataset="fashion_mnist", root=str(root), val_fraction=0.1), "cpu", 0)
    return data, D.Split(torch.cat([data.train.x, data.val.x]), torch.cat([data.train.y, data.val.y]))


def seed_recipe() -> dict:
    """HAND_RECIPE with every other training setting at the space's default: a complete `train` section."""
    return {k: s.default for k, s in TRAIN.items()} | HAND_RECIPE


def train_and_test(family: str, model_kw: dict, recipe: dict, data, full, seeds: int, epochs: int,
                    label: str = "") -> tuple[list[float], int]:
    """Seeds 0..seeds-1: build, train on `full` for `epochs`, test once. Test accuracies and the params."""
    accs = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = models.build(family, **model_kw)
        train(model, full, None, data.mean, data.std, Recipe.from_json(recipe), epochs)
        accs.append(evaluate(model, data.test, data.mean, data.std))
        if label:
            print(f"{label} seed {seed}: test {accs[-1]:.4f}", flush=True)
    return accs, count_params(model)


def hand(root: Path, seeds: int, epochs: int) -> dict:
    data, full = load_task(root)
    t0 = time.perf_counter()
    accs, params = train_and_test("convnet", HAND_NET, seed_recipe(), data, full, seeds, epochs, label="hand")
    return {"what": "hand net, seed recipe", "params": params, "accs": accs,
            "seconds": time.perf_counter() - t0, "trained": "-", "epochs_per_trial": "-"}


def space_copy(root: Path, name: str, time_estimate: bool = False, **search) -> dict:
    """spaces/mnist_8k.yaml pointed at the folder; `search` overrides search settings. `time_estimate` adds a time
    budget no candidate breaks, so every trial records its retrain-time estimate (est_train_seconds, timed in the
    worker as the run is set up) to set beside the measured retrain."""
    space = yaml.safe_load((ROOT / "spaces" / "mnist_8k.yaml").read_text())
    space["name"] = name
    space["data"].update(dataset="fashion_mnist", root=str(root))
    space["search"].update(search)
    if time_estimate:
        space["budget"]["train_seconds"] = 100_000
    return space


def nas_run(space: dict, work: Path, trials: int, workers: str, minutes: float | None = None) -> dict:
    path = work / f"{space['name']}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    t0 = time.perf_counter()
    log = work / f"{space['name']}.log"
    with open(log, "w") as f:
        rc = subprocess.run([shutil.which("nas-run"), str(path), "--trials", str(trials), "--workers", workers,
                             "--studies", str(work / "studies"), *(["--minutes", str(minutes)] if minutes else [])], stdout=f, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"nas-run failed ({rc}); see {log}")
    study = optuna.load_study(study_name=space["name"], storage=f"sqlite:///{work}/studies/{space['name']}.db")
    res = study.user_attrs["retrain"]
    winner = study.trials[res["trial"]]
    if "est_train_seconds" in winner.user_attrs:
        measured = [r["seconds"] for r in res["runs"]]
        print(f"{space['name']}: winner's retrain estimated {winner.user_attrs['est_train_seconds']:.0f} s per seed, measured "
              f"{', '.join(f'{m:.0f}' for m in measured)} s ({statistics.fmean(measured) / winner.user_attrs['est_train_seconds'] - 1:+.0%})")
    search_trials = [t for t in study.get_trials() if t.user_attrs.get("trained") and "race_of" not in t.user_attrs]
    epochs = [t.user_attrs.get("epochs_run", 0) for t in search_trials]
    return {"what": f"nas-run {space['name']}", "params": json.loads((work / "studies" / space["name"] / "best" / "model_card.json").read_text())["params"],
            "accs": [r["test_acc"] for r in res["runs"]], "seconds": seconds, "trained": len(search_trials),
            "epochs_per_trial": f"{statistics.fmean(epochs):.1f}", "log": str(log)}


def show(rows: list[dict]) -> None:
    print(f"\n{'what':44} {'params':>7} {'test acc mean ± std':>22} {'seeds':>5} {'trained':>7} {'ep/trial':>8} {'wall-clock':>10}")
    for r in rows:
        a = r["accs"]
        print(f"{r['what']:44} {r['params']:>7,} {statistics.fmean(a):>13.4f} ± {statistics.stdev(a):.4f} {len(a):>5} "
              f"{r['trained']:>7} {r['epochs_per_trial']:>8} {r['seconds'] / 60:>8.1f} min")
    print(json.dumps(rows, indent=1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--workers", default="auto")
    p.add_argument("--work", default="/tmp/nas-run-vs-hand")
    p.add_argument("--runs", default="new", help="comma-separated: new, previous, random")
    p.add_argument("--skip-hand", action="store_true")
    p.add_argument("--minutes", type=float, help="nas-run --minutes for the `new` run: the whole run's wall-clock budget")
    p.add_argument("--search", action="append", default=[], metavar="KEY=VALUE",
                   help="override a search setting of the `new` run (repeatable); the study is named after the overrides")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    root = build_task(work / "fashion8k")
    rows = []
    if not args.skip_hand:
        torch.set_num_threads(os.cpu_count())
        rows.append(hand(root, 3, 15))
        show(rows)
    overrides = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.search)}
    suffix = "".join(f"_{k}{v}" for k, v in overrides.items())
    searches = {
        "new": lambda: space_copy(root, "fm8k" + suffix, **overrides),
        "previous": lambda: space_copy(root, "fm8k_previous", True, epochs=3, data_fraction=0.5, pruner="median",
                                       startup_trials=8, race_top=0),
        "random": lambda: space_copy(root, "fm8k_random", True, sampler="random", pruner="none", race_top=0),
    }
    for name in [r for r in args.runs.split(",") if r]:
        rows.append(nas_run(searches[name](), work, args.trials, args.workers, args.minutes if name == "new" else None))
        show(rows)


if __name__ == "__main__":
    main()
