"""Your own images, measured: the folder loader against torchvision's ImageFolder, and a whole run from a folder.

    python tests/benchmarks/own_images.py decode [--work /tmp/oi]
        The 60,000 Fashion-MNIST training images (Debian's dataset-fashion-mnist) written once as a PNG folder, then
        side by side in one run: nas-run's loader (data.load, cache cleared) against one pass of torchvision's
        ImageFolder + DataLoader(num_workers=2, batch 256, ToTensor); images/s of each and the ratio; the cached
        reload's seconds; peak RSS of each (each in a fresh process, so one's memory does not count for the other). Every
        file is read once first, so neither side pays the disk for the other.

    python tests/benchmarks/own_images.py run [--source jpg32|npz] [--work /tmp/oi] [--trials 40] [--minutes 30]
                                              [--workers auto]
        tests/benchmarks/vs_hand.py's task (8,000 training images stratified, the 10,000 test images) written as a
        32-px RGB JPEG folder (train/ and test/), or its original pixels as an .npz, then `nas-init --params 8000`
        and `nas-run --trials 40 --minutes 30` on it, timed end to end; prints the winner's test accuracy mean ± std
        and the wall-clock. Run both sources at once with --workers 1 each for a side-by-side on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from search import data as D  # noqa: E402
from search.catalogue import DATASETS  # noqa: E402
from search.decode import resize, to_channels  # noqa: E402
from search.space import data_config  # noqa: E402

SOURCE = Path("/usr/share/datasets/fashion-mnist")


def write_folder(out: Path, x: torch.Tensor, y: torch.Tensor, names, ext: str) -> None:
    from torchvision.io import encode_jpeg, encode_png

    for c, name in enumerate(names):
        (out / name).mkdir(parents=True, exist_ok=True)
    for i in range(len(y)):
        data = encode_png(x[i]) if ext == "png" else encode_jpeg(x[i], quality=95)
        (out / names[int(y[i])] / f"{i:05d}.{ext}").write_bytes(bytes(data.numpy().tobytes()))


def _names():
    return [n.replace("/", "-").replace(" ", "_").lower() for n in DATASETS["fashion_mnist"].class_names]


def _child(what: str, folder: str) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    if what == "ours":
        import torchvision.io  # noqa: F401  (imports outside the timing, as for the reference)

        cfg = data_config(dataset="folder", root=folder, val_fraction=0.1)
        t0 = time.perf_counter()
        d = D.load(cfg, "cpu", 0)
        first = time.perf_counter() - t0
        n = len(d.train) + len(d.val) + len(d.test)
        t0 = time.perf_counter()
        D.load(cfg, "cpu", 0)
        out = {"images": n, "seconds": first, "cached_seconds": time.perf_counter() - t0}
    else:
        from torch.utils.data import DataLoader
        from torchvision import datasets, transforms

        t0 = time.perf_counter()
        ds = datasets.ImageFolder(folder, transform=transforms.Compose([transforms.Grayscale(), transforms.ToTensor()]))
        n = 0
        for x, _ in DataLoader(ds, batch_size=256, num_workers=2):
            n += len(x)
        out = {"images": n, "seconds": time.perf_counter() - t0}
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_rss_children_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(out))


def decode(work: Path) -> None:
    folder = work / "fm60k_png"
    if not (folder / "bag").exists():
        x, y = D._read_idx(SOURCE / "train-images-idx3-ubyte.gz"), D._read_idx(SOURCE / "train-labels-idx1-ubyte.gz")
        write_folder(folder, x.unsqueeze(1), y, _names(), "png")
    os.environ["NAS_RUN_CACHE"] = str(work / "cache")
    shutil.rmtree(work / "cache", ignore_errors=True)
    for f in folder.rglob("*.png"):  # both sides read from the page cache: the first measured must not pay the disk
        f.read_bytes()
    rows = {}
    for what in ("ours", "imagefolder"):
        r = subprocess.run([sys.executable, __file__, "_child", what, str(folder)], capture_output=True, text=True,
                           check=True)
        rows[what] = json.loads(r.stdout.strip().splitlines()[-1])
    ours, ref = rows["ours"], rows["imagefolder"]
    a, b = ours["images"] / ours["seconds"], ref["images"] / ref["seconds"]
    print(f"{os.cpu_count()} cores, {ours['images']:,} PNG images 28x28 grey")
    print(f"nas-run loader: {a:,.0f} images/s ({ours['seconds']:.1f} s), cached reload {ours['cached_seconds']:.2f} s, "
          f"peak RSS {ours['peak_rss_mib']:,.0f} MiB (decoding processes {ours['peak_rss_children_mib']:,.0f} MiB each at most)")
    print(f"ImageFolder + DataLoader(num_workers=2): {b:,.0f} images/s ({ref['seconds']:.1f} s), peak RSS "
          f"{ref['peak_rss_mib']:,.0f} MiB (workers {ref['peak_rss_children_mib']:,.0f} MiB each at most)")
    print(f"ratio: {a / b:.2f}x")


def run(work: Path, trials: int, minutes: float, source: str, workers: str) -> None:
    """The whole path a user takes: nas-init on the data, nas-run on the space it wrote."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
    from vs_hand import build_task

    raw = D._cached_raw(data_config(dataset="fashion_mnist", root=str(build_task(work / "fm8k_idx"))))
    name = f"fm8k_{source}"
    data = work / (name if source == "jpg32" else name + ".npz")
    if source == "jpg32" and not (data / "test").exists():  # 32-px RGB JPEGs, train/ and test/
        for split in ("train", "test"):
            x = resize(to_channels(raw[f"{split}_x"], 3), (32, 32))
            write_folder(data / split, x, raw[f"{split}_y"], _names(), "jpg")
    elif source == "npz" and not data.exists():  # the IDX pixels as they are, 28-px grey
        np.savez(data, **{f"{k[-1]}_{k[:-2]}": raw[k].numpy() for k in ("train_x", "train_y", "test_x", "test_y")},
                 class_names=np.array(_names()))
    space, studies = work / f"{name}.yaml", work / "studies"
    space.unlink(missing_ok=True)
    shutil.rmtree(studies / name, ignore_errors=True)
    (studies / f"{name}.db").unlink(missing_ok=True)
    t0 = time.perf_counter()
    subprocess.run(["nas-init", str(data), "--params", "8000", "--minutes", f"{minutes:g}", "--out", str(space)], check=True)
    subprocess.run(["nas-run", str(space), "--trials", str(trials), "--minutes", f"{minutes:g}", "--studies", str(studies),
                    "--workers", workers], check=True)
    took = time.perf_counter() - t0
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{studies}/{name}.db")
    r = study.user_attrs["retrain"]
    trained = sum(1 for t in study.trials if t.user_attrs.get("trained") and "race_of" not in t.user_attrs)
    card = json.loads((studies / name / "best" / "model_card.json").read_text())
    print(f"{source}: nas-init --params 8000, nas-run --trials {trials} --minutes {minutes:g} --workers {workers}: "
          f"{trained} trials trained; winner trial {r['trial']} ({card['params']:,} params, {card['macs']:,} MACs), test "
          f"accuracy {r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f} over {len(r['runs'])} seeds "
          f"({', '.join(format(x['test_acc'], '.4f') for x in r['runs'])}); "
          f"{took / 60:.1f} min end to end (nas-init included)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _child(sys.argv[2], sys.argv[3])
        sys.exit(0)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("decode", "run"))
    p.add_argument("--work", default="/tmp/own_images")
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--source", choices=("jpg32", "npz"), default="jpg32",
                   help="run: the task as 32-px RGB JPEGs, or its original 28-px grey pixels as an .npz")
    p.add_argument("--workers", default="auto", help="run: nas-run --workers")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    decode(work) if args.what == "decode" else run(work, args.trials, args.minutes, args.source, args.workers)
