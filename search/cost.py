"""The one cost model: what a run's phases cost in seconds, for `--check` (from timed candidates, before the run)
and for `--minutes` (clock.py, from the search's own trials, during it).

A phase's cost is its runs' epochs x seconds per epoch, shared by the workers as the run shares them: the search's
trials and the race's runs spread over all workers (a phase lasts at least its longest run); the retrain's seeds,
on CPU one process each where they do not fill whole waves (seeds / workers x one seed's time; on GPUs in waves).
"""
from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass

from search import record as rec
from search.budget import estimate_train_seconds
from search.data import race_val_size
from search.space import SearchConfig, Space

# The machine's speed drifts within an hour: --minutes prices the tail on the slow side
# (tests/benchmarks/RESULTS.md, "--minutes: pricing the tail").
SLOW_SIDE = 1.25
# Starting the race's and the retrain's processes, loading the data in each, exporting, writing the report: 10-11 s
# measured on 2 cores with every export format (RESULTS.md, "--minutes 3"); 60 s before the forkserver, which at
# 3 minutes left the search a fifth of them.
OVERHEAD_SECONDS = 20
# Median pruner: the share of the full length a trained trial ran, measured in one median-pruned study (10.7 of 15
# epochs; tests/benchmarks/RESULTS.md, "--check"); its rule depends on the values, so it is not replayed.
MEDIAN_SHARE = 10.7 / 15
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
    median pruner's share is measured, not derived. A sampler that keeps improving gets more trials through than
    this (RESULTS.md, "--check")."""
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


@dataclass(frozen=True)
class PhaseSizes:
    """Images each phase trains and validates on."""

    search: int  # a search trial trains on
    val: int  # a search trial validates on
    retrain: int  # a retrain seed trains on
    race: int  # a race run trains on
    race_val: int  # a race run validates on


def phase_sizes(space: Space, n_train: int, n_val: int) -> PhaseSizes:
    """Images each phase trains and validates on, from the training and validation split sizes."""
    s = space.search
    n_race_val = race_val_size(n_val, s.race_val_fraction, space.data.val_fraction)
    return PhaseSizes(search=round(n_train * s.data_fraction), val=n_val,
                      retrain=n_train + n_val if space.retrain.train_on == "train+val" else n_train,
                      race=round((n_train - n_race_val + n_val) * s.data_fraction), race_val=n_race_val)


def epoch_work(n_train: int, n_eval: int) -> float:
    """An epoch's work in trained images, as budget.py prices an epoch (at one second per image, batch 1)."""
    return estimate_train_seconds(1.0, 1, n_train, n_eval, 1)


def race_seconds(run_seconds: list[float], workers: int) -> float:
    """The race's runs spread over the workers; at least its longest run."""
    return max(sum(run_seconds) / workers, max(run_seconds)) if run_seconds else 0.0


def retrain_seconds(one_seed: float, seeds: int, workers: int, cpu: bool) -> float:
    """`seeds` retrain seeds on the workers: on CPU one process each (seeds / workers x one seed, at least one
    seed's time), on GPUs in waves of `workers`."""
    waves = max(1.0, seeds / workers) if cpu else math.ceil(seeds / workers)
    return waves * one_seed


def race_runs(search: SearchConfig, finalists: int) -> int:
    """Race runs of `finalists` finalists: `race_seeds - 1` rounds each."""
    return finalists * (search.race_seeds - 1) if search.race_top else 0


@dataclass(frozen=True)
class RunCost:
    """Seconds of a run's phases (each shared by the workers), and what they are made of."""

    search: float
    race: float
    retrain: float
    race_runs: int  # full-length race runs
    epochs_per_trial: float  # the mean a trained search trial trains
    per_epoch: float  # seconds of one search epoch of a typical candidate
    retrain_one: float  # seconds of one retrain seed
    designs: int = 0  # first_trials designs timed at full length

    @property
    def tail(self) -> float:
        """The race and the retrain: what follows the search."""
        return self.race + self.retrain

    @property
    def total(self) -> float:
        return self.search + self.race + self.retrain


def run_cost(space: Space, sps: float, bs: int, n: PhaseSizes, trials: int, workers: int, cpu: bool = True,
             designs: tuple = ()) -> RunCost:
    """Seconds of the whole run for `trials` trained trials: search, race, retrain (rejections cost ~ms; ignored).
    `sps` / `bs`: a typical candidate's seconds per step and batch size. `search.first_trials` designs train the
    full length, at their own timing where `designs` gives it ((sps, bs) each), the other trials the pruner's
    expected share of it. Every phase runs on `workers` processes at the timed thread count; the retrain's seeds
    in parallel, on CPU one process each where they do not fill whole waves (seeds / workers x one seed's time;
    on GPUs in waves)."""
    s, r = space.search, space.retrain
    per_epoch = estimate_train_seconds(sps, bs, n.search, n.val, 1)
    race_epoch = estimate_train_seconds(sps, bs, n.race, n.race_val, 1)
    first = min(len(s.first_trials), trials)
    timed = [estimate_train_seconds(d_sps, d_bs, n.search, n.val, 1) for d_sps, d_bs in designs][:first]
    first_seconds = s.epochs * (sum(timed) + (first - len(timed)) * per_epoch)
    epochs = expected_epochs(s, trials - first)
    # the epochs up to the first rung train on first_rung_fraction of the images: that much cheaper
    cheap = 0.0 if s.pruner == "none" else (1 - s.first_rung_fraction) * min(s.min_epochs, epochs)
    # at most: a design that ranks among the top race_top is raced once, as one of them
    finals = s.race_top + (first if s.race_first_trials else 0)
    race = race_runs(s, finals)
    retrain_one = estimate_train_seconds(sps, bs, n.retrain, 0, r.epochs)
    return RunCost(search=(first_seconds + (trials - first) * (epochs - cheap) * per_epoch) / workers,
                   race=race_seconds([s.epochs * race_epoch] * race, workers),
                   retrain=retrain_seconds(retrain_one, r.seeds, workers, cpu), race_runs=race,
                   epochs_per_trial=(first * s.epochs + (trials - first) * epochs) / max(1, trials),
                   per_epoch=per_epoch, retrain_one=retrain_one, designs=len(designs))


def tail_seconds(finals: list, space: Space, n: PhaseSizes, workers: int, cpu: bool = True,
                 retrained=None) -> float:
    """Seconds from the end of the search to the report, priced from the `finals` (trained trials with their
    measured seconds per epoch): their race runs, the retrain of `retrained` where the winner is known already (no
    race rounds), else of the slowest finalist, on the slow side, plus overhead."""
    s, r = space.search, space.retrain
    spe = [x for f in finals if (x := rec.read(f).seconds_per_epoch)]
    if not spe:
        return float(OVERHEAD_SECONDS)
    known = rec.read(retrained).seconds_per_epoch if retrained is not None else None
    search_work = epoch_work(n.search, n.val)
    each = race_runs(s, 1)
    race = race_seconds([x * s.epochs * epoch_work(n.race, n.race_val) / search_work for x in spe for _ in range(each)],
                        workers)
    retrain_one = (known if known else max(spe)) * r.epochs * n.retrain / search_work  # no timing stored: the slowest
    return SLOW_SIDE * (race + retrain_seconds(retrain_one, r.seeds, workers, cpu)) + OVERHEAD_SECONDS
