"""Studies written by earlier nas-runs still read, resume to more trials and report:
- tests/data/study_main_28f99b0: commit 28f99b0, before typed configuration and record.py;
- tests/data/study_main_71448e9: commit 71448e9, before the typed study records (a ladder of two tiers, a
  first_trials design, race rounds, retrain results with deployment figures).
The typed records write back exactly the JSON these studies hold."""
from __future__ import annotations

import json
import shutil

import optuna
import pytest

from helpers import ROOT, in_process
from search import record as rec
from search.record import Candidate, RaceRow, RetrainResult

STORED = {"tiny_v1": ROOT / "tests" / "data" / "study_main_28f99b0",
          "ladder_v2": ROOT / "tests" / "data" / "study_main_71448e9"}


def _copy(tmp_path, name):
    db = tmp_path / f"{name}.db"
    shutil.copy(STORED[name] / f"{name}.db", db)  # the stored file stays as it was
    return db, f"sqlite:///{db}"


def _stored(name) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{STORED[name] / f'{name}.db'}")


def test_every_stored_trial_reads_through_the_record_module():
    trials = _stored("tiny_v1").trials
    kinds = [rec.read(t).end[0] for t in trials]
    assert None not in kinds  # every stored end reason is known
    assert kinds.count(rec.End.REJECTED) == 4 and {rec.read(t).end[1] for t in trials if rec.is_rejected(t)} == {"params"}
    assert len(rec.trained(trials)) == 4 and len(rec.full_length(trials)) == 3 and len(rec.cut_short(trials)) == 1
    assert sorted(rec.read(t).race_of for t in trials if rec.is_race(t)) == [4, 5]
    assert rec.best_search_trial(trials).number == 5

    ladder = _stored("ladder_v2")
    trials = ladder.trials
    assert {rec.read(t).tier for t in trials} == {"params_3000", "params_6000"}
    assert [rec.read(t).first_trial for t in trials[:2]] == [0, 0]
    assert all(rec.read(t).candidate.tier == rec.read(t).tier for t in trials if rec.read(t).candidate)
    for tier in ("params_3000", "params_6000"):
        r = rec.retrain_results(ladder, tier)
        assert r.deployment.int8.file == "model.int8.onnx" and r.deployment.latency_1.ms > 0
        assert r.trial == rec.race_standings(ladder, tier)[0].trial


@pytest.mark.parametrize("name", sorted(STORED))
def test_typed_records_write_back_the_stored_json_byte_for_byte(name):
    """What the pipeline reads as a typed record is what it writes: the same keys, order and values, so a record
    rewritten by today's code reads the same to an older nas-run, the dashboard or a user's script. (One
    difference: retrain results without deployment figures leave the key out, as 28f99b0 did; 71448e9 wrote null.)"""
    study = _stored(name)
    stored = [t.user_attrs["candidate"] for t in study.trials if "candidate" in t.user_attrs]
    assert stored and all(json.dumps(Candidate.from_json(c).to_json()) == json.dumps(c) for c in stored)
    attrs = study.user_attrs
    races = [v for k, v in attrs.items() if k.split(":")[0] == "race"]
    retrains = [v for k, v in attrs.items() if k.split(":")[0] == "retrain"]
    assert races and retrains
    for rows in races:
        assert json.dumps([RaceRow.from_json(r).to_json() for r in rows]) == json.dumps(rows)
    for r in retrains:
        assert json.dumps(RetrainResult.from_json(r).to_json()) == json.dumps(r)


@pytest.mark.parametrize("name, trials", [("tiny_v1", 6), ("ladder_v2", 8)])
def test_a_stored_study_resumes_to_more_trials_and_reports(tmp_path, name, trials):
    db, url = _copy(tmp_path, name)
    studies = tmp_path / "studies"
    space = STORED[name] / f"{name}.yaml"  # its data.root is relative to the repository
    before = _stored(name).trials
    r = in_process("nas-run", space.relative_to(ROOT), "--trials", trials, "--storage", url, "--studies", studies,
                   "--workers", 1, "--format", "checkpoint", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    study = optuna.load_study(study_name=name, storage=url)
    assert len(rec.trained(study.trials)) == trials  # the stored ones and the new ones
    assert [t.user_attrs for t in study.trials[:len(before)]] == [t.user_attrs for t in before]
    for tier in {rec.read(t).tier for t in study.trials}:  # None: a single budget
        assert rec.retrain_results(study, tier).trial == rec.race_standings(study, tier)[0].trial
    (studies / name / "report.html").unlink()
    r = in_process("nas-report", name, "--storage", url, "--studies", studies, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    page = (studies / name / "report.html").read_text()
    assert f"nas-run study {name}" in page and "test accuracy" in page
