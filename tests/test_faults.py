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

from conftest import need, nas_run, tiny_space, write_space
from search import space as S
from search import study as ST


def slow_space(name: str, epochs: int = 4) -> dict:
    """Fixed mid-size net, only lr searched: each trial takes a few seconds, long enough to be hit mid-way."""
    return tiny_space(
        name=name,
        model={"family": "convnet", "stages": [{"width": 24, "depth": 2}, {"width": 32, "depth": 1}]},
        train={"batch_size": 32, "optimizer": "adamw", "lr": {"low": 0.001, "high": 0.01, "log": True}},
        budget={}, search={"epochs": epochs, "startup_trials": 100, "seed": 0},
    )


def _study(tmp, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp}/studies/{name}.db")


def _wait_mid_trial(tmp, name, proc, timeout=120) -> int:
    """Number of a trial that is RUNNING and has reported at least one epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if (tmp / "studies" / f"{name}.db").exists():
            try:
                for t in _study(tmp, name).get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    if t.intermediate_values:
                        return t.number
            except Exception:  # the study is being created
                pass
        time.sleep(0.1)
    pytest.fail("no trial got mid-way in time")


def _popen(*args, **kw):
    return subprocess.Popen([shutil.which("nas-run"), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def test_sigkilled_worker_trial_goes_stale_is_failed_and_its_candidate_retried(tmp_path):
    space = write_space(tmp_path / "kill.yaml", slow_space("kill"))
    args = [space, "--trials", 3, "--no-retrain", "--heartbeat", 1, "--studies", tmp_path / "studies"]
    proc = _popen(*args, cwd=tmp_path, start_new_session=True)
    victim = _wait_mid_trial(tmp_path, "kill", proc)
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
    assert len([t for t in trials if t.user_attrs.get("trained")]) == 3
    assert all(trials[n].state == TrialState.COMPLETE and trials[n].value == v for n, v in before.items())
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupt_ends_the_running_trial_and_the_same_command_resumes(tmp_path, sig, status):
    name = f"stop{status}"
    space = write_space(tmp_path / "stop.yaml", slow_space(name))
    args = [space, "--trials", 2, "--no-retrain", "--studies", tmp_path / "studies"]
    proc = _popen(*args, cwd=tmp_path)
    victim = _wait_mid_trial(tmp_path, name, proc)
    t0 = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert time.monotonic() - t0 < 30  # promptly: the current epoch is not waited for
    assert "interrupted" in out and "Traceback" not in err
    trials = _study(tmp_path, name).trials
    assert trials[victim].state == TrialState.FAIL and trials[victim].user_attrs["end_reason"] == "interrupted"
    queued = [t for t in trials if t.state == TrialState.WAITING]
    assert len(queued) == 1 and queued[0].system_attrs["fixed_params"] == trials[victim].params

    again = nas_run(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    trials = _study(tmp_path, name).trials
    rerun = trials[queued[0].number]
    assert rerun.user_attrs.get("trained") and rerun.params == trials[victim].params  # the candidate ran again
    assert len([t for t in trials if t.user_attrs.get("trained")]) == 2
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_a_runtime_error_in_one_candidate_ends_that_trial_only(tmp_path, monkeypatch):
    space = S.parse(slow_space("oom", epochs=1))
    real, calls = ST.train, []

    def oom_once(*args, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kw)

    monkeypatch.setattr(ST, "train", oom_once)
    url = f"sqlite:///{tmp_path}/oom.db"
    ST.run_worker(space, url, target=2, device="cpu", threads=1)
    trials = optuna.load_study(study_name="oom", storage=url).trials
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs["end_reason"].startswith("error:OutOfMemoryError: CUDA out of memory")
    assert len([t for t in trials if t.user_attrs.get("trained")]) == 2


def test_a_trial_that_would_overrun_the_time_budget_is_stopped(tmp_path, monkeypatch):
    raw = slow_space("late", epochs=3)
    raw["budget"] = {"train_seconds": 10**6}
    monkeypatch.setattr(ST, "TIME_SLACK", 1e-9)  # every trial's share of the budget is ~0 s
    url = f"sqlite:///{tmp_path}/late.db"
    ST.run_worker(S.parse(raw), url, target=1, device="cpu", threads=1)
    t = optuna.load_study(study_name="late", storage=url).trials[0]
    assert t.state == TrialState.PRUNED and t.user_attrs["end_reason"] == "time" and t.user_attrs["trained"]
    assert t.user_attrs["est_train_seconds"] > 0


def _check_parallel_study(study, target: int):
    trials = study.trials
    trained = [t for t in trials if t.user_attrs.get("trained")]
    assert len(trained) == target  # none lost, no overshoot
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    seeds = [t.user_attrs["seed"] for t in trials]
    assert len(seeds) == len(set(seeds))
    cands = [str(t.user_attrs["candidate"]) for t in trained]
    assert len(cands) == len(set(cands))  # no candidate trained twice


def test_four_workers_on_sqlite(tmp_path):
    space = write_space(tmp_path / "par.yaml", slow_space("par", epochs=1))
    r = nas_run(space, "--workers", 4, "--trials", 8, "--no-retrain", "--studies", tmp_path / "studies", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "4 worker(s) x 1 thread(s)" in r.stdout
    _check_parallel_study(_study(tmp_path, "par"), 8)


def test_four_workers_on_postgresql(tmp_path):
    url = os.environ.get("NAS_RUN_TEST_POSTGRES")
    need(url, "a PostgreSQL server (NAS_RUN_TEST_POSTGRES=postgresql://USER@127.0.0.1:PORT/DB)")
    name = f"par_{uuid.uuid4().hex[:8]}"
    space = write_space(tmp_path / "par.yaml", slow_space(name, epochs=1))
    r = nas_run(space, "--workers", 4, "--trials", 8, "--no-retrain", "--storage", url, "--studies", tmp_path / "studies",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    _check_parallel_study(optuna.load_study(study_name=name, storage=url), 8)
    assert not list(tmp_path.glob("studies/*.db"))  # nothing went to SQLite
