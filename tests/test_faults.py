"""Scale out and survive faults: killed workers, interrupts, trial-level errors, parallel workers on
SQLite and on a real PostgreSQL server (NAS_RUN_TEST_POSTGRES; .ci/run starts one)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid

import optuna
import pytest
import torch
from optuna.trial import TrialState

from claim_worker import claim_enqueued
from helpers import in_process, need, nas_run, search_trials, study_once_created, tiny_space, write_space
from search import objective as O
from search import space as S
from search.workers import RunContext, plan_workers, processes_for, run_worker


def slow_space(name: str, epochs: int = 4, data_fraction: float = 1.0) -> dict:
    """Fixed mid-size net, only lr searched: each epoch takes a few seconds (with data_fraction 0.25, ~1 s),
    long enough to be hit mid-way."""
    return tiny_space(
        name=name,
        model={"family": "convnet", "stages": [{"width": 24, "depth": 2}, {"width": 32, "depth": 1}]},
        train={"batch_size": 32, "optimizer": "adamw", "lr": {"low": 0.001, "high": 0.01, "log": True}},
        budget={}, search={"epochs": epochs, "startup_trials": 100, "seed": 0, "pruner": "none", "race_top": 0,
                           "data_fraction": data_fraction},
    )


def _study(tmp, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp}/studies/{name}.db")


def _wait_mid_trial(tmp, name, proc, first: int = 0, race: bool = False, timeout=120) -> int:
    """Number of a trial that is RUNNING and has reported at least one epoch (numbered `first` or later; with
    `race`, a race run). The study is loaded once (a load per poll took a core from the run under test)."""
    deadline, study = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        study = study or study_once_created(tmp / "studies" / f"{name}.db", name)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if study else ():
            if t.intermediate_values and t.number >= first and ("race_of" in t.user_attrs or not race):
                return t.number
        time.sleep(0.1)
    pytest.fail(f"no {'race run' if race else 'trial'} got mid-way in time")


def _popen(*args, **kw):
    return subprocess.Popen([shutil.which("nas-run"), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def test_sigkilled_worker_trial_goes_stale_is_failed_and_its_candidate_retried(tmp_path):
    space = write_space(tmp_path / "kill.yaml", slow_space("kill", data_fraction=0.25))
    args = [space, "--trials", 2, "--no-retrain", "--heartbeat", 1, "--studies", tmp_path / "studies", "--workers", 1]
    proc = _popen(*args, cwd=tmp_path, start_new_session=True)
    victim = _wait_mid_trial(tmp_path, "kill", proc, first=1)  # trial 0 completed: the rerun must keep it as it is
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t.number: t.value for t in _study(tmp_path, "kill").trials if t.state == TrialState.COMPLETE}
    assert _study(tmp_path, "kill").trials[victim].state == TrialState.RUNNING  # left behind by the kill

    again = nas_run(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    trials = _study(tmp_path, "kill").trials
    assert trials[victim].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim]
    assert len(retries) == 1, [(t.number, t.state, t.user_attrs.get("end_reason"), t.system_attrs) for t in trials]
    assert retries[0].params == trials[victim].params and retries[0].user_attrs.get("trained"), (retries[0], again.stdout)
    assert len([t for t in trials if t.user_attrs.get("trained")]) == 2
    assert list(before) == [0] and trials[0].state == TrialState.COMPLETE and trials[0].value == before[0]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_interrupts_end_the_running_trial_and_the_same_command_resumes(tmp_path):
    """Ctrl-C (SIGINT), then SIGTERM on the rerun: each stops the running trial promptly (exit 130, 143), marks it
    interrupted and queues its candidate again; the third run trains the queued candidate and finishes."""
    space = write_space(tmp_path / "stop.yaml", slow_space("stop", data_fraction=0.25))
    args = [space, "--trials", 2, "--no-retrain", "--studies", tmp_path / "studies", "--workers", 1]
    for sig, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        # Started with SIGINT ignored, as a background job of a shell is: nas-run must still stop on Ctrl-C.
        proc = _popen(*args, cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        victim = _wait_mid_trial(tmp_path, "stop", proc)
        t0 = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == status, err
        assert time.monotonic() - t0 < 30  # promptly: the current epoch is not waited for
        assert "interrupted" in out and "Traceback" not in err
        trials = _study(tmp_path, "stop").trials
        assert trials[victim].state == TrialState.FAIL and trials[victim].user_attrs["end_reason"] == "interrupted"
        queued = [t for t in trials if t.state == TrialState.WAITING]
        assert len(queued) == 1 and queued[0].system_attrs["fixed_params"] == trials[victim].params

    again = nas_run(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    trials = _study(tmp_path, "stop").trials
    rerun = trials[queued[0].number]
    assert rerun.user_attrs.get("trained") and rerun.params == trials[victim].params  # the last victim's candidate ran again
    assert len([t for t in trials if t.user_attrs.get("trained")]) == 2
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_a_runtime_error_in_one_candidate_ends_that_trial_only(tmp_path, monkeypatch):
    space = S.parse(slow_space("oom", epochs=1))
    real, calls = O.train, []

    def oom_once(*args, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kw)

    monkeypatch.setattr(O, "train", oom_once)
    url = f"sqlite:///{tmp_path}/oom.db"
    run_worker(RunContext(space, url, trials=2))
    trials = optuna.load_study(study_name="oom", storage=url).trials
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs["end_reason"].startswith("error:OutOfMemoryError: CUDA out of memory")
    assert len([t for t in trials if t.user_attrs.get("trained")]) == 2


def test_a_trial_that_would_overrun_the_time_budget_is_stopped(tmp_path, monkeypatch):
    raw = slow_space("late", epochs=3)
    raw["budget"] = {"train_seconds": 10**6}
    monkeypatch.setattr(O, "TIME_SLACK", 1e-9)  # every trial's share of the budget is ~0 s
    url = f"sqlite:///{tmp_path}/late.db"
    run_worker(RunContext(S.parse(raw), url, trials=1))
    t = optuna.load_study(study_name="late", storage=url).trials[0]
    assert t.state == TrialState.PRUNED and t.user_attrs["end_reason"] == "time" and t.user_attrs["trained"]
    assert t.user_attrs["est_train_seconds"] > 0


def test_race_runs_and_retrain_seeds_each_get_a_process_on_cpu(tmp_path):
    """On CPU, runs that do not fill whole waves of the workers get a process each, all at once: a last wave
    smaller than the workers would leave a core idle. 2 workers: the 3 race runs overlap in time, so do the 3
    retrain seeds; 4 runs would take 2 waves of 2."""
    assert [processes_for(n, 2, "cpu") for n in (1, 2, 3, 4, 5, 6, 9)] == [1, 2, 3, 2, 5, 2, 8]
    space = slow_space("par", epochs=1, data_fraction=0.25)
    space["search"] |= {"race_top": 3, "race_seeds": 2}
    space["retrain"] = {"epochs": 1, "seeds": 3}
    r = nas_run(write_space(tmp_path / "par.yaml", space), "--workers", 2, "--trials", 3, "--device", "cpu", "--format", "checkpoint",
                "--studies", tmp_path / "studies", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    study = _study(tmp_path, "par")
    assert len(search_trials(study)) == 3  # two workers stop at the target exactly, counting each other's trials
    race = [t for t in study.trials if "race_of" in t.user_attrs]
    assert len(race) == 3 and all(t.state == TrialState.COMPLETE for t in race)
    assert max(t.datetime_start for t in race) < min(t.datetime_complete for t in race)
    runs = study.user_attrs["retrain"]["runs"]
    assert len(runs) == 3 and len({run["seed"] for run in runs}) == 3
    assert max(run["started"] for run in runs) < min(run["started"] + run["seconds"] for run in runs)
    raced = min(t.datetime_start for t in race)  # no process left over to ask during the race
    assert not [t for t in study.trials if t.user_attrs.get("end_reason") == "surplus" and t.datetime_start >= raced]
    best = tmp_path / "studies" / "par" / "best"  # --format checkpoint: the checkpoint (and card), no ONNX or .pt2
    assert (best / "checkpoint.pt").exists() and not list(best.glob("model.*"))


@pytest.mark.parametrize("gpus, cores, gib, expected", [(0, 2, 0, (2, 1)), (1, 16, 80, (16, 1)), (2, 16, 80, (16, 1)),
                                                         (1, 32, 80, (16, 2)), (1, 4, 80, (4, 1)), (1, 16, 3, (3, 5))])
def test_auto_workers_share_each_gpu_as_cores_and_memory_allow(monkeypatch, gpus, cores, gib, expected):
    """--workers auto: one single-thread worker per core on CPU; on GPUs WORKERS_PER_GPU each, fewer where a GPU's
    memory (a CUDA context each) or the cores (one to launch kernels each) run short."""
    from types import SimpleNamespace

    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(total_memory=gib * 2**30))
    assert plan_workers("auto", "auto") == expected
    assert plan_workers(3, "cpu") == (3, max(1, cores // 3))


@pytest.mark.parametrize("daemon", [None, "#!/bin/sh\necho 'cannot start' >&2\nexit 1\n"])
def test_gpu_workers_time_slice_when_mps_cannot_start(tmp_path, monkeypatch, daemon):
    """Several workers on one GPU start an MPS server for the run; where there is none to start (no binary) or it
    fails, one line says so and the run goes on time-sliced, with the environment as it was."""
    from search import mps

    if daemon:
        exe = tmp_path / "nvidia-cuda-mps-control"
        exe.write_text(daemon)
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    monkeypatch.setattr(mps, "DEFAULT_PIPE", tmp_path / "no-server")
    said = []
    with mps.shared_gpu(1, 4, said.append) as how:
        assert how == "time-sliced" and "CUDA_MPS_PIPE_DIRECTORY" not in os.environ
    assert len(said) == 1 and said[0].startswith("MPS could not start (")
    assert ("cannot start" if daemon else "not on PATH") in said[0]
    with mps.shared_gpu(1, 1, said.append) as how:  # one worker per GPU: nothing to share
        assert how == ""
    with mps.shared_gpu(0, 4, said.append) as how:  # CPU workers
        assert how == ""
    assert len(said) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_each_enqueued_trial_is_claimed_by_one_worker(tmp_path, backend):
    """First trials and race runs are enqueued; workers claim them at the same instants. Each goes to exactly
    one worker. (On SQLite two workers both trained the first trial and the loser crashed telling it: Optuna's
    claim reads WAITING and writes RUNNING under SELECT ... FOR UPDATE, which SQLite ignores.)"""
    import multiprocessing as mp

    from search.storage import make_storage

    name = f"claim_{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path}/claim.db"
    if backend == "postgresql":
        url = os.environ.get("NAS_RUN_TEST_POSTGRES")
        need(url, "a PostgreSQL server (NAS_RUN_TEST_POSTGRES=postgresql://USER@127.0.0.1:PORT/DB)")
    study = optuna.create_study(study_name=name, storage=make_storage(url))
    for i in range(60):
        study.enqueue_trial({"x": i})
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=claim_enqueued, args=(url, name, 60, ready, go, out)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:  # all connected and waiting
        ready.get(timeout=120)
    go.set()
    claimed = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    numbers = sorted(n for got in claimed for n in got)
    assert numbers == list(range(60)), f"{len(numbers)} claims of 60 enqueued trials"
    assert sum(1 for got in claimed if got) >= 2  # the claims really were concurrent


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # asked and told by hand here, as two workers would
def test_of_two_workers_that_asked_at_once_with_one_trial_left_the_later_stands_down(tmp_path, fm_data):
    """Two workers checked the target (2 trained of 3), found room for one more and asked at the same instant. The
    later claim ends `surplus`, untrained and unsampled; the earlier trains: the study stops at 3, not 4. (On CI's
    2 cores the `finished` run trained 4 of `--trials 3` this way.) An enqueued design never stands down."""
    from search import record as rec
    from search.storage import make_storage
    from search.study import open_study

    space = S.parse(slow_space("once", epochs=1, data_fraction=0.25))
    study = open_study(space, make_storage(f"sqlite:///{tmp_path}/once.db"), 0)
    for value in (0.5, 0.6):  # two trained trials, recorded as nas-run records them
        t = study.ask()
        t.set_user_attr("trained", True)
        study.tell(t, value)
    obj = O.Objective(space, fm_data, torch.device("cpu"), trials=3)
    earlier, later = study.ask(), study.ask()
    with pytest.raises(optuna.TrialPruned):
        obj(later)
    study.tell(later, state=TrialState.PRUNED)
    value = obj(earlier)  # the later claim has ended: nothing is ahead of the earlier but the 2 trained
    study.tell(earlier, value)
    trials = study.get_trials()
    assert rec.read(trials[later.number]).end[0] == rec.End.SURPLUS and not trials[later.number].params
    assert rec.is_trained(trials[earlier.number]) and len(rec.trained(trials)) == 3
    assert not obj.may_ask(study) and obj.finished(study) and not obj.gave_up
    study.enqueue_trial({"train.lr": 0.005}, user_attrs={"first_trial": 0})  # a design: past the target it trains
    design = study.ask()  # all the same (standing down would drop it from the queue for good)
    study.tell(design, obj(design))
    assert len(rec.trained(study.get_trials())) == 4


def test_a_failure_that_repeats_stops_the_run_with_one_line(tmp_path, monkeypatch, capsys):
    """Every candidate raises (a broken CUDA context, a bug in a family): not trial-level. After search.max_failures
    failures in a row the run stops with one line and exit 1; the failed trials are in storage with their reason.
    In process (nas-run's own main) so the trainer can be made to fail; everything else is real."""
    from search import cli

    def broken(*a, **k):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(O, "train", broken)
    raw = slow_space("broken", epochs=1)
    raw["search"]["max_failures"] = 3
    space = write_space(tmp_path / "broken.yaml", raw)
    status = cli.main([str(space), "--trials", "5", "--no-retrain", "--studies", str(tmp_path / "studies"), "--workers", "1"])
    err = capsys.readouterr().err
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "3 trials in a row failed" in lines[0] and "illegal memory access" in lines[0], err
    trials = _study(tmp_path, "broken").trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 3
    assert all(t.user_attrs["end_reason"].startswith("error:RuntimeError: CUDA error") for t in trials)


def _content(db) -> str:
    """Every row of the SQLite file, as SQL. Not its mtime: closing the last connection of a reader checkpoints
    the WAL into the file, which moves the mtime without changing a row."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def test_an_edited_space_on_resume_is_one_line_and_writes_nothing(tmp_path):
    raw = tiny_space(name="edit", search={"epochs": 1, "seed": 0, "race_top": 0})
    space = write_space(tmp_path / "edit.yaml", raw)
    args = ["--trials", 1, "--no-retrain", "--studies", tmp_path / "studies", "--workers", 1]
    assert in_process("nas-run", space, *args).returncode == 0  # in this process: its own is not under test here
    db = tmp_path / "studies" / "edit.db"
    before = _content(db)
    raw["model"]["stages"][0]["width"] = [4, 8, 24, 32]  # a new choice: Optuna cannot continue the old trials
    write_space(space, raw)
    r = in_process("nas-run", space, *args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "model.stage0.width" in r.stderr and "'edit'" in r.stderr and "new `name:`" in r.stderr
    assert "choices [4, 8, 24] -> choices [4, 8, 24, 32]" in r.stderr
    assert _content(db) == before
    # A moved range is compatible: accepted, and the stored space follows the file (nas-export reads it).
    raw["model"]["stages"][0]["width"] = [4, 8, 24]
    raw["train"]["lr"] = {"low": 0.002, "high": 0.03, "log": True}
    write_space(space, raw)
    r = in_process("nas-run", space, "--trials", 2, "--no-retrain", "--studies", tmp_path / "studies", "--workers", 1)
    assert r.returncode == 0, r.stderr
    study = _study(tmp_path, "edit")
    assert "0.002" in study.user_attrs["space"] and len(study.user_attrs["space_history"]) == 1


def _start_together(tmp_path, space, n, *extra):
    """n nas-run processes released at the same instant (they wait on a file, then exec)."""
    go = tmp_path / "go"
    exe = shutil.which("nas-run")
    script = f"while [ ! -e {go} ]; do sleep 0.01; done; exec {exe} " + " ".join(map(str, [space, *extra]))
    procs = [subprocess.Popen(["bash", "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    time.sleep(0.5)
    go.touch()
    return [(p, *p.communicate(timeout=600)) for p in procs]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_of_several_workers_started_at_once_on_a_fresh_storage(tmp_path, backend):
    """The scale-out recipe, two shells of two workers each at the same instant on a storage nobody created yet:
    all succeed (the schema set-up race is retried), the study stops at exactly 8 trained trials, no candidate is
    trained twice and every trial has its own seed."""
    name = f"once_{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path}/studies/{name}.db"
    if backend == "postgresql":
        url = os.environ.get("NAS_RUN_TEST_POSTGRES")
        need(url, "a PostgreSQL server (NAS_RUN_TEST_POSTGRES=postgresql://USER@127.0.0.1:PORT/DB)")
        url = _fresh_database(url, name)
    raw = slow_space(name, epochs=1, data_fraction=0.25)
    raw["model"]["stages"] = [{"width": [8, 16, 24], "depth": [1, 2]}, {"width": [16, 32], "depth": 1}]
    raw["train"]["batch_size"] = [32, 64]
    space = write_space(tmp_path / "once.yaml", raw)
    results = _start_together(tmp_path, space, 2, "--trials", 8, "--no-retrain", "--storage", url, "--studies",
                              tmp_path / "studies", "--workers", 2)
    for proc, out, err in results:
        assert proc.returncode == 0, err
        assert f"2 worker(s) x {plan_workers(2, 'cpu')[1]} thread(s)" in out
    study = optuna.load_study(study_name=name, storage=url)
    trials, trained = study.trials, search_trials(study)
    assert len(trained) == 8  # the workers count each other's running trials, and a later claim past 8 stands down
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    seeds = [t.user_attrs["seed"] for t in trials if t.user_attrs.get("end_reason") != "surplus"]  # a surplus ask draws none
    assert len(seeds) == len(set(seeds))
    cands = [str(t.user_attrs["candidate"]) for t in trained]
    assert len(cands) == len(set(cands))  # no candidate trained twice, within a process or across them
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    if backend == "postgresql":
        assert not list(tmp_path.glob("studies/*.db"))  # nothing went to SQLite


def _fresh_database(url: str, name: str) -> str:
    """A new, empty PostgreSQL database on the test server: no Optuna schema at all, as on a new server."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + "/" + name


def test_ctrl_c_in_the_race_resumes_the_race(tmp_path):
    """Ctrl-C while a race run trains: exit 130, that run is FAIL + interrupted and queued again with its race_of
    and race_fold; the same command finishes the race (race_seeds - 1 trained runs per finalist) and retrains
    the race winner."""
    raw = slow_space("race", epochs=4, data_fraction=0.25)  # a race run hit after its first epoch has 3 left
    raw["search"].update(race_top=2, race_seeds=2)
    raw["retrain"]["seeds"] = 1
    space = write_space(tmp_path / "race.yaml", raw)
    args = [space, "--trials", 2, "--studies", tmp_path / "studies", "--workers", 1, "--format", "checkpoint"]
    proc = _popen(*args, cwd=tmp_path)
    victim = _wait_mid_trial(tmp_path, "race", proc, race=True, timeout=300)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    trials = _study(tmp_path, "race").trials
    assert trials[victim].user_attrs["end_reason"] == "interrupted"
    queued = [t for t in trials if t.state == TrialState.WAITING]  # the requeued run (+ race runs not started yet)
    assert all("race_of" in t.user_attrs for t in queued)
    retry = [t for t in queued if t.user_attrs.get("retry_of") == victim]
    assert len(retry) == 1 and retry[0].user_attrs["race_of"] == trials[victim].user_attrs["race_of"]
    assert retry[0].user_attrs["race_fold"] == trials[victim].user_attrs["race_fold"] == 1  # same round's split

    again = nas_run(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study = _study(tmp_path, "race")
    race = [t for t in study.trials if "race_of" in t.user_attrs and t.user_attrs.get("trained")]
    assert sorted(t.user_attrs["race_of"] for t in race) == sorted(row["trial"] for row in study.user_attrs["race"])
    assert len(search_trials(study)) == 2 and len(race) == 2
    assert study.user_attrs["retrain"]["trial"] == study.user_attrs["race"][0]["trial"]
