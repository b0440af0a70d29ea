"""A study written by an earlier nas-run (tests/data/study_main_28f99b0: commit 28f99b0, before typed configuration
and record.py) still resumes to more trials and reports: the trial record's strings are the ones stored."""
from __future__ import annotations

import shutil

import optuna

from conftest import ROOT, in_process
from search import record as rec

STORED = ROOT / "tests" / "data" / "study_main_28f99b0"


def _copy(tmp_path):
    db = tmp_path / "tiny_v1.db"
    shutil.copy(STORED / "tiny_v1.db", db)  # the stored file stays as it was
    return db, f"sqlite:///{db}"


def test_every_stored_trial_reads_through_the_record_module(tmp_path):
    _, url = _copy(tmp_path)
    trials = optuna.load_study(study_name="tiny_v1", storage=url).trials
    kinds = [rec.end_of(t)[0] for t in trials]
    assert None not in kinds  # every stored end reason is known
    assert kinds.count(rec.End.REJECTED) == 4 and {rec.end_of(t)[1] for t in trials if rec.is_rejected(t)} == {"params"}
    assert len(rec.trained(trials)) == 4 and len(rec.full_length(trials)) == 3 and len(rec.cut_short(trials)) == 1
    assert sorted(rec.race_of(t) for t in trials if rec.is_race(t)) == [4, 5]
    assert rec.best_search_trial(trials).number == 5


def test_a_stored_study_resumes_to_more_trials_and_reports(tmp_path):
    db, url = _copy(tmp_path)
    studies = tmp_path / "studies"
    space = STORED / "tiny_v1.yaml"  # its data.root is relative to the repository
    r = in_process("nas-run", space.relative_to(ROOT), "--trials", 6, "--storage", url, "--studies", studies,
                   "--workers", 1, "--format", "checkpoint", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    study = optuna.load_study(study_name="tiny_v1", storage=url)
    assert len(rec.trained(study.trials)) == 6  # 4 stored + 2 new
    assert [t.user_attrs for t in study.trials[:10]] == [
        t.user_attrs for t in optuna.load_study(study_name="tiny_v1", storage=f"sqlite:///{STORED / 'tiny_v1.db'}").trials]
    assert rec.retrain_results(study)["trial"] == rec.race_standings(study)[0]["trial"]
    (studies / "tiny_v1" / "report.html").unlink()
    r = in_process("nas-report", "tiny_v1", "--storage", url, "--studies", studies, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    page = (studies / "tiny_v1" / "report.html").read_text()
    assert "nas-run study tiny_v1" in page and "test accuracy" in page
