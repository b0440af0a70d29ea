"""What `budget.fill` costs before a trial trains, with this checkout's code or another's (`--code DIR`: a commit's
search/ and models/, e.g. `git archive SHA search models | tar -x -C DIR`):

    python tests/benchmarks/fill_speed.py SPACE... [--code DIR] [--candidates 30]

For each space: N candidates drawn by a seeded RandomSampler and filled to the space's budget (and again with its
MACs limit left out), the fvcore MAC traces and seconds a fill takes, and a digest of the filled configs: two codes
that fill alike print the same digest. Spaces whose data is not in the catalogue load their images for its shape.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spaces", nargs="+")
    p.add_argument("--code", help="a folder holding another commit's search/ and models/")
    p.add_argument("--candidates", type=int, default=30)
    args = p.parse_args()
    if args.code:
        sys.path.insert(0, str(Path(args.code).resolve()))
    import optuna

    from search import budget as B
    from search import data as D
    from search import space as S
    from search.catalogue import DATASETS

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    traces = []
    count_macs = B.M.count_macs

    def counted_macs(model, meta):
        traces.append(1)
        return count_macs(model, meta)

    B.M.count_macs = counted_macs
    print(f"code: {Path(B.__file__).parents[1]}")
    for path in args.spaces:
        space = S.load(path)
        meta = DATASETS[space.data.dataset] if space.data.dataset in DATASETS else D.load(space.data).meta
        for budget in (space.budget, dataclasses.replace(space.budget, macs=None)):
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
            filled, seconds = [], 0.0
            traces.clear()
            for _ in range(args.candidates):
                trial = study.ask()
                cand = space.sample(trial, meta)
                start = time.perf_counter()
                filled.append(B.fill(cand, budget, meta).model)
                seconds += time.perf_counter() - start
                study.tell(trial, 0.0)
            digest = hashlib.md5(repr(filled).encode()).hexdigest()[:10]
            print(f"{Path(path).name} params {budget.params} MACs {budget.macs}: {len(traces) / args.candidates:.1f} "
                  f"traces and {seconds / args.candidates:.3f} s a fill; filled configs {digest}")


if __name__ == "__main__":
    main()
