"""Benchmark: summed training images/s of K worker processes sharing one device (what `--workers K` does).

Each process runs nas-run's own loop (`search.train.train`, one epoch of the Fashion-MNIST training split,
54,000 images, batch 128, the seed recipe with rotation) on its own model, as a search worker does. All 16
processes start once; for each K the first K train together between two barriers, and the figure is all
images they trained / the wall-clock from the barrier to the last one's end. On a GPU each sweep runs
time-sliced (CUDA's default between processes) and under MPS (started as nas-run starts it, search/mps.py). A warm-up epoch slice runs first
(cuDNN picks its kernels, the allocator fills). Candidates: the mnist_8k space's first trial (the seed task's
hand net, 8,034 params) and a ~100k-param net of the fashion_mnist_100k kind. `--optimizer-impl` compares
torch's foreach optimizer with the fused one nas-run uses on GPUs.

    python tests/benchmarks/gpu_workers.py [--device cuda] [--ks 1,2,4,8,16] [--threads 1] [--sharing time,mps]
    python tests/benchmarks/gpu_workers.py --device cpu --ks 1,2      # the 2-core CPU figure, same candidates
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
from vs_hand import HAND_NET, seed_recipe  # the seed task's hand net and recipe, as vs_hand.py trains them

FM = Path(os.environ.get("NAS_RUN_FM", "/usr/share/datasets/fashion-mnist"))
CANDIDATES = {
    "hand_8k": HAND_NET,
    "plain_100k": dict(widths=[32, 48, 64], depths=[2, 2, 2], transition="pool", head="gap_fc", fc_width=64,
                       dropout=0.05),
}


def worker(rank, ks, candidate, device, threads, impl, barrier, results):
    import models
    from search import data as D
    from search.space import data_config
    from search import train as T
    from search.record import Recipe

    torch.set_num_threads(threads)
    if impl == "foreach":  # torch's default multi-tensor optimizer, instead of the fused kernel
        plain = T.make_optimizer
        T.make_optimizer = lambda model, r: _foreach(plain, model, r)
    dev = torch.device(device)
    data = D.load(data_config(dataset="fashion_mnist", root=str(FM), val_fraction=0.1), dev, seed=0)
    r = Recipe.from_json(seed_recipe())
    torch.manual_seed(rank)
    warm = D.Split(data.train.x[:128 * 40], data.train.y[:128 * 40])
    T.train(models.build("convnet", **CANDIDATES[candidate]).to(dev), warm, None, data.mean, data.std, r, 1)
    for k in ks:
        barrier.wait()
        if rank < k:
            model = models.build("convnet", **CANDIDATES[candidate]).to(dev)
            t0 = time.perf_counter()
            hist = T.train(model, data.train, None, data.mean, data.std, r, 1)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            results.put((k, rank, t0, time.perf_counter(), hist.images))
        barrier.wait()


def _foreach(plain, model, r):
    opt = plain(model, r)
    for g in opt.param_groups:
        g["fused"], g["foreach"] = False, True
    return opt


def sweep(candidate: str, device: str, ks: list[int], threads: int, impl: str) -> dict[int, float]:
    ctx = mp.get_context("spawn")
    n = max(ks)
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(i, ks, candidate, device, threads, impl, barrier, results))
             for i in range(n)]
    for p in procs:
        p.start()
    rows = [results.get() for _ in range(sum(ks))]
    for p in procs:
        p.join()
    out = {}
    for k in ks:
        mine = [r for r in rows if r[0] == k]
        out[k] = sum(r[4] for r in mine) / (max(r[3] for r in mine) - min(r[2] for r in mine))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--ks", default="1,2,4,8,16")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--candidates", default=",".join(CANDIDATES))
    p.add_argument("--optimizer-impl", default="fused", help="fused, foreach or both (GPU only)")
    p.add_argument("--sharing", default="time,mps", help="GPU only: time (time-sliced), mps, or both")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    import models
    from search import data as D
    from search.measure import count_params
    from search.space import data_config
    from search.mps import shared_gpu

    D.load(data_config(dataset="fashion_mnist", root=str(FM), val_fraction=0.1), "cpu", seed=0)  # fill the cache once
    ks = [int(k) for k in args.ks.split(",")]
    impls = ["fused", "foreach"] if args.optimizer_impl == "both" else [args.optimizer_impl]
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({os.cpu_count()} cores)"
    print(f"{name}, {args.threads} thread(s) per process, one epoch of 54,000 images per process, batch 128")
    table = {}
    sharings = args.sharing.split(",") if args.device.startswith("cuda") else ["cpu"]
    for sharing in sharings:
        with shared_gpu(1 if sharing == "mps" else 0, max(ks)) as how:
            if sharing == "mps" and not how.startswith("MPS"):
                raise SystemExit("MPS did not start (see above)")
            for cand in args.candidates.split(","):
                params = count_params(models.build("convnet", **CANDIDATES[cand]))
                for impl in impls:
                    figures = sweep(cand, args.device, ks, args.threads, impl)
                    table[f"{cand}/{impl}/{sharing}"] = figures
                    line = "  ".join(f"K={k}: {v:9,.0f}" for k, v in figures.items())
                    print(f"{cand:11s} {params:7,d} params  {sharing:4s} {impl:7s} images/s summed  {line}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
