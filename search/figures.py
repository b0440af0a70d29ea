"""The study report's figures: matplotlib's object API (no pyplot state, safe beside worker threads), one function
per figure, each drawn from trials / user attrs / tensors handed in. `Figures` saves each as a PNG file and keeps
it as a data: URI for the self-contained page."""
from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from matplotlib.figure import Figure
from optuna.trial import TrialState

from search import data as D
from search import record as rec
from search.record import full_length, trained

TOP_CURVES = 5  # learning curves drawn in colour: the best full-length trials


@dataclass
class Figures:
    folder: Path
    saved: dict[str, str] = field(default_factory=dict)  # name -> data: URI

    def add(self, name: str, fig: Figure) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        png = buf.getvalue()
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{name}.png").write_bytes(png)
        self.saved[name] = "data:image/png;base64," + base64.b64encode(png).decode()
        return name


def _figure(w: float = 7, h: float = 3.6, cols: int = 1):
    fig = Figure(figsize=(w, h), layout="constrained")
    axes = fig.subplots(1, cols)
    return fig, axes


def fig_progress(trials, ylabel: str = "val accuracy") -> Figure:
    fig, ax = _figure()
    finished = [t for t in trials if t.state.is_finished()]
    done, cut = full_length(finished), rec.cut_short(finished)
    race = [t for t in trials if rec.is_race(t) and t.state == TrialState.COMPLETE]
    rejected = [t for t in finished if not rec.is_race(t) and rec.is_rejected(t)]
    if cut:
        ax.scatter([t.number for t in cut], [rec.last_value(t) for t in cut],
                   s=14, facecolors="none", edgecolors="0.6", label="stopped early: pruned, diverged, time (val at its last epoch)")
    if done:
        ax.scatter([t.number for t in done], [t.value for t in done], s=18, color="C0", label="full length")
        best, line = -math.inf, []
        for t in sorted(done, key=lambda t: t.number):
            best = max(best, t.value)
            line.append((t.number, best))
        ax.step(*zip(*line), where="post", color="C2", label="best so far")
    if race:
        ax.scatter([t.number for t in race], [t.value for t in race], s=18, marker="D", color="C1", label="race runs")
    if rejected:
        low = ax.get_ylim()[0] if (done or cut) else 0.0
        ax.scatter([t.number for t in rejected], [low] * len(rejected), marker="x", color="C3", s=16,
                   label="rejected before training", clip_on=False)
    ax.set_xlabel("trial")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def fig_size(trials, budget: dict, front: list, winners: list = (), ylabel: str = "val accuracy") -> Figure:
    """`budget`: limit (or a ladder's limits) by key; `winners`: [(params, macs, test accuracy, label)] of the
    retrained winners, drawn as stars (their accuracy is the test split's, the dots' the validation split's)."""
    fig, axes = _figure(11, 3.8, cols=2)
    done = full_length(trials)
    cut = rec.cut_short(trials)
    for ax, key, label in ((axes[0], "params", "trainable parameters"), (axes[1], "macs", "MACs per image")):
        def size(t):
            return getattr(rec.read(t), key)

        pts = [(size(t), t.value) for t in done if size(t) is not None]
        low = [(size(t), rec.last_value(t)) for t in cut if size(t) is not None]
        if low:
            ax.scatter(*zip(*low), s=12, facecolors="none", edgecolors="0.7", label="stopped early (lower fidelity)")
        if pts:
            ax.scatter(*zip(*pts), s=18, color="C0", label="full length")
        if key == "params" and front:
            ax.plot([p[0] for p in front], [p[1] for p in front], "-o", color="C1", ms=5, label="Pareto front")
        limits = budget.get(key)
        for i, limit in enumerate(limits if isinstance(limits, tuple) else [limits] if limits is not None else []):
            ax.axvline(limit, color="C3", ls="--", label="budget" if i == 0 else None)
        for i, (params, macs, acc, label) in enumerate(winners):
            ax.scatter([params if key == "params" else macs], [acc], marker="*", s=140, color="C2", zorder=5,
                       label="retrained winner (test accuracy)" if i == 0 else None)
            ax.annotate(label, (params if key == "params" else macs, acc), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, loc="lower right")
    return fig


def fig_importance(imp: dict[str, float]) -> Figure:
    names = list(imp)[::-1]
    fig, ax = _figure(7, 0.3 * len(names) + 1)
    ax.barh(names, [imp[n] for n in names], color="C0")
    ax.set_xlabel("PED-ANOVA importance (how far the best quarter's values stand apart)")
    return fig


def fig_curves(trials, ylabel: str = "val accuracy") -> Figure:
    fig, ax = _figure()
    ts = trained(trials)
    top = sorted(full_length(trials), key=lambda t: -t.value)[:TOP_CURVES]
    for t in ts:
        if t.state != TrialState.COMPLETE and t.intermediate_values:
            steps = sorted(t.intermediate_values)
            ax.plot(steps, [t.intermediate_values[s] for s in steps], color="0.75", lw=0.7)
    ax.plot([], [], color="0.75", lw=0.7, label="stopped early (pruned ...)")
    for i, t in enumerate(top):
        steps = sorted(t.intermediate_values)
        ax.plot(steps, [t.intermediate_values[s] for s in steps], color=f"C{i}", lw=1.5, label=f"trial {t.number}")
    ax.set_xlabel("epochs trained")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def fig_retrain_loss(runs: list[rec.SeedRun]) -> Figure:
    fig, ax = _figure()
    for r in runs:
        ax.plot(range(1, len(r.train_loss) + 1), r.train_loss, marker=".", label=f"seed {r.seed} (test {r.test_acc:.4f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss (mean over the epoch)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    return fig


def fig_confusion(cm: torch.Tensor, names: list[str]) -> Figure:
    n = len(names)
    fig, ax = _figure(0.45 * n + 3, 0.45 * n + 2.5)
    ax.imshow(cm.numpy(), cmap="Blues")
    if n <= 20:
        for (i, j), v in zip(((i, j) for i in range(n) for j in range(n)), cm.flatten().tolist()):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                    color="white" if v > cm.max().item() / 2 else "black")
        ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return fig


def _canvas(images: list[torch.Tensor], cols: int, gap: int) -> tuple[torch.Tensor, int, int]:
    """The images pasted on one white canvas, `gap` pixels above each row (for its labels) -> (H, W[, 3]), cell h, w.
    One imshow instead of an axes per image: a 1,000-image study report still draws in a second."""
    c, h, w = images[0].shape
    rows = math.ceil(len(images) / cols)
    canvas = torch.full((c, rows * (h + gap), cols * (w + 2)), 255, dtype=torch.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        canvas[:, r * (h + gap) + gap : (r + 1) * (h + gap), k * (w + 2) + 1 : k * (w + 2) + 1 + w] = img
    return (canvas[0] if c == 1 else canvas.permute(1, 2, 0)), h + gap, w + 2


def fig_grid(images: list[torch.Tensor], titles: list[str], cols: int) -> Figure:
    """Images with a small title above each."""
    grid, ch, cw = _canvas(images, cols, gap=10)
    fig = Figure(figsize=(cols * 1.15, grid.shape[0] / ch * 1.2), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=255)
    for i, title in enumerate(titles):
        r, k = divmod(i, cols)
        ax.text(k * cw + cw / 2, r * ch + 8, title, ha="center", va="bottom", fontsize=6)
    ax.set_axis_off()
    return fig


def fig_rows(images: list[list[torch.Tensor]], labels: list[str]) -> Figure:
    """One row of images per label (samples per class)."""
    cols = max(len(r) for r in images)
    flat = [img for row in images for img in row + [torch.full_like(row[0], 255)] * (cols - len(row))]
    grid, ch, _ = _canvas(flat, cols, gap=2)
    fig = Figure(figsize=(cols * 0.8 + 1.5, len(images) * 0.8), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([r * ch + ch / 2 for r in range(len(images))], labels, fontsize=7)
    for side in ax.spines.values():
        side.set_visible(False)
    return fig


def fig_class_counts(data: D.Data, names: list[str]) -> Figure:
    fig, ax = _figure(max(7, 0.35 * len(names)), 3.2)
    k = len(names)
    for i, (label, split) in enumerate((("train", data.train), ("val", data.val), ("test", data.test))):
        c = torch.bincount(split.y.cpu(), minlength=k).tolist()
        ax.bar([j + (i - 1) * 0.27 for j in range(k)], c, width=0.27, label=f"{label} ({len(split):,})")
    if k <= 20:
        ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("images")
    ax.legend(fontsize=7, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return fig
