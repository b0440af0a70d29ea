"""The study report: studies/NAME/report.html, the tables and figures the hand-tuners drew by hand.

    write(study, space, out, data) -> report.html path

One self-contained page: figures are inline PNGs (data: URIs), styles inline, no script, no link: it opens
offline and makes no request. The same figures are saved as PNG files in studies/NAME/report/. Everything is
drawn from the storage (trials, intermediate values, user attrs) and, for the winner's sections, from the
retrained checkpoint and the data; a study still running gets the search sections only. Figures use
matplotlib's object API (no pyplot state, safe beside worker threads).
"""
from __future__ import annotations

import base64
import datetime
import html
import io
import math
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
from matplotlib.figure import Figure
from optuna.trial import TrialState

from search import data as D
from search.objective import INVALID, REJECTED
from search.progress import counts, describe
from search.study import is_race, trained
from search.train import predict

UNITS = {"params": "trainable parameters", "macs": "multiply-adds per image", "train_seconds": "s per retrain seed"}
TOP_CURVES = 5  # learning curves drawn in colour: the best full-length trials
MISSED = 32  # misclassified test images shown
SAMPLES = 8  # training images shown per class


# ---- what the figures and tables are drawn from (pure functions, tested against the study) ----------------

def full_length(trials) -> list:
    """Search trials that trained the full length: their val accuracy is measured where the winner is used."""
    return [t for t in trained(trials) if t.state == TrialState.COMPLETE]


def pareto_front(points: list[tuple[int, float, int]]) -> list[tuple[int, float, int]]:
    """(size, accuracy, trial) points no other point dominates (as small or smaller and at least as accurate, one
    of them strictly), by size. The answer to "what would fewer parameters give me?"."""
    front, best = [], -math.inf
    for size, acc, number in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((size, acc, number))
            best = acc
    return front


@dataclass
class Row:
    label: str
    trained: int = 0
    accs: list[float] = field(default_factory=list)  # full-length val accuracies

    def cells(self) -> list[str]:
        a = self.accs
        mean = f"{statistics.fmean(a):.4f}" if a else "-"
        spread = f"± {statistics.stdev(a):.4f}" if len(a) > 1 else ""
        return [self.label, str(self.trained), str(len(a)), f"{mean} {spread}".strip(), f"{max(a):.4f}" if a else "-"]


def sensitivity(trials, bins: int = 4) -> dict[str, list[Row]]:
    """Per searched parameter: val accuracy per value (categorical) or per quantile bin (numeric, log-spaced for log
    ranges) over the trained search trials; `trained` counts every trial that drew it, `accs` those that trained the
    full length (pruned trials stopped at lower fidelity, their accuracy is not comparable)."""
    ts = trained(trials)
    names = sorted({n for t in ts for n in t.params})
    tables = {}
    for name in names:
        drew = [t for t in ts if name in t.params]
        dist = drew[0].distributions[name]
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            rows = {repr(c): Row(str(c)) for c in dist.choices}
            for t in drew:
                row = rows[repr(t.params[name])]
                row.trained += 1
                if t.state == TrialState.COMPLETE:
                    row.accs.append(t.value)
            tables[name] = [r for r in rows.values() if r.trained]
            continue
        log = getattr(dist, "log", False)
        key = (lambda v: math.log(v)) if log else (lambda v: v)  # noqa: E731
        values = sorted(key(t.params[name]) for t in drew)
        edges = [values[min(len(values) - 1, round(i * (len(values) - 1) / bins))] for i in range(bins + 1)]
        edges = sorted(set(edges))
        back = (lambda v: math.exp(v)) if log else (lambda v: v)  # noqa: E731
        fmt = (lambda v: f"{v:.3g}") if isinstance(dist, optuna.distributions.FloatDistribution) else (lambda v: f"{v:.0f}")  # noqa: E731
        if len(edges) == 1:
            rows = [Row(fmt(back(edges[0])))]
            edges = [edges[0], edges[0]]
        else:
            rows = [Row(f"{fmt(back(lo))} – {fmt(back(hi))}") for lo, hi in zip(edges, edges[1:])]
        for t in drew:
            v = key(t.params[name])
            i = min(len(rows) - 1, max(0, sum(v > e for e in edges[1:-1])))
            rows[i].trained += 1
            if t.state == TrialState.COMPLETE:
                rows[i].accs.append(t.value)
        tables[name] = [r for r in rows if r.trained]
    return tables


def importances(trials) -> dict[str, float] | str:
    """Optuna's PED-ANOVA importances over the full-length search trials (which parameters set the best quarter
    apart; numpy only and milliseconds for 1,000 trials, where fANOVA needs scikit-learn and seconds), or why there
    are none yet."""
    done = full_length(trials)
    if len(done) < 4:
        return f"needs 4 full-length trials, has {len(done)}"
    scratch = optuna.create_study(direction="maximize")
    scratch.add_trials(done)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(
                scratch, evaluator=optuna.importance.PedAnovaImportanceEvaluator(target_quantile=0.25))
    except (RuntimeError, ValueError) as e:
        return f"not computable yet ({e})"


def search_seconds(trials) -> float:
    """Wall-clock from the first trial's start to the last trial's end (search and race, all workers)."""
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0


@dataclass
class TestSet:
    """The winner's predictions on the test split (fp32, the retrained first seed's checkpoint)."""
    y: torch.Tensor
    pred: torch.Tensor
    x: torch.Tensor  # uint8 images, for the misclassified grid

    def confusion(self, classes: int) -> torch.Tensor:
        return torch.bincount(self.y * classes + self.pred, minlength=classes * classes).view(classes, classes)


def test_predictions(checkpoint: Path, data: D.Data) -> TestSet:
    from search.export import load_checkpoint

    model, ckpt = load_checkpoint(checkpoint)
    test = D.Split(data.test.x.cpu(), data.test.y.cpu())
    pred = predict(model, test, torch.tensor(ckpt["mean"]), torch.tensor(ckpt["std"]))
    return TestSet(test.y, pred, test.x)


# ---- figures --------------------------------------------------------------------------------------------------

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


def fig_progress(trials) -> Figure:
    fig, ax = _figure()
    search = [t for t in trials if not is_race(t) and t.state.is_finished()]
    done = [t for t in search if t.user_attrs.get("trained") and t.state == TrialState.COMPLETE]
    cut = [t for t in search if t.user_attrs.get("trained") and t.state != TrialState.COMPLETE and t.intermediate_values]
    race = [t for t in trials if is_race(t) and t.state == TrialState.COMPLETE]
    rejected = [t for t in search if t.user_attrs.get("end_reason", "").startswith((REJECTED, INVALID))]
    if cut:
        ax.scatter([t.number for t in cut], [t.intermediate_values[max(t.intermediate_values)] for t in cut],
                   s=14, facecolors="none", edgecolors="0.6", label="pruned (val at the epoch it stopped)")
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
    ax.set_ylabel("val accuracy")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def fig_size(trials, budget: dict, front: list) -> Figure:
    fig, axes = _figure(11, 3.8, cols=2)
    done = full_length(trials)
    cut = [t for t in trained(trials) if t.state != TrialState.COMPLETE and t.intermediate_values]
    for ax, key, label in ((axes[0], "params", "trainable parameters"), (axes[1], "macs", "MACs per image")):
        pts = [(t.user_attrs[key], t.value) for t in done if key in t.user_attrs]
        low = [(t.user_attrs[key], t.intermediate_values[max(t.intermediate_values)]) for t in cut if key in t.user_attrs]
        if low:
            ax.scatter(*zip(*low), s=12, facecolors="none", edgecolors="0.7", label="pruned (lower fidelity)")
        if pts:
            ax.scatter(*zip(*pts), s=18, color="C0", label="full length")
        if key == "params" and front:
            ax.plot([p[0] for p in front], [p[1] for p in front], "-o", color="C1", ms=5, label="Pareto front")
        if key in budget:
            ax.axvline(budget[key], color="C3", ls="--", label=f"budget {budget[key]:,}")
        ax.set_xlabel(label)
        ax.set_ylabel("val accuracy")
        ax.legend(fontsize=7, loc="lower right")
    return fig


def fig_importance(imp: dict[str, float]) -> Figure:
    names = list(imp)[::-1]
    fig, ax = _figure(7, 0.3 * len(names) + 1)
    ax.barh(names, [imp[n] for n in names], color="C0")
    ax.set_xlabel("PED-ANOVA importance (how far the best quarter's values stand apart)")
    return fig


def fig_curves(trials) -> Figure:
    fig, ax = _figure()
    ts = trained(trials)
    top = sorted(full_length(trials), key=lambda t: -t.value)[:TOP_CURVES]
    for t in ts:
        if t.state != TrialState.COMPLETE and t.intermediate_values:
            steps = sorted(t.intermediate_values)
            ax.plot(steps, [t.intermediate_values[s] for s in steps], color="0.75", lw=0.7)
    ax.plot([], [], color="0.75", lw=0.7, label="pruned trials")
    for i, t in enumerate(top):
        steps = sorted(t.intermediate_values)
        ax.plot(steps, [t.intermediate_values[s] for s in steps], color=f"C{i}", lw=1.5, label=f"trial {t.number}")
    ax.set_xlabel("epochs trained")
    ax.set_ylabel("val accuracy")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def fig_retrain_loss(runs: list[dict]) -> Figure:
    fig, ax = _figure()
    for r in runs:
        loss = r.get("train_loss") or []
        ax.plot(range(1, len(loss) + 1), loss, marker=".", label=f"seed {r['seed']} (test {r['test_acc']:.4f})")
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


# ---- the page ---------------------------------------------------------------------------------------------------

CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}p.what{color:#555;font-size:.9em;margin:.3em 0}
table.kv td{text-align:left}figure{margin:1em 0}img{max-width:100%}.tables{display:flex;flex-wrap:wrap;gap:1.5em}code{font-size:.9em}"""


class Page:
    def __init__(self, title: str):
        self.parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                      f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]

    def h2(self, text: str):
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def p(self, text: str, cls: str = ""):
        self.parts.append(f"<p class='{cls}'>{html.escape(text)}</p>" if cls else f"<p>{html.escape(text)}</p>")

    def figure(self, figures: Figures, name: str, fig: Figure, what: str):
        figures.add(name, fig)
        self.parts.append(f"<figure><img alt='{html.escape(name)}' src='{figures.saved[name]}'>"
                          f"<p class='what'>{html.escape(what)}</p></figure>")

    def table(self, head: list[str], rows: list[list[str]], caption: str = "", cls: str = ""):
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        top = f"<tr>{''.join(f'<th>{html.escape(h)}</th>' for h in head)}</tr>" if head else ""
        self.parts.append(f"<table class='{cls}'>{cap}{top}{body}</table>")

    def raw(self, text: str):
        self.parts.append(text)

    def html(self) -> str:
        return "".join(self.parts) + "</body></html>"


def _recipe(train: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in train.items() if k != "augment") + (
        f", augment={train['augment']}" if train.get("augment") else "")


def write(study: optuna.Study, space, out: Path, data: D.Data | None = None, data_problem: str = "") -> Path:
    """studies/NAME/report.html and studies/NAME/report/*.png from the study as it is now -> the page's path.
    `data` (the loaded dataset) adds the class counts, samples and, once retrained, the test-set sections."""
    trials = study.get_trials(deepcopy=False)
    figures = Figures(out / "report")
    page = Page(f"nas-run study {study.study_name}")
    c = counts(trials)
    retrain = study.user_attrs.get("retrain")
    race = study.user_attrs.get("race") or []
    ts = trained(trials)
    done = full_length(trials)
    names = D.class_names(space.data["dataset"])
    meta = D.DATASETS[space.data["dataset"]]
    page.p(f"Written {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} from the study storage"
           + ("" if retrain else "; the winner is not retrained yet, so its sections are not here") + ".", "what")

    # summary
    page.h2("Summary")
    rows = [["task", f"{space.data['dataset']} ({meta.channels}×{meta.size}×{meta.size}, {meta.classes} classes), "
                     f"val split {space.data['val_fraction']:.0%} of the training images"]]
    for key, unit in UNITS.items():
        if key in space.budget:
            rows.append([f"budget: {key}", f"≤ {space.budget[key]:,} {unit}"])
    wall = search_seconds(trials)
    epochs = [t.user_attrs.get("epochs_run", 0) for t in ts]
    rows.append(["search cost", f"{wall / 60:.1f} min wall-clock (search and race); trained {c['trained']} "
                                f"(full length {c['completed']}, pruned {c['pruned']}), race runs {c['race']}, rejected "
                                f"before training {c['rejected']}, duplicates {c['duplicates']}, failed {c['failed']}, "
                                f"running {c['running']}"])
    if epochs:
        rows.append(["epochs per trained trial", f"{statistics.fmean(epochs):.1f} of {space.search['epochs']} "
                                                 f"(pruner {space.search['pruner']})"])
    winner = next((t for t in trials if retrain and t.number == retrain["trial"]), None)
    if winner is not None:
        cand = winner.user_attrs["candidate"]
        rows += [["winner", f"trial {winner.number}: {describe(cand)}"],
                 ["recipe", _recipe(cand["train"])],
                 ["size", f"{winner.user_attrs.get('params', 0):,} params, {winner.user_attrs.get('macs', 0):,} MACs"]]
        target = f" (target {space.target:.4f})" if space.target else ""
        accs = ", ".join(f"{r['test_acc']:.4f}" for r in retrain["runs"])
        rows.append(["test accuracy", f"{retrain['test_acc_mean']:.4f} ± {retrain['test_acc_std']:.4f} over "
                                      f"{len(retrain['runs'])} seeds ({accs}){target}; trained {retrain['epochs']} "
                                      f"epochs on {retrain['train_on']}"])
    page.table([], rows, cls="kv")
    page.p("Selection (pruning, race, winner) uses the validation split only. The test split is read once per retrain "
           "seed for the accuracy above and, in the last section, for reporting; it selects nothing.", "what")

    # search
    page.h2("Search progress")
    page.figure(figures, "progress", fig_progress(trials),
                "Validation accuracy per trial: full-length trials, pruned ones at the epoch they stopped, race runs, the "
                "best so far; candidates rejected before training (over budget, invalid) marked on the bottom axis.")
    if race:
        page.table(["trial", "val acc per seed", "mean ± std", "params"],
                   [[r["trial"], ", ".join(f"{v:.4f}" for v in r["val_accs"]), f"{r['mean']:.4f} ± {r['std']:.4f}",
                     f"{r.get('params') or 0:,}"] for r in race], "race: the finalists on more seeds, best mean first")

    page.h2("Accuracy vs size")
    front = pareto_front([(t.user_attrs["params"], t.value, t.number) for t in done if "params" in t.user_attrs])
    page.figure(figures, "accuracy_vs_size", fig_size(trials, space.budget, front),
                "Validation accuracy against parameters (left) and MACs (right) for every trained trial (pruned ones at "
                "lower fidelity, hollow), the budget, and the Pareto front of the full-length trials: no smaller net "
                "was more accurate.")
    if front:
        by = {t.number: t for t in done}
        page.table(["params", "MACs", "val acc", "trial", "candidate"],
                   [[f"{p:,}", f"{by[n].user_attrs.get('macs', 0):,}", f"{a:.4f}", n, describe(by[n].user_attrs["candidate"])]
                    for p, a, n in front], "Pareto front (full-length trials; one seed each)")

    page.h2("What mattered")
    imp = importances(trials)
    if isinstance(imp, dict):
        page.figure(figures, "importance", fig_importance(imp),
                    f"Hyperparameter importance (Optuna's PED-ANOVA over the {len(done)} full-length trials): how much "
                    "each parameter's values in the best quarter of them differ from its values in all of them.")
    else:
        page.p(f"Hyperparameter importance: {imp}.", "what")
    page.p("Sensitivity: validation accuracy per value (or per quantile bin) of each searched parameter. 'trained' "
           "counts the trials that drew it, 'full' those that trained the full length; mean ± std and best are over "
           "the full-length ones. A difference inside the spread is noise. Most important parameter first.", "what")
    page.raw("<div class='tables'>")
    tables = sensitivity(trials)
    order = [n for n in imp if n in tables] + [n for n in tables if n not in imp] if isinstance(imp, dict) else tables
    for name in order:
        table = tables[name]
        page.table([name, "trained", "full", "val acc mean ± std", "best"], [r.cells() for r in table])
    page.raw("</div>")

    page.h2("Learning curves")
    if ts:
        page.figure(figures, "learning_curves", fig_curves(trials),
                    f"Validation accuracy per epoch of the {min(TOP_CURVES, len(done))} best full-length trials (colour) "
                    "and of the pruned ones (grey): what the pruner cut, and where.")

    if retrain:
        page.h2("The winner's retrain")
        if any(r.get("train_loss") for r in retrain["runs"]):
            page.figure(figures, "retrain_loss", fig_retrain_loss(retrain["runs"]),
                        f"Training loss per epoch of every retrain seed ({retrain['epochs']} epochs on {retrain['train_on']}).")
        else:
            page.p("This study's retrain recorded no loss history.", "what")

    if data is not None:
        page.h2("Data")
        page.figure(figures, "class_counts", fig_class_counts(data, names),
                    "Images per class in the training, validation and test splits.")
        shown = [k for k in range(meta.classes) if (data.train.y == k).any()][:10]
        rows = [list(data.train.x[(data.train.y == k).nonzero()[:SAMPLES, 0]].cpu()) for k in shown]
        page.figure(figures, "samples", fig_rows(rows, [names[k] for k in shown]),
                    f"The first {SAMPLES} training images of {'every' if meta.classes <= 10 else 'the first 10'} class.")
    elif data_problem:
        page.p(f"Data sections left out: {data_problem}.", "what")

    ckpt = out / "best" / "checkpoint.pt"
    if retrain and data is not None and not ckpt.exists():
        page.p(f"The winner's test-set sections need its checkpoint, not found at {ckpt}.", "what")
    if retrain and data is not None and ckpt.exists():
        test = test_predictions(ckpt, data)
        cm = test.confusion(meta.classes)
        page.h2("The winner on the test set")
        page.p(f"The exported model (retrain seed {retrain['runs'][0]['seed']}, fp32) on the {len(test.y):,} test "
               "images. Read for reporting only: nothing here selected the winner.", "what")
        page.figure(figures, "confusion", fig_confusion(cm, names),
                    f"Confusion matrix: rows true class, columns predicted; {int(cm.sum()):,} images, accuracy "
                    f"{cm.diag().sum().item() / cm.sum().item():.4f}.")
        per_class = cm.diag().float() / cm.sum(1).clamp(min=1)
        order = per_class.argsort().tolist()
        confused = cm.clone().fill_diagonal_(-1).argmax(1).tolist()  # the most frequent wrong prediction per class
        page.table(["class", "test images", "accuracy", "most often taken for"],
                   [[names[k], int(cm[k].sum()), f"{per_class[k]:.4f}", names[confused[k]]] for k in order],
                   "per-class accuracy, worst first")
        wrong = (test.pred != test.y).nonzero()[:MISSED, 0].tolist()
        if wrong:
            page.figure(figures, "misclassified", fig_grid([test.x[i] for i in wrong],
                                                           [f"{names[test.y[i]]}→{names[test.pred[i]]}" for i in wrong], 8),
                        f"The first {len(wrong)} misclassified test images, true → predicted.")
    path = out / "report.html"
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page.html())
    tmp.replace(path)
    return path


def publish(study: optuna.Study, path: Path, artifacts: Path) -> str:
    """Upload report.html as a study artifact (replacing the earlier upload's content, so reruns keep one) and put
    a short note on the study for optuna-dashboard -> the artifact id."""
    from optuna_dashboard import save_note

    store = optuna.artifacts.FileSystemArtifactStore(str(artifacts))
    artifacts.mkdir(parents=True, exist_ok=True)
    old = [m for m in optuna.artifacts.get_all_artifact_meta(study) if m.filename == path.name]
    if old:
        with open(path, "rb") as f:
            store.write(old[0].artifact_id, f)
        artifact_id = old[0].artifact_id
    else:
        artifact_id = optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study,
                                                       mimetype="text/html")
    r = study.user_attrs.get("retrain")
    lines = [f"## {study.study_name}", ""]
    if r:
        lines.append(f"Winner: trial {r['trial']}, test accuracy **{r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f}** "
                     f"over {len(r['runs'])} seeds (race standings and retrain results: study user attrs).")
    lines += ["", f"Study report: [report.html](/artifacts/{study._study_id}/{artifact_id}) (also in "
                  f"`{path}`; figures, sensitivity tables, the winner on the test set)."]
    save_note(study, "\n".join(lines))
    return artifact_id
