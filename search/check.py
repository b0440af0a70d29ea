"""`nas-run SPACE --check`: does the space meet the budget? Answered without data and without training.

Samples candidates at random, builds each, counts params and MACs, and times a few real training steps of the
median feasible candidate, of a handful spread over the MACs range (the time budget's column; their mean per image
prices a trial) and of the `search.first_trials` designs (they train the full length).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.table import Table

from search import budget as B
from search import data as D
from search.budget import Sampled, no_fit_error, sample_costs
from search.catalogue import Meta, builtin_meta, train_size
from search.cost import PhaseSizes, RunCost, phase_sizes, run_cost
from search.errors import UserError
from search.record import Candidate
from search.space import Space

TIMED = 6  # candidates timed across the MACs range: the train_seconds column and a trial's price


def _q(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


@dataclass(frozen=True)
class DataAtHand:
    """What --check knows of the data: the images each phase uses, where those numbers came from, the input."""

    sizes: PhaseSizes
    source: str  # "the files in ..." or "the official ... size (files not found)"
    meta: Meta


def data_at_hand(space: Space) -> DataAtHand:
    """Images per split from the dataset files when they are there (a folder may hold fewer than the official
    split), else (built-in datasets) from the official size. Your own data must be there: its shape and classes
    come from the files."""
    try:
        data = D.load(space.data, "cpu", space.search.seed)
        n_train, n_val, source, meta = len(data.train), len(data.val), f"the files in {space.data.root}", data.meta
    except UserError as e:
        meta = builtin_meta(space.data)
        if meta is None:
            raise UserError(f"{space.file}: data.root: {e}") from None
        n_full = train_size(space.data)
        n_val = round(n_full * space.data.val_fraction)
        n_train, source = n_full - n_val, f"the official {space.data.dataset} size (files not found)"
    return DataAtHand(phase_sizes(space, n_train, n_val), source, meta)


def design_models(space: Space, meta: Meta, tier: str | None = None) -> list[tuple[Candidate, torch.nn.Module]]:
    """[(candidate, model)] for the `search.first_trials` designs, completed as the run completes them (parameters
    a design leaves out are sampled) and filled to the budget like every candidate."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=space.search.seed))
    out = []
    for params in space.search.first_trials:
        study.enqueue_trial(params)
        try:
            out.append(B.candidate_model(space, study.ask(), meta, tier))
        except ValueError:
            continue  # a design that does not build is reported when the run reaches it
    return out


@dataclass(frozen=True)
class Timed:
    """A candidate's real training steps timed: seconds per step, and of one retrain seed."""

    candidate: Candidate
    seconds_per_step: float
    retrain_seconds: float

    @property
    def seconds_per_image(self) -> float:
        return self.seconds_per_step / self.candidate.train.batch_size


def time_across_macs(space: Space, meta: Meta, fits: list[Sampled], n: PhaseSizes, device) -> list[Timed]:
    """TIMED fitting candidates spread evenly over the MACs range (`fits` sorted by MACs), timed."""
    timed = []
    picks = [fits[round(i * (len(fits) - 1) / max(1, TIMED - 1))] for i in range(min(TIMED, len(fits)))]
    for pick in picks:
        recipe = pick.candidate.train
        sps = B.seconds_per_step(pick.model, recipe, meta, device)
        timed.append(Timed(pick.candidate, sps, B.estimate_train_seconds(sps, recipe.batch_size, n.retrain, 0,
                                                                         space.retrain.epochs)))
    return timed


def budget_table(space: Space, rows: list[Sampled], fits: list[Sampled], timed: list[Timed], invalid: int,
                 tier: str | None = None) -> Table:
    """Per budget: the limit, the share of sampled candidates within it, the quantiles of their values."""
    budget = space.budget.tier(tier)
    where = f" (tier {tier})" if tier else ""
    table = Table(title=f"{space.file}{where}: {len(rows)} random candidates ({invalid} invalid skipped)")
    for col in ("budget", "limit", "fits", "min", "5%", "median", "95%", "max"):
        table.add_column(col, justify="right" if col != "budget" else "left")
    for key in ("params", "macs"):
        vals = [getattr(r.cost, key) for r in rows]
        limit = getattr(budget, key)
        share = f"{sum(v <= limit for v in vals) / len(vals):.0%}" if limit else "-"
        table.add_row(key, f"{limit:,}" if limit else "none", share, *(f"{_q(vals, q):,}" for q in (0, 0.05, 0.5, 0.95, 1)))
    limit = budget.train_seconds
    if limit is not None and timed:
        secs = [t.retrain_seconds for t in timed]
        table.add_row("train_seconds", f"{limit:,.0f}", f"{sum(s <= limit for s in secs) / len(secs):.0%} of {len(secs)} timed",
                      f"{min(secs):,.0f}", "", f"{_q(secs, 0.5):,.0f}", "", f"{max(secs):,.0f}")
    table.add_row("params+macs", "", f"{len(fits) / len(rows):.0%}", "", "", "", "", "", style="bold")
    return table


def price_tier(space: Space, data: DataAtHand, samples: int, trials: int, workers: int, device: torch.device,
               console: Console, tier: str | None = None) -> RunCost:
    """The budget table and the cost of `trials` trials of one ladder tier (of the study: tier None), printed."""
    meta, n = data.meta, data.sizes
    rows, invalid = sample_costs(space, meta, samples, space.search.seed, tier=tier)
    if not rows:
        raise UserError(f"{space.file}: model: none of {samples} sampled candidates builds (every one was {invalid} invalid)")
    fits = sorted((r for r in rows if r.fits()), key=lambda r: r.cost.macs)
    timed = time_across_macs(space, meta, fits, n, device)
    console.print(budget_table(space, rows, fits, timed, invalid, tier))
    small, large = min(rows, key=lambda r: r.cost.params), max(rows, key=lambda r: r.cost.params)
    console.print(f"smallest: {small.cost.params:,} params, {small.cost.macs:,} MACs  {small.candidate.describe()}")
    console.print(f"largest:  {large.cost.params:,} params, {large.cost.macs:,} MACs  {large.candidate.describe()}")
    if not fits:
        raise no_fit_error(space, rows, tier)
    median = fits[len(fits) // 2]  # the median fitting candidate by MACs
    bs = median.candidate.train.batch_size
    sps = B.seconds_per_step(median.model, median.candidate.train, meta, device)
    # a trial's price: the mean per image of the candidates timed across the MACs range, at the median's batch
    typical = statistics.fmean(t.seconds_per_image for t in timed) * bs
    designs = [(B.seconds_per_step(m, c.train, meta, device), c.train.batch_size)
               for c, m in design_models(space, meta, tier)]
    c = run_cost(space, typical, bs, n, trials, workers, cpu=device.type == "cpu", designs=designs)
    console.print(
        f"median fitting candidate: {median.cost.params:,} params, {median.cost.macs:,} MACs, batch {bs}: "
        f"{sps * 1000:.0f} ms/step on {device} with {torch.get_num_threads()} thread(s) per worker; the {len(timed)} "
        f"timed across the MACs range average ~{c.per_epoch:,.1f} s per epoch on {n.search:,} images; one "
        f"retrain seed ~{c.retrain_one:,.0f} s ({space.retrain.epochs} epochs on {n.retrain:,} images; sizes "
        f"from {data.source})")
    return c


def run(space: Space, samples: int = 300, console: Console | None = None, trials: int | None = None,
        workers: int = 1, device: torch.device = torch.device("cpu"), minutes: float | None = None) -> int:
    """The table, the median candidate's timing and the whole run's cost (a ladder: per tier, then summed; the
    trials shared evenly). Timed with the thread count the caller set (a worker's) on `device`, as the run trains."""
    console = console or Console()
    device = torch.device(device)
    data = data_at_hand(space)
    trials = trials or space.search.trials
    tiers = space.budget.each_tier()
    shares = [trials // len(tiers) + (i < trials % len(tiers)) for i in range(len(tiers))]
    costs = [price_tier(space, data, samples, share, workers, device, console, tier)
             for tier, share in zip(tiers, shares)]
    search, race, retrain = (sum(getattr(x, key) for x in costs) for key in ("search", "race", "retrain"))
    race_runs, designs = sum(x.race_runs for x in costs), sum(x.designs for x in costs)
    epochs = sum(x.epochs_per_trial * share for x, share in zip(costs, shares)) / max(1, trials)
    s = space.search
    first = f", {designs} first_trials designs timed at full length" if designs else ""
    ladder = f" in {len(tiers)} tiers (a race and a retrain each)" if len(tiers) > 1 else ""
    console.print(
        f"whole run, --trials {trials}{ladder} on {workers} worker(s): search ~{search / 60:,.1f} min "
        f"({s.pruner} pruner: ~{epochs:.1f} of {s.epochs} epochs per trained trial{first}; more "
        f"while the sampler keeps finding better candidates), race "
        f"~{race / 60:,.1f} min ({race_runs} full-length runs), retrain ~{retrain / 60:,.1f} min "
        f"({space.retrain.seeds} seeds{' per tier' if ladder else ''}): total "
        f"~{(search + race + retrain) / 60:,.1f} min", highlight=False)
    if minutes:
        tail = race + retrain
        per_trial = search / max(1, trials)
        fits = max(0, min(trials, int((minutes * 60 - tail) / per_trial))) if per_trial else trials
        console.print(f"--minutes {minutes:g}: race and retrain ~{tail / 60:,.1f} min of it, the search the rest: "
                      f"~{fits} of the {trials} trials (the run prices the race and the retrain again from its own "
                      f"trials as it goes, on the slow side)", highlight=False)
    if device.type == "cuda" and workers > 1:
        console.print(
            f"[yellow]{workers} workers share the GPU: the figures above count them {workers}x as fast as the one timed "
            f"alone, and workers sharing a GPU are not; expect the search to take longer (tests/benchmarks/RESULTS.md, "
            f"\"On a GPU\", measures how much)[/]", highlight=False)
    return 0
