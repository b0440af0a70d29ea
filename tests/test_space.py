"""The space grammar: scalars fixed, lists choices, mappings ranges; candidates store as plain JSON."""
from __future__ import annotations

import json

import optuna
import pytest

import models
from helpers import ROOT, tiny_space, write_space
from search.catalogue import DATASETS, builtin_meta
from search import space as S
from search.errors import SpaceError
from search.record import Candidate

SPACES = sorted((ROOT / "spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_shipped_spaces_load_and_sample_buildable_json_candidates(path):
    space = S.load(path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        cand = space.sample(study.ask(), builtin_meta(space.data))
        assert Candidate.from_json(json.loads(json.dumps(cand.to_json()))) == cand
        cand.build()


def test_grammar(tmp_path):
    raw = tiny_space(train={"batch_size": 32, "optimizer": ["sgd", "adam"], "lr": {"low": 1e-3, "high": 1e-1, "log": True},
                            "weight_decay": {"low": 0, "high": 0.001, "step": 0.0005}, "augment": {"crop": [0, 2]}})
    space = S.parse(raw, "x.yaml")
    assert space.train["batch_size"].value == 32
    assert space.train["optimizer"].choices == ("sgd", "adam")
    lr = space.train["lr"]
    assert (lr.low, lr.high, lr.log, lr.is_int) == (1e-3, 1e-1, True, False)
    assert space.stages[1]["depth"].choices == (1, 2)
    assert space.search.epochs == 1 and space.retrain.train_on == "train+val"  # defaults filled in
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    cand = space.sample(trial, DATASETS["fashion_mnist"])
    assert set(trial.params) == {"model.stage0.width", "model.stage1.width", "model.stage1.depth", "model.head",
                                 "train.optimizer", "train.lr", "train.weight_decay", "train.augment.crop"}
    assert cand.model["in_channels"] == 1 and len(cand.widths) == 2
    assert cand.train.weight_decay in (0.0, 0.0005, 0.001) and cand.train.augment.crop in (0, 2)
    # The same parameters give the same candidate (retrain rebuilds the winner this way).
    assert space.sample(optuna.trial.FixedTrial(trial.params), DATASETS["fashion_mnist"]) == cand


def test_yaml_exponent_floats_are_numbers(tmp_path):
    """PyYAML reads `1e-3` as a string (YAML 1.1); the space loader reads it as the number a person meant."""
    path = tmp_path / "s.yaml"
    path.write_text(write_space(tmp_path / "base.yaml", tiny_space()).read_text().replace("0.003", "3e-3"))
    assert S.load(path).train["lr"].low == 0.003


def test_error_names_file_key_and_expected_form():
    with pytest.raises(SpaceError) as e:
        S.parse(tiny_space(train={"lr": {"low": 0.5, "high": 0.1}}), "spaces/x.yaml")
    assert str(e.value) == "spaces/x.yaml: train.lr: expected low <= high, got 'low=0.5, high=0.1'"


def test_every_model_field_but_dataset_ones_is_searchable():
    for family in models.names():
        plain, stage = S._model_specs(family)
        assert set(stage) == {f[:-1] for f in models.per_stage_fields(family)}
        assert not set(plain) & set(S.SET_BY_DATASET)


CONDITIONAL_TRAIN = {"batch_size": 64, "optimizer": ["sgd", "adamw"],
                     "lr": {"by": "optimizer", "sgd": {"low": 0.02, "high": 0.3, "log": True},
                            "adamw": {"low": 0.001, "high": 0.01, "log": True}},
                     "weight_decay": {"by": "train.optimizer", "sgd": 5e-4, "adamw": [0.01, 0.05]}}


def test_a_conditional_range_samples_only_the_active_branch_under_its_own_name():
    space = S.parse(tiny_space(train=CONDITIONAL_TRAIN), "x.yaml")
    assert space.conditionals() == {"train.lr": "train.optimizer", "train.weight_decay": "train.optimizer"}
    assert {"train.lr.sgd", "train.lr.adamw", "train.weight_decay.adamw"} <= set(space.params())
    assert "train.lr" not in space.params()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        cand = space.sample(trial, DATASETS["fashion_mnist"])
        opt, other = cand.train.optimizer, {"sgd": "adamw", "adamw": "sgd"}[cand.train.optimizer]
        assert trial.params[f"train.lr.{opt}"] == cand.train.lr and f"train.lr.{other}" not in trial.params
        assert 0.02 <= cand.train.lr <= 0.3 if opt == "sgd" else 0.001 <= cand.train.lr <= 0.01
        assert cand.train.weight_decay == 5e-4 if opt == "sgd" else cand.train.weight_decay in (0.01, 0.05)
        assert space.sample(optuna.trial.FixedTrial(trial.params), DATASETS["fashion_mnist"]) == cand  # the retrain's way
        seen.add(opt)
    assert seen == {"sgd", "adamw"}


def test_a_space_without_conditional_keys_samples_in_the_files_order():
    """The conditional keys come last; without them the suggest order (and so every seeded sample) is the file's."""
    space = S.parse(tiny_space(), "x.yaml")
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    space.sample(trial, DATASETS["fashion_mnist"])
    assert list(trial.params) == ["model.head", "model.stage0.width", "model.stage1.width", "model.stage1.depth",
                                  "train.lr"]


def test_a_design_names_a_branch_and_tpe_models_the_branches_jointly(tmp_path):
    from helpers import in_process
    from search import record as rec
    from search import study as ST

    raw = tiny_space(train=CONDITIONAL_TRAIN, budget={})
    raw["search"].update(first_trials=[{"train.optimizer": "sgd", "train.lr.sgd": 0.1}], race_top=1)
    space = write_space(tmp_path / "cond.yaml", raw)
    assert ST.make_sampler(S.load(space).search, 0, conditional=True)._group  # the joint model per group of params
    r = in_process("nas-run", space, "--trials", 4, "--studies", tmp_path / "studies", "--workers", 1,
                   "--format", "checkpoint")
    assert r.returncode == 0, r.stderr
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/studies/tiny.db")
    design = study.trials[0]
    assert design.params["train.lr.sgd"] == 0.1 and rec.read(design).candidate.train.lr == 0.1
    for t in rec.trained(study.trials):
        branch = f"train.lr.{t.params['train.optimizer']}"
        assert branch in t.params and rec.read(t).candidate.train.lr == t.params[branch]
    page = (tmp_path / "studies" / "tiny" / "report.html").read_text()
    assert "Sensitivity" in page and "sampled full-length trials beat the best design (trial 0" in page
