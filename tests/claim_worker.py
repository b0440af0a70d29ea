"""A process that claims enqueued trials, for test_faults' claim test. Its own module, importing optuna and the
storage only: a spawned process imports the module of its target, and test_faults imports torch (~4 s)."""
from __future__ import annotations

import time
import warnings

import optuna

from search.storage import make_storage


def claim_enqueued(url: str, name: str, enqueued: int, ready, go, out) -> None:
    """Connect, say so on `ready`, wait for `go`, then ask for trials until Optuna hands out a fresh one; puts the
    enqueued numbers it got on `out`. Each claim is held a moment, as a worker trains what it claimed: on a loaded
    machine one process asking in a tight loop took all 60 before the others were scheduled."""
    warnings.simplefilter("ignore")  # heartbeats outside optimize(): this process only asks
    study = optuna.load_study(study_name=name, storage=make_storage(url))
    ready.put(1)
    go.wait()
    got = []
    while (trial := study.ask()).number < enqueued:
        got.append(trial.number)
        time.sleep(0.005)
    out.put(got)
