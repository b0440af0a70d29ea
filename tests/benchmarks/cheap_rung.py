"""Cheap first rungs (#34 item 5): how well a first rung trained on a share of the images ranks candidates by where
they end at full length, against the same rung at full fidelity, and the time it saves.

    python tests/benchmarks/cheap_rung.py SPACE.yaml [--candidates 24] [--fractions 0.25,0.5] [--seed 0]
                                          [--out rows.jsonl]

`candidates` random candidates of the space that fit its budget (filled, as the run fills them) each train three
ways on the search's split, on one seed: the full length at full fidelity (the value at the first rung,
`search.min_epochs`, and the final one), and, per fraction, the epochs up to the first rung with each epoch on
that share of the images (`search.first_rung_fraction`), as a pruned trial of nas-run trains them (the schedule
planned for the full length). Printed per fraction: Spearman's rank correlation of the rung's values with the
final ones, of the top third by final value the share that the rung keeps among its best 1/eta (successive
halving's cut), and the seconds to reach the rung against full fidelity's. Two single-thread processes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from search import budget as B  # noqa: E402
from search import data as D  # noqa: E402
from search import space as S  # noqa: E402
from search.record import End  # noqa: E402
from search.report import spearman  # noqa: E402
from search.train import train  # noqa: E402

_space = _data = _split = None


def _setup(path: str) -> None:
    global _space, _data, _split
    torch.set_num_threads(1)
    _space = S.load(path)
    _data = D.load(_space.data, "cpu", _space.search.seed)
    _split = D.searched_share(_data.train, _space.search.data_fraction, _space.search.seed)


def _one(job: tuple) -> dict:
    """One candidate: full length at full fidelity, then up to the rung at each fraction (same seed)."""
    index, cand, seed, fractions = job
    s = _space.search
    rung, out = s.min_epochs, {"index": index, "model": cand.model, "batch_size": cand.train.batch_size}

    def run(epochs, fraction, stop_at=None):
        torch.manual_seed(seed)
        model = cand.build()
        stop = (lambda epoch, _: End.PRUNED if epoch + 1 >= stop_at else None) if stop_at else None
        return train(model, _split, _data.val, _data.mean, _data.std, cand.train, epochs, on_epoch=stop,
                     cheap_epochs=rung if fraction < 1 else 0, cheap_fraction=fraction, metric=s.metric)

    hist = run(s.epochs, 1.0)
    out["final"] = hist.val_acc[-1] if hist.val_acc else 0.0
    out["rung"] = {"1.0": hist.val_acc[rung - 1] if len(hist.val_acc) >= rung else 0.0}
    out["rung_seconds"] = {"1.0": sum(hist.epoch_seconds[:rung])}
    for f in fractions:
        h = run(s.epochs, f, stop_at=rung)
        out["rung"][str(f)] = h.val_acc[-1] if h.val_acc else 0.0
        out["rung_seconds"][str(f)] = sum(h.epoch_seconds)
    return out


def sample(space, meta, n: int, seed: int) -> list:
    """The first `n` random candidates within the budget (params and MACs), as the run samples and fills them."""
    rows, _ = B.sample_costs(space, meta, 20 * n, seed)
    return [r.candidate for r in rows if r.fits()][:n]


def summarise(rows: list[dict], eta: int) -> None:
    finals = [r["final"] for r in rows]
    top = sorted(range(len(rows)), key=lambda i: -finals[i])[: max(1, len(rows) // 3)]
    keep = max(1, len(rows) // eta)
    print(f"{len(rows)} candidates; final val accuracy {statistics.fmean(finals):.4f} mean, {max(finals):.4f} best")
    print(f"{'first rung':>12} {'Spearman vs final':>18} {'top third kept':>15} {'best kept':>9} {'s to the rung':>14}")
    for f in rows[0]["rung"]:
        at = [r["rung"][f] for r in rows]
        kept = set(sorted(range(len(rows)), key=lambda i: -at[i])[:keep])
        secs = statistics.fmean(r["rung_seconds"][f] for r in rows)
        print(f"{'fraction ' + f:>12} {spearman(at, finals):>18.2f} {len(kept & set(top)) / len(top):>15.0%} "
              f"{'yes' if top[0] in kept else 'no':>9} {secs:>13.1f}s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("space")
    p.add_argument("--candidates", type=int, default=24)
    p.add_argument("--fractions", default="0.25,0.5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="append the rows here (JSON lines)")
    args = p.parse_args()
    space = S.load(args.space)
    meta = D.load(space.data, "cpu", space.search.seed).meta
    cands = sample(space, meta, args.candidates, args.seed)
    fractions = [float(f) for f in args.fractions.split(",")]
    jobs = [(i, c, args.seed + i, fractions) for i, c in enumerate(cands)]
    with mp.get_context("forkserver").Pool(2, initializer=_setup, initargs=(args.space,)) as pool:
        rows = pool.map(_one, jobs, chunksize=1)
    if args.out:
        with open(args.out, "a") as f:
            for r in rows:
                f.write(json.dumps({"space": args.space, "seed": args.seed, **r}) + "\n")
    summarise(rows, space.search.reduction_factor)


if __name__ == "__main__":
    main()
