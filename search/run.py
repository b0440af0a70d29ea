"""The pipeline, top to bottom: search -> race -> retrain -> publish. No argparse in here.

    run(space, console, RunOptions(trials=200, ...))  ->  exit status

1. search: K workers run trials until the study holds `trials` trained search trials (objective.py), or until
   `--minutes` leaves only the time the race and the retrain are priced at (clock.py);
2. race: the top `search.race_top` candidates are trained again on more seeds; the winner has the best mean
   validation accuracy (race.py);
3. retrain_and_export: retrain the winner on `retrain.train_on` for `retrain.seeds` seeds, measure the test split
   once (retrain.py), write the checkpoint / ONNX / .pt2 / model card (export.py), upload them as artifacts.
Reruns of the same command resume at whichever step was reached.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

from search import budget as B
from search import data as D
from search import export as E
from search import race as R
from search.clock import TAIL_SHARE, Clock, own_plan, sized
from search.cost import phase_sizes
from search.errors import RunError, UserError
from search.mps import shared_gpu
from search import record as rec
from search.objective import FAILING, GAVE_UP, Objective
from search.record import End
from search.progress import Progress, dashboard_command, summary
from search.record import RaceRow, RetrainResult
from search.retrain import retrain
from search.space import Space
from search.storage import HEARTBEAT, make_storage
from search.study import default_storage, open_study
from search import warm as W
from search.workers import (RunContext, Terminated, gpus_of, pick_device, plan_workers, processes_for,
                            run_processes, run_worker)

MIMETYPES = {".md": "text/markdown", ".json": "application/json"}  # artifacts; the rest are octet-stream


def writable(folder: Path) -> None:
    """Fail before the run if `folder` cannot be written (creates nothing: probes the nearest existing parent)."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UserError(f"--studies: cannot write to {folder} ({probe} is not a writable directory)")


@dataclass(frozen=True)
class RunOptions:
    """`nas-run`'s flags, as the pipeline takes them."""

    trials: int | None = None  # trained search trials to reach (default: search.trials)
    storage: str | None = None  # Optuna storage URL (default: SQLite in `studies`)
    studies: str = "studies"
    workers: int | str = "auto"
    device: str = "auto"
    heartbeat: int = HEARTBEAT
    retrain_winner: bool = True
    minutes: float | None = None  # the whole command's wall-clock budget, from `started`
    started: float | None = None  # time.time() when the command started (default: now)
    formats: tuple[str, ...] = E.FORMATS  # what the winner is exported to
    warm_from: str | None = None  # --from: an earlier study to start from (warm.py)


def run(space: Space, console, opts: RunOptions = RunOptions()) -> int:
    """`nas-run SPACE`: search, race, retrain the winner, export. Returns the exit status."""
    started = opts.started or time.time()
    trials = opts.trials or space.search.trials
    url = opts.storage or default_storage(space.name, opts.studies)
    out = Path(opts.studies) / space.name
    writable(Path(opts.studies))
    k, threads = plan_workers(opts.workers, opts.device)
    dev = pick_device(opts.device)
    data = load_data(space, dev if k == 1 else "cpu", console)  # with K processes the parent keeps a CPU copy
    B.preflight(space, data.meta)  # a budget nothing meets fails here, before anything is written
    warm = read_warm_start(opts.warm_from, opts.studies, space, url, console) if opts.warm_from else None
    study = open_study(space, make_storage(url, opts.heartbeat), warm=warm)
    rec.check_test_split(study, data.test_split, space.file)
    clock = None
    if opts.minutes:
        n = phase_sizes(space, len(data.train), len(data.val))
        clock = Clock(started + opts.minutes * 60, space, n, k, cpu=not gpus_of(opts.device), started=started)
    ctx = RunContext(space, url, trials, opts.device, k, threads, opts.heartbeat, clock, warm)
    with shared_gpu(gpus_of(opts.device), k, console.print) as sharing:
        shared = f" ({sharing})" if sharing else ""
        within = f" within {opts.minutes:g} min" if opts.minutes else ""
        console.print(f"study {space.name} in {url}: {k} worker(s) x {threads} thread(s) on {dev}{shared}, target {trials} "
                      f"trained trials{within}")
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            with Progress(study, trials, console, k):
                statuses, obj, ctx = search_and_race(ctx, study, data, console, started, opts.minutes)
        except KeyboardInterrupt as e:
            console.print(summary(study.get_trials(deepcopy=False), space.search.metric))
            console.print("interrupted: the running trial was stopped and marked 'interrupted'; run the same command to resume")
            return 143 if isinstance(e, Terminated) else 130
        finally:
            signal.signal(signal.SIGTERM, previous)
        all_trials = study.get_trials(deepcopy=False)
        c = rec.counts(all_trials)
        console.print(summary(all_trials, space.search.metric))
        console.print(f"trained {c.trained} (completed {c.completed}, pruned {c.pruned}), race runs {c.race}, "
                      f"rejected before training {c.rejected}, duplicates {c.duplicates}, failed {c.failed}")
        console.print(f"inspect: {dashboard_command(url, str(out / 'artifacts'))}", highlight=False)
        stop_if_failing(space, statuses, obj, all_trials, c, console)
        for tier in space.budget.each_tier():  # a ladder: a race, a retrain and an export per tier
            finish_tier(study, ctx.space, rec.of_tier(all_trials, tier), tier, data, out, console, ctx, opts)
        write_report(study, space, out, data, console)
        if ctx.space != space:
            console.print(f"--minutes {opts.minutes:g} sized the tail: {own_plan(ctx.space).describe()} (the space: "
                          f"{own_plan(space).describe()})", highlight=False)
        return 0


def finish_tier(study, space: Space, trials, tier: str | None, data: D.Data, out: Path, console, ctx: RunContext,
                opts: RunOptions) -> None:
    """The race's standings and the retrained, exported winner of one ladder tier (of the study: tier None)."""
    standings = R.standings(trials, space.search)
    if tier is not None:
        limits = ", ".join(f"{k} <= {v:,}" for k, v in space.budget.tier(tier).limits().items())
        console.print(f"[bold]tier {tier}[/] ({limits})", highlight=False)
    if space.search.race_top and standings:
        rec.store_race_standings(study, standings, tier)
        print_standings(standings, space, console)
    winner = R.winner(trials, space.search)  # None: no trial of the tier completed
    if opts.retrain_winner and winner is not None:
        retrain_and_export(study, space, winner, data, out, console, opts.formats, ctx=ctx, tier=tier)


def load_data(space: Space, device, console=None) -> D.Data:
    """The space's data; missing or bad files are one line naming the space's data.root (exit 2)."""
    try:
        data = D.load(space.data, device, space.search.seed)
    except UserError as e:
        raise UserError(f"{space.file}: data.root: {e}") from None
    if console is not None:
        if data.skipped:
            console.print(f"data: {data.skipped} file(s) in {space.data.root} skipped (hidden, or not images)",
                          highlight=False)
        for note in data.notes:
            console.print(f"data: {note}", highlight=False)
    return data


def read_warm_start(source: str, studies: str, space: Space, url: str, console) -> W.WarmStart:
    """`--from SOURCE`, read before this study is written to; what it brings, printed."""
    warm = W.read(source, studies, space, url)
    for line in warm.lines():
        console.print(line, highlight=False)
    if space.search.sampler not in ("tpe", "gp"):
        console.print(f"warm start: search.sampler {space.search.sampler} does not learn from earlier trials; only "
                      f"the carried candidates come over", highlight=False)
    return warm


def run_phase(ctx: RunContext, data: D.Data, race_phase: bool, runs: int = 0) -> tuple[set[int], Objective | None]:
    """Workers until the phase is done -> (their exit statuses, the in-process Objective when K == 1). The race's
    `runs` get a process each on CPU (processes_for), so its last wave leaves no core idle."""
    if ctx.workers == 1:
        obj = run_worker(ctx, 0, data, race_phase)
        return {obj.exit_status()}, obj
    n = processes_for(runs, ctx.workers, ctx.device) if race_phase else ctx.workers
    return run_processes(ctx, n, race_phase), None


def search_and_race(ctx: RunContext, study, data: D.Data, console, started: float, minutes: float | None):
    """The search until the target (or the clock), then the race's runs -> (worker statuses, Objective | None, the
    context the race ran with: with `--minutes`, its space's race and retrain sized to the budget)."""
    statuses, obj = run_phase(ctx, data, race_phase=False)
    search_done = not statuses & {GAVE_UP, FAILING}
    now = study.get_trials(deepcopy=False)
    reached = rec.counts(now)
    if ctx.clock and search_done and reached.trained < ctx.trials:
        tail_minutes = ctx.clock.tail(now) / 60
        tail = f"~{tail_minutes:.1f} min for the race and the retrain"
        if not reached.completed:
            raise UserError(f"--minutes {minutes:g}: too short: no search trial completed ({reached.trained} "
                            f"trained, cut short) in time to leave {tail}; the study is kept: run again with "
                            f"more --minutes to go on")
        elapsed = (time.time() - started) / 60
        console.print(f"--minutes {minutes:g}: the search stopped at {reached.trained} of {ctx.trials} trained "
                      f"trials after {elapsed:.1f} min, to leave {tail} (priced on the slow side: the run "
                      f"ends by ~{elapsed + tail_minutes:.1f} min); run the same command again to go "
                      f"on toward {ctx.trials}", highlight=False)
    if ctx.clock and search_done:
        ctx = size_tail(ctx, study, console, minutes)
    s = ctx.space.search
    tiers = ctx.space.budget.each_tier()
    race_needed = search_done and s.race_top and R.enqueue(study, s, tiers)
    if race_needed:
        now = study.get_trials(deepcopy=False)
        finals = [len(R.finalists(rec.of_tier(now, tier), s)) for tier in tiers]
        designs = sum(finals) - sum(min(f, s.race_top) for f in finals)
        per_tier = f" in each of {len(tiers)} tiers" if len(tiers) > 1 else ""
        console.print(f"race: top {s.race_top} candidates{f' and {designs} first_trials designs' if designs else ''}"
                      f"{per_tier} x {s.race_seeds} seeds ({race_needed} race trials to train)")
        statuses |= run_phase(ctx, data, race_phase=True, runs=race_needed)[0]
    return statuses, obj, ctx


def size_tail(ctx: RunContext, study, console, minutes: float) -> RunContext:
    """The race and the retrain as the clock sizes them for the rest of this command (clock.Clock.plan), recorded
    on the study for the report."""
    plan, seconds = ctx.clock.sized_tail(study.get_trials(deepcopy=False))
    own = own_plan(ctx.space)
    rec.store_tail_plan(study, None if plan == own else plan)
    if plan == own:
        return ctx
    share = seconds / ctx.clock.budget
    fits = (f"sized to {TAIL_SHARE:.0%} of the time or less" if share <= TAIL_SHARE else
            f"at their cheapest, still ~{share:.0%} of the time (more --minutes would leave the search more)")
    console.print(f"--minutes {minutes:g}: the race and the retrain {fits}: {plan.describe()} (the space: "
                  f"{own.describe()})", highlight=False)
    return dataclasses.replace(ctx, space=sized(ctx.space, plan))


def stop_if_failing(space: Space, statuses: set[int], obj: Objective | None, trials, c: rec.Counts, console) -> None:
    """Failures in a row stop the run (exit 1); a space whose candidates keep being rejected is the user's to fix
    (exit 2), unless some trial completed: then the run goes on with what it has, and says so."""
    if FAILING in statuses:
        last = next(t for t in reversed(trials) if rec.read(t).end[0] == End.ERROR)
        raise RunError(f"{space.search.max_failures} trials in a row failed, the last with {rec.read(last).end[1]} "
                       f"(trial {last.number}); not a trial-level fault: fix the cause and run the same command to resume")
    if GAVE_UP in statuses:
        near = ""
        if obj is not None and obj.nearest:
            n = obj.nearest
            near = f"; the nearest candidate had {n.key}={n.value:,} ({n.overshoot:.0%} over budget)"
        msg = (f"{space.file}: budget: {space.search.max_rejections} candidates in a row were rejected before "
               f"training{near}; the space and the budget barely meet (check with nas-run {space.file} --check)")
        if not c.completed:
            raise UserError(msg)
        console.print(f"[yellow]stopped early: {msg}[/]")


def print_standings(standings: list[RaceRow], space: Space, console) -> None:
    for row in standings:
        vals = ", ".join(f"{v:.4f}" for v in row.val_accs)
        design = "" if row.first_trial is None else f" (first_trials[{row.first_trial}])"
        counted = "its search run and race rounds" if row.search_counts else "its race rounds"
        measured = (f"val {row.mean:.4f} ± {row.std:.4f} over {counted} ({vals}); search split {row.search_val:.4f}"
                    if vals else f"val {row.search_val:.4f} on the search split (no race rounds)")
        kept = (f"; kept: no finalist beat it by more than race_margin {space.search.race_margin:g}"
                if row.kept else "")
        console.print(f"race: trial {row.trial}{design} {measured}{kept}", highlight=False)


def write_report(study, space: Space, out: Path, data: D.Data | None, console, problem: str = "") -> Path:
    """studies/NAME/report.html, uploaded as a study artifact with a note for optuna-dashboard."""
    from search import report  # matplotlib: ~1 s to import, needed at the end only (and never in a worker)

    path = report.write(study, space, out, data, problem)
    report.publish(study, path, out / "artifacts")
    console.print(f"report: {path} (figures in {path.parent / 'report'})", highlight=False)
    return path


def _raise_terminated(*_):
    raise Terminated()


def retrain_and_export(study, space: Space, trial, data: D.Data, out: Path, console, formats=E.FORMATS,
                       folder: Path | None = None, ctx: RunContext | None = None,
                       tier: str | None = None) -> tuple[RetrainResult, E.Exported | None]:
    """Retrain `trial`'s candidate on retrain.seeds seeds, measure the test split once, export. The study's winner
    goes to out/best (a ladder tier's to out/best/TIER) and is uploaded as study artifacts; another trial
    (nas-export --trial N) to `folder`. The seeds run on `ctx`'s workers (one CPU process without it). -> (the
    results, what was exported; None when the winner was retrained and exported already)."""
    prev = rec.retrain_results(study, tier)
    best_dir = out / "best" if tier is None else out / "best" / tier
    is_winner = folder is None
    folder = best_dir if is_winner else folder
    if is_winner and prev and prev.trial == trial.number and (best_dir / "checkpoint.pt").exists():
        console.print(f"trial {trial.number} was already retrained: {prev.headline()} ({best_dir})")
        return prev, None
    r = space.retrain
    console.print(f"retraining trial {trial.number} ({rec.read(trial).params or 0:,} params): "
                  f"{r.seeds} seed{'s' if r.seeds != 1 else ''} x {r.epochs} epochs on {r.train_on}")
    results, model = retrain(trial, space, data, rec.trial_seed(space.search.seed, trial.number),
                             log=lambda line: console.print("  " + line, highlight=False),
                             workers=ctx.workers if ctx else 1, threads=ctx.threads if ctx else 1,
                             device=ctx.device if ctx else "cpu")
    ckpt = E.checkpoint(model, data.mean, data.std, rec.read(trial).candidate, results, space.text,
                        data.meta.class_names, D.decoding(space.data))
    exported = E.export(model, ckpt, data.test, folder, formats, calibration=data.train.x)
    results = dataclasses.replace(results, deployment=exported.deployment)
    if is_winner:
        rec.store_retrain_results(study, results, tier)
        store = optuna.artifacts.FileSystemArtifactStore(str(out / "artifacts"))
        (out / "artifacts").mkdir(parents=True, exist_ok=True)
        # Optuna refuses to change a finished trial (UpdateFinishedTrialError), and the winner is retrained after
        # it finished: the files go on the study, whose user attr "retrain" names the trial they come from.
        for name in exported.uploads():
            optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(folder / name), study_or_trial=study,
                                             mimetype=MIMETYPES.get(Path(name).suffix, "application/octet-stream"))
    target = f" (target {space.target:.4f})" if space.target else ""
    console.print(f"[bold]{results.headline()}[/]{target}; {exported.params:,} params, {exported.macs:,} MACs")
    if exported.onnx_check:
        console.print(f"exported to {folder}: {exported.onnx_check.line()}", highlight=False)
        console.print("  " + E.deployment_line(results.deployment), highlight=False)
    return results, exported


def export_study(name: str, console, trial: int | None = None, storage: str | None = None, studies: str = "studies",
                 formats=E.FORMATS, out: str | None = None) -> int:
    """`nas-export STUDY [--trial N]`: re-export the retrained winner (a ladder: every tier's) from its checkpoint,
    or retrain another trained trial at full fidelity (retrain.seeds seeds) and export it to STUDIES/NAME/trial-N/."""
    study, space = load_stored(name, storage, studies)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    data = load_data(space, "cpu")
    if trial is None:
        for tier in space.budget.each_tier():
            prev = rec.retrain_results(study, tier)
            winner = R.winner(rec.of_tier(trials.values(), tier), space.search)
            number = prev.trial if prev else winner.number if winner else None
            if number is None:
                raise UserError(f"{name}: no completed trial to export yet")
            _export_one(study, space, trials[number], prev, data, studies, console, formats, out, tier)
        return 0
    t = trials.get(trial)
    if t is None or not rec.is_trained(t) or rec.is_race(t):
        raise UserError(f"--trial: expected the number of a trained search trial of {name}, got {trial}")
    tier = rec.read(t).tier
    return _export_one(study, space, t, rec.retrain_results(study, tier), data, studies, console, formats, out, tier)


def _export_one(study, space: Space, t, prev: RetrainResult | None, data: D.Data, studies: str, console, formats,
                out: str | None, tier: str | None) -> int:
    """Export trial `t`: the retrained winner again from its checkpoint, another trial retrained first."""
    best = Path(studies) / space.name / "best" / (tier or "") / "checkpoint.pt"
    if prev and prev.trial == t.number and best.exists():  # the retrained winner: export its checkpoint again
        model, ckpt = E.load_checkpoint(best)
        folder = Path(out) / (tier or "") if out else best.parent
        exported = E.export(model, ckpt, data.test, folder, formats, calibration=data.train.x)
    else:
        folder = Path(out) if out else Path(studies) / space.name / f"trial-{t.number}"
        _, exported = retrain_and_export(study, space, t, data, Path(studies) / space.name, console, formats, folder)
    console.print(f"trial {t.number} exported to {folder}: {', '.join(exported.files.values())}", highlight=False)
    if exported.onnx_check:
        console.print(exported.onnx_check.line(), highlight=False)
    return 0


def load_stored(name: str, storage: str | None, studies: str) -> tuple[optuna.Study, Space]:
    """A study nas-run wrote (finished or still running) and the space it was searched with."""
    from search import space as S

    url = storage or default_storage(name, studies)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise UserError(f"{name}: no study storage at {url[len('sqlite:///'):]} (expected the study name nas-run printed; see --studies)")
    try:
        study = optuna.load_study(study_name=name, storage=make_storage(url))
    except KeyError:
        raise UserError(f"{name}: no such study in {url}") from None
    stored = rec.stored_space(study)
    if stored is None:
        raise UserError(f"{name}: study in {url} was not written by nas-run (no stored space)")
    text, file = stored
    return study, S.parse(S.read_yaml(text), file, text)


def report_study(name: str, console, storage: str | None = None, studies: str = "studies") -> int:
    """`nas-report STUDY`: write STUDIES/NAME/report.html from the study as it is now (it may still be running)."""
    study, space = load_stored(name, storage, studies)
    try:
        data, problem = D.load(space.data, "cpu", space.search.seed), ""
    except UserError as e:
        data, problem = None, f"the data could not be loaded ({e})"
    write_report(study, space, Path(studies) / space.name, data, console, problem)
    return 0
