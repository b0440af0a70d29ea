"""End to end on real images: the study, budget rejection, pruning records, resume, retrain, export."""
from __future__ import annotations

from dataclasses import replace

import json

import optuna
import pytest
import torch
from optuna.trial import TrialState

from helpers import in_process, search_trials, stored_candidate, tiny_space
from search.measure import count_params
from search import objective as O
from search import space as S
from search import record as rec
from search import study as ST
from search.export import load_checkpoint
from search.train import History


def test_storage_holds_trained_and_rejected_trials_with_constraints_and_reasons(finished):
    _, _, result, study = finished
    trained = search_trials(study)
    rejected = [t for t in study.trials if t.user_attrs.get("end_reason", "").startswith("rejected")]
    assert len(trained) == 3 and rejected
    for t in trained:
        assert t.constraints["params"] <= 0 and t.intermediate_values and t.user_attrs["params"] <= 6000
        assert {"seed", "candidate", "macs", "seconds_per_epoch", "end_reason"} <= set(t.user_attrs)
    for t in rejected:
        assert t.state == TrialState.PRUNED and t.constraints["params"] > 0 and not t.intermediate_values
        assert t.user_attrs["end_reason"] == "rejected:params" and t.user_attrs["params"] > 6000
    assert "optuna-dashboard sqlite:///" in result.stdout and "--artifact-dir" in result.stdout


def test_winner_retrained_on_two_seeds_and_exported(finished, fm_data):
    tmp, _, result, study = finished
    r = study.user_attrs["retrain"]
    best = study.trials[study.user_attrs["race"][0]["trial"]]  # the race winner (test_race_... checks the race)
    assert r["trial"] == best.number and len(r["runs"]) == 2
    assert len({run["seed"] for run in r["runs"]}) == 2
    assert r["test_acc_mean"] == pytest.approx(sum(run["test_acc"] for run in r["runs"]) / 2)
    assert "test accuracy" in result.stdout
    best_dir = tmp / "studies" / "tiny" / "best"
    card = json.loads((best_dir / "model_card.json").read_text())
    assert card["onnx_check"]["same_predictions"] == card["onnx_check"]["images"] == 256
    assert card["onnx_check"]["max_abs_diff"] < 1e-4
    assert card["params"] == best.user_attrs["params"]
    assert "test accuracy" in (best_dir / "MODEL_CARD.md").read_text()
    # The checkpoint rebuilds the model (weights_only) and agrees with the torch.export program.
    model, ckpt = load_checkpoint(best_dir / "checkpoint.pt")
    data = fm_data
    x = data.test.x[:64].float() / 255
    program = torch.export.load(str(best_dir / "model.pt2")).module()
    mean, std = torch.tensor(ckpt["mean"]).view(1, -1, 1, 1), torch.tensor(ckpt["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model((x - mean) / std), program(x), atol=1e-5)
    names = sorted(a.filename for a in optuna.artifacts.get_all_artifact_meta(study))
    assert names == sorted(["checkpoint.pt", "model.onnx", "model.int8.onnx", "model.pt2", "MODEL_CARD.md",
                            "model_card.json", "report.html"])


def test_race_trials_are_recorded_and_the_winner_has_the_best_mean(finished):
    """The top 2 distinct full-length candidates each got 1 race run (race_seeds 2: the search run is the other);
    the study's race standings are computed from storage, rank the race rounds (not the search split, which
    picked the finalists), and the retrained trial is the best of them."""
    _, _, result, study = finished
    race = [t for t in study.trials if "race_of" in t.user_attrs]
    completed = sorted((t for t in search_trials(study) if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    finalists = []
    for t in completed:
        if t.user_attrs["candidate"] not in [f.user_attrs["candidate"] for f in finalists]:
            finalists.append(t)
    finalists = finalists[:2]
    assert sorted(t.user_attrs["race_of"] for t in race) == sorted(f.number for f in finalists)
    for t in race:
        f = study.trials[t.user_attrs["race_of"]]
        assert t.params == f.params and t.user_attrs["candidate"] == f.user_attrs["candidate"]
        assert t.user_attrs["seed"] != f.user_attrs["seed"] and t.user_attrs["trained"]
        assert t.state == TrialState.COMPLETE and len(t.intermediate_values) == 1  # never pruned: full length
        assert t.user_attrs["race_fold"] == 1  # round 1: validated on a split of its own, not the search's
        assert t.user_attrs["val_images"] == 900 and f.user_attrs["val_images"] == 600  # race_val_fraction 0.3 of 3,000
    means = {f.number: next(t.value for t in race if t.user_attrs["race_of"] == f.number) for f in finalists}
    standings = study.user_attrs["race"]
    assert {row["trial"]: row["mean"] for row in standings} == pytest.approx(means)
    assert {row["trial"]: row["search_val"] for row in standings} == {f.number: f.value for f in finalists}
    best = max(means, key=lambda n: (means[n], study.trials[n].value))
    assert study.user_attrs["retrain"]["trial"] == best == standings[0]["trial"]
    assert "race: top 2 candidates x 2 seeds" in result.stdout


def test_rerun_resumes_and_tops_up(finished, tmp_path):
    import shutil

    src, space, _, _ = finished
    shutil.copytree(src / "studies", tmp_path / "studies")  # a copy: the shared study stays as the other tests expect
    again = in_process("nas-run", space, "--trials", 3, "--studies", tmp_path / "studies", "--workers", 1)
    assert again.returncode == 0 and "already retrained" in again.stdout
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/studies/tiny.db")
    assert len(search_trials(study)) == 3
    more = in_process("nas-run", space, "--trials", 4, "--studies", tmp_path / "studies", "--no-retrain", "--workers", 1)
    assert more.returncode == 0, more.stderr
    assert len(search_trials(study)) == 4


def test_nas_export_rewrites_formats_from_the_checkpoint(finished):
    import shutil
    import subprocess

    tmp, _, _, _ = finished
    out = tmp / "reexport"
    r = subprocess.run([shutil.which("nas-export"), "tiny", "--studies", str(tmp / "studies"), "--format", "onnx",
                        "--out", str(out)], capture_output=True, text=True, cwd=tmp)
    assert r.returncode == 0, r.stderr
    assert (out / "model.onnx").exists() and not (out / "model.pt2").exists()
    assert json.loads((out / "model_card.json").read_text())["onnx_check"]["same_predictions"] == 256


def _fake_train(model, *args, **kw):
    """Stands in for training where only the sampler is under test: 'accuracy' grows with size."""
    return History(val_acc=[count_params(model) / 8000], epoch_seconds=[1e-3], images=1)


def _rejection_shares(kind: str, seed: int, monkeypatch, data) -> tuple[float, float]:
    raw = tiny_space(model={"family": "convnet", "stages": [{"width": {"low": 4, "high": 64}, "depth": [1, 2, 3]}] * 3,
                            "head": ["gap", "gap_fc"], "fc_width": [0, 32]},
                     budget={"params": 8000}, search={"epochs": 1, "seed": seed, "sampler": kind, "max_rejections": 1000})
    space = S.parse(raw)
    monkeypatch.setattr(O, "train", _fake_train)
    worker = O.Objective(space, data, torch.device("cpu"), trials=10**6)
    study = optuna.create_study(direction="maximize", sampler=ST.make_sampler(space.search, seed))
    study.optimize(worker, n_trials=60)
    rejected = [t.user_attrs["end_reason"].startswith("rejected") for t in study.trials]
    return sum(rejected[:20]) / 20, sum(rejected[30:]) / 30


def test_sampler_learns_the_feasible_region_from_constraints(monkeypatch, fm_data):
    """With a budget that excludes most of the space, TPE (fed by Trial.set_constraint) proposes fewer
    over-budget candidates after ~30 asks; random sampling does not improve."""
    tpe = [_rejection_shares("tpe", s, monkeypatch, fm_data) for s in (0, 1)]
    rnd = [_rejection_shares("random", s, monkeypatch, fm_data) for s in (0, 1)]
    tpe_late = sum(late for _, late in tpe) / 2
    rnd_early, rnd_late = sum(e for e, _ in rnd) / 2, sum(late for _, late in rnd) / 2
    assert rnd_early > 0.8 and rnd_late > 0.8  # the budget excludes most of the space
    assert tpe_late < rnd_late - 0.25, (tpe, rnd)


def test_an_identical_candidate_is_not_trained_twice(monkeypatch, fm_data):
    fixed = tiny_space(model={"family": "convnet", "stages": [{"width": 8, "depth": 1}]},
                       train={"batch_size": 64, "optimizer": "adamw", "lr": 0.01})
    space = S.parse(fixed)
    calls = []
    monkeypatch.setattr(O, "train", lambda *a, **k: calls.append(1) or History(val_acc=[0.5], epoch_seconds=[1e-3], images=1))
    data = fm_data
    worker = O.Objective(space, data, torch.device("cpu"), trials=10)
    study = optuna.create_study(direction="maximize")
    study.optimize(worker, n_trials=3)
    assert len(calls) == 1
    assert [t.user_attrs["end_reason"] for t in study.trials] == ["completed", "duplicate_of:0", "duplicate_of:0"]
    assert [t.value for t in study.trials] == [0.5, 0.5, 0.5]
    assert [bool(t.user_attrs.get("trained")) for t in study.trials] == [True, False, False]


def _stand_in_train(curve):
    """Stands in for training where only the pruner and the first-epoch stop are under test: the validation accuracy
    `curve(recipe, epoch)`, one epoch at a time through the real on_epoch (report + should_prune), as train() calls
    it."""
    def fake_train(model, train_split, val_split, mean, std, recipe, epochs, on_epoch=None, deadline=None, **cheap):
        hist = History()
        for epoch in range(epochs):
            hist.val_acc.append(curve(recipe, epoch))
            hist.epoch_seconds.append(1e-3)
            reason = on_epoch(epoch, hist.val_acc[-1])
            if reason:
                hist.end_reason = reason
                break
        return hist

    return fake_train


_curve_train = _stand_in_train(lambda recipe, epoch: recipe.lr * (1 - 0.5 ** (epoch + 1)))  # set by the lr


@pytest.mark.parametrize("pruner", ["successive_halving", "hyperband"])
def test_trials_are_planned_full_length_and_survivors_of_every_rung_train_it(pruner, monkeypatch, fm_data):
    """search.epochs defaults to retrain.epochs; a pruned trial stopped exactly at a rung (min_epochs x factor^i);
    a trial that survives every rung reports all 9 epochs and is the completed value."""
    raw = tiny_space(search={"seed": 0, "pruner": pruner, "min_epochs": 1, "reduction_factor": 3, "race_top": 0,
                             "first_epoch_floor": 0},  # the curves start below chance: only the pruner stops them
                     retrain={"epochs": 9, "seeds": 1}, budget={})
    space = S.parse(raw)
    assert space.search.epochs == 9
    monkeypatch.setattr(O, "train", _curve_train)
    obj = O.Objective(space, fm_data, torch.device("cpu"), trials=10**6)
    # a fixed name: Hyperband assigns brackets by hashing the study name, and an unnamed study gets a random one
    study = optuna.create_study(study_name="rungs", direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0),
                                pruner=ST.make_pruner(space.search))
    study.optimize(obj, n_trials=30)
    trained = [t for t in study.trials if t.user_attrs.get("trained")]
    pruned = [t for t in trained if t.state == TrialState.PRUNED]
    done = [t for t in trained if t.state == TrialState.COMPLETE]
    assert pruned and done
    for t in pruned:
        assert t.user_attrs["end_reason"] == "pruned" and max(t.intermediate_values) in (1, 3)  # rungs at 1, 3 (9 is the end)
    for t in done:
        assert sorted(t.intermediate_values) == list(range(1, 10)) and t.value == t.intermediate_values[9]
    assert sum(t.user_attrs["epochs_run"] for t in trained) < 0.7 * 9 * len(trained)  # most stop early


# lr < 0.01 stays at chance (0.10, 10 classes); lr >= 0.01 starts slowly, just above twice chance (0.21), and climbs
_slow_or_stuck_train = _stand_in_train(lambda recipe, epoch: 0.10 if recipe.lr < 0.01 else 0.21 + 0.1 * epoch)


@pytest.mark.parametrize("floor", [2.0, 0.0])
def test_a_sampled_trial_at_chance_after_one_epoch_stops_and_a_slow_starter_goes_on(monkeypatch, fm_data, floor):
    """search.first_epoch_floor 2 (x chance, 0.2 with 10 classes): a sampled trial at chance after its first epoch
    ends `below_chance` (pruned, 1 epoch); one at 0.21 trains the full length; a design at chance is the user's
    reference and trains the full length too. 0 turns the stop off."""
    space = S.parse(tiny_space(search={"seed": 0, "pruner": "none", "race_top": 0, "first_epoch_floor": floor,
                                       "first_trials": [{"train.lr": 0.003}]}, retrain={"epochs": 4, "seeds": 1},
                               budget={}))
    monkeypatch.setattr(O, "train", _slow_or_stuck_train)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(space.search.first_trials[0], user_attrs=rec.first_trial_attrs(0))
    for lr in (0.004, 0.02):
        study.enqueue_trial({"train.lr": lr})
    study.optimize(O.Objective(space, fm_data, torch.device("cpu"), trials=3), n_trials=3)
    design, stuck, slow = study.trials
    assert [rec.read(t).end_reason for t in (design, slow)] == ["completed", "completed"]
    assert len(design.intermediate_values) == len(slow.intermediate_values) == 4
    if floor:
        assert rec.read(stuck).end_reason == "below_chance" and stuck.state == TrialState.PRUNED
        assert list(stuck.intermediate_values) == [1] and rec.is_trained(stuck)
    else:
        assert rec.read(stuck).end_reason == "completed" and len(stuck.intermediate_values) == 4


def test_a_net_diverged_to_chance_stops_after_one_epoch_where_a_good_one_trains_on(fm_data):
    """Real training: adamw at lr 10 collapses to predicting one class (0.10, no NaN to catch) and stops after its
    first epoch; lr 0.01 is far above the floor after one epoch and trains its 3."""
    space = S.parse(tiny_space(model={"family": "convnet", "stages": [{"width": 8, "depth": 1}, {"width": 16, "depth": 1}]},
                               train={"batch_size": 64, "optimizer": "adamw", "scheduler": "none",
                                      "lr": {"low": 0.001, "high": 10.0, "log": True}},
                               search={"seed": 0, "pruner": "none", "race_top": 0, "first_epoch_floor": 2},
                               retrain={"epochs": 3, "seeds": 1}))
    study = optuna.create_study(direction="maximize")
    for lr in (10.0, 0.01):
        study.enqueue_trial({"train.lr": lr})
    study.optimize(O.Objective(space, fm_data, torch.device("cpu"), trials=2), n_trials=2)
    diverged, good = study.trials
    assert rec.read(diverged).end_reason == "below_chance" and diverged.intermediate_values[1] <= 0.2
    assert rec.read(good).end_reason == "completed" and len(good.intermediate_values) == 3


def test_a_sampled_trial_trains_up_to_its_first_rung_on_a_share_of_the_images_and_a_design_on_all(fm_data):
    """search.first_rung_fraction 0.5 with the first rung after epoch 1: a sampled trial's first epoch trains on
    1,200 of the 2,400 images and every later one on all; a design trains the full fidelity throughout."""
    space = S.parse(tiny_space(budget={}, search={"seed": 0, "epochs": 3, "min_epochs": 1, "race_top": 0,
                                                  "first_rung_fraction": 0.5, "first_epoch_floor": 0,
                                                  "first_trials": [{"train.lr": 0.01}]}))
    study = optuna.create_study(direction="maximize", pruner=ST.make_pruner(space.search))
    study.enqueue_trial(space.search.first_trials[0], user_attrs=rec.first_trial_attrs(0))
    study.optimize(O.Objective(space, fm_data, torch.device("cpu"), trials=3), n_trials=3)
    design, *sampled = study.trials
    assert rec.read(design).images == 3 * 2368  # 37 batches of 64 a full epoch
    for t in sampled:
        r = rec.read(t)
        assert r.images == 1152 + 2368 * (r.epochs_run - 1)  # 18 batches of 64 in the cheap first epoch


def test_first_trials_are_trained_first_once_and_the_rest_is_sampled(tmp_path, fm_data):
    """search.first_trials: a known design is trial 0 with exactly its values (the left-out ones sampled); a
    resumed study does not enqueue it again, and a design added to the file on resume is trained next."""
    design = {"model.stage0.width": 24, "model.head": "gap", "train.lr": 0.01}
    space = S.parse(tiny_space(search={"epochs": 1, "seed": 0, "race_top": 0, "first_trials": [design]}))
    storage = f"sqlite:///{tmp_path / 'first.db'}"
    study = ST.open_study(space, storage)
    obj = O.Objective(space, fm_data, torch.device("cpu"), trials=2)
    study.optimize(obj, n_trials=2)
    first = study.trials[0]
    assert first.user_attrs["first_trial"] == 0 and first.user_attrs["trained"]
    assert {k: first.params[k] for k in design} == design
    assert "model.stage1.width" in first.params  # not in the design: sampled
    assert not any("first_trial" in t.user_attrs for t in study.trials[1:])
    again = ST.open_study(space, storage)  # resume
    assert not again.get_trials(states=(TrialState.WAITING,))
    added = {"model.stage0.width": 4, "train.lr": 0.02}
    edited = S.parse(tiny_space(search={"epochs": 1, "seed": 0, "race_top": 0, "first_trials": [design, added]}))
    resumed = ST.open_study(edited, storage)
    assert len(resumed.get_trials(states=(TrialState.WAITING,))) == 1
    resumed.optimize(O.Objective(edited, obj.data, torch.device("cpu"), trials=3), n_trials=1)
    third = resumed.trials[2]
    assert third.user_attrs["first_trial"] == 1 and {k: third.params[k] for k in added} == added


def test_a_first_trial_design_trains_the_full_length_where_the_pruner_would_stop_it(tmp_path, torch_threads, fm_data):
    """A design named in search.first_trials is the reference the search must beat: it is measured at full length.
    Here it joins a study whose rung (epoch 1, 1 in 8 goes on) it does not top, and trains all 3 epochs anyway.
    (Two torch threads whatever ran before: the rung's order depends on the numerics.)"""
    torch_threads(2)
    search = {"epochs": 3, "seed": 0, "race_top": 0, "pruner": "successive_halving", "min_epochs": 1,
              "reduction_factor": 8, "startup_trials": 2}
    space = S.parse(tiny_space(search=search, budget={"params": 100_000}))  # every candidate trains
    storage = f"sqlite:///{tmp_path / 'keep.db'}"
    obj = O.Objective(space, fm_data, torch.device("cpu"), trials=3)
    ST.open_study(space, storage).optimize(obj, n_trials=3)
    weak = {"model.stage0.width": 4, "model.stage1.width": 8, "model.stage1.depth": 1, "train.lr": 0.003}
    edited = S.parse(tiny_space(search=search | {"first_trials": [weak]}, budget={"params": 100_000}))
    study = ST.open_study(edited, storage)
    study.optimize(O.Objective(edited, obj.data, torch.device("cpu"), trials=4), n_trials=1)
    design = study.trials[3]
    assert design.user_attrs["first_trial"] == 0 and design.user_attrs["end_reason"] == "completed"
    assert sorted(design.intermediate_values) == [1, 2, 3] and design.value == design.intermediate_values[3]
    others = [t.intermediate_values[1] for t in study.trials[:3]]
    assert design.intermediate_values[1] < max(others)  # not the best at the rung: SH would have stopped it


def test_search_data_fraction_applies_to_race_rounds_too(fm_data):
    """search.data_fraction: the search and every race round train on the same share of their training split,
    and a race round validates on as many images as the search."""
    space = S.parse(tiny_space(search={"epochs": 1, "seed": 0, "data_fraction": 0.5}))
    obj = O.Objective(space, fm_data, torch.device("cpu"), trials=1)
    search_train, search_val = obj.splits(None)
    race_train, race_val = obj.splits(1)
    assert len(search_train) == len(race_train) == len(obj.data.train) // 2 and search_val is obj.data.val
    assert len(race_val) == len(search_val) and torch.bincount(search_train.y).tolist() == [120] * 10


def _search(**keys) -> S.SearchConfig:
    """A search section with these keys, the rest as tiny_space() sets them."""
    return S.parse(tiny_space(search={"epochs": 1, **keys})).search


def test_race_ranks_its_rounds_and_the_search_split_only_breaks_ties():
    """The search split picked the finalists, so the race ranks the mean over its own rounds; equal means (the
    same 800-image accuracies summed in another order) go to the better search value, then to the order."""
    from optuna.distributions import FloatDistribution
    from search import race as R

    study = optuna.create_study(direction="maximize")
    dist = {"x": FloatDistribution(0, 1)}

    def add(value, x, **attrs):
        study.add_trial(optuna.trial.create_trial(value=value, params={"x": x}, distributions=dist,
                                                  user_attrs={"trained": True, "candidate": stored_candidate(x=x), **attrs}))

    add(0.8925, 0.1)  # 0: best on the search split
    add(0.8788, 0.2)  # 1
    add(0.8775, 0.3)  # 2
    add(0.8600, 0.4)  # 3: not a finalist
    for f, vals in ((0, (0.8900, 0.8725)), (1, (0.89375, 0.8825)), (2, (0.8775, 0.8575))):
        for r, v in enumerate(vals, 1):
            add(v, f / 10 + 0.1, race_of=f, race_fold=r)
    race = _search(race_top=3, race_first_trials=True, race_margin=0.0)
    rows = R.standings(study.trials, race)
    assert [r.trial for r in rows] == [1, 0, 2]  # counted as a third seed, the search value would tie 0 and 1
    assert rows[0].val_accs == [0.89375, 0.8825] and rows[0].search_val == 0.8788
    assert rows[0].mean == pytest.approx((0.89375 + 0.8825) / 2)
    assert R.winner(study.trials, race).number == 1

    tied = optuna.create_study(direction="maximize")
    for value, x in ((0.87, 0.1), (0.88, 0.2)):
        tied.add_trial(optuna.trial.create_trial(value=value, params={"x": x}, distributions=dist,
                                                 user_attrs={"trained": True, "candidate": stored_candidate(x=x)}))
    for f, vals in ((0, (0.9, 0.8, 0.7)), (1, (0.7, 0.9, 0.8))):  # equal means, summed in another order
        for r, v in enumerate(vals, 1):
            tied.add_trial(optuna.trial.create_trial(value=v, params={"x": f / 10 + 0.1}, distributions=dist,
                                                     user_attrs={"trained": True, "candidate": stored_candidate(x=f / 10 + 0.1),
                                                                 "race_of": f, "race_fold": r}))
    assert [r.trial for r in R.standings(tied.trials, replace(race, race_top=2))] == [1, 0]  # the tie goes to the better search value


def test_first_trials_designs_race_wherever_they_ranked_and_their_search_run_counts():
    """The designs the user named are finalists even below the top race_top (once, where they are in it), and
    their search run counts as a seed (they race for being named, not for their rank); a sampled finalist's search
    value does not. `race_first_trials: false` and `race_top: 0` leave them out."""
    from optuna.distributions import FloatDistribution
    from search import race as R

    study = optuna.create_study(direction="maximize")
    dist = {"x": FloatDistribution(0, 1)}

    def add(value, x, **attrs):
        study.add_trial(optuna.trial.create_trial(value=value, params={"x": x}, distributions=dist,
                                                  user_attrs={"trained": True, "candidate": stored_candidate(x=x), **attrs}))

    add(0.860, 0.1, first_trial=0)  # 0: a design, 4th on the search split
    add(0.870, 0.2, first_trial=1)  # 1: a design among the top 2
    add(0.880, 0.3)  # 2
    add(0.865, 0.4)  # 3: 3rd, not a finalist
    add(0.850, 0.5)  # 4
    race = _search(race_top=2, race_first_trials=True, race_seeds=2, race_margin=0.0)
    assert [t.number for t in R.finalists(study.trials, race)] == [2, 1, 0]
    assert [t.number for t in R.finalists(study.trials, replace(race, race_first_trials=False))] == [2, 1]
    assert [t.number for t in R.finalists(study.trials, replace(race, race_top=0))] == [2]
    assert R.enqueue(study, race) == 3
    queued = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert {t.user_attrs["race_of"]: t.system_attrs["fixed_params"]["x"] for t in queued} == {0: 0.1, 1: 0.2, 2: 0.3}
    assert R.enqueue(study, race) == 3  # a resumed race queues nothing twice
    for f, v in ((2, 0.869), (1, 0.864), (0, 0.872)):
        add(v, next(t.params["x"] for t in study.trials if t.number == f), race_of=f, race_fold=1)
    rows = R.standings(study.trials, race)
    # trial 2's search value (0.880) picked it: only its round counts (0.869); the designs' search runs count
    assert [(r.trial, r.first_trial, round(r.mean, 4)) for r in rows] == [(2, None, 0.869), (1, 1, 0.867), (0, 0, 0.866)]
    assert [r.search_counts for r in rows] == [False, True, True] and rows[1].val_accs == [0.864]
    assert R.winner(study.trials, race).number == 2
    plain = R.standings(study.trials, replace(race, race_first_trials=False))  # designs picked for their rank: rounds only
    assert [(r.trial, r.mean) for r in plain] == [(2, 0.869), (1, 0.864)]


def test_a_sampled_finalist_replaces_the_best_design_only_beyond_race_margin():
    """Ahead of the best raced design by no more than race_margin: the design wins (`kept`); further ahead, the
    sampled finalist does; margin 0: the best mean. Between designs the best mean wins."""
    from optuna.distributions import FloatDistribution
    from search import race as R

    def study_of(round_of_sampled):
        study = optuna.create_study(direction="maximize")
        dist = {"x": FloatDistribution(0, 1)}

        def add(value, x, **attrs):
            study.add_trial(optuna.trial.create_trial(value=value, params={"x": x}, distributions=dist,
                                                      user_attrs={"trained": True, "candidate": stored_candidate(x=x), **attrs}))

        add(0.866, 0.1, first_trial=0)  # 0: the hand net, mean (0.866 + 0.864) / 2 = 0.865
        add(0.860, 0.2, first_trial=1)  # 1: another design, mean 0.861
        add(0.880, 0.3)  # 2: sampled, first on the search split
        for f, v in ((0, 0.864), (1, 0.862), (2, round_of_sampled)):
            add(v, f / 10 + 0.1, race_of=f, race_fold=1)
        return study.trials

    race = _search(race_top=1, race_first_trials=True, race_seeds=2, race_margin=0.005)
    close, clear = study_of(0.869), study_of(0.871)  # 0.4 pt and 0.6 pt ahead of the hand net's 0.865
    rows = R.standings(close, race)
    assert [r.trial for r in rows] == [0, 2, 1] and rows[0].kept and R.winner(close, race).number == 0
    assert [r.trial for r in R.standings(clear, race)] == [2, 0, 1] and R.winner(clear, race).number == 2
    assert R.winner(close, replace(race, race_margin=0.0)).number == 2
    behind = study_of(0.850)
    assert R.winner(behind, race).number == 0 and not R.standings(behind, race)[0].kept
