"""Own images as they really come, measured (issue #36).

    python tests/benchmarks/images_as_they_come.py exif [--work /tmp/iatc] [--old CHECKOUT] [--repeats 3]
        Fashion-MNIST test images as 64-px colour JPEGs (10,000) and as 256-px ones (2,000, closer to a photo),
        each stored sideways with EXIF orientation 6, the way a phone writes them; the 256-px ones decoded at their own
        size and resized to 64 px (data.image_size, as nas-init sets it for large images). The folder decode
        per file (images.decode, one thread: what each decoding process does) of today's code (which turns them
        upright) against CHECKOUT's (the code before it, which ignores the tag: `git archive f9bd563 search models |
        tar -x -C CHECKOUT`), in one process, interleaved, `repeats` passes each; the fastest pass's images/s of
        each and the ratio. Every file is read once first, so neither pays the disk.

    python tests/benchmarks/images_as_they_come.py imbalanced [--work /tmp/iatc] [--train 4000] [--minutes 6]
                                                               [--seeds 0 1 2]
        A 10:1 imbalanced 28-px PNG folder: `--train` Fashion training images drawn stratified (vs_hand.build_task)
        with three classes (shirt, pullover, coat: the ones most often confused) cut to a tenth, tested on the balanced
        10,000 test images. `nas-init --minutes M` writes its space (it picks balanced_accuracy and lets the search
        weight the loss by class); nas-run then searches it with search.metric balanced_accuracy and with accuracy at
        the same --minutes and study seed, one after the other (--workers auto). Per run: the winner's test balanced
        accuracy and accuracy (mean ± std over its retrain seeds), its class_weight, and the exported model's recall of
        each cut class. Rows go to WORK/imbalanced.jsonl; the table is printed at the end (and by `--table`).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))

CUT = ("shirt", "pullover", "coat")  # the classes cut to a tenth


def _names() -> list[str]:
    from search.catalogue import DATASETS

    return [n.replace("/", "-").replace(" ", "_").lower() for n in DATASETS["fashion_mnist"].class_names]


# --- EXIF decode speed ---

def _jpeg_folder(out: Path, side: int, n: int) -> Path:
    """n test images as side-px colour JPEGs stored sideways (turned a quarter counter-clockwise) with orientation 6."""
    if out.exists():
        return out
    import numpy as np
    from PIL import Image

    from search import data as D
    from search.decode import resize, to_channels
    from vs_hand import SOURCE

    x = D._read_idx(SOURCE / "t10k-images-idx3-ubyte.gz")[:n].unsqueeze(1)
    y = D._read_idx(SOURCE / "t10k-labels-idx1-ubyte.gz")[:n]
    names = _names()
    exif = Image.Exif()
    exif[0x0112] = 6
    for i in range(n):
        pixels = resize(to_channels(x[i:i + 1], 3), (side, side))[0].permute(1, 2, 0).numpy()
        folder = out / names[int(y[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.rot90(pixels, 1).copy()).save(folder / f"{i:05d}.jpg", "JPEG", quality=90, exif=exif.tobytes())
    return out


def _old_package(old: Path, work: Path):
    """CHECKOUT's search/ and models/ as the packages search_old and models_old (imports rewritten), so that both
    codes decode in one process, interleaved: timings of separate processes on this 2-core VM differed by up to 40%
    between runs of the same code."""
    import re
    import shutil

    root = work / "old_packages"
    shutil.rmtree(root, ignore_errors=True)
    for name in ("search", "models"):
        shutil.copytree(old / name, root / f"{name}_old")
    for f in root.rglob("*.py"):
        f.write_text(re.sub(r"\b(from|import) (search|models)\b", r"\1 \2_old", f.read_text()))
    sys.path.insert(0, str(root))
    from search_old import images

    return images


def exif(work: Path, old: Path, repeats: int) -> None:
    import torch

    from search import images as today

    before = _old_package(old, work)
    torch.set_num_threads(1)  # as in each decoding process
    for side, n, size in ((64, 10_000, None), (256, 2_000, None), (256, 2_000, (64, 64))):
        folder = _jpeg_folder(work / f"exif{side}", side, n)
        files = sorted(folder.rglob("*.jpg"))
        for f in files:
            f.read_bytes()
        seconds = {"today": [], "before": []}
        for _ in range(repeats):
            for label, code in (("today", today), ("before", before)):
                t0 = time.perf_counter()
                shape = [code.decode(f, 3, size).shape for f in files][-1]
                seconds[label].append(time.perf_counter() - t0)
                if label == "today":
                    shown = shape
        a, b = (n / min(seconds[k]) for k in ("today", "before"))
        to = "at their own size" if size is None else f"resized to {size[0]} px (data.image_size)"
        print(f"{n:,} JPEGs {side}x{side} stored sideways (orientation 6), decoded {to}, fastest of {repeats} "
              f"interleaved passes, one thread: today {a:,.0f} images/s (upright, {tuple(shown)}), before {b:,.0f} "
              f"images/s (as stored); today / before = {a / b:.3f}", flush=True)


# --- the metric on an imbalanced folder ---

def _imbalanced_folder(work: Path, n_train: int) -> Path:
    out = work / f"fm{n_train}_10to1"
    if (out / "test").exists():
        return out
    import torch

    from own_images import write_folder
    from search import data as D
    from search.space import data_config
    from vs_hand import build_task

    raw = D._cached_raw(data_config(dataset="fashion_mnist", root=str(build_task(work / f"fm{n_train}_idx", n_train))))
    names, y = _names(), raw["train_y"]
    keep = []
    for c in range(10):
        idx = (y == c).nonzero().squeeze(1)
        keep.append(idx[: len(idx) // 10] if names[c] in CUT else idx)
    keep = torch.cat(keep).sort().values
    write_folder(out / "train", raw["train_x"][keep], y[keep], names, "png")
    write_folder(out / "test", raw["test_x"], raw["test_y"], names, "png")
    return out


def _space(work: Path, folder: Path, metric: str, seed: int, minutes: float) -> Path:
    import yaml

    base = work / f"{folder.name}.yaml"
    if not base.exists():
        subprocess.run(["nas-init", str(folder), "--params", "8000", "--minutes", f"{minutes:g}", "--out", str(base)],
                       check=True)
    raw = yaml.safe_load(base.read_text())
    name = f"{folder.name}_{metric}_s{seed}"
    raw["name"] = name
    raw["search"].update(metric=metric, seed=seed)
    out = work / f"{name}.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def _row(work: Path, space: Path, metric: str, seed: int, seconds: float) -> dict:
    import optuna
    import torch

    from search import data as D
    from search import metrics
    from search import space as S
    from search.export import load_checkpoint
    from search.record import retrain_results

    name = space.stem
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{work}/studies/{name}.db")
    r = retrain_results(study)
    model, ckpt = load_checkpoint(work / "studies" / name / "best" / "checkpoint.pt")
    data = D.load(S.load(space).data, "cpu", 0)
    with torch.no_grad():
        mean, std = (torch.tensor(ckpt[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
        pred = torch.cat([model((data.test.x[i:i + 1000].float() / 255 - mean) / std).argmax(1)
                          for i in range(0, len(data.test), 1000)])
    cm = metrics.confusion(pred, data.test.y, 10)
    recall = dict(zip(data.meta.class_names, metrics.recalls(cm)))
    balanced = [metrics.balanced_accuracy(cm)] if r.balanced() is None else [x.test_balanced_acc for x in r.runs]
    winner = next(t for t in study.trials if t.number == r.trial)
    return {"metric": metric, "seed": seed, "trial": r.trial, "balanced": balanced,
            "class_weight": winner.params.get("train.class_weight", "none"),
            "accuracy": [x.test_acc for x in r.runs], "cut_recall": {c: recall[c] for c in CUT},
            "exported_balanced": metrics.balanced_accuracy(cm), "seconds": round(seconds, 1),
            "trained": sum(1 for t in study.trials if t.user_attrs.get("trained") and "race_of" not in t.user_attrs)}


def imbalanced(work: Path, n_train: int, minutes: float, seeds: list[int]) -> None:
    folder = _imbalanced_folder(work, n_train)
    rows = work / "imbalanced.jsonl"
    for seed in seeds:
        for metric in ("balanced_accuracy", "accuracy"):
            space = _space(work, folder, metric, seed, minutes)
            started = time.perf_counter()
            with open(work / f"{space.stem}.log", "w") as log:
                subprocess.run(["nas-run", str(space), "--minutes", f"{minutes:g}", "--studies", str(work / "studies")],
                               stdout=log, stderr=subprocess.STDOUT, check=True)
            with rows.open("a") as f:
                f.write(json.dumps(_row(work, space, metric, seed, time.perf_counter() - started)) + "\n")
    table(work)


def table(work: Path) -> None:
    rows = [json.loads(line) for line in (work / "imbalanced.jsonl").read_text().splitlines()]

    def ms(values) -> str:
        return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}"

    print("| selected on | study seed | trained trials | winner (class_weight) | test balanced accuracy | test accuracy "
          "| recall shirt / pullover / coat (exported model) | wall-clock |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["metric"], r["seed"])):
        cut = " / ".join(f"{r['cut_recall'][c]:.3f}" for c in CUT)
        print(f"| {r['metric']} | {r['seed']} | {r['trained']} | trial {r['trial']} ({r.get('class_weight', '?')}) | "
              f"{ms(r['balanced'])} | {ms(r['accuracy'])} | {cut} | {r['seconds'] / 60:.1f} min |")
    for metric in ("balanced_accuracy", "accuracy"):
        mine = [r for r in rows if r["metric"] == metric]
        if mine:
            b = [statistics.fmean(r["balanced"]) for r in mine]
            worst = [min(r["cut_recall"].values()) for r in mine]
            print(f"{metric}: over {len(mine)} study seeds, test balanced accuracy {ms(b)}, smallest cut-class recall "
                  f"{ms(worst)}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("exif", "imbalanced"))
    p.add_argument("--work", default="/tmp/iatc")
    p.add_argument("--old", default="/tmp/old_main", help="exif: a git worktree of the code before orientation")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--minutes", type=float, default=6)
    p.add_argument("--train", type=int, default=4000, help="imbalanced: training images drawn before the cut")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--table", action="store_true", help="imbalanced: print the table of the rows so far")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.what == "exif":
        exif(work, Path(args.old), args.repeats)
    elif args.table:
        table(work)
    else:
        imbalanced(work, args.train, args.minutes, args.seeds)
