"""Bad input: one line on stderr naming the file/key/flag and what was expected, exit 2 (1 for an
unreachable database), no traceback, and no study storage or output written."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

from helpers import nas_run, tiny_space, write_space
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


def _png(path: Path, size=(28, 28), channels: int = 1) -> None:
    from torchvision.io import encode_png

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(encode_png(torch.randint(0, 256, (channels, *size), dtype=torch.uint8)).numpy()))


def _make(kind: str, data: Path) -> None:
    """Bad own data under `data` (a folder, or data/x.npz)."""
    import numpy as np

    good = {"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.array([0, 1, 0, 1]),
            "x_test": np.zeros((2, 8, 8), np.uint8), "y_test": np.array([0, 1])}
    if kind.startswith("npz_"):
        data.mkdir()
        arrays = dict(good)
        if kind == "npz_missing_key":
            arrays.pop("y_test")
        elif kind == "npz_lengths":
            arrays["y_train"] = np.array([0, 1, 0])
        elif kind == "npz_label_range":
            arrays["y_test"] = np.array([0, 7])
            arrays["class_names"] = np.array(["a", "b"])
        elif kind == "npz_label_float":
            arrays["y_train"] = np.array([0.5, 1, 0, 1])
        np.savez(data / "x.npz", **arrays)
        return
    files = {"one_class": ["train/a/1.png"], "empty_class": ["a/1.png", "b/notes.txt"],
             "corrupt": ["a/1.png", "b/2.png"], "truncated": ["a/1.png", "b/2.png"], "mixed_sizes": ["a/1.png", "b/2.png"],
             "test_class": ["train/a/1.png", "train/b/2.png", "test/c/3.png"], "fine": ["a/1.png", "b/2.png"]}[kind]
    for name in files:
        _png(data / name, (20, 20) if kind == "mixed_sizes" and name.startswith("b") else (28, 28))
    (data / "b" / "notes.txt").write_text("x") if kind == "empty_class" else None
    if kind == "empty_class":
        (data / "b" / "2.png").unlink(missing_ok=True)
    if kind == "corrupt":
        (data / "b" / "2.png").write_bytes(b"\x89PNG but nothing else")
    if kind == "truncated":
        whole = (data / "b" / "2.png").read_bytes()
        (data / "b" / "2.png").write_bytes(whole[: len(whole) // 2])


def _prepare(case: dict, tmp: Path, monkeypatch=None) -> list[str]:
    (tmp / "empty").mkdir()
    (tmp / "a_file").write_text("not a directory")
    if "make" in case:
        _make(case["make"], tmp / "data")
    if "memory" in case and monkeypatch is not None:
        from search import images

        monkeypatch.setattr(images, "available_memory", lambda: case["memory"])
    if "file" in case:
        space_path = BAD / case["file"]
    else:
        space_path = write_space(tmp / "space.yaml", _apply(tiny_space(), case.get("set", {}), tmp))
    args = [str(a).format(tmp=tmp) for a in case.get("args", [])]
    return [str(space_path), "--studies", str(tmp / "studies"), *args]


def _written(tmp: Path) -> list[Path]:
    return [p for p in tmp.rglob("*") if p.suffix in (".db", ".pt") or "studies" in p.parts]


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30
    assert len({c["id"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input(case, tmp_path, capsys, monkeypatch):
    if case.get("needs_no_cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA, so --device cuda is valid here")
    argv = _prepare(case, tmp_path, monkeypatch)
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
