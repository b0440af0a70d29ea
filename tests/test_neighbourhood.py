"""search.startup: neighbourhood: the first sampled trials change 1-3 parameters of the best full-length trial so far
(and follow a new best), then the wrapped sampler proposes as it would alone."""
from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from search import neighbourhood as NB

DISTS = {"a": CategoricalDistribution(["x", "y", "z"]), "b": IntDistribution(1, 10), "c": FloatDistribution(0.0, 1.0),
         "d": FloatDistribution(1e-3, 1.0, log=True), "e": CategoricalDistribution([False, True])}
DESIGN = {"a": "x", "b": 5, "c": 0.5, "d": 0.01, "e": False}


def _study(startup: int, seed: int = 0) -> optuna.Study:
    sampler = NB.NeighbourhoodSampler(optuna.samplers.RandomSampler(seed=seed), startup=startup, study_seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.add_trial(optuna.trial.create_trial(value=0.80, params=DESIGN, distributions=DISTS,
                                              user_attrs={"trained": True, "first_trial": 0},
                                              system_attrs={"fixed_params": DESIGN}))  # an enqueued design
    return study


def _ask(study: optuna.Study, value: float | None = 0.5, complete: bool = False) -> dict:
    """A sampled trial that trains: pruned (as most are), or completed at `value`."""
    trial = study.ask(DISTS)
    trial.set_user_attr("trained", True)
    study.tell(trial, value if complete else None, state=None if complete else optuna.trial.TrialState.PRUNED)
    return trial.params


def _changed(params: dict, incumbent: dict) -> set[str]:
    return {name for name in DISTS if params[name] != incumbent[name]}


def test_start_up_trials_change_one_to_three_parameters_of_the_incumbent_and_follow_a_new_one():
    study = _study(startup=8)
    sizes = set()
    for _ in range(4):
        changed = _changed(_ask(study), DESIGN)
        assert 1 <= len(changed) <= 3
        sizes.add(len(changed))
    better = _ask(study, 0.90, complete=True)  # a neighbour that trained the full length, ahead of the design
    assert 1 <= len(_changed(better, DESIGN)) <= 3
    for _ in range(3):
        assert 1 <= len(_changed(_ask(study), better)) <= 3  # around the new incumbent now
    assert len(sizes) > 1  # 1, 2 or 3: not always the same number
    after = [_changed(_ask(study), better) for _ in range(4)]  # 8 sampled trials trained: the wrapped sampler's turn
    assert any(len(c) > 3 for c in after)


def test_no_incumbent_yet_or_no_start_up_left_is_the_wrapped_samplers_proposal():
    study = optuna.create_study(direction="maximize", sampler=NB.NeighbourhoodSampler(
        optuna.samplers.RandomSampler(seed=3), startup=10, study_seed=3))
    alone = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))
    assert study.ask(DISTS).params == alone.ask(DISTS).params  # nothing reached the full length yet


def test_the_start_up_is_reproducible_from_the_study_seed():
    assert [_ask(_study(8, seed=1)) for _ in range(1)] == [_ask(_study(8, seed=1)) for _ in range(1)]
    a, b = _study(8, seed=1), _study(8, seed=2)
    assert [_ask(a) for _ in range(3)] != [_ask(b) for _ in range(3)]


def test_a_changed_value_is_another_choice_or_a_fresh_draw_in_range():
    import random

    rng = random.Random(0)
    for _ in range(50):
        assert NB.draw(DISTS["a"], "x", rng) in ("y", "z")
        assert NB.draw(DISTS["e"], False, rng) is True
        assert 1 <= NB.draw(DISTS["b"], 5, rng) <= 10 and NB.draw(DISTS["b"], 5, rng) != 5
        assert 1e-3 <= NB.draw(DISTS["d"], 0.01, rng) <= 1.0
    stepped = FloatDistribution(0.0, 1.0, step=0.25)
    assert {NB.draw(stepped, 0.5, rng) for _ in range(50)} <= {0.0, 0.25, 0.75, 1.0}


def test_a_study_with_neighbourhood_start_up_searches_around_its_design(tmp_path, fm_data):
    """Wired through open_study: after the design trains the full length, each sampled trial of a real study changes
    1-3 of the 5 searched parameters of the best full-length trial before it (1-epoch trials: all full length)."""
    import torch

    from helpers import tiny_space
    from search import objective as O
    from search import record as rec
    from search import space as S
    from search import study as ST
    from search.storage import make_storage

    design = {"model.stage0.width": 8, "model.stage1.width": 16, "model.stage1.depth": 1, "model.head": "gap",
              "train.lr": 0.01}
    space = S.parse(tiny_space(budget={}, search={"seed": 0, "startup": "neighbourhood", "startup_trials": 10,
                                                  "race_top": 0, "first_trials": [design]}))
    study = ST.open_study(space, make_storage(f"sqlite:///{tmp_path}/n.db"))
    assert isinstance(study.sampler, NB.NeighbourhoodSampler)
    study.optimize(O.Objective(space, fm_data, torch.device("cpu"), trials=5), n_trials=5)
    first, *sampled = rec.trained(study.trials)
    assert first.params == design and len(sampled) == 4
    for t in sampled:
        incumbent = max((u for u in study.trials if u.number < t.number), key=lambda u: u.value)
        assert 1 <= len({n for n in design if t.params[n] != incumbent.params[n]}) <= 3
