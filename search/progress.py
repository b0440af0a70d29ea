"""What the user sees: a live view of the study while it runs, a summary table, the dashboard command.

Everything is rendered from storage snapshots (`study.get_trials()`), so one view serves one worker in
this process and K worker processes alike. Without a terminal (CI, logs) it prints a line per trial.
"""
from __future__ import annotations

import threading
import time

from optuna.trial import TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from search import metrics
from search.clock import mean_trial_seconds
from search import record as rec


def trial_line(t) -> str:
    r = rec.read(t)
    reason = r.end_reason or t.state.name.lower()
    acc = f"val {t.value:.4f}" if t.value is not None else (
        f"val {rec.last_value(t):.4f} at epoch {rec.last_epoch(t)}" if t.intermediate_values else "")
    size = f"{r.params:,} params" if r.params is not None else ""
    race = f" (race of trial {r.race_of})" if rec.is_race(t) else ""
    return f"trial {t.number}{race}: {reason} {acc} {size}".replace("  ", " ").strip()


def status(trials, target: int, started: float, workers: int) -> Group:
    c = rec.counts(trials)
    lines = [Text(f"trained {c.trained}/{target} · completed {c.completed} · pruned {c.pruned} · "
                  f"rejected before training {c.rejected} · duplicates {c.duplicates} · failed {c.failed}", style="bold")]
    for t in trials:
        if t.state == TrialState.RUNNING and t.intermediate_values:
            lines.append(Text(f"  running trial {t.number}: epoch {rec.last_epoch(t)}, val {rec.last_value(t):.4f}, "
                              f"{rec.read(t).params or 0:,} params"))
        elif t.state == TrialState.RUNNING:
            lines.append(Text(f"  running trial {t.number}: starting"))
    best = rec.best_search_trial(trials)
    if best:
        lines.append(Text(f"best: trial {best.number}, val {best.value:.4f}, {rec.read(best).params or 0:,} params", style="green"))
    per = mean_trial_seconds(trials)
    if per and c.trained < target:
        lines.append(Text(f"ETA ~{per * (target - c.trained) / workers / 60:.1f} min "
                          f"({time.monotonic() - started:.0f} s elapsed)"))
    return Group(*lines)


def summary(trials, metric: str = "accuracy", top: int = 10) -> Table:
    done = sorted(rec.full_length(trials), key=lambda t: -t.value)
    name = metrics.NAMES[metric]
    table = Table(title=f"top {min(top, len(done))} search trials by validation {name} (one seed each)")
    for col in ("trial", "val acc" if metric == "accuracy" else "val bal. acc", "params", "MACs", "s/epoch", "candidate"):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for t in done[:top]:
        r = rec.read(t)
        table.add_row(str(t.number), f"{t.value:.4f}", f"{r.params or 0:,}", f"{r.macs or 0:,}",
                      f"{r.seconds_per_epoch or 0:.1f}", r.candidate.describe())
    return table


def dashboard_command(storage_url: str, artifact_dir: str) -> str:
    return f"optuna-dashboard {storage_url} --artifact-dir {artifact_dir}"


class Progress:
    """Polls the study every `every` seconds in a thread and renders it (live, or a line per trial)."""

    def __init__(self, study, target: int, console: Console, workers: int = 1, every: float = 1.0):
        self.study, self.target, self.console, self.workers, self.every = study, target, console, workers, every
        self.started = time.monotonic()
        self.printed: set[int] = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        self.live = Live(console=console, auto_refresh=False) if console.is_terminal else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        if self.live:
            self.live.start()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
        self.poll()
        if self.live:
            self.live.stop()

    def _loop(self):
        while not self._stop.wait(self.every):
            try:
                self.poll()
            except Exception:  # a busy database must not kill the view; the next poll retries
                pass

    def poll(self):
        trials = self.study.get_trials(deepcopy=False)
        if self.live:
            self.live.update(status(trials, self.target, self.started, self.workers), refresh=True)
            return
        for t in trials:
            if t.state.is_finished() and t.number not in self.printed:
                self.printed.add(t.number)
                self.console.print(trial_line(t), highlight=False)
