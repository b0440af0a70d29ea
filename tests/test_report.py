"""The study report (studies/NAME/report.html): written by nas-run, rebuilt by nas-report, opened in a real headless
browser (Debian's chromium), and its figures checked against the data they were drawn from."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from helpers import chromium, console_script, in_process, search_trials, study_once_created, tiny_space, write_space
from search import data as D
from search import report as RP
from search import space as S

CONTROL = "http://127.0.0.1:9/control.png"  # a request and a broken image the checks must see, or they see nothing
PROBE = """<img alt="control" src="%s"><script>window.onload = () => { document.title = JSON.stringify(
  [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)) }</script>""" % CONTROL


def nas_report(*args) -> subprocess.CompletedProcess:
    return console_script("nas-report", *args, timeout=300)


def open_in_browser(page: Path, tmp: Path) -> tuple[list[str], list[str]]:
    """Load a copy of `page` (plus the control image and a probe script) in headless chromium ->
    (alt text of every image that did not load, every URL the page requested), from the DOM and chromium's NetLog."""
    probe = tmp / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    netlog = tmp / "netlog.json"
    dom = chromium("--disable-background-networking", f"--log-net-log={netlog}", "--dump-dom", probe.as_uri())
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title and title.group(1).startswith("["), f"the probe did not run: {dom[:300]}"
    events = json.loads(netlog.read_text())
    start = events["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requested = [e["params"]["url"] for e in events["events"] if e["type"] == start
                 and "file://" in e["params"].get("network_isolation_key", "")]  # the page's own, not the browser's
    return json.loads(title.group(1).replace("&quot;", '"')), requested


@pytest.fixture(scope="module")
def report_page(finished):
    tmp, *_ = finished
    return tmp / "studies" / "tiny" / "report.html"


def test_nas_run_writes_the_report_and_uploads_it_with_a_dashboard_note(finished, report_page):
    _, _, result, study = finished
    assert f"report: {report_page}" in result.stdout
    pngs = {p.stem for p in (report_page.parent / "report").glob("*.png")}
    assert {"progress", "accuracy_vs_size", "learning_curves", "retrain_loss", "class_counts", "samples", "confusion",
            "misclassified"} <= pngs
    html = report_page.read_text()
    assert html.count("<img ") == len(pngs) and html.count("src='data:image/png;base64,") == len(pngs)
    study = optuna.load_study(study_name="tiny", storage=study._storage)  # as it is now
    metas = [m for m in optuna.artifacts.get_all_artifact_meta(study) if m.filename == "report.html"]
    assert len(metas) == 1 and metas[0].mimetype == "text/html"
    stored = report_page.parent / "artifacts" / metas[0].artifact_id
    assert stored.read_text() == html
    from optuna_dashboard import get_note

    note = get_note(study)
    assert f"/artifacts/{study._study_id}/{metas[0].artifact_id}" in note and "test accuracy" in note
    assert study.metric_names == ["val accuracy"]


def test_report_opens_offline_every_figure_loads_and_nothing_is_requested(report_page, tmp_path):
    broken, requested = open_in_browser(report_page, tmp_path)
    assert broken == ["control"], f"figures that did not load: {broken}"
    assert requested == [CONTROL], f"the page asked the network for {requested}"
    shots = Path(os.environ.get("NAS_RUN_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    chromium("--window-size=1200,4000", f"--screenshot={shots / 'report.png'}", report_page.as_uri())
    assert (shots / "report.png").stat().st_size > 50_000


def test_pareto_front_is_exactly_the_non_dominated_full_length_trials(finished, report_page):
    _, _, _, study = finished
    done = [t for t in search_trials(study) if t.state == TrialState.COMPLETE]
    pts = [(t.user_attrs["params"], t.value, t.number) for t in done]
    dominated = {n for p, a, n in pts for q, b, m in pts if m != n and q <= p and b >= a and (q < p or b > a)}
    front = RP.pareto_front(pts)
    assert {n for *_, n in front} == {n for *_, n in pts} - dominated
    table = report_page.read_text().split("Pareto front (full-length trials")[1].split("</table>")[0]
    assert [int(n) for n in re.findall(r"</td><td>[\d.]+</td><td>(\d+)</td>", table)] == [n for *_, n in front]


def test_pareto_front_by_hand():
    pts = [(100, 0.5, 0), (200, 0.7, 1), (150, 0.4, 2), (300, 0.7, 3), (300, 0.9, 4), (100, 0.6, 5), (250, 0.6, 6)]
    assert RP.pareto_front(pts) == [(100, 0.6, 5), (200, 0.7, 1), (300, 0.9, 4)]


def test_confusion_matrix_sums_to_the_test_size_and_matches_the_retrain(finished):
    tmp, space_file, _, study = finished
    space = S.load(space_file)
    data = D.load(space.data, "cpu", space.search.seed)
    test = RP.test_predictions(tmp / "studies" / "tiny" / "best" / "checkpoint.pt", data)
    cm = test.confusion(data.meta.classes)
    assert cm.sum().item() == len(data.test)
    assert cm.sum(1).tolist() == torch.bincount(data.test.y, minlength=10).tolist()
    first = study.user_attrs["retrain"]["runs"][0]  # the exported model is the first seed's
    assert cm.diag().sum().item() / len(data.test) == pytest.approx(first["test_acc"], abs=1e-9)


def test_sensitivity_tables_count_every_trained_trial(finished):
    _, _, _, study = finished
    ts = search_trials(study)
    tables = RP.sensitivity(study.trials)
    assert set(tables) == {n for t in ts for n in t.params}
    for name, rows in tables.items():
        assert sum(r.trained for r in rows) == sum(name in t.params for t in ts)
        full = sorted(t.value for t in ts if name in t.params and t.state == TrialState.COMPLETE)
        assert sorted(a for r in rows for a in r.accs) == pytest.approx(full)


def test_nas_report_on_a_running_study_leaves_out_the_winner(tmp_path):
    space = tiny_space(search={"epochs": 3, "startup_trials": 2, "seed": 0, "race_top": 0, "pruner": "none"})
    path = write_space(tmp_path / "tiny.yaml", space)
    studies = tmp_path / "studies"
    exe = shutil.which("nas-run")
    proc = subprocess.Popen([exe, str(path), "--trials", "6", "--no-retrain", "--studies", str(studies), "--workers", "1"],
                            cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, study = time.monotonic() + 120, None
        while time.monotonic() < deadline:  # a trial has finished training and another runs
            study = study or study_once_created(studies / "tiny.db", "tiny")
            if study is not None:
                trials = study.trials
                if any(t.user_attrs.get("trained") for t in trials) and any(t.state == TrialState.RUNNING for t in trials):
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"nas-run never had a trained and a running trial: {proc.stderr.read() if proc.poll() is not None else ''}")
        result = in_process("nas-report", "tiny", "--studies", studies)  # the report's process is not under test
        still_running = proc.poll() is None
        html = (studies / "tiny" / "report.html").read_text() if result.returncode == 0 else ""
    finally:
        proc.terminate()  # the rest of the search tests nothing here; nas-run stops on SIGTERM (exit 143)
        proc.wait(timeout=300)
    assert result.returncode == 0, result.stderr
    assert still_running, "the search ended before nas-report read it: the test did not test a running study"
    assert "not retrained yet" in html and "Search progress" in html
    assert "The winner on the test set" not in html and "retrain_loss" not in html
    assert (studies / "tiny" / "report" / "progress.png").exists()


def test_nas_report_on_a_missing_study_is_one_line_exit_2(tmp_path):
    result = nas_report("nosuch", "--studies", tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "nosuch" in result.stderr and "no study storage" in result.stderr
    assert not any(tmp_path.iterdir())


def test_rank_correlation_by_hand():
    assert RP.ranks([3, 1, 2, 2]) == [3.0, 0.0, 1.5, 1.5]
    assert RP.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert RP.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert RP.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)  # ties share a rank


def test_rung_fidelity_counts_full_length_search_trials_only():
    def trial(curve, state=TrialState.COMPLETE, **attrs):
        return optuna.trial.create_trial(
            state=state, value=curve[-1] if state == TrialState.COMPLETE else None,
            intermediate_values=dict(enumerate(curve, 1)), user_attrs={"trained": True, **attrs})
    # epoch 1 ranks the five trials backwards, epoch 2 in order; a pruned trial and a race run must not count
    curves = [[0.5, 0.1, 0.1], [0.4, 0.2, 0.2], [0.3, 0.3, 0.3], [0.2, 0.4, 0.4], [0.1, 0.5, 0.5]]
    trials = [trial(c) for c in curves] + [trial([0.9], TrialState.PRUNED), trial([0.0, 0.0, 0.9], race_of=0)]
    assert RP.rung_fidelity(trials) == [(1, pytest.approx(-1.0), 5), (2, pytest.approx(1.0), 5)]


def test_what_the_search_added_counts_sampled_trials_past_the_best_design_and_the_race_gain():
    from helpers import stored_candidate
    from search.record import RaceRow

    def trial(number, value, **attrs):
        t = optuna.trial.create_trial(value=value, user_attrs={"trained": True, "candidate": stored_candidate(n=number),
                                                               **attrs})
        t.number = number
        return t

    trials = [trial(0, 0.860, first_trial=0), trial(1, 0.870, first_trial=1), trial(2, 0.880), trial(3, 0.865),
              trial(4, 0.875), trial(5, 0.900, race_of=2, race_fold=1)]
    assert RP.search_gain(trials[2:5], []) is None  # no design: nothing to compare with
    race = [RaceRow(2, 0.880, [0.884], False, 0.884, 0.0, 7000, None),
            RaceRow(1, 0.870, [0.874], True, 0.872, 0.003, 6000, 1)]
    gain = RP.search_gain(trials, race)
    assert (gain.design_trial, gain.sampled, gain.beat) == (1, 3, 2)  # 0.880 and 0.875 beat 0.870; race runs not counted
    assert gain.winner_trial == 2 and not gain.winner_is_design and gain.race_gain == pytest.approx(0.012)
    assert "2 of 3 sampled full-length trials beat the best design (trial 1" in gain.line() and "+1.2 pt" in gain.line()
    kept = RP.search_gain(trials, [RaceRow(1, 0.870, [0.874], True, 0.872, 0.003, 6000, 1, kept=True), race[0]])
    assert kept.winner_is_design and "a design won the race" in kept.line()
