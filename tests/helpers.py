"""Helpers the tests share: the real data slice, spaces, running the console scripts, and what a test needs that
may be missing (fails under CI=true, skips elsewhere). Fixtures live in conftest.py."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FM_SLICE = ROOT / "tests" / "data" / "fashion_mnist"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, what: str):
    """Fail under CI, skip elsewhere, when something a test needs is missing."""
    if not condition:
        if CI:
            pytest.fail(f"CI=true but {what} is missing: .ci/run must provide it")
        pytest.skip(f"{what} is missing")

def chromium(*args, timeout=90) -> str:
    """Debian's headless chromium with `args` -> its stdout (e.g. --dump-dom URL)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    need(exe is not None, "chromium (apt-get install chromium)")
    r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--virtual-time-budget=20000", *args], capture_output=True, text=True, timeout=timeout)
    return r.stdout

def stored_candidate(**model) -> dict:
    """A candidate as a trial stores it (record.Candidate's JSON), for trials a test writes by hand."""
    from search.record import Candidate
    from search.space import recipe

    return Candidate("convnet", model, recipe(lr=0.01)).to_json()


def tiny_space(**over) -> dict:
    """A small real-data space on the Fashion-MNIST slice; `over` replaces whole sections or keys."""
    space = {
        "name": "tiny",
        "data": {"dataset": "fashion_mnist", "root": str(FM_SLICE), "val_fraction": 0.2},
        "model": {
            "family": "convnet",
            "stages": [{"width": [4, 8, 24], "depth": 1}, {"width": [8, 16, 32], "depth": [1, 2]}],
            "head": ["gap", "flatten_fc"],
        },
        "train": {"batch_size": 64, "optimizer": "adamw", "lr": {"low": 0.003, "high": 0.03, "log": True}},
        "budget": {"params": 6000},
        "search": {"epochs": 1, "startup_trials": 2, "seed": 0, "race_top": 2, "race_seeds": 2},
        "retrain": {"epochs": 1, "seeds": 2},
    }
    for key, value in over.items():
        space[key] = value
    return space

def write_space(path: Path, space: dict) -> Path:
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path

def study_once_created(db: Path, name: str):
    """The study in the SQLite file `db` once the nas-run writing it has created it, else None. Looks through a
    read-only connection first: an Optuna reader opening a half-created file runs its own CREATE TABLEs and races the
    writer's ("table studies already exists", for one or both)."""
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            ready = (con.execute("SELECT count(*) FROM alembic_version").fetchone()[0] > 0  # Optuna stamps it last
                     and con.execute("SELECT count(*) FROM studies WHERE study_name = ?", (name,)).fetchone()[0] > 0)
        finally:
            con.close()
    except sqlite3.OperationalError:  # no such table yet, or locked by the writer
        return None
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}") if ready else None

def search_trials(study) -> list:
    """Trained search trials (race runs excluded)."""
    return [t for t in study.trials if t.user_attrs.get("trained") and "race_of" not in t.user_attrs]

def console_script(name: str, *args, timeout=600, **kw) -> subprocess.CompletedProcess:
    """An installed console script (nas-run, nas-report ...), as a user runs it."""
    exe = shutil.which(name) or sys.exit(f"{name} is not installed: pip install -e '.[test]'")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)

def nas_run(*args, **kw) -> subprocess.CompletedProcess:
    return console_script("nas-run", *args, **kw)

def in_process(script: str, *args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """A console script's main() (the function the installed script calls) run in this process -> CompletedProcess.
    It saves the new interpreter's imports of torch and the rest (~7 s). For commands whose own process is not under
    test; signals, exits and concurrency need console_script."""
    import contextlib
    import io
    from importlib.metadata import entry_points

    import torch

    main = entry_points(group="console_scripts")[script].load()  # what pyproject's [project.scripts] installs
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8") for _ in range(2))  # the console reconfigures stdout
    threads = torch.get_num_threads()
    try:
        with contextlib.chdir(cwd or Path.cwd()), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([str(a) for a in args])
    finally:
        torch.set_num_threads(threads)
    text = []
    for stream in (out, err):
        stream.flush()
        text.append(stream.buffer.getvalue().decode())
    return subprocess.CompletedProcess([script, *map(str, args)], status, *text)


WORDS = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


def write_image_folder(root: Path, ext: str = "png", channels: int = 1, size: int | None = None, test: bool = True,
                       cut: int | None = None, per_class: int | None = None) -> Path:
    """The real Fashion-MNIST slice (tests/data) written out as an image folder: root/train/<word>/i.ext (and
    root/test/<word>/..., or, with test=False, the class folders straight under root), in `channels` channels,
    resized to `size`; class `cut` keeps a tenth of its training images; `per_class` caps every class."""
    from torchvision.io import encode_jpeg, encode_png

    from search import data as D
    from search.decode import resize, to_channels
    from search.space import data_config

    raw = D._cached_raw(data_config(dataset="fashion_mnist", root=str(FM_SLICE)))
    for split, x, y in (("train", raw["train_x"], raw["train_y"]), ("test", raw["test_x"], raw["test_y"])):
        if split == "test" and not test:
            continue
        x = to_channels(x, channels)
        if size:
            x = resize(x, (size, size))
        for c in range(10):
            idx = (y == c).nonzero().squeeze(1)
            keep = len(idx) // 10 if (split == "train" and c == cut) else per_class or len(idx)
            folder = (root / split if test else root) / WORDS[c]
            folder.mkdir(parents=True, exist_ok=True)
            for i in idx[:keep].tolist():
                data = encode_png(x[i]) if ext == "png" else encode_jpeg(x[i], quality=95)
                (folder / f"{i:05d}.{ext}").write_bytes(bytes(data.numpy().tobytes()))
    return root
