"""Warm start (`nas-run SPACE --from SOURCE`): an earlier study's best candidates are trained first, mapped onto this
space and budget, the sampler starts from its trials, and the source is only read."""
from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import uuid
from types import SimpleNamespace

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from helpers import in_process, nas_run, need, tiny_space, write_space
from search import budget as B
from search import record as rec
from search import warm as W
from search.catalogue import DATASETS
from search.errors import UserError
from search.space import parse
from search.storage import make_storage
from search.study import open_study


def _target(name: str = "warm", **over) -> dict:
    """The tiny space changed so that every carried candidate is mapped: lr's range lies below the source's
    (0.003-0.03), so lr is clipped; stage 0's widths are none of the source's (dropped); stage 1's depth is fixed
    (dropped); stage 1's width and the head are the same choices (kept). A smaller budget, filled."""
    raw = tiny_space(**{"budget": {"params": 3000, "fill": True}, **over})
    raw["name"] = name
    raw["model"]["stages"] = [{"width": [5, 6], "depth": 1}, {"width": [8, 16, 32], "depth": 1}]
    raw["train"]["lr"] = {"low": 0.0005, "high": 0.002, "log": True}
    return raw


def _fingerprint(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_carry_clips_numbers_into_range_and_drops_what_this_space_lacks():
    target = W.Target.of(parse(_target()))
    kept, clipped, dropped = W.carry({"train.lr": 0.02, "model.stage0.width": 24, "model.stage1.width": 16,
                                      "model.stage1.depth": 2, "model.head": "gap"}, target)
    assert kept == {"train.lr": 0.002, "model.stage1.width": 16, "model.head": "gap"}
    assert clipped == {"train.lr": "0.02 -> 0.002"}
    assert set(dropped) == {"model.stage0.width=24", "model.stage1.depth"}
    assert "not among [5, 6]" in dropped["model.stage0.width=24"]
    kept, clipped, _ = W.carry({"train.lr": 0.001}, target)  # inside the range: as it was, nothing named
    assert kept == {"train.lr": 0.001} and not clipped


def test_carry_maps_a_key_onto_the_branch_of_a_conditional_one_and_back():
    raw = tiny_space()
    raw["train"].update(optimizer=["sgd", "adamw"], lr={"by": "optimizer", "sgd": {"low": 0.02, "high": 0.3, "log": True},
                                                        "adamw": {"low": 0.001, "high": 0.01, "log": True}})
    conditional = W.Target.of(parse(raw))
    kept, clipped, _ = W.carry({"train.optimizer": "adamw", "train.lr": 0.02}, conditional)
    assert kept == {"train.optimizer": "adamw", "train.lr.adamw": 0.01} and clipped == {"train.lr.adamw": "0.02 -> 0.01"}
    kept, _, _ = W.carry({"train.optimizer": "sgd", "train.lr": 0.05}, conditional)
    assert kept == {"train.optimizer": "sgd", "train.lr.sgd": 0.05}
    plain = W.Target.of(parse(tiny_space()))  # lr 0.003-0.03 for the one optimizer
    assert W.carry({"train.lr.adamw": 0.004}, plain)[0] == {"train.lr": 0.004}


def test_warm_start_trains_the_source_candidates_first_mapped_and_leaves_the_source_unchanged(finished, tmp_path):
    source_dir = tmp_path / "source"  # a copy no other connection of this test session has open
    source_dir.mkdir()
    db, copy = sqlite3.connect(finished[0] / "studies" / "tiny.db"), sqlite3.connect(source_dir / "tiny.db")
    db.backup(copy)
    db.close(), copy.close()
    before = _fingerprint(source_dir)
    src = optuna.load_study(study_name="tiny", storage=f"sqlite:///{finished[0]}/studies/tiny.db")
    winner = rec.retrain_results(src).trial
    space = write_space(tmp_path / "warm.yaml", _target())
    result = nas_run(space, "--from", source_dir / "tiny.db", "--trials", 3, "--no-retrain", "--workers", 1,
                     "--studies", tmp_path / "studies", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    after = _fingerprint(source_dir)
    # Read, never written: the database file is byte-identical and its write-ahead log is empty (a write in WAL mode
    # lands there first); SQLite's shared-memory index (-shm) comes with any reader of a WAL database.
    assert after["tiny.db"] == before["tiny.db"] and set(after) <= {"tiny.db", "tiny.db-wal", "tiny.db-shm"}
    assert not (source_dir / "tiny.db-wal").exists() or (source_dir / "tiny.db-wal").stat().st_size == 0
    out = result.stdout
    assert f"warm start from tiny ({source_dir}/tiny.db): its trials {winner} (val" in out
    assert "clipped into this space's ranges: train.lr" in out and "-> 0.002" in out
    assert "dropped (left to the sampler): model.stage0.width=" in out and "model.stage1.depth (not searched" in out

    study = optuna.load_study(study_name="warm", storage=f"sqlite:///{tmp_path}/studies/warm.db")
    trials = sorted(study.trials, key=lambda t: t.number)
    carried = [t for t in trials if rec.read(t).warm_from]
    assert carried and carried == trials[:len(carried)]  # before anything sampled
    assert rec.read(carried[0]).warm_from == f"tiny#{winner}"  # the source's retrained winner first
    for t in carried:
        origin = src.trials[int(rec.read(t).warm_from.split("#")[1])]
        assert t.params["train.lr"] == 0.002 and t.params["model.stage1.width"] == origin.params["model.stage1.width"]
        assert t.params["model.head"] == origin.params["model.head"] and t.params["model.stage0.width"] in (5, 6)
        if rec.is_trained(t):
            assert rec.read(t).params <= 3000
    [record] = rec.warm_starts(study)
    assert record["study"] == "tiny" and record["trials"][0] == winner and record["evidence"] >= 3
    # A rerun of the same command queues nothing again and records nothing twice.
    again = nas_run(space, "--from", source_dir / "tiny.db", "--trials", 3, "--no-retrain", "--workers", 1,
                    "--studies", tmp_path / "studies", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="warm", storage=f"sqlite:///{tmp_path}/studies/warm.db")
    assert len([t for t in study.trials if rec.read(t).warm_from]) == len(carried)
    assert len(rec.warm_starts(study)) == 1
    report = (tmp_path / "studies" / "warm" / "report.html").read_text()
    assert "warm start" in report and f"tiny#{winner}" in report


def test_a_source_on_postgresql_is_read_through_a_read_only_connection(finished, tmp_path):
    """The earlier study on another storage (a real PostgreSQL server): read, and the connection cannot write."""
    url = os.environ.get("NAS_RUN_TEST_POSTGRES")
    need(url, "a PostgreSQL server (NAS_RUN_TEST_POSTGRES=postgresql://USER@127.0.0.1:PORT/DB)")
    name = f"warm_source_{uuid.uuid4().hex[:8]}"
    optuna.copy_study(from_study_name="tiny", from_storage=f"sqlite:///{finished[0]}/studies/tiny.db",
                      to_storage=make_storage(url), to_study_name=name)
    before = optuna.load_study(study_name=name, storage=url)
    warm = W.read(f"{url}#{name}", str(tmp_path), parse(_target()), f"sqlite:///{tmp_path}/w.db")
    assert warm.candidates and warm.source.name == name and "@" not in warm.source.describe().split("(")[1][:-1]
    source = W.open_source(warm.source)
    with pytest.raises(Exception) as refused:
        source.set_user_attr("touched", True)
    assert "read-only transaction" in str(refused.value.__cause__)
    after = optuna.load_study(study_name=name, storage=url)
    assert after.user_attrs == before.user_attrs and len(after.trials) == len(before.trials)


def test_check_says_what_the_warm_start_brings_and_writes_nothing(finished, tmp_path):
    space = write_space(tmp_path / "warm.yaml", _target())
    result = in_process("nas-run", space, "--check", "--from", "tiny", "--samples", 20,
                        "--studies", finished[0] / "studies", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warm start from tiny" in result.stdout and "clipped into this space's ranges: train.lr" in result.stdout
    assert not (finished[0] / "studies" / "warm.db").exists()


@pytest.mark.parametrize("source, expected", [
    ("nothere", "--from: no study storage at"),
    ("{studies}/tiny.db#other", "--from: no study 'other' in"),
    ("{studies}/tiny.db#tiny", "shares no searched parameter with"),
])
def test_a_missing_source_or_one_sharing_no_parameter_is_one_line_exit_2_and_nothing_written(
        finished, tmp_path, source, expected):
    raw = tiny_space()
    raw["name"] = "other_space"
    raw["model"] = {"family": "convnet", "stages": [{"width": 8, "depth": 1}], "head": "gap"}
    raw["train"] = {"batch_size": [32, 64], "optimizer": "adamw", "lr": 0.01}  # only batch_size is searched
    space = write_space(tmp_path / "other.yaml", raw)
    studies = finished[0] / "studies"
    result = in_process("nas-run", space, "--from", source.format(studies=studies), "--trials", 1,
                        "--studies", tmp_path / "studies", cwd=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "studies").exists() or not any((tmp_path / "studies").iterdir())


def test_a_warm_start_into_a_ladder_queues_each_candidate_in_each_tier_filled_to_its_limit(finished, tmp_path):
    src = str(finished[0] / "studies" / "tiny.db")
    space = parse(_target(budget={"params": [1500, 3000], "fill": True}))
    warm = W.read(src, str(tmp_path), space, f"sqlite:///{tmp_path}/ladder.db")
    study = open_study(space, make_storage(f"sqlite:///{tmp_path}/ladder.db"), warm=warm)
    waiting = [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
    assert [(rec.read(t).tier, rec.read(t).warm_from) for t in waiting] == [
        (tier, f"tiny#{c.trial}") for tier in space.budget.tiers() for c in warm.candidates]
    meta = DATASETS["fashion_mnist"]
    for t in waiting:
        trial = study.ask()  # the queued trial, with its fixed parameters
        tier = rec.read(study.trials[trial.number]).tier
        cand, model = B.candidate_model(space, trial, meta, tier)
        params = sum(p.numel() for p in model.parameters())
        limit = space.budget.tier(tier).params
        assert 0.6 * limit < params <= limit, (tier, params)  # filled toward the tier's limit
        assert trial.params["train.lr"] == 0.002


def test_a_net_laid_out_otherwise_does_not_carry_and_the_carried_trial_takes_the_designs(finished, tmp_path):
    """Another image size gets another stage layout from nas-init (a pool at other stages, another count): stage
    parameters by index would mean other layers there, and the net's other choices (head, separable) were weighed
    on that other net. The net is dropped, named once; the carried trial takes the first design's; the recipe carries."""
    src = str(finished[0] / "studies" / "tiny.db")
    raw = _target()
    raw["model"]["stages"].append({"width": [16, 32], "depth": [1, 2], "pool": True})  # tiny's "-p" -> "-pp"
    design = {"model.stage0.width": 6, "model.stage1.width": 16, "model.stage2.width": 32, "model.stage2.depth": 2,
              "model.head": "flatten_fc", "train.lr": 0.001}
    for designs in ([design], []):
        raw["search"]["first_trials"] = designs
        warm = W.read(src, str(tmp_path), parse(raw), f"sqlite:///{tmp_path}/apart.db")
        [why] = [d for d in warm.dropped if d.startswith("model.*")]
        assert "laid out otherwise: convnet -p against convnet -pp" in why
        assert ("first_trials[0]'s" in why) == bool(designs)
        assert [d for d in warm.dropped if d.startswith("model.")] == [why]  # one line for all of them
        [carried] = warm.candidates
        net = {n: v for n, v in carried.params.items() if n.startswith("model.")}
        assert net == ({n: v for n, v in design.items() if n.startswith("model.")} if designs else {})
        assert carried.params["train.lr"] == 0.002  # the recipe carries
        assert warm.evidence and all(n.startswith("train.") for e in warm.evidence for n in e.params)
    same = W.read(src, str(tmp_path), parse(_target()), f"sqlite:///{tmp_path}/same.db")  # tiny's layout: by index
    assert not any(d.startswith("model.*") for d in same.dropped)
    assert all({"model.stage1.width", "model.head"} <= set(e.params) for e in same.evidence)


def test_a_source_sharing_only_stages_laid_out_otherwise_says_so(finished, tmp_path):
    raw = tiny_space()
    raw["name"] = "stages_only"
    raw["model"]["stages"] = [{"width": [4, 8], "depth": 1}, {"width": [8, 16], "depth": 1, "pool": False}]
    raw["model"]["head"] = "gap"  # only stage widths are searched, and stage 1 does not pool here ("--")
    raw["train"]["lr"] = 0.01
    with pytest.raises(UserError, match=r"shares no searched parameter .*model\.\* not carried: its stages are "
                                        r"laid out otherwise: convnet -p against convnet --"):
        W.read(str(finished[0] / "studies" / "tiny.db"), str(tmp_path), parse(raw), f"sqlite:///{tmp_path}/s.db")


def test_a_carried_candidate_with_a_designs_values_stays_that_design(finished, tmp_path):
    src = str(finished[0] / "studies" / "tiny.db")
    space = parse(_target())
    carried = W.read(src, str(tmp_path), space, f"sqlite:///{tmp_path}/d.db").candidates
    raw = _target()
    raw["search"]["first_trials"] = [carried[0].params]
    space = parse(raw)
    warm = W.read(src, str(tmp_path), space, f"sqlite:///{tmp_path}/d.db")
    study = open_study(space, make_storage(f"sqlite:///{tmp_path}/d.db"), warm=warm)
    assert warm.designs[0] == f"{carried[0].trial} (first_trials[0])"  # not carried: trained as the design
    assert all(c.params != carried[0].params for c in warm.candidates)
    waiting = [rec.read(t) for t in study.trials]
    assert (waiting[0].first_trial, waiting[0].warm_from) == (0, None)  # queued once, as the design (raced, unpruned)
    assert [r.warm_from for r in waiting[1:]] == [f"tiny#{c.trial}" for c in warm.candidates]


def test_the_earlier_trials_stand_in_for_the_start_up_one_each_where_their_nets_carry(finished, tmp_path):
    """With neighbourhood start-up, a cold study's first `startup_trials` sampled trials are neighbours of the
    incumbent; a warm one's are fewer by the evidence, after which the sampler proposes from what it was shown. From
    a source whose stages are laid out otherwise (another image size) the start-up stays whole: the evidence then
    says nothing of this space's nets."""
    src = str(finished[0] / "studies" / "tiny.db")
    raw = _target()
    raw["search"].update(startup="neighbourhood", startup_trials=12)
    space = parse(raw)
    warm = W.read(src, str(tmp_path), space, f"sqlite:///{tmp_path}/x.db")
    n = len(warm.evidence)
    assert 0 < n < 12 and not warm.startup_left
    assert "each in place of a start-up trial" in warm.lines()[0]
    raw["model"]["stages"].append({"width": [16, 32], "depth": [1, 2], "pool": True})  # tiny's "-p" -> "-pp"
    apart = parse(raw)
    warm_apart = W.read(src, str(tmp_path), apart, f"sqlite:///{tmp_path}/y.db")
    assert len(warm_apart.evidence) == n and warm_apart.startup_left
    assert "after this space's start-up trials (its nets are laid out otherwise)" in warm_apart.lines()[0]
    for name, sp, start_from, neighbours in (("cold", space, None, 12), ("warm", space, warm, 12 - n),
                                             ("apart", apart, warm_apart, 12)):
        study = open_study(sp, make_storage(f"sqlite:///{tmp_path}/{name}.db"), warm=start_from)
        design = (start_from or warm).candidates[0].params
        searched = W.Target.of(sp).searched
        study.add_trial(optuna.trial.create_trial(  # a design trained at full length: the incumbent
            value=0.8, params=design, distributions={k: searched[k].distribution() for k in design},
            user_attrs={"trained": True}, system_attrs={"fixed_params": design}))
        moved = []
        for i in range(14):
            moved.append(study.sampler.move(study, SimpleNamespace(number=1000 + i)) is not None)  # the next ask's plan
            study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, params={}, distributions={},
                                                      user_attrs={"trained": True}, intermediate_values={1: 0.1}))
        assert moved == [True] * neighbours + [False] * (14 - neighbours), (name, n, moved)


def test_random_start_up_stays_whole_from_a_source_laid_out_otherwise(finished, tmp_path):
    """TPE's own random start-up counts the trials it is shown: from a source laid out otherwise the evidence is
    shown only once this study has `startup_trials` finished trials of its own."""
    raw = _target()
    raw["search"].update(startup="random", startup_trials=3)
    raw["model"]["stages"].append({"width": [16, 32], "depth": [1, 2], "pool": True})
    space = parse(raw)
    warm = W.read(str(finished[0] / "studies" / "tiny.db"), str(tmp_path), space, f"sqlite:///{tmp_path}/r.db")
    assert warm.startup_left and warm.evidence
    study = open_study(space, make_storage(f"sqlite:///{tmp_path}/r.db"), warm=warm)
    shown = []
    for _ in range(5):
        shown.append(len(study.sampler.view(study, None).get_trials(deepcopy=False)) - len(study.trials))
        study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, params={}, distributions={},
                                                  user_attrs={"trained": True}, intermediate_values={1: 0.1}))
    assert shown == [0, 0, 0, len(warm.evidence), len(warm.evidence)]


def _sampled(evidence, n=30, seed=0) -> list[float]:
    study = optuna.create_study(direction="maximize")
    tpe = optuna.samplers.TPESampler(seed=seed, n_startup_trials=10)
    study.sampler = W.EvidenceSampler(tpe, tuple(evidence)) if evidence else tpe
    out = []
    for _ in range(n):
        t = study.ask()
        out.append(t.suggest_float("x", 0, 1))
        study.tell(t, 0.5)  # flat: what the new study adds says nothing, so the evidence shows
    return out


def test_evidence_is_the_source_trials_mapped_ranked_within_their_study_and_numbered_first(finished):
    src = optuna.load_study(study_name="tiny", storage=f"sqlite:///{finished[0]}/studies/tiny.db")
    target = W.Target.of(parse(_target()))
    evidence = W.evidence(src.trials, target)
    full = rec.full_length(src.trials)
    assert len(evidence) == len(rec.trained(src.trials)) and [e.number for e in evidence] == list(range(-len(evidence), 0))
    ranks = sorted(e.value for e in evidence if e.state == optuna.trial.TrialState.COMPLETE)
    assert ranks == [(i + 0.5) / len(full) for i in range(len(full))]
    for e in evidence:
        assert set(e.params) <= set(target.searched) and e.params["train.lr"] == 0.002
        assert e.distributions["train.lr"] == target.searched["train.lr"].distribution()


def test_the_sampler_starts_from_the_earlier_trials():
    rng = random.Random(0)
    earlier = []
    for i in range(40):
        x = rng.random()
        earlier.append(optuna.trial.create_trial(value=1 - abs(x - 0.85), params={"x": x},
                                                 distributions={"x": FloatDistribution(0, 1)}))
        earlier[-1].number = i - 40
    near = [sum(abs(x - 0.85) < 0.15 for x in _sampled(evidence)[:10]) for evidence in (earlier, [])]
    # Cold, the first 10 are TPE's random start-up (0.3 of them near 0.85 by chance); warm, TPE models from the
    # first trial on and proposes near the earlier best.
    assert near[0] >= 6 and near[1] <= 5, near
