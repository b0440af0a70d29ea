"""`nas-run SPACE --check`: does the space meet the budget? Answered without data and without training.

Samples candidates at random, builds each, counts params and MACs, and times a few real training steps
of the median feasible candidate (and a handful spread over the MACs range for the time budget).
"""
from __future__ import annotations

import torch
from rich.console import Console
from rich.table import Table

from search import budget as B
from search.budget import no_fit_error, sample_costs
from search import data as D
from search.data import DATASETS, train_size
from search.errors import UserError
from search.progress import describe
from search.space import Space

TIMED = 6  # candidates timed for the train_seconds column


def _q(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


MEDIAN_SHARE = 10.7 / 15  # median pruner: share of the full length a trained trial ran, measured (issue #9's run)


def expected_epochs(search: dict) -> float:
    """Epochs a trained search trial is expected to run under the pruner, for trials of steady quality: with
    successive halving 1 in reduction_factor trials goes on at every rung (min_epochs x factor^i epochs); Hyperband
    averages that over its brackets; the median pruner's share is measured, not derived. A sampler that keeps
    improving gets more trials through (measured on the 8k Fashion-MNIST task: 6.2 epochs against 4.3 here)."""
    E, eta, low, kind = search["epochs"], search["reduction_factor"], search["min_epochs"], search["pruner"]

    def halving(first: int) -> float:
        levels = [first]
        while levels[-1] * eta < E:
            levels.append(levels[-1] * eta)
        levels.append(E)
        return first + sum((levels[j] - levels[j - 1]) * eta ** -j for j in range(1, len(levels)))

    if kind == "successive_halving":
        return halving(min(low, E))
    if kind == "hyperband":
        brackets = [low * eta ** s for s in range(64) if low * eta ** s < E] or [E]
        return sum(halving(b) for b in brackets) / len(brackets)
    if kind == "median":
        return E * MEDIAN_SHARE
    return float(E)


def sizes(space: Space) -> tuple[dict, str]:
    """Images per split from the dataset files when they are there (a folder may hold fewer than the official
    split), else from the dataset's official size; and where the numbers came from."""
    try:
        data = D.load(space.data, "cpu", space.search["seed"])
        n_train, n_val, source = len(data.train), len(data.val), f"the files in {space.data['root']}"
    except UserError:
        n_full = train_size(space.data)
        n_val = round(n_full * space.data["val_fraction"])
        n_train, source = n_full - n_val, f"the official {space.data['dataset']} size (files not found)"
    n_search = round(n_train * space.search["data_fraction"])
    n_retrain = n_train + n_val if space.retrain["train_on"] == "train+val" else n_train
    n_race_val = D.race_val_size(n_val, space.search["race_val_fraction"], space.data["val_fraction"])
    n_race = round((n_train - n_race_val + n_val) * space.search["data_fraction"])
    return {"search": n_search, "val": n_val, "retrain": n_retrain, "race": n_race, "race_val": n_race_val}, source


def run_cost(space: Space, sps: float, bs: int, n: dict, trials: int, workers: int, cpu: bool = True) -> dict:
    """Seconds of the whole run for `trials` trained trials: search, race, retrain (rejections cost ~ms; ignored).
    `search.first_trials` designs train the full length, the other trials the pruner's expected share of it.
    Every phase runs on `workers` processes at the timed thread count; the retrain's seeds in parallel, on CPU one
    process each where they do not fill whole waves (seeds / workers x one seed's time; on GPUs in waves)."""
    s, r = space.search, space.retrain
    per_epoch = B.estimate_train_seconds(sps, bs, n["search"], n["val"], 1)
    race_epoch = B.estimate_train_seconds(sps, bs, n["race"], n["race_val"], 1)
    epochs = expected_epochs(s)
    first = min(len(s.get("first_trials", [])), trials)
    race = s["race_top"] * (s["race_seeds"] - 1) if s["race_top"] else 0
    retrain_one = B.estimate_train_seconds(sps, bs, n["retrain"], 0, r["epochs"])
    search_epochs = first * s["epochs"] + (trials - first) * epochs
    return {"epochs_per_trial": epochs, "per_epoch": per_epoch,
            "search": search_epochs * per_epoch / workers, "race": race * s["epochs"] * race_epoch / workers,
            "race_runs": race, "retrain": (max(1, r["seeds"] / workers) if cpu else -(-r["seeds"] // workers)) * retrain_one, "retrain_one": retrain_one}


def run(space: Space, samples: int = 300, console: Console | None = None, trials: int | None = None,
        workers: int = 1, device: str = "cpu") -> int:
    """The table, the median candidate's timing and the whole run's cost. Timed with the thread count the caller
    set (a worker's) on `device`, as the run will train."""
    console = console or Console()
    meta = DATASETS[space.data["dataset"]]
    rows, invalid = sample_costs(space, samples, space.search["seed"])
    if not rows:
        raise UserError(f"{space.file}: model: none of {samples} sampled candidates builds (every one was {invalid} invalid)")
    fits = [r for r in rows if all(v <= 0 for v in r[3].values())]
    n, source = sizes(space)
    table = Table(title=f"{space.file}: {len(rows)} random candidates ({invalid} invalid skipped)")
    for col in ("budget", "limit", "fits", "min", "5%", "median", "95%", "max"):
        table.add_column(col, justify="right" if col != "budget" else "left")
    for key in ("params", "macs"):
        vals = [getattr(r[2], key) for r in rows]
        limit = space.budget.get(key)
        share = f"{sum(v <= limit for v in vals) / len(vals):.0%}" if limit else "-"
        table.add_row(key, f"{limit:,}" if limit else "none", share, *(f"{_q(vals, q):,}" for q in (0, 0.05, 0.5, 0.95, 1)))

    median = None
    timed = []
    if fits:
        fits.sort(key=lambda r: r[2].macs)
        median = fits[len(fits) // 2]
        picks = [fits[round(i * (len(fits) - 1) / max(1, TIMED - 1))] for i in range(min(TIMED, len(fits)))]
        for cand, model, cost, _ in picks:
            sps = B.seconds_per_step(model, cand["train"], meta, device)
            full = B.estimate_train_seconds(sps, cand["train"]["batch_size"], n["retrain"], 0, space.retrain["epochs"])
            timed.append((cand, sps, full))
        if "train_seconds" in space.budget:
            limit = space.budget["train_seconds"]
            secs = [t[2] for t in timed]
            table.add_row(
                "train_seconds", f"{limit:,.0f}", f"{sum(s <= limit for s in secs) / len(secs):.0%} of {len(secs)} timed",
                f"{min(secs):,.0f}", "", f"{_q(secs, 0.5):,.0f}", "", f"{max(secs):,.0f}",
            )
    table.add_row("params+macs", "", f"{len(fits) / len(rows):.0%}", "", "", "", "", "", style="bold")
    console.print(table)
    small, large = min(rows, key=lambda r: r[2].params), max(rows, key=lambda r: r[2].params)
    console.print(f"smallest: {small[2].params:,} params, {small[2].macs:,} MACs  {describe(small[0])}")
    console.print(f"largest:  {large[2].params:,} params, {large[2].macs:,} MACs  {describe(large[0])}")
    if not fits:
        raise no_fit_error(space, rows)
    cand, model, cost, _ = median
    bs = cand["train"]["batch_size"]
    sps = B.seconds_per_step(model, cand["train"], meta, device)
    trials = trials or space.search["trials"]
    c = run_cost(space, sps, bs, n, trials, workers, cpu=device.type == "cpu")
    s = space.search
    console.print(
        f"median fitting candidate: {cost.params:,} params, {cost.macs:,} MACs, batch {bs}: "
        f"{sps * 1000:.0f} ms/step on {device} with {torch.get_num_threads()} thread(s) per worker -> ~{c['per_epoch']:,.0f} s "
        f"per epoch on {n['search']:,} images; one retrain seed ~{c['retrain_one']:,.0f} s ({space.retrain['epochs']} epochs "
        f"on {n['retrain']:,} images; sizes from {source})")
    console.print(
        f"whole run, --trials {trials} on {workers} worker(s): search ~{c['search'] / 60:,.1f} min "
        f"({s['pruner']} pruner: ~{c['epochs_per_trial']:.1f} of {s['epochs']} epochs per trained trial, more while the "
        f"sampler keeps finding better candidates), race "
        f"~{c['race'] / 60:,.1f} min ({c['race_runs']} full-length runs), retrain ~{c['retrain'] / 60:,.1f} min "
        f"({space.retrain['seeds']} seeds): total ~{(c['search'] + c['race'] + c['retrain']) / 60:,.1f} min", highlight=False)
    if device.type == "cuda" and workers > 1:
        console.print(
            f"[yellow]{workers} workers share the GPU: the figures above count them {workers}x as fast as the one timed "
            f"alone; on one H100 16 workers under MPS ran 13x (8k params) and 8x (114k params) as fast as one, "
            f"time-sliced 7x and 5x (tests/benchmarks/gpu_workers.py): expect up to ~3x longer[/]", highlight=False)
    return 0
