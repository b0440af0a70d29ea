"""How long nas-init's designs should train: its first design retrained at several lengths on one of
search_per_minute.py's tasks, each seed as nas-run's retrain trains it (one process a seed, one thread each).

    python tests/benchmarks/design_length.py --task fm64c --epochs 22 30 40 [--seeds 2] [--work DIR]

nas-init writes the task's space (its own `retrain.epochs` are replaced by each length); the design is built as
the run builds it (`check.design_models`; nas-init's designs set every value they search). Prints one JSON row a run and the mean per length.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from search_per_minute import PARAMS, TASKS, build  # noqa: E402

from search import check  # noqa: E402
from search import data as D  # noqa: E402
from search import retrain as RT  # noqa: E402
from search import space as S  # noqa: E402


def one(space_file: str, epochs: int, seed: int) -> dict:
    torch.set_num_threads(1)
    space = S.load(space_file)
    data = D.load(space.data, "cpu", space.search.seed)
    cand, _ = check.design_models(space, data.meta)[0]
    space = dataclasses.replace(space, retrain=dataclasses.replace(space.retrain, epochs=epochs))
    run, model = RT.one_seed(cand, space, data, seed)
    return {"space": space_file, "epochs": epochs, "seed": seed, "test": run.test_acc, "seconds": run.seconds,
            "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", choices=tuple(TASKS), required=True)
    p.add_argument("--epochs", type=int, nargs="+", required=True)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--work", default="/tmp/nas-run-per-minute")
    args = p.parse_args()
    work = Path(args.work)
    root = build(work, args.task)
    space_file = work / "design_length" / f"{args.task}.yaml"
    space_file.parent.mkdir(parents=True, exist_ok=True)
    if not space_file.exists():
        subprocess.run(["nas-init", str(root), "--params", str(PARAMS[args.task]), "--out", str(space_file)], check=True)
    jobs = [(str(space_file), e, s) for e in args.epochs for s in range(args.seeds)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        rows = pool.starmap(one, jobs)
    with open(work / "design_length" / "rows.jsonl", "a") as f:
        for row in rows:
            print(json.dumps(row))
            f.write(json.dumps(row) + "\n")
    for e in args.epochs:
        accs = [r["test"] for r in rows if r["epochs"] == e]
        spread = f" ± {statistics.stdev(accs):.4f}" if len(accs) > 1 else ""
        print(f"{args.task} {e} epochs: test {statistics.fmean(accs):.4f}{spread} ({len(accs)} seeds)")


if __name__ == "__main__":
    main()
