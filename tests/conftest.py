"""Fixtures. Tests run on real images (tests/data) and real SQLite / PostgreSQL storages; the helpers they share
are in helpers.py.

Under CI=true a missing tool (chromium, a PostgreSQL server) fails the test that needs it; elsewhere it
is skipped with the reason, so a developer without them still runs the rest.
"""
from __future__ import annotations

import os

import pytest

from helpers import FM_SLICE, nas_run, tiny_space, write_space
@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
    os.environ["NAS_RUN_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def torch_threads():
    """Set this process's torch thread count for one test (numerics depend on it), restored after."""
    import torch

    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def pytest_addoption(parser):
    parser.addoption("--reverse", action="store_true", help="run the tests in reverse order (order independence)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse"):
        items.reverse()


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """`nas-run tiny.yaml --trials 3`: a real study on the Fashion-MNIST slice, 1 epoch per trial, its winner
    retrained on 2 seeds and exported. Shared by the study and dashboard tests."""
    import optuna

    tmp = tmp_path_factory.mktemp("e2e")
    raw = tiny_space()
    raw["search"]["race_val_fraction"] = 0.3  # race rounds validate on 900 images, the search on 600
    space = write_space(tmp / "tiny.yaml", raw)
    result = nas_run(space, "--trials", 3, "--studies", tmp / "studies", cwd=tmp)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp}/studies/tiny.db")
    return tmp, space, result, study


@pytest.fixture(scope="session")
def fm_data():
    """The Fashion-MNIST slice loaded once (val_fraction 0.2, seed 0, on the CPU): 2,400 training, 600 validation
    and 1,000 test images. Read-only: a test that changes tensors makes its own copy."""
    from search import data as D
    from search.space import data_config

    return D.load(data_config(dataset="fashion_mnist", root=str(FM_SLICE), val_fraction=0.2), "cpu", 0)
