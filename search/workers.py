"""Devices, worker processes and signals. A worker runs trials until the study has what the phase needs; K
workers share the study through Optuna's storage (no scheduler of ours), locally or across machines.

Exit statuses of a worker process: 0 done, 3 gave up (rejections in a row), 4 failures in a row; anything else
is not trial-level (storage gone, killed) and aborts the run.
"""
from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass

import optuna
import torch

from search import data as D
from search.clock import Clock
from search.errors import RunError, UserError
from search.objective import FAILING, GAVE_UP, Objective
from search.space import Space
from search.storage import HEARTBEAT, make_storage
from search.study import open_study
from search.warm import WarmStart


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so the running trial ends the same way."""


class WorkerDied(RunError):
    """A worker process ended with a status that is not trial-level (storage gone, killed)."""


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


# Worker processes per GPU under `--workers auto`: a small net leaves a GPU idle between kernel launches, so K
# processes share it under MPS; throughput grows up to K=16 (RESULTS.md, "On a GPU"). Each needs a core to launch
# kernels and a CUDA context (~0.5 GiB), so fewer where cores or memory are short.
WORKERS_PER_GPU = 16


def gpus_of(device: str) -> int:
    """How many GPUs `--device` spreads the workers over: all for auto / cuda, one for cuda:N, none for cpu."""
    if device in ("auto", "cuda"):
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    return 1 if device.startswith("cuda:") else 0


def plan_workers(workers, device: str) -> tuple[int, int]:
    """(processes, torch threads each). Small convolutions use one core poorly, so on CPU `auto` runs one
    single-thread worker per core; on GPUs WORKERS_PER_GPU per GPU (the GPUs named: all for auto / cuda, one
    for cuda:N), round-robin over them, the cores split between them."""
    cores, gpus = os.cpu_count() or 1, gpus_of(device)
    if workers == "auto" and gpus:
        memory = min(torch.cuda.get_device_properties(i).total_memory for i in range(gpus))
        workers = gpus * max(1, min(WORKERS_PER_GPU, cores // gpus, memory // 2**30))
    elif workers == "auto":
        workers = cores
    return workers, max(1, cores // workers)


# Independent full-length runs on CPU (race runs, retrain seeds) that do not fill whole waves of the workers get a
# process each, so a small last wave leaves no core idle; whole waves keep one process per worker (more processes
# than cores contend for cache). Capped: each process holds its own data and torch (RESULTS.md, "Workers and
# processes on CPU").
RUNS_PER_CPU_WORKER = 4


def processes_for(runs: int, k: int, device: str) -> int:
    """Processes for `runs` independent full-length runs on K workers: K on GPUs and where the runs fill whole
    waves; on CPU otherwise one per run (at most RUNS_PER_CPU_WORKER x K)."""
    if gpus_of(device) or runs % k == 0:
        return max(1, min(k, runs))
    return min(runs, RUNS_PER_CPU_WORKER * k)


@dataclass(frozen=True)
class RunContext:
    """What every worker of one `nas-run` command shares: the space, the storage, the target, the devices, the
    clock. Picklable: worker processes receive it whole."""

    space: Space
    storage_url: str
    trials: int  # trained search trials to reach
    device: str = "cpu"  # --device as given: auto, cpu, cuda, cuda:N
    workers: int = 1
    threads: int = 1  # torch threads per worker
    heartbeat: int = HEARTBEAT
    clock: Clock | None = None  # --minutes
    warm: WarmStart | None = None  # --from: what an earlier study brings (its evidence reaches every worker's sampler)


def run_worker(ctx: RunContext, worker: int = 0, data: D.Data | None = None, race_phase: bool = False) -> Objective:
    """One worker's loop: ask for trials while the phase wants more (Objective.may_ask), then wait for other
    workers' running trials until the phase is over (Objective.finished)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(ctx.threads)
    dev = pick_device(ctx.device, worker)
    if data is None:
        data = D.load(ctx.space.data, dev, ctx.space.search.seed)
    study = open_study(ctx.space, make_storage(ctx.storage_url, ctx.heartbeat), worker, ctx.warm)
    obj = Objective(ctx.space, data, dev, ctx.trials, race_phase, clock=ctx.clock)
    while not obj.finished(study):
        if obj.may_ask(study):
            study.optimize(obj, catch=(RuntimeError,), callbacks=[obj.stop_when_done], gc_after_trial=False)
            continue
        # Others' trials are still running: live workers finish them, a dead worker's go stale after
        # 3 heartbeats and are failed + requeued here. Either way, wait rather than stop short; polled every
        # second, so the phase ends when the last trial does.
        time.sleep(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    return obj


def _worker_process(ctx: RunContext, worker: int, race_phase: bool):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM for its workers

    def on_term(*_):
        raise Terminated()

    signal.signal(signal.SIGTERM, on_term)
    try:
        obj = run_worker(ctx, worker, race_phase=race_phase)
    except KeyboardInterrupt:
        sys.exit(143)
    sys.exit(obj.exit_status())


# Worker, race and retrain processes fork from one server process that imported torch and the trainer once: a
# spawned process spent ~7 s of a core importing them, per process and per phase (RESULTS.md, "Process start").
# The server starts at the first process, so it sees the environment as set by then (MPS's variables included).
PRELOAD = ["search.workers", "search.retrain", "torch._dynamo"]  # torch.optim imports torch._dynamo at first use


def process_context():
    """multiprocessing's forkserver context, preloading PRELOAD (a server that ran no torch op forks safely);
    spawn where there is no forkserver (Windows)."""
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def run_processes(ctx: RunContext, k: int, race_phase: bool = False) -> set[int]:
    """K worker processes until they end; -> their exit statuses (0, GAVE_UP, FAILING). Ctrl-C / SIGTERM stop
    them (SIGTERM, then a kill after 60 s) and re-raise; any other status raises WorkerDied."""
    context = process_context()
    procs = [context.Process(target=_worker_process, args=(ctx, i, race_phase)) for i in range(k)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
                p.join()
        raise
    broken = [(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode not in (0, GAVE_UP, FAILING)]
    if broken:
        raise WorkerDied(f"worker {broken[0][0]} exited with status {broken[0][1]} (see its output above)")
    return {p.exitcode for p in procs}
