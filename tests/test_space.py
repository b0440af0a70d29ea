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
