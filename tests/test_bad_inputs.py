"""Bad input: one line on stderr naming the file/key/flag and what was expected, exit 2 (1 for an
unreachable database), no traceback, and no study storage or output written."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

from conftest import nas_run, tiny_space, write_space
from search import cli

BAD = Path(__file__).parent / "bad_inputs"
CASES = yaml.safe_load((BAD / "cases.yaml").read_text())


def _apply(space: dict, changes: dict, tmp: Path) -> dict:
    space = copy.deepcopy(space)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = space
        for p in parents:
            node = node.setdefault(p, {})
        if isinstance(value, str):
            value = value.format(tmp=tmp)
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return space


def _prepare(case: dict, tmp: Path) -> list[str]:
    (tmp / "empty").mkdir()
    (tmp / "a_file").write_text("not a directory")
    if "file" in case:
        space_path = BAD / case["file"]
    else:
        space_path = write_space(tmp / "space.yaml", _apply(tiny_space(), case.get("set", {}), tmp))
    args = [str(a).format(tmp=tmp) for a in case.get("args", [])]
    return [str(space_path), "--studies", str(tmp / "studies"), *args]


def _written(tmp: Path) -> list[Path]:
    return [p for p in tmp.rglob("*") if p.suffix == ".db" or "studies" in p.parts]


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30
    assert len({c["id"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input(case, tmp_path, capsys):
    if case.get("needs_no_cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so --device cuda is valid here")
    argv = _prepare(case, tmp_path)
    try:
        status = cli.main(argv)
    except SystemExit as e:  # argparse
        status = e.code
    err = capsys.readouterr().err.strip()
    assert status == case.get("status", 2), err
    assert len(err.splitlines()) == 1, f"expected one line, got:\n{err}"
    assert case["expect"] in err
    assert "Traceback" not in err
    if "file" not in case and "{tmp}" not in str(case.get("args")) and case["id"] != "unknown_flag":
        assert "space.yaml" in err or "--" in err  # names the file or the flag
    assert not _written(tmp_path), f"wrote {_written(tmp_path)}"


@pytest.mark.parametrize("case_id", ["unknown_optimizer", "malformed_storage_url", "trials_zero"])
def test_bad_input_through_the_console_script(case_id, tmp_path):
    """The same contract from the installed `nas-run` executable, as a user sees it."""
    case = next(c for c in CASES if c["id"] == case_id)
    result = nas_run(*_prepare(case, tmp_path))
    assert result.returncode == case.get("status", 2)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert case["expect"] in result.stderr and "Traceback" not in result.stderr
    assert not _written(tmp_path)
