"""`nas-run SPACE --check`: does the space meet the budget? Answered without data and without training.

Samples candidates at random, builds each, counts params and MACs, and times a few real training steps of the
median feasible candidate, of a handful spread over the MACs range (the time budget's column; their mean per image
prices a trial) and of the `search.first_trials` designs (they train the full length).
"""
from __future__ import annotations

import bisect
import math
import random
import statistics

import torch
from rich.console import Console
from rich.table import Table

from search import budget as B
from search.budget import no_fit_error, sample_costs
from search.clock import phase_sizes
from search import data as D
from search.data import DATASETS, train_size
from search.errors import UserError
from search.progress import describe
from search.space import SearchConfig, Space

TIMED = 6  # candidates timed across the MACs range: the train_seconds column and a trial's price


def _q(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


MEDIAN_SHARE = 10.7 / 15  # median pruner: share of the full length a trained trial ran, measured (issue #9's run)
SIMULATED_STUDIES = 300  # successive halving is priced by replaying its rule over this many random studies


def rungs(first: int, eta: int, epochs: int) -> list[int]:
    """Epochs at which successive halving starting at `first` decides, then the full length."""
    levels = [first]
    while levels[-1] * eta < epochs:
        levels.append(levels[-1] * eta)
    return levels + [epochs]


def halving_run(values: list[float], levels: list[int], eta: int) -> list[int]:
    """Epochs each trial trains when trials with these validation accuracies (the same at every rung) meet
    Optuna's SuccessiveHalvingPruner one after another: at each rung a trial goes on when its value is among the
    best max(1, k // eta) of the k trials that reached that rung so far, itself included."""
    reached = [[] for _ in levels[:-1]]  # sorted values seen at each rung
    out = []
    for value in values:
        ran = levels[-1]
        for rung, seen in enumerate(reached):
            bisect.insort(seen, value)
            if value < seen[-max(1, len(seen) // eta)]:
                ran = levels[rung]
                break
        out.append(ran)
    return out


def halving_epochs(trials: int, levels: list[int], eta: int, seed: int = 0) -> float:
    """Mean epochs a trial trains among `trials` (halving_run) for trials of steady quality: random values, the
    mean over SIMULATED_STUDIES replays, seeded (the same figure every time). The first trials of a study pass
    rungs on few competitors (the first goes the full length), so short studies train more per trial."""
    if trials <= 0:
        return 0.0
    trials = min(trials, 1000)  # longer studies average within 1% of 1,000 trials' figure (and replaying costs n^2)
    rng = random.Random(seed)
    runs = (halving_run([rng.random() for _ in range(trials)], levels, eta) for _ in range(SIMULATED_STUDIES))
    return sum(sum(r) for r in runs) / (SIMULATED_STUDIES * trials)


def expected_epochs(search: SearchConfig, trials: int) -> float:
    """Epochs each of `trials` pruned search trials is expected to train. Successive halving replays Optuna's
    promotion rule (halving_epochs): for 38 trials at rungs 2 and 6 of 15 that is ~4.8 epochs, not the 4.3 of
    an endless study, because early trials pass rungs on few competitors. Hyperband splits the trials between
    its brackets as Optuna does (bracket s gets ceil(n * eta^s / (s + 1)) shares) and halves within each; the
    median pruner's share is measured, not derived. A sampler that keeps improving gets more trials through
    than any of this: measured 5.8 and 7.2 on the 8k Fashion-MNIST task (tests/benchmarks/vs_hand.py)."""
    E, eta, low, kind = search.epochs, search.reduction_factor, search.min_epochs, search.pruner
    if kind == "successive_halving":
        return halving_epochs(trials, rungs(min(low, E), eta, E), eta)
    if kind == "hyperband":
        n = math.floor(math.log(E / low, eta)) + 1 if low < E else 1
        shares = [math.ceil(n * eta ** (n - 1 - b) / (n - b)) for b in range(n)]
        return sum(share * halving_epochs(max(1, round(trials * share / sum(shares))), rungs(min(low * eta ** b, E), eta, E), eta)
                   for b, share in enumerate(shares)) / sum(shares)
    if kind == "median":
        return E * MEDIAN_SHARE
    return float(E)


def sizes(space: Space) -> tuple[dict, str]:
    """Images per split from the dataset files when they are there (a folder may hold fewer than the official
    split), else from the dataset's official size; and where the numbers came from."""
    try:
        data = D.load(space.data, "cpu", space.search.seed)
        n_train, n_val, source = len(data.train), len(data.val), f"the files in {space.data.root}"
    except UserError:
        n_full = train_size(space.data)
        n_val = round(n_full * space.data.val_fraction)
        n_train, source = n_full - n_val, f"the official {space.data.dataset} size (files not found)"
    return phase_sizes(space, n_train, n_val), source


def run_cost(space: Space, sps: float, bs: int, n: dict, trials: int, workers: int, cpu: bool = True,
             designs: tuple = ()) -> dict:
    """Seconds of the whole run for `trials` trained trials: search, race, retrain (rejections cost ~ms; ignored).
    `sps` / `bs`: a typical candidate's seconds per step and batch size. `search.first_trials` designs train the
    full length, at their own timing where `designs` gives it ((sps, bs) each), the other trials the pruner's
    expected share of it. Every phase runs on `workers` processes at the timed thread count; the retrain's seeds
    in parallel, on CPU one process each where they do not fill whole waves (seeds / workers x one seed's time;
    on GPUs in waves)."""
    s, r = space.search, space.retrain
    per_epoch = B.estimate_train_seconds(sps, bs, n["search"], n["val"], 1)
    race_epoch = B.estimate_train_seconds(sps, bs, n["race"], n["race_val"], 1)
    first = min(len(s.first_trials), trials)
    timed = [B.estimate_train_seconds(d_sps, d_bs, n["search"], n["val"], 1) for d_sps, d_bs in designs][:first]
    first_seconds = s.epochs * (sum(timed) + (first - len(timed)) * per_epoch)
    epochs = expected_epochs(s, trials - first)
    # at most: a design that ranks among the top race_top is raced once, as one of them
    finals = s.race_top + (first if s.race_first_trials else 0) if s.race_top else 0
    race = finals * (s.race_seeds - 1)
    retrain_one = B.estimate_train_seconds(sps, bs, n["retrain"], 0, r.epochs)
    return {"epochs_per_trial": (first * s.epochs + (trials - first) * epochs) / max(1, trials), "per_epoch": per_epoch,
            "search": (first_seconds + (trials - first) * epochs * per_epoch) / workers,
            "race": race * s.epochs * race_epoch / workers, "race_runs": race,
            "retrain": (max(1, r.seeds / workers) if cpu else -(-r.seeds // workers)) * retrain_one,
            "retrain_one": retrain_one}


def design_models(space: Space) -> list:
    """[(candidate, model)] for the `search.first_trials` designs, completed as the run completes them (parameters
    a design leaves out are sampled) and filled to the budget like every candidate."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=space.search.seed))
    meta, out = DATASETS[space.data.dataset], []
    for params in space.search.first_trials:
        study.enqueue_trial(params)
        try:
            out.append(B.candidate_model(space, study.ask(), meta))
        except ValueError:
            continue  # a design that does not build is reported when the run reaches it
    return out


def run(space: Space, samples: int = 300, console: Console | None = None, trials: int | None = None,
        workers: int = 1, device: str = "cpu", minutes: float | None = None) -> int:
    """The table, the median candidate's timing and the whole run's cost. Timed with the thread count the caller
    set (a worker's) on `device`, as the run will train."""
    console = console or Console()
    meta = DATASETS[space.data.dataset]
    rows, invalid = sample_costs(space, samples, space.search.seed)
    if not rows:
        raise UserError(f"{space.file}: model: none of {samples} sampled candidates builds (every one was {invalid} invalid)")
    fits = [r for r in rows if all(v <= 0 for v in r[3].values())]
    n, source = sizes(space)
    table = Table(title=f"{space.file}: {len(rows)} random candidates ({invalid} invalid skipped)")
    for col in ("budget", "limit", "fits", "min", "5%", "median", "95%", "max"):
        table.add_column(col, justify="right" if col != "budget" else "left")
    for key in ("params", "macs"):
        vals = [getattr(r[2], key) for r in rows]
        limit = getattr(space.budget, key)
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
            full = B.estimate_train_seconds(sps, cand["train"]["batch_size"], n["retrain"], 0, space.retrain.epochs)
            timed.append((cand, sps, full))
        if space.budget.train_seconds is not None:
            limit = space.budget.train_seconds
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
    # a trial's price: the mean per image of the candidates timed across the MACs range, at the median's batch
    typical = statistics.fmean(t_sps / t_cand["train"]["batch_size"] for t_cand, t_sps, _ in timed) * bs
    designs = [(B.seconds_per_step(m, c["train"], meta, device), c["train"]["batch_size"]) for c, m in design_models(space)]
    trials = trials or space.search.trials
    c = run_cost(space, typical, bs, n, trials, workers, cpu=device.type == "cpu", designs=designs)
    s = space.search
    console.print(
        f"median fitting candidate: {cost.params:,} params, {cost.macs:,} MACs, batch {bs}: "
        f"{sps * 1000:.0f} ms/step on {device} with {torch.get_num_threads()} thread(s) per worker; the {len(timed)} "
        f"timed across the MACs range average ~{c['per_epoch']:,.1f} s per epoch on {n['search']:,} images; one "
        f"retrain seed ~{c['retrain_one']:,.0f} s ({space.retrain.epochs} epochs on {n['retrain']:,} images; sizes "
        f"from {source})")
    first = f", {len(designs)} first_trials designs timed at full length" if designs else ""
    console.print(
        f"whole run, --trials {trials} on {workers} worker(s): search ~{c['search'] / 60:,.1f} min "
        f"({s.pruner} pruner: ~{c['epochs_per_trial']:.1f} of {s.epochs} epochs per trained trial{first}; more "
        f"while the sampler keeps finding better candidates), race "
        f"~{c['race'] / 60:,.1f} min ({c['race_runs']} full-length runs), retrain ~{c['retrain'] / 60:,.1f} min "
        f"({space.retrain.seeds} seeds): total ~{(c['search'] + c['race'] + c['retrain']) / 60:,.1f} min", highlight=False)
    if minutes:
        tail = c["race"] + c["retrain"]
        per_trial = c["search"] / max(1, trials)
        fits = max(0, min(trials, int((minutes * 60 - tail) / per_trial))) if per_trial else trials
        console.print(f"--minutes {minutes:g}: race and retrain ~{tail / 60:,.1f} min of it, the search the rest: "
                      f"~{fits} of the {trials} trials (the run prices the race and the retrain again from its own "
                      f"trials as it goes, on the slow side)", highlight=False)
    if device.type == "cuda" and workers > 1:
        console.print(
            f"[yellow]{workers} workers share the GPU: the figures above count them {workers}x as fast as the one timed "
            f"alone; on one H100 16 workers under MPS ran 13x (8k params) and 8x (114k params) as fast as one, "
            f"time-sliced 7x and 5x (tests/benchmarks/gpu_workers.py): expect up to ~3x longer[/]", highlight=False)
    return 0
