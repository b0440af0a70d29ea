"""Budget accounting: exact parameters, MACs (fvcore), and an estimate of the full retrain's wall-clock.

Units: `params` = trainable parameters; `macs` = multiply-accumulates for one inference image as fvcore
counts them (fvcore calls them "flops" but counts one multiply-add as 1); `peak_memory_kb` = activations live at
once at batch 1, fp32; `latency_ms` = one image through the exported ONNX in onnxruntime, 1 thread (all four
measured by measure.py); `train_seconds` = estimated wall-clock of one full retrain on this machine, from a few timed training
steps after warm-up.
A violation is the normalized overshoot value / limit - 1: > 0 breaks the budget, <= 0 fits, exactly
what `Trial.set_constraint` wants. Params and MACs cost milliseconds; the timing (a few real training
steps) only runs when they fit.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from search import measure as M
from search.catalogue import Meta
from search.errors import UserError
from search.record import Candidate, Recipe
from search.train import make_optimizer, make_step

if TYPE_CHECKING:
    from search.space import BudgetConfig


@dataclass
class Cost:
    params: int
    macs: int | None  # None: not measured (params already over budget)
    train_seconds: float | None = None  # None: not measured (a cheaper measure is already over budget)
    peak_memory_kb: float | None = None  # measured only when budgeted
    latency_ms: float | None = None


def seconds_per_step(model: nn.Module, recipe: Recipe, meta: Meta, device, warmup: int = 2, timed: int = 4) -> float:
    """Median wall-clock of one real training step (augmentation included) on random uint8 images."""
    model = copy.deepcopy(model).to(device)
    bs = recipe.batch_size
    x = torch.randint(0, 256, (bs, meta.channels, meta.height, meta.width), dtype=torch.uint8, device=device)
    y = torch.randint(0, meta.classes, (bs,), device=device)
    mean = torch.full((meta.channels,), 0.5, device=device)
    step = make_step(model, make_optimizer(model, recipe), recipe, mean, mean)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    model.train()
    times = []
    for i in range(warmup + timed):
        sync()
        t0 = time.perf_counter()
        step(x, y)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def estimate_train_seconds(sps: float, batch_size: int, n_train: int, n_eval: int, epochs: int) -> float:
    """Steps x seconds per step, plus per-epoch evaluation (a forward pass ~ 1/3 of a training step)."""
    return epochs * (max(1, n_train // batch_size) * sps + n_eval / batch_size * sps / 3)


def violations(cost: Cost, budget: BudgetConfig) -> dict[str, float]:
    """Normalized overshoot for every budget key that was measured: value / limit - 1."""
    return {key: getattr(cost, key) / limit - 1 for key, limit in budget.limits().items()
            if getattr(cost, key) is not None}


def measure(model, recipe: Recipe, budget: BudgetConfig, meta: Meta, *, n_train: int, n_eval: int, epochs: int,
            device: torch.device):
    """What a candidate costs against the budget -> (Cost, violations), cheapest first: params (exact, instant); MACs
    (an fvcore trace) when a MACs budget is set or params fit; then, each only when its budget is set and everything
    before fits: peak memory (an fx trace, ms), latency (an ONNX export and timed runs, ~3 s), the time estimate
    (real training steps). Cost.macs is None when params alone already rejected the candidate."""
    cost = Cost(M.count_params(model), None)
    over = violations(cost, budget)
    if budget.macs is not None or all(v <= 0 for v in over.values()):
        cost.macs = M.count_macs(model, meta)
        over = violations(cost, budget)
    if budget.peak_memory_kb is not None and all(v <= 0 for v in over.values()):
        cost.peak_memory_kb = M.peak_memory(model, meta)["fp32"] / 1000
        over = violations(cost, budget)
    if budget.latency_ms is not None and all(v <= 0 for v in over.values()):
        cost.latency_ms = M.deployed_latency_ms(model, meta)
        over = violations(cost, budget)
    if budget.train_seconds is not None and all(v <= 0 for v in over.values()):
        sps = seconds_per_step(model, recipe, meta, device)
        cost.train_seconds = estimate_train_seconds(sps, recipe.batch_size, n_train, n_eval, epochs)
        over = violations(cost, budget)
    return cost, over


def fill(cand: Candidate, budget: BudgetConfig, meta: Meta, steps: int = 12) -> Candidate:
    """Scale the candidate's widths by the largest multiplier whose model still fits the params and MACs limits
    (bisection; each probe builds the model and counts, ~1 ms for params, ~15-50 ms with an fvcore MACs trace). The
    sampled widths then set the shape (ratios between stages), the budget sets the size. A candidate that does
    not fit even at one channel per conv is returned as sampled and rejected by `measure`."""
    # Widths are whole channels, so late bisection steps round to a model already probed: each is counted once.
    # Both counts grow with every width, so where the params-only answer fits the MACs limit too it is the answer
    # (the same bisection, probe for probe) and one trace is all MACs cost; else bisect on both.
    counted: dict[str, list] = {}  # model config -> [model until traced, params, MACs once traced]

    def count(scaled: Candidate, macs: bool) -> tuple[int, int | None]:
        key = repr(scaled.model)  # the config, whichever of its fields `scaled` changes
        if key not in counted:
            model = scaled.build()
            counted[key] = [model, M.count_params(model), None]
        entry = counted[key]
        if macs and entry[2] is None:
            entry[2], entry[0] = M.count_macs(entry[0], meta), None  # a traced model is not needed again
        return entry[1], entry[2]

    def params_fit(scaled: Candidate) -> bool:
        return budget.params is None or count(scaled, False)[0] <= budget.params

    def both_fit(scaled: Candidate) -> bool:
        return params_fit(scaled) and count(scaled, True)[1] <= budget.macs

    if budget.macs is None:
        return _largest(cand, params_fit, steps)
    if budget.params is not None:
        filled = _largest(cand, params_fit, steps)
        if filled is not cand and both_fit(filled):
            return filled
    return _largest(cand, both_fit, steps)


def _largest(cand: Candidate, fits, steps: int) -> Candidate:
    """cand scaled by the largest multiplier whose model `fits` (doubling, then `steps` of geometric bisection), or
    cand itself where not even one channel per conv fits."""
    lo, hi = 1.0, 1.0
    if fits(cand.scaled(1.0)):
        while fits(cand.scaled(hi * 2)) and hi < 64:
            hi *= 2
        lo, hi = hi, hi * 2
    else:
        while not fits(cand.scaled(lo)):
            lo /= 2
            if all(w * lo < 1 for w in cand.widths):
                return cand
    for _ in range(steps):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if fits(cand.scaled(mid)) else (lo, mid)
    return cand.scaled(lo)


def candidate_model(space, trial, meta: Meta, tier: str | None = None) -> tuple[Candidate, nn.Module]:
    """The candidate a trial samples, filled to the budget (its ladder tier's) when the space fills it, and its
    model; ValueError when it does not build. A ladder's candidate names its tier."""
    cand = space.sample(trial, meta)
    budget = space.budget.tier(tier)
    if budget.fill:
        cand = fill(cand, budget, meta)
    cand = cand.in_tier(tier)
    return cand, cand.build()


@dataclass
class Sampled:
    """A random candidate priced against the budget: its model, params and MACs, and the overshoot per limit."""

    candidate: Candidate
    model: nn.Module
    cost: Cost
    over: dict[str, float]

    def fits(self) -> bool:
        return all(v <= 0 for v in self.over.values())


def sample_costs(space, meta: Meta, n: int, seed: int, stop_at_fit: bool = False,
                 tier: str | None = None) -> tuple[list[Sampled], int]:
    """n random candidates that build (filled when the space fills the budget; a ladder's at `tier`), priced in
    params and MACs only (the costly measures are the run's); and the invalid count."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    rows, invalid = [], 0
    for _ in range(n):
        try:
            cand, model = candidate_model(space, study.ask(), meta, tier)
        except ValueError:
            invalid += 1
            continue
        cost = Cost(M.count_params(model), M.count_macs(model, meta))
        rows.append(Sampled(cand, model, cost, violations(cost, space.budget.tier(tier))))
        if stop_at_fit and rows[-1].fits():
            break
    return rows, invalid


def no_fit_error(space, rows: list[Sampled], tier: str | None = None) -> UserError:
    """The one line for a space whose sampled candidates all break the budget: how close the nearest came."""
    nearest = min(rows, key=lambda r: max(r.over.values()))
    worst = max(nearest.over, key=nearest.over.get)
    value, limit = getattr(nearest.cost, worst), getattr(space.budget.tier(tier), worst)
    where = f" tier {tier}" if tier else ""
    return UserError(
        f"{space.file}: budget{where}: no sampled candidate fits; the nearest has {worst}={value:,} "
        f"({nearest.over[worst]:.0%} over the {limit:,} budget): widen the space toward smaller models or raise the budget"
    )


def preflight(space, meta: Meta, n: int = 200) -> None:
    """Before a run writes anything: in every tier, stop at the first random candidate whose params and MACs fit,
    or fail with no_fit_error."""
    for tier in space.budget.each_tier():
        rows, _ = sample_costs(space, meta, n, space.search.seed, stop_at_fit=True, tier=tier)
        if not rows:
            raise UserError(f"{space.file}: model: none of {n} sampled candidates builds")
        if not any(r.fits() for r in rows):
            raise no_fit_error(space, rows, tier)
