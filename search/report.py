"""The study report: studies/NAME/report.html, the tables and figures the hand-tuners drew by hand.

    write(study, space, out, data) -> report.html path

One self-contained page: figures are inline PNGs (data: URIs), styles inline, no script, no link: it opens
offline and makes no request. The same figures are saved as PNG files in studies/NAME/report/. Everything is
drawn from the storage (trials, intermediate values, user attrs) and, for the winner's sections, from the
retrained checkpoint and the data; a study still running gets the search sections only. The figures are drawn
in search/figures.py.
"""
from __future__ import annotations

import dataclasses
import datetime
import html
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
from search.catalogue import Meta, builtin_meta
from search import figures as F
from search import metrics
from search import record as rec
from search.export import deployment_line, load_checkpoint, normalization
from search.record import RaceRow, Recipe, RetrainResult, TailPlan, full_length, trained
from search.train import predict

UNITS = {"params": "trainable parameters", "macs": "multiply-adds per image", "train_seconds": "s per retrain seed",
         "latency_ms": "ms per image (onnxruntime, 1 thread)", "peak_memory_kb": "KB of activations (batch 1, fp32)"}
MISSED = 32  # misclassified test images shown
SAMPLES = 8  # training images shown per class


# ---- what the figures and tables are drawn from (pure functions, tested against the study) ----------------

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


def ranks(values: list[float]) -> list[float]:
    """Ranks from 0, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in order[i : j + 1]:
            out[k] = (i + j) / 2
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (Pearson's on tie-averaged ranks); nan when either side is constant."""
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else math.nan


def rung_fidelity(trials) -> list[tuple[int, float, int]]:
    """(epoch, rank correlation of val accuracy at that epoch with the final one, trials) over the full-length search
    trials: how well a rung at that epoch predicts where a trial ends. Survivors only, so it flatters early rungs
    (the trials they cut are not in it)."""
    done = full_length(trials)
    if len(done) < 5:
        return []
    last = max(max(t.intermediate_values) for t in done)
    rows = []
    for epoch in range(1, last):
        have = [t for t in done if epoch in t.intermediate_values]
        if len(have) >= 5:
            rows.append((epoch, spearman([t.intermediate_values[epoch] for t in have], [t.value for t in have]), len(have)))
    return rows


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


@dataclass(frozen=True)
class SearchGain:
    """What the search added to the user's designs (search.first_trials), on the validation split: the best
    design's full-length value, how many sampled full-length trials beat it, and the race's verdict (the winner's
    mean against the best raced design's, when both raced)."""

    design_trial: int
    design_val: float
    sampled: int  # sampled search trials that trained the full length
    beat: int  # of them, ahead of the best design's value
    winner_trial: int | None = None
    winner_is_design: bool = False
    race_gain: float | None = None  # winner's race mean - the best raced design's (0 when a design won)

    def line(self) -> str:
        won = ("a design won the race" if self.winner_is_design else
               f"the race's winner, trial {self.winner_trial}, is ahead of the best raced design by "
               f"{100 * self.race_gain:+.1f} pt" if self.race_gain is not None else "no race yet")
        return (f"{self.beat} of {self.sampled} sampled full-length trials beat the best design (trial "
                f"{self.design_trial}, val {self.design_val:.4f}) on the search split; {won}")


def search_gain(trials, race: list[RaceRow]) -> SearchGain | None:
    """The search against the designs (None: no design trained the full length)."""
    done = full_length(trials)
    designs = [t for t in done if rec.read(t).first_trial is not None]
    if not designs:
        return None
    best = max(designs, key=lambda t: t.value)
    sampled = [t for t in done if rec.read(t).first_trial is None and not rec.read(t).warm_from]
    gain = SearchGain(best.number, best.value, len(sampled), sum(t.value > best.value for t in sampled))
    raced_designs = [r for r in race if r.first_trial is not None]
    if race and raced_designs:
        winner = race[0]
        return dataclasses.replace(gain, winner_trial=winner.trial, winner_is_design=winner.first_trial is not None,
                                   race_gain=winner.mean - max(r.mean for r in raced_designs))
    return gain


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
        return metrics.confusion(self.pred, self.y, classes)


def test_predictions(checkpoint: Path, data: D.Data) -> TestSet:
    model, ckpt = load_checkpoint(checkpoint)
    test = D.Split(data.test.x.cpu(), data.test.y.cpu())
    pred = predict(model, test, *normalization(ckpt))
    return TestSet(test.y, pred, test.x)


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

    def figure(self, figures: F.Figures, name: str, fig: Figure, what: str):
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


def _recipe(train: Recipe) -> str:
    fields = train.to_json()
    augment = fields.pop("augment")
    return ", ".join(f"{k}={v}" for k, v in fields.items()) + f", augment={augment}"


def write(study: optuna.Study, space, out: Path, data: D.Data | None = None, data_problem: str = "") -> Path:
    """studies/NAME/report.html and studies/NAME/report/*.png from the study as it is now -> the page's path.
    `data` (the loaded dataset) adds the class counts, samples and, once retrained, the test-set sections."""
    trials = study.get_trials(deepcopy=False)
    tiers = space.budget.tiers()
    ladder = {tier: rec.retrain_results(study, tier) for tier in tiers}
    top = tiers[-1] if tiers else None  # a ladder's sections on one winner show the largest tier's
    retrain = rec.retrain_results(study, top)
    figures = F.Figures(out / "report")
    page = Page(f"nas-run study {study.study_name}")
    page.p(f"Written {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} from the study storage"
           + ("" if retrain else "; the winner is not retrained yet, so its sections are not here") + ".", "what")
    races = {tier: rec.race_standings(study, tier) for tier in space.budget.each_tier()}
    _summary(page, space, trials, retrain, data.meta if data is not None else builtin_meta(space.data), races,
             rec.tail_plan(study), rec.warm_starts(study))
    if tiers:
        _ladder(page, trials, ladder)
    _search(page, figures, space, trials, races, [r for r in (ladder.values() if tiers else [retrain]) if r])
    _what_mattered(page, figures, trials)
    _curves(page, figures, space, trials, retrain)
    meta = data.meta if data is not None else builtin_meta(space.data)
    names, classes = (list(meta.class_names), meta.classes) if meta else ([], 0)
    if data is not None:
        _data(page, figures, data, names, classes)
    elif data_problem:
        page.p(f"Data sections left out: {data_problem}.", "what")
    ckpt = out / "best" / (top or "") / "checkpoint.pt"
    if retrain and data is not None and not ckpt.exists():
        page.p(f"The winner's test-set sections need its checkpoint, not found at {ckpt}.", "what")
    if retrain and data is not None and ckpt.exists():
        _test_set(page, figures, test_predictions(ckpt, data), names, classes, retrain)
    path = out / "report.html"
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page.html())
    tmp.replace(path)
    return path


def _summary(page: Page, space, trials, retrain: RetrainResult | None, meta: Meta | None,
             races: dict[str | None, list[RaceRow]], plan: TailPlan | None = None, warm: list[dict] = ()) -> None:
    page.h2("Summary")
    c = rec.counts(trials)
    shape = f" ({meta.channels}×{meta.height}×{meta.width}, {meta.classes} classes)" if meta else ""
    rows = [["task", f"{space.data.dataset}{shape}, val split {space.data.val_fraction:.0%} of the training images"],
            ["selected on", f"{val_label(space)} (search.metric): pruning, the race and the winner"
                            + ("; the mean of the per-class recalls" if space.search.metric == "balanced_accuracy" else "")]]
    for key, unit in UNITS.items():
        limit = getattr(space.budget, key)
        if isinstance(limit, tuple):
            rows.append([f"budget: {key}", f"ladder: ≤ {' / '.join(f'{v:,}' for v in limit)} {unit}, one tier each"])
        elif limit is not None:
            rows.append([f"budget: {key}", f"≤ {limit:,} {unit}"])
    rows.append(["search cost", f"{search_seconds(trials) / 60:.1f} min wall-clock (search and race); trained "
                                f"{c.trained} (full length {c.completed}, pruned {c.pruned}), race runs "
                                f"{c.race}, rejected before training {c.rejected}, duplicates {c.duplicates}, "
                                f"failed {c.failed}, running {c.running}"])
    if plan is not None:
        rows.append(["race and retrain", f"{plan.describe()}: sized by --minutes to leave the search most of the time "
                                         "(the space's own sizes otherwise)"])
    rows += [["warm start", warm_line(w, trials)] for w in warm]
    epochs = [rec.read(t).epochs_run for t in trained(trials)]
    if epochs:
        rows.append(["epochs per trained trial", f"{statistics.fmean(epochs):.1f} of {space.search.epochs} "
                                                 f"(pruner {space.search.pruner})"])
    for tier, race in races.items():
        gain = search_gain(rec.of_tier(trials, tier), race)
        if gain is not None:
            rows.append([f"what the search added{f' ({tier})' if tier else ''}", gain.line()])
    winner = next((t for t in trials if retrain and t.number == retrain.trial), None)
    if winner is not None:
        r = rec.read(winner)
        cand = r.candidate
        tier = f" (the largest tier, {cand.tier})" if cand.tier else ""
        rows += [["winner" + tier, f"trial {winner.number}: {cand.describe()}"],
                 ["recipe", _recipe(cand.train)],
                 ["size", f"{r.params or 0:,} params, {r.macs or 0:,} MACs"]]
        target = f" (target {space.target:.4f})" if space.target else ""
        accs = ", ".join(f"{run.test_acc:.4f}" for run in retrain.runs)
        rows.append(["test", f"{retrain.headline()} (accuracy per seed: {accs}){target}; trained {retrain.epochs} "
                             f"epochs on {retrain.train_on}"])
        if retrain.deployment:
            rows.append(["deployment", deployment_line(retrain.deployment)])
    page.table([], rows, cls="kv")
    page.p("Selection (pruning, race, winner) uses the validation split only. The test split is read once per retrain "
           "seed for the accuracy above and, in the last section, for reporting; it selects nothing.", "what")


def warm_line(warm: dict, trials) -> str:
    """A warm start (warm.WarmStart.record) in words: where from, which trials carried over and how they did here."""
    carried = [t for t in trials if (rec.read(t).warm_from or "").split("#")[0] == warm["study"]]
    done = full_length(carried)
    here = ", ".join(f"{t.number} (from {rec.read(t).warm_from}" + (f", val {t.value:.4f})" if t in done else ")")
                     for t in carried)
    best = rec.best_search_trial(trials)
    lead = "" if best is None else (f"; the best full-length search trial is trial {best.number}"
                                    + (", carried over" if best in carried else ""))
    notes = "".join(f"; {what}: {', '.join(warm[what])}" for what in ("clipped", "dropped") if warm[what])
    return (f"from {warm['storage']}: its trials {', '.join(map(str, warm['trials']))}, mapped onto this space, "
            f"trained at full length after the designs as trials {here or 'none yet'}{lead}; the sampler started "
            f"from {warm['evidence']} of its trained trials{notes}")


def _ladder(page: Page, trials, ladder: dict) -> None:
    """The budget ladder: one retrained winner per tier, with what it costs where it ships."""
    page.h2("The budget ladder")
    by = {t.number: t for t in trials}
    rows = []
    for tier, r in ladder.items():
        if not r:
            rows.append([tier, "-", "-", "not retrained yet", "-", "-", "-", "-"])
            continue
        t, d = rec.read(by[r.trial]) if r.trial in by else None, r.deployment
        q = d.int8 if d else None
        rows.append([tier, f"{t.params or 0:,}" if t else "-", f"{t.macs or 0:,}" if t else "-",
                     f"{r.test_acc_mean:.4f} ± {r.test_acc_std:.4f} ({len(r.runs)} seeds)",
                     f"{d.latency_1.ms:.3f} / {d.latency_64.ms:.2f}" if d else "-",
                     f"{d.peak_fp32_bytes / 1000:,.1f} / {d.peak_int8_bytes / 1000:,.1f}" if d else "-",
                     f"{q.test_acc:.4f} (fp32 {q.fp32_test_acc:.4f})" if q else "-", f"trial {r.trial}"])
    page.table(["tier", "params", "MACs", "test accuracy", "latency ms (1 / 64 images)", "peak KB (fp32 / int8)",
                "int8 test accuracy", "winner"], rows,
               "One study, one winner per tier: each raced and retrained apart, tested once, exported to best/TIER/. "
               "Latency: onnxruntime on this machine's CPU, 1 thread; peak: activations live at once at batch 1.")


def val_label(space) -> str:
    """The validation figure's name on axes: what the study selects on (search.metric)."""
    return "val " + metrics.NAMES[space.search.metric]


def _search(page: Page, figures: F.Figures, space, trials, races: dict, winners: list) -> None:
    page.h2("Search progress")
    page.figure(figures, "progress", F.fig_progress(trials, val_label(space)),
                "Validation accuracy per trial: full-length trials, pruned ones at the epoch they stopped, race runs, the "
                "best so far; candidates rejected before training (over budget, invalid) marked on the bottom axis.")
    origins = {t.number: rec.read(t).warm_from for t in trials if rec.read(t).warm_from}
    for tier, race in races.items():
        _race(page, race, tier, origins)
    _size(page, figures, space, trials, winners)


def _race(page: Page, race: list[RaceRow], tier: str | None, origins: dict[int, str]) -> None:
    if race:
        page.table(["trial", "search split val", "val acc per race round", "mean ± std (rounds)", "params"],
                   [[f"{r.trial} (warm start: {origins[r.trial]})" if r.trial in origins else r.trial
                     if r.first_trial is None else
                     f"{r.trial} (first_trials[{r.first_trial}]{', kept by race_margin' if r.kept else ''})",
                     f"{r.search_val:.4f}" if r.search_val is not None else "-",
                     ", ".join(f"{v:.4f}" for v in r.val_accs) or "none (--minutes)",
                     f"{r.mean:.4f} ± {r.std:.4f}" if r.val_accs else "-",
                     f"{r.params or 0:,}"] for r in race],
                   (f"tier {tier}: " if tier else "") +
                   "race: the finalists (the best search trials, and the first_trials designs) on more seeds, each round on a "
                   "fresh split; the winner first: best mean over the rounds (a design's search run counts too: it raced "
                   "because it was named, not for its rank; the others' search values picked them, so they only break "
                   "ties), unless it beat the best design by no more than search.race_margin")


def _size(page: Page, figures: F.Figures, space, trials, winners: list) -> None:
    page.h2("Accuracy vs size")
    done = full_length(trials)
    front = pareto_front([(rec.read(t).params, t.value, t.number) for t in done if rec.read(t).params is not None])
    by = {t.number: rec.read(t) for t in trials}
    stars = [(by[r.trial].params, by[r.trial].macs, r.test_acc_mean, by[r.trial].tier or "winner")
             for r in winners if r.trial in by]
    limits = {k: v for k in ("params", "macs") if (v := getattr(space.budget, k)) is not None}
    page.figure(figures, "accuracy_vs_size", F.fig_size(trials, limits, front, stars, val_label(space)),
                "Validation accuracy against parameters (left) and MACs (right) for every trained trial (pruned ones at "
                "lower fidelity, hollow), the budget (each tier's with a ladder), the Pareto front of the full-length "
                "trials (no smaller net was more accurate), and the retrained winners at their test accuracy (stars).")
    if front:
        by = {t.number: rec.read(t) for t in done}
        page.table(["params", "MACs", "val acc", "trial", "candidate"],
                   [[f"{p:,}", f"{by[n].macs or 0:,}", f"{a:.4f}", n, by[n].candidate.describe()]
                    for p, a, n in front], "Pareto front (full-length trials; one seed each)")


def _what_mattered(page: Page, figures: F.Figures, trials) -> None:
    page.h2("What mattered")
    imp = importances(trials)
    if isinstance(imp, dict):
        page.figure(figures, "importance", F.fig_importance(imp),
                    f"Hyperparameter importance (Optuna's PED-ANOVA over the {len(full_length(trials))} full-length "
                    "trials): how much each parameter's values in the best quarter of them differ from its values in all "
                    "of them.")
    else:
        page.p(f"Hyperparameter importance: {imp}.", "what")
    page.p("Sensitivity: validation accuracy per value (or per quantile bin) of each searched parameter. 'trained' "
           "counts the trials that drew it, 'full' those that trained the full length; mean ± std and best are over "
           "the full-length ones. A difference inside the spread is noise. Most important parameter first.", "what")
    tables = sensitivity(trials)
    order = [n for n in imp if n in tables] + [n for n in tables if n not in imp] if isinstance(imp, dict) else tables
    page.raw("<div class='tables'>")
    for name in order:
        page.table([name, "trained", "full", "val acc mean ± std", "best"], [r.cells() for r in tables[name]])
    page.raw("</div>")


def _curves(page: Page, figures: F.Figures, space, trials, retrain: RetrainResult | None) -> None:
    page.h2("Learning curves")
    if trained(trials):
        page.figure(figures, "learning_curves", F.fig_curves(trials, val_label(space)),
                    f"Validation accuracy per epoch of the {min(F.TOP_CURVES, len(full_length(trials)))} best full-length "
                    "trials (colour) and of the pruned ones (grey): what the pruner cut, and where.")
    fidelity = rung_fidelity(trials)
    if fidelity:
        page.table(["epoch", "rank correlation with the final val accuracy", "trials"],
                   [[e, f"{r:.2f}", n] for e, r, n in fidelity],
                   "How well does the val accuracy at an epoch predict the final one? (Spearman, full-length trials)")
        page.p("A rung at an epoch whose correlation is low ranks how fast a net learns, not where it ends: move "
               "search.min_epochs to where it is high. Only trials that reached the full length are counted, so early "
               "epochs look better here than they are.", "what")
    if retrain:
        page.h2("The winner's retrain")
        if any(run.train_loss for run in retrain.runs):
            page.figure(figures, "retrain_loss", F.fig_retrain_loss(retrain.runs),
                        f"Training loss per epoch of every retrain seed ({retrain.epochs} epochs on {retrain.train_on}).")
        else:
            page.p("This study's retrain recorded no loss history.", "what")


def _data(page: Page, figures: F.Figures, data: D.Data, names: list[str], classes: int) -> None:
    page.h2("Data")
    page.figure(figures, "class_counts", F.fig_class_counts(data, names),
                "Images per class in the training, validation and test splits.")
    shown = [k for k in range(classes) if (data.train.y == k).any()][:10]
    rows = [list(data.train.x[(data.train.y == k).nonzero()[:SAMPLES, 0]].cpu()) for k in shown]
    page.figure(figures, "samples", F.fig_rows(rows, [names[k] for k in shown]),
                f"The first {SAMPLES} training images of {'every' if classes <= 10 else 'the first 10'} class.")


def _test_set(page: Page, figures: F.Figures, test: TestSet, names: list[str], classes: int,
              retrain: RetrainResult) -> None:
    cm = test.confusion(classes)
    page.h2("The winner on the test set")
    page.p(f"The exported model (retrain seed {retrain.runs[0].seed}, fp32) on the {len(test.y):,} test "
           "images. Read for reporting only: nothing here selected the winner.", "what")
    page.figure(figures, "confusion", F.fig_confusion(cm, names),
                f"Confusion matrix: rows true class, columns predicted; {int(cm.sum()):,} images, accuracy "
                f"{metrics.accuracy(cm):.4f}, balanced accuracy (mean recall per class) {metrics.balanced_accuracy(cm):.4f}.")
    recall, confused = metrics.recalls(cm), metrics.most_confused(cm)
    order = sorted(range(classes), key=lambda k: recall[k] if recall[k] is not None else 0.0)
    page.table(["class", "test images", "recall", "most often taken for"],
               [[names[k], int(cm[k].sum()), f"{recall[k] or 0:.4f}",
                 "" if confused[k] is None else names[confused[k]]] for k in order],
               "per-class recall (the share of its images predicted as it), worst first")
    wrong = (test.pred != test.y).nonzero()[:MISSED, 0].tolist()
    if wrong:
        page.figure(figures, "misclassified", F.fig_grid([test.x[i] for i in wrong],
                                                       [f"{names[test.y[i]]}→{names[test.pred[i]]}" for i in wrong], 8),
                    f"The first {len(wrong)} misclassified test images, true → predicted.")


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
    r = rec.retrain_results(study)
    lines = [f"## {study.study_name}", ""]
    for tier, t in rec.tier_retrain_results(study).items():
        lines.append(f"- tier {tier}: trial {t.trial}, **{t.headline()}** (best/{tier}/)")
    if r:
        lines.append(f"Winner: trial {r.trial}, **{r.headline()}** (race standings and retrain results: study user "
                     "attrs).")
    lines += ["", f"Study report: [report.html](/artifacts/{study._study_id}/{artifact_id}) (also in "
                  f"`{path}`; figures, sensitivity tables, the winner on the test set)."]
    save_note(study, "\n".join(lines))
    return artifact_id
