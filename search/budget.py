"""Budget accounting: exact parameters, MACs (fvcore), and an estimate of the full retrain's wall-clock.

Units: `params` = trainable parameters; `macs` = multiply-accumulates for one inference image as fvcore
counts them (fvcore calls them "flops" but counts one multiply-add as 1); `peak_memory_kb` = activations live at
once at batch 1, fp32 (deploy.py); `latency_ms` = one image through the exported ONNX in onnxruntime, 1 thread
(deploy.py); `train_seconds` = estimated wall-clock of one full retrain on this machine, from a few timed training
steps after warm-up.
A violation is the normalized overshoot value / limit - 1: > 0 breaks the budget, <= 0 fits, exactly
what `Trial.set_constraint` wants. Params and MACs cost milliseconds; the timing (a few real training
steps) only runs when they fit.
"""
from __future__ import annotations

import copy
import logging
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

import models
from search.data import Meta
from search.errors import UserError
from search.train import make_optimizer, make_step

if TYPE_CHECKING:
    from search.space import BudgetConfig

logging.getLogger("fvcore").setLevel(logging.ERROR)  # it warns about every op it does not count (relu, pool)
warnings.filterwarnings("ignore", message=r".*torch\.jit\.(script|trace).*deprecated")  # fvcore traces with jit


@dataclass
class Cost:
    params: int
    macs: int | None  # None: not measured (params already over budget)
    train_seconds: float | None = None  # None: not measured (a cheaper measure is already over budget)
    peak_memory_kb: float | None = None  # measured only when budgeted
    latency_ms: float | None = None


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, meta: Meta) -> int:
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()  # tracing in train mode would update BatchNorm's running statistics
    try:
        with torch.no_grad():
            x = torch.zeros(1, meta.channels, meta.height, meta.width, device=next(model.parameters()).device)
            fca = FlopCountAnalysis(model, x)
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(fca.total())
    finally:
        model.train(was_training)


def seconds_per_step(model: nn.Module, recipe: dict, meta: Meta, device, warmup: int = 2, timed: int = 4) -> float:
    """Median wall-clock of one real training step (augmentation included) on random uint8 images."""
    model = copy.deepcopy(model).to(device)
    bs = recipe["batch_size"]
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


def deployed_latency_ms(model: nn.Module, meta: Meta) -> float:
    """One image through the model as exported (ONNX in onnxruntime, 1 thread): deploy.latency_ms."""
    from search import deploy
    from search.export import Normalized

    wrapped = Normalized(copy.deepcopy(model).cpu().eval(), [0.5] * meta.channels, [0.25] * meta.channels).eval()
    return deploy.latency_ms(deploy.onnx_bytes(wrapped, meta), meta, 1)["ms"]


def check(model, recipe, budget: BudgetConfig, meta: Meta, *, n_train: int, n_eval: int, epochs: int, device="cpu"):
    """-> (Cost, violations), cheapest first: params (exact, instant); MACs (an fvcore trace) when a MACs budget
    is set or params fit; then, each only when its budget is set and everything before fits: peak memory (an fx
    trace, ms), latency (an ONNX export and timed runs, ~3 s), the time estimate (real training steps).
    Cost.macs is None when params alone already rejected the candidate."""
    from search import deploy

    cost = Cost(count_params(model), None)
    over = violations(cost, budget)
    if budget.macs is not None or all(v <= 0 for v in over.values()):
        cost.macs = count_macs(model, meta)
        over = violations(cost, budget)
    if budget.peak_memory_kb is not None and all(v <= 0 for v in over.values()):
        cost.peak_memory_kb = deploy.peak_memory(model, meta)["fp32"] / 1000
        over = violations(cost, budget)
    if budget.latency_ms is not None and all(v <= 0 for v in over.values()):
        cost.latency_ms = deployed_latency_ms(model, meta)
        over = violations(cost, budget)
    if budget.train_seconds is not None and all(v <= 0 for v in over.values()):
        sps = seconds_per_step(model, recipe, meta, device)
        cost.train_seconds = estimate_train_seconds(sps, recipe["batch_size"], n_train, n_eval, epochs)
        over = violations(cost, budget)
    return cost, over


def scaled(cand: dict, m: float) -> dict:
    """The candidate with every width (and the fc head's width) multiplied by m, at least 1 channel each."""
    cfg = dict(cand["model"])
    cfg["widths"] = [max(1, round(w * m)) for w in cfg["widths"]]
    for key in ("fc_width", "stem_width"):
        if cfg.get(key):
            cfg[key] = max(1, round(cfg[key] * m))
    return {**cand, "model": cfg}


def fill(cand: dict, budget: BudgetConfig, meta: Meta, steps: int = 12) -> dict:
    """Scale the candidate's widths by the largest multiplier whose model still fits the params and MACs limits
    (bisection; each probe builds the model and counts, ~1 ms for params, ~15 ms with an fvcore MACs trace). The
    sampled widths then set the shape (ratios between stages), the budget sets the size. A candidate that does
    not fit even at one channel per conv is returned as sampled and rejected by `check`."""

    def fits(m: float) -> bool:
        model = models.build(cand["family"], **scaled(cand, m)["model"])
        if budget.params is not None and count_params(model) > budget.params:
            return False
        return budget.macs is None or count_macs(model, meta) <= budget.macs

    lo, hi = 1.0, 1.0
    if fits(1.0):
        while fits(hi * 2) and hi < 64:
            hi *= 2
        lo, hi = hi, hi * 2
    else:
        while not fits(lo):
            lo /= 2
            if all(w * lo < 1 for w in cand["model"]["widths"]):
                return cand
    for _ in range(steps):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return scaled(cand, lo)


def candidate_model(space, trial, meta: Meta, tier: str | None = None) -> tuple[dict, nn.Module]:
    """The candidate a trial samples, filled to the budget (its ladder tier's) when the space fills it, and its
    model; ValueError when it does not build. A ladder's candidate names its tier."""
    cand = space.sample(trial, meta)
    budget = space.budget.tier(tier)
    if budget.fill:
        cand = fill(cand, budget, meta)
    if tier is not None:
        cand["tier"] = tier
    return cand, models.build(cand["family"], **cand["model"])


def sample_costs(space, meta: Meta, n: int, seed: int, stop_at_fit: bool = False, tier: str | None = None):
    """[(candidate, model, Cost, violations)] for n random candidates that build (filled when the space fills
    the budget; a ladder's at `tier`); and the invalid count. Params and MACs only: the costly measures are the
    run's."""
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
        cost = Cost(count_params(model), count_macs(model, meta))
        rows.append((cand, model, cost, violations(cost, space.budget.tier(tier))))
        if stop_at_fit and all(v <= 0 for v in rows[-1][3].values()):
            break
    return rows, invalid


def no_fit_error(space, rows, tier: str | None = None) -> UserError:
    """The one line for a space whose sampled candidates all break the budget: how close the nearest came."""
    nearest = min(rows, key=lambda r: max(r[3].values()))
    worst = max(nearest[3], key=nearest[3].get)
    value, limit = getattr(nearest[2], worst), getattr(space.budget.tier(tier), worst)
    where = f" tier {tier}" if tier else ""
    return UserError(
        f"{space.file}: budget{where}: no sampled candidate fits; the nearest has {worst}={value:,} "
        f"({nearest[3][worst]:.0%} over the {limit:,} budget): widen the space toward smaller models or raise the budget"
    )


def preflight(space, meta: Meta, n: int = 200) -> None:
    """Before a run writes anything: in every tier, stop at the first random candidate whose params and MACs fit,
    or fail with no_fit_error."""
    for tier in space.budget.each_tier():
        rows, _ = sample_costs(space, meta, n, space.search.seed, stop_at_fit=True, tier=tier)
        if not rows:
            raise UserError(f"{space.file}: model: none of {n} sampled candidates builds")
        if not any(all(v <= 0 for v in r[3].values()) for r in rows):
            raise no_fit_error(space, rows, tier)
