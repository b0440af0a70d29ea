"""`nas-run SPACE --check`: does the space meet the budget? Answered without data and without training.

Samples candidates at random, builds each, counts params and MACs, and times a few real training steps
of the median feasible candidate (and a handful spread over the MACs range for the time budget).
"""
from __future__ import annotations

import optuna
import torch
from rich.console import Console
from rich.table import Table

import models
from search import budget as B
from search.data import DATASETS, retrain_size, train_size
from search.errors import UserError
from search.report import describe
from search.space import Space

TIMED = 6  # candidates timed for the train_seconds column


def sample_costs(space: Space, n: int, seed: int, stop_at_fit: bool = False):
    """[(candidate, model, Cost, violations)] for n random candidates that build; and the invalid count."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    meta = DATASETS[space.data["dataset"]]
    rows, invalid = [], 0
    for _ in range(n):
        cand = space.sample(study.ask())
        try:
            model = models.build(cand["family"], **cand["model"])
        except ValueError:
            invalid += 1
            continue
        cost = B.Cost(B.count_params(model), B.count_macs(model, meta))
        rows.append((cand, model, cost, B.violations(cost, space.budget)))
        if stop_at_fit and all(v <= 0 for v in rows[-1][3].values()):
            break
    return rows, invalid


def no_fit_error(space: Space, rows) -> UserError:
    """The one line for a space whose sampled candidates all break the budget: how close the nearest came."""
    nearest = min(rows, key=lambda r: max(r[3].values()))
    worst = max(nearest[3], key=nearest[3].get)
    value, limit = getattr(nearest[2], worst), space.budget[worst]
    return UserError(
        f"{space.file}: budget: no sampled candidate fits; the nearest has {worst}={value:,} "
        f"({nearest[3][worst]:.0%} over the {limit:,} budget): widen the space toward smaller models or raise the budget"
    )


def preflight(space: Space, n: int = 200) -> None:
    """Before a run writes anything: stop at the first random candidate that fits, or fail with no_fit_error."""
    rows, _ = sample_costs(space, n, space.search["seed"], stop_at_fit=True)
    if not rows:
        raise UserError(f"{space.file}: model: none of {n} sampled candidates builds")
    if not any(all(v <= 0 for v in r[3].values()) for r in rows):
        raise no_fit_error(space, rows)


def _q(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run(space: Space, n: int = 300, console: Console | None = None) -> int:
    console = console or Console()
    meta = DATASETS[space.data["dataset"]]
    rows, invalid = sample_costs(space, n, space.search["seed"])
    if not rows:
        raise UserError(f"{space.file}: model: none of {n} sampled candidates builds (every one was {invalid} invalid)")
    fits = [r for r in rows if all(v <= 0 for v in r[3].values())]
    n_full = train_size(space.data)
    n_val = round(n_full * space.data["val_fraction"])
    n_retrain = retrain_size(space.data, space.retrain["train_on"])
    n_search = round((n_full - n_val) * space.search["data_fraction"])

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
            sps = B.seconds_per_step(model, cand["train"], meta, "cpu")
            full = B.estimate_train_seconds(sps, cand["train"]["batch_size"], n_retrain, 0, space.retrain["epochs"])
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
    sps = B.seconds_per_step(model, cand["train"], meta, "cpu")
    bs = cand["train"]["batch_size"]
    per_trial = B.estimate_train_seconds(sps, bs, n_search, n_val, space.search["epochs"])
    per_retrain = B.estimate_train_seconds(sps, bs, n_retrain, 0, space.retrain["epochs"])
    console.print(
        f"median fitting candidate: {cost.params:,} params, {cost.macs:,} MACs, batch {bs}: "
        f"{sps * 1000:.0f} ms/step on {torch.get_num_threads()} CPU threads -> "
        f"~{per_trial:,.0f} s per search trial ({space.search['epochs']} epochs on {n_search:,} images), "
        f"~{per_retrain:,.0f} s per retrain ({space.retrain['epochs']} epochs on {n_retrain:,} images, one seed)"
    )
    return 0
