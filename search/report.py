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


def describe(cand: dict) -> str:
    m = cand["model"]
    parts = [cand["family"]]
    if "widths" in m:
        parts.append("widths=" + "/".join(map(str, m["widths"])))
    if "depths" in m:
        parts.append("depths=" + "/".join(map(str, m["depths"])))
    for key in ("kernel_size", "transition", "head", "separable", "expansion"):
        if key in m:
            parts.append(f"{key}={m[key]}")
    return " ".join(parts)


def counts(trials) -> dict:
    c = {"trained": 0, "completed": 0, "pruned": 0, "rejected": 0, "failed": 0, "running": 0}
    for t in trials:
        reason = t.user_attrs.get("end_reason", "")
        if t.state == TrialState.RUNNING:
            c["running"] += 1
        elif t.user_attrs.get("trained"):
            c["trained"] += 1
            c["completed" if t.state == TrialState.COMPLETE else "pruned"] += 1
        elif reason.startswith(("rejected", "invalid", "duplicate")):
            c["rejected"] += 1
        elif t.state == TrialState.FAIL:
            c["failed"] += 1
    return c


def best_trial(trials):
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("trained")]
    return max(done, key=lambda t: t.value) if done else None


def trial_line(t) -> str:
    reason = t.user_attrs.get("end_reason", t.state.name.lower())
    acc = f"val {t.value:.4f}" if t.value is not None else (
        f"val {t.intermediate_values[max(t.intermediate_values)]:.4f} at epoch {max(t.intermediate_values) + 1}"
        if t.intermediate_values else "")
    params = t.user_attrs.get("params")
    size = f"{params:,} params" if params is not None else ""
    return f"trial {t.number}: {reason} {acc} {size}".replace("  ", " ").strip()


def status(trials, target: int, started: float, workers: int) -> Group:
    c = counts(trials)
    lines = [Text(f"trained {c['trained']}/{target} · completed {c['completed']} · pruned {c['pruned']} · "
                  f"rejected before training {c['rejected']} · failed {c['failed']}", style="bold")]
    for t in trials:
        if t.state == TrialState.RUNNING and t.intermediate_values:
            e = max(t.intermediate_values)
            lines.append(Text(f"  running trial {t.number}: epoch {e + 1}, val {t.intermediate_values[e]:.4f}, {t.user_attrs.get('params', 0):,} params"))
        elif t.state == TrialState.RUNNING:
            lines.append(Text(f"  running trial {t.number}: starting"))
    best = best_trial(trials)
    if best:
        lines.append(Text(f"best: trial {best.number}, val {best.value:.4f}, {best.user_attrs.get('params', 0):,} params", style="green"))
    done = [t for t in trials if t.user_attrs.get("trained") and t.datetime_complete and t.datetime_start]
    if done and c["trained"] < target:
        per = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done) / len(done)
        lines.append(Text(f"ETA ~{per * (target - c['trained']) / workers / 60:.1f} min "
                          f"({time.monotonic() - started:.0f} s elapsed)"))
    return Group(*lines)


def summary(trials, top: int = 10) -> Table:
    done = sorted((t for t in trials if t.value is not None and t.user_attrs.get("trained")), key=lambda t: -t.value)
    table = Table(title=f"top {min(top, len(done))} trials by validation accuracy (search fidelity)")
    for col in ("trial", "val acc", "params", "MACs", "s/epoch", "candidate"):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for t in done[:top]:
        table.add_row(str(t.number), f"{t.value:.4f}", f"{t.user_attrs.get('params', 0):,}", f"{t.user_attrs.get('macs', 0):,}",
                      f"{t.user_attrs.get('seconds_per_epoch', 0):.1f}", describe(t.user_attrs["candidate"]))
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
