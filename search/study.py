"""The Optuna study: storage, sampler, pruner, the objective, workers, and the run from space to export.

Per candidate: sample -> build -> budget check. Over budget: constraint values set (the sampler learns
the feasible region from them), reason in user attrs, told PRUNED, not counted as trained, zero training
steps. Within budget: train at search fidelity, report validation accuracy per epoch, median pruner.
Trial-level trouble (divergence, time overrun, runtime errors such as CUDA OOM) ends the trial with a
reason and the study goes on; only storage trouble aborts.
"""
from __future__ import annotations

import functools
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

import models
from search import budget as B
from search import check
from search import data as D
from search.errors import UserError
from search.report import Progress, best_trial, counts, dashboard_command, summary
from search.space import Space
from search.storage import HEARTBEAT, StorageError, make_storage
from search.train import train

optuna.logging.set_verbosity(optuna.logging.WARNING)

TIME_SLACK = 1.5  # a search trial may take 1.5x its share of the time budget before it is stopped
MIMETYPES = {".md": "text/markdown", ".json": "application/json"}  # artifacts; the rest are octet-stream


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so the running trial ends the same way."""


def trial_seed(study_seed: int, number: int) -> int:
    return (study_seed * 1_000_003 + number) % 2**31


def default_storage(space: Space, studies: str) -> str:
    return f"sqlite:///{Path(studies) / space.name}.db"


def make_sampler(search: dict, worker: int = 0, resumed_at: int = 0) -> optuna.samplers.BaseSampler:
    # Workers must not propose the same sequence, nor a resumed run replay the first run's proposals:
    # the seed moves with the worker index and with the number of trials the study already holds.
    seed = search["seed"] + 7919 * worker + 104_729 * resumed_at
    kind = search["sampler"]
    if kind == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=search["multivariate"], constant_liar=True, n_startup_trials=10
        )
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise ValueError(kind)


def make_pruner(search: dict) -> optuna.pruners.BasePruner:
    if search["pruner"] == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=search["startup_trials"], n_warmup_steps=search["warmup_epochs"])


def open_study(space: Space, storage, worker: int = 0) -> optuna.Study:
    study = optuna.create_study(
        study_name=space.name,
        storage=storage,
        sampler=make_sampler(space.search, worker),
        pruner=make_pruner(space.search),
        direction="maximize",
        load_if_exists=True,
    )
    if "space" not in study.user_attrs:
        study.set_user_attr("space", space.text)
        study.set_user_attr("space_file", space.file)
    existing = len(study.get_trials(deepcopy=False))
    if existing:
        study.sampler = make_sampler(space.search, worker, existing)
    return study


def trained(trials) -> list:
    return [t for t in trials if t.user_attrs.get("trained")]


def count_in_flight(study) -> int:
    """Trained trials plus other workers' running ones, which will mostly be trained: with K workers the
    study stops near the target instead of overshooting it by up to K-1 trials."""
    trials = study.get_trials(deepcopy=False)
    running = [t for t in trials if t.state == TrialState.RUNNING and "end_reason" not in t.user_attrs]
    return len(trained(trials)) + len(running)


@dataclass
class Worker:
    """What one worker process needs to run trials: the space, its data on its device, and counters."""

    space: Space
    data: D.Data
    device: torch.device
    target: int  # trained trials to reach
    rejected_in_a_row: int = 0
    gave_up: bool = False
    nearest: dict = field(default_factory=dict)  # smallest overshoot seen among rejections

    @functools.cached_property
    def search_split(self) -> D.Split:
        """The fixed, stratified share of the training split every search trial trains on."""
        frac = self.space.search["data_fraction"]
        if frac >= 1:
            return self.data.train
        _, part = D.stratified_split(self.data.train.y, frac, self.space.search["seed"])
        return self.data.train.subset(part)

    def time_share(self, n_search: int) -> float | None:
        """Seconds a search trial may take: its share of the retrain time budget, with slack."""
        if "train_seconds" not in self.space.budget:
            return None
        s, r = self.space.search, self.space.retrain
        work = (s["epochs"] * n_search) / (r["epochs"] * D.retrain_size(self.space.data, r["train_on"]))
        return self.space.budget["train_seconds"] * work * TIME_SLACK

    def objective(self, trial: optuna.Trial) -> float:
        space = self.space
        seed = trial_seed(space.search["seed"], trial.number)
        trial.set_user_attr("seed", seed)
        cand = space.sample(trial)
        trial.set_user_attr("candidate", cand)
        torch.manual_seed(seed)
        try:
            model = models.build(cand["family"], **cand["model"])
        except ValueError as e:
            trial.set_constraint("valid", 1.0)
            return self._untrained(trial, f"invalid: {e}")
        cost, over = B.check(
            model, cand["train"], space.budget, self.data.meta, n_train=D.retrain_size(space.data, space.retrain["train_on"]),
            n_eval=0, epochs=space.retrain["epochs"], device=self.device,
        )
        for key, value in over.items():
            trial.set_constraint(key, value)
        trial.set_user_attr("params", cost.params)
        if cost.macs is not None:
            trial.set_user_attr("macs", cost.macs)
        if cost.train_seconds is not None:
            trial.set_user_attr("est_train_seconds", round(cost.train_seconds, 1))
        if any(v > 0 for v in over.values()):
            worst = max(over, key=over.get)
            if not self.nearest or over[worst] < self.nearest["overshoot"]:
                self.nearest = {"key": worst, "overshoot": over[worst], "value": getattr(cost, worst)}
            return self._untrained(trial, f"rejected:{'time' if worst == 'train_seconds' else worst}")
        twin = self._twin(trial, cand)
        if twin is not None:
            trial.set_user_attr("end_reason", f"duplicate_of:{twin.number}")
            self._count_untrained()
            if twin.state == TrialState.COMPLETE:
                return twin.value
            raise optuna.TrialPruned()
        self.rejected_in_a_row = 0
        model.to(self.device)

        def on_epoch(epoch: int, val_acc: float) -> str | None:
            trial.report(val_acc, epoch)
            return "pruned:median" if trial.should_prune() else None

        split = self.search_split
        share = self.time_share(len(split))
        deadline = time.monotonic() + share if share else None
        try:
            hist = train(model, split, self.data.val, self.data.mean, self.data.std, cand["train"],
                         space.search["epochs"], on_epoch=on_epoch, deadline=deadline)
        except KeyboardInterrupt:
            trial.set_user_attr("end_reason", "interrupted")
            trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise
        except RuntimeError as e:  # CUDA OOM and other failures inside the candidate
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            trial.set_user_attr("end_reason", f"error:{type(e).__name__}: {msg}")
            raise
        trial.set_user_attr("trained", True)
        trial.set_user_attr("end_reason", hist.end_reason)
        trial.set_user_attr("epochs_run", len(hist.val_acc))
        if hist.epoch_seconds:
            trial.set_user_attr("seconds_per_epoch", round(sum(hist.epoch_seconds) / len(hist.epoch_seconds), 2))
            trial.set_user_attr("images_per_second", round(hist.images / sum(hist.epoch_seconds)))
        trial.set_user_attr("images", hist.images)
        if hist.end_reason != "completed":
            raise optuna.TrialPruned()
        return hist.val_acc[-1]

    def _twin(self, trial, cand):
        same = [
            t for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if t.user_attrs.get("trained") and t.user_attrs.get("candidate") == cand
        ]
        return same[0] if same else None

    def _count_untrained(self):
        self.rejected_in_a_row += 1
        if self.rejected_in_a_row >= self.space.search["max_rejections"]:
            self.gave_up = True

    def _untrained(self, trial, reason: str):
        trial.set_user_attr("end_reason", reason)
        self._count_untrained()
        raise optuna.TrialPruned()

    def stop_when_done(self, study: optuna.Study, _trial) -> None:
        if self.gave_up or count_in_flight(study) >= self.target:
            study.stop()


def pick_device(name: str, worker: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device: {name} requested but CUDA is not available; expected cpu or auto")
    if name == "cuda":
        name = f"cuda:{worker % torch.cuda.device_count()}"
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: expected cpu, cuda, cuda:N or auto, got {name!r}") from None


def run_worker(space: Space, storage_url: str, target: int, device: str, threads: int, worker: int = 0,
               heartbeat: int = HEARTBEAT, data: D.Data | None = None, callbacks=()) -> Worker:
    """One worker's search loop until the study holds `target` trained trials (or the cap stops it)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(threads)
    dev = pick_device(device, worker)
    if data is None:
        data = D.load(space.data, dev, space.search["seed"])
    study = open_study(space, make_storage(storage_url, heartbeat), worker)
    w = Worker(space, data, dev, target)
    while not w.gave_up:
        if count_in_flight(study) < target:
            study.optimize(w.objective, catch=(RuntimeError,), callbacks=[w.stop_when_done, *callbacks], gc_after_trial=False)
        trials = study.get_trials(deepcopy=False)
        if len(trained(trials)) >= target:
            break
        if not any(t.state == TrialState.RUNNING for t in trials):
            continue  # others' running trials ended untrained (rejected): search on
        # Others' trials are still running: live workers finish them, a dead worker's go stale after
        # 3 heartbeats and are failed + requeued here. Either way, wait rather than stop short of target.
        time.sleep(heartbeat)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    return w


def plan_workers(workers, device: str) -> tuple[int, int]:
    """(processes, torch threads each). Small convolutions use one core poorly, so on CPU `auto` runs one
    single-thread worker per core; on GPUs, one worker per GPU."""
    cores = os.cpu_count() or 1
    gpus = torch.cuda.device_count() if device != "cpu" else 0
    if workers == "auto":
        workers = gpus if gpus else cores
    return workers, max(1, cores // workers)


def _worker_process(space: Space, url: str, target: int, device: str, threads: int, worker: int, heartbeat: int):
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM for its workers

    def on_term(*_):
        raise Terminated()

    signal.signal(signal.SIGTERM, on_term)
    try:
        w = run_worker(space, url, target, device, threads, worker, heartbeat)
    except KeyboardInterrupt:
        sys.exit(143)
    sys.exit(3 if w.gave_up else 0)


def _run_processes(space, url, target, args, threads, k) -> tuple[bool, int | None]:
    """K worker processes; -> (gave up?, signal exit status or None)."""
    import multiprocessing as mp
    import signal

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker_process, args=(space, url, target, args.device, threads, i, args.heartbeat))
             for i in range(k)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt as e:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(timeout=60)
        return False, 143 if isinstance(e, Terminated) else 130
    broken = [(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode not in (0, 3)]
    if broken:  # a worker died of something that is not trial-level (storage gone, killed): abort
        raise StorageError(f"worker {broken[0][0]} exited with status {broken[0][1]} (see its output above)")
    return any(p.exitcode == 3 for p in procs), None


def _writable(folder: Path) -> None:
    """Fail before the run if `folder` cannot be written (creates nothing: probes the nearest existing parent)."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UserError(f"--studies: cannot write to {folder} ({probe} is not a writable directory)")


def main(space: Space, args, console) -> int:
    """`nas-run SPACE`: search, summary, retrain the winner, export. Returns the exit status."""
    import signal

    target = args.trials or space.search["trials"]
    url = args.storage or default_storage(space, args.studies)
    studies = Path(args.studies)
    _writable(studies)
    k, threads = plan_workers(args.workers, args.device)
    dev = pick_device(args.device)
    check.preflight(space)  # a budget nothing meets fails here, before anything is written
    try:  # missing files fail here, before anything is written
        data = D.load(space.data, dev, space.search["seed"])
    except UserError as e:
        raise UserError(f"{space.file}: data.root: {e}") from None
    storage = make_storage(url, args.heartbeat)
    study = open_study(space, storage)

    def on_term(*_):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    stopped, gave_up = None, False
    console.print(f"study {space.name} in {url}: {k} worker(s) x {threads} thread(s) on {dev}, target {target} trained trials")
    try:
        with Progress(study, target, console, k):
            if k == 1:
                w = run_worker(space, url, target, args.device, threads, 0, args.heartbeat, data)
                gave_up = w.gave_up
                nearest = w.nearest
            else:
                gave_up, stopped = _run_processes(space, url, target, args, threads, k)
                nearest = {}
    except KeyboardInterrupt as e:
        stopped = 143 if isinstance(e, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    trials = study.get_trials(deepcopy=False)
    artifacts = studies / space.name / "artifacts"
    console.print(summary(trials))
    c = counts(trials)
    console.print(f"trained {c['trained']} (completed {c['completed']}, pruned {c['pruned']}), "
                  f"rejected before training {c['rejected']}, failed {c['failed']}")
    console.print(f"inspect: {dashboard_command(url, str(artifacts))}", highlight=False)
    if stopped:
        console.print("interrupted: the running trial was stopped and marked 'interrupted'; run the same command to resume")
        return stopped
    if gave_up:
        near = ""
        if nearest:
            near = f"; the nearest candidate had {nearest['key']}={nearest['value']:,} ({nearest['overshoot']:.0%} over budget)"
        msg = (f"{space.file}: budget: {space.search['max_rejections']} candidates in a row were rejected before "
               f"training{near}; the space and the budget barely meet (check with nas-run {space.file} --check)")
        if not c["completed"]:
            raise UserError(msg)
        console.print(f"[yellow]stopped early: {msg}[/]")
    if args.no_retrain or not c["completed"]:
        return 0
    finish(study, space, data, storage, studies / space.name, console)
    return 0


def finish(study, space: Space, data: D.Data, storage, out: Path, console):
    """Retrain the best trial on retrain.seeds seeds, measure test accuracy, export, upload."""
    from search import export as E
    from search.retrain import retrain

    trial = best_trial(study.get_trials(deepcopy=False))
    best_dir = out / "best"
    prev = study.user_attrs.get("retrain")
    if prev and prev.get("trial") == trial.number and (best_dir / "checkpoint.pt").exists():
        console.print(f"trial {trial.number} was already retrained: test accuracy "
                      f"{prev['test_acc_mean']:.4f} ± {prev['test_acc_std']:.4f} ({best_dir})")
        return prev
    console.print(f"retraining trial {trial.number} ({trial.user_attrs.get('params', 0):,} params): "
                  f"{space.retrain['seeds']} seeds x {space.retrain['epochs']} epochs on {space.retrain['train_on']}")
    results, model = retrain(trial, space, data, trial_seed(space.search["seed"], trial.number),
                             log=lambda line: console.print("  " + line, highlight=False))
    ckpt = E.checkpoint(model, data.mean, data.std, trial.user_attrs["candidate"], results, space.text)
    card = E.export(model, ckpt, data.test, best_dir)
    study.set_user_attr("retrain", results)
    store = optuna.artifacts.FileSystemArtifactStore(str(out / "artifacts"))
    (out / "artifacts").mkdir(parents=True, exist_ok=True)
    # Optuna refuses to change a finished trial (UpdateFinishedTrialError), and the winner is retrained after
    # it finished: the files go on the study, whose user attr "retrain" names the trial they come from.
    for name in [*card["files"].values(), "MODEL_CARD.md", "model_card.json"]:
        optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(best_dir / name), study_or_trial=study,
                                         mimetype=MIMETYPES.get(Path(name).suffix, "application/octet-stream"))
    target = f" (target {space.target:.4f})" if space.target else ""
    onnx = card.get("onnx_check", {})
    console.print(f"[bold]test accuracy {results['test_acc_mean']:.4f} ± {results['test_acc_std']:.4f}[/] over "
                  f"{len(results['runs'])} seeds{target}; {card['params']:,} params, {card['macs']:,} MACs")
    if onnx:
        console.print(f"exported to {best_dir}: ONNX max |diff| {onnx['max_abs_diff']:.1e}, "
                      f"{onnx['same_predictions']}/{onnx['images']} identical predictions", highlight=False)
    return results
