"""Datasets as uint8 tensors on the training device, a fixed seeded validation split, per-channel stats.

Load once (torchvision's files, or a folder of gzipped/plain IDX files), cache the decoded tensors under
~/.cache/nas-run (NAS_RUN_CACHE overrides) so the next run loads in well under a second, carve a
stratified validation split from the training data with the study seed, compute normalization on the
training split only, and move everything to the device once. Batches are later sliced from these tensors.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from search.errors import UserError

if TYPE_CHECKING:
    from search.space import DataConfig


@dataclass(frozen=True)
class Meta:
    channels: int
    size: int
    classes: int
    train_size: int  # images in the official training split (before the validation split)
    torchvision: str  # class name in torchvision.datasets


DATASETS = {
    "mnist": Meta(1, 28, 10, 60_000, "MNIST"),
    "fashion_mnist": Meta(1, 28, 10, 60_000, "FashionMNIST"),
    "cifar10": Meta(3, 32, 10, 50_000, "CIFAR10"),
    "cifar100": Meta(3, 32, 100, 50_000, "CIFAR100"),
    "svhn": Meta(3, 32, 10, 73_257, "SVHN"),
}
CLASS_NAMES = {  # for the study report; CIFAR-100's 100 classes are shown by number
    "mnist": [str(i) for i in range(10)],
    "svhn": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}
SVHN_EXTRA = 531_131
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


@dataclass
class Split:
    x: torch.Tensor  # uint8 (N, C, H, W) on the device
    y: torch.Tensor  # int64 (N,) on the device

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: torch.Tensor) -> "Split":
        idx = idx.to(self.y.device)
        return Split(self.x[idx], self.y[idx])


@dataclass
class Data:
    train: Split
    val: Split
    test: Split
    mean: torch.Tensor  # float (C,) over the training split, in [0, 1] pixel units
    std: torch.Tensor
    meta: Meta


def class_names(dataset: str) -> list[str]:
    return CLASS_NAMES.get(dataset) or [str(i) for i in range(DATASETS[dataset].classes)]


def train_size(data_cfg: DataConfig) -> int:
    meta = DATASETS[data_cfg.dataset]
    return meta.train_size + (SVHN_EXTRA if data_cfg.extra else 0)


def load(data_cfg: DataConfig, device: str | torch.device = "cpu", seed: int = 0) -> Data:
    """The dataset named by the space's `data` section, split and on `device`."""
    name, meta = data_cfg.dataset, DATASETS[data_cfg.dataset]
    raw = _cached_raw(name, Path(data_cfg.root), data_cfg.extra)
    train_idx, val_idx = stratified_split(raw["train_y"], data_cfg.val_fraction, seed)
    x = raw["train_x"][train_idx]
    pixels = x.transpose(0, 1).reshape(meta.channels, -1)
    mean = torch.stack([c.double().mean() for c in pixels]) / 255  # one channel at a time: bounded memory
    std = torch.stack([c.double().std() for c in pixels]) / 255
    dev = torch.device(device)
    to = lambda t: t.to(dev, non_blocking=True)  # noqa: E731
    return Data(
        train=Split(to(x), to(raw["train_y"][train_idx])),
        val=Split(to(raw["train_x"][val_idx]), to(raw["train_y"][val_idx])),
        test=Split(to(raw["test_x"]), to(raw["test_y"])),
        mean=to(mean.float()),
        std=to(std.float()),
        meta=meta,
    )


def race_val_size(n_val: int, race_val_fraction: float, val_fraction: float) -> int:
    """Images a race round validates on: `search.race_val_fraction` of the data, in proportion to the search's
    `n_val` validation images (`data.val_fraction`); as many as the search's when the two fractions are equal."""
    return round(n_val * race_val_fraction / val_fraction)


def race_fold(data: Data, fold: int, size: int) -> tuple[Split, Split]:
    """(train, val) for round `fold` >= 1 of the race: a fresh stratified validation split of `size` images
    (`race_val_size`), drawn from the training split (so it shares no image with the one the search
    selected on), whose images leave training while the search's validation images join it. Every finalist's
    round-`fold` run sees the same images (paired comparisons); the rounds see different ones, so a finalist's
    mean is not tied to the few hundred images that picked it. Costs one copy of the training split while a race
    run trains."""
    if not 0 < size < len(data.train):
        raise ValueError(f"a race round holds out 1 to {len(data.train) - 1} images, not {size}")
    rest, part = stratified_split(data.train.y, size / len(data.train), fold)
    rest, part = rest.to(data.train.y.device), part.to(data.train.y.device)
    train = Split(torch.cat([data.train.x[rest], data.val.x]), torch.cat([data.train.y[rest], data.val.y]))
    return train, data.train.subset(part)


def stratified_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rest, part): `part` holds round(fraction * n_c) seeded-random images of every class c."""
    g = torch.Generator().manual_seed(seed)
    y = y.cpu()
    part = []
    for c in torch.unique(y):
        idx = (y == c).nonzero().squeeze(1)
        part.append(idx[torch.randperm(len(idx), generator=g)][: round(fraction * len(idx))])
    part = torch.cat(part).sort().values
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[part] = False
    return mask.nonzero().squeeze(1), part


def _cache_dir() -> Path:
    return Path(os.environ.get("NAS_RUN_CACHE", Path.home() / ".cache" / "nas-run"))


def _cached_raw(name: str, root: Path, extra: bool) -> dict[str, torch.Tensor]:
    idx = _find_idx(root, DATASETS[name]) if name in ("mnist", "fashion_mnist") else None
    signature = [name, str(root.resolve()), extra]
    if idx:  # local IDX files: a changed file means a new cache entry
        signature += [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in idx.values()]
    key = hashlib.sha256(repr(signature).encode()).hexdigest()[:16]
    cache = _cache_dir() / f"{name}-{key}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=True)
    raw = {k: _read_idx(p) for k, p in idx.items()} if idx else _torchvision(name, root, extra)
    for k in ("train_x", "test_x"):
        if raw[k].dim() == 3:
            raw[k] = raw[k].unsqueeze(1)
    raw = {k: v.contiguous() for k, v in raw.items()}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        torch.save(raw, tmp)
        tmp.replace(cache)  # atomic: parallel workers never read a half-written cache
    except OSError:
        pass  # a read-only home only costs the next run a decode
    return raw


def _find_idx(root: Path, meta: Meta) -> dict[str, Path] | None:
    """IDX files directly in root or in torchvision's root/<Class>/raw layout, gzipped or plain."""
    for folder in (root, root / meta.torchvision / "raw"):
        found = {}
        for key, stem in IDX_FILES.items():
            for cand in (folder / stem, folder / (stem + ".gz")):
                if cand.is_file():
                    found[key] = cand
                    break
        if len(found) == len(IDX_FILES):
            return found
    return None


def _read_idx(path: Path) -> torch.Tensor:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        buf = f.read()
    magic = int.from_bytes(buf[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08: unsigned byte data
        raise UserError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    shape = [int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(buf, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise UserError(f"{path}: IDX header says shape {shape} but the file holds {data.size} bytes")
    t = torch.from_numpy(data.reshape(shape).copy())
    return t if ndim > 1 else t.long()


def _torchvision(name: str, root: Path, extra: bool) -> dict[str, torch.Tensor]:
    import torchvision

    meta = DATASETS[name]
    cls = getattr(torchvision.datasets, meta.torchvision)

    def get(split: str):
        kw = {"split": split} if name == "svhn" else {"train": split == "train"}
        try:
            return cls(str(root), download=False, **kw)
        except (RuntimeError, OSError):
            pass
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(15)
        try:
            return cls(str(root), download=True, **kw)
        except Exception as e:  # any download failure is the same message to the user
            raise UserError(_missing(name, root, meta, e)) from None
        finally:
            socket.setdefaulttimeout(old)

    def xy(ds):
        x = torch.as_tensor(np.asarray(ds.data))
        if x.dim() == 4 and x.shape[-1] == 3:  # CIFAR: NHWC
            x = x.permute(0, 3, 1, 2)
        y = torch.as_tensor(np.asarray(ds.labels if name == "svhn" else ds.targets), dtype=torch.long)
        return x, y

    tr, te = get("train"), get("test")
    (train_x, train_y), (test_x, test_y) = xy(tr), xy(te)
    if extra:
        ex_x, ex_y = xy(get("extra"))
        train_x, train_y = torch.cat([train_x, ex_x]), torch.cat([train_y, ex_y])
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def _missing(name: str, root: Path, meta: Meta, err: Exception) -> str:
    if name in ("mnist", "fashion_mnist"):
        files = ", ".join(s + ".gz" for s in IDX_FILES.values())
        where = f"{root}/ or {root}/{meta.torchvision}/raw/"
        hint = " (Debian's dataset-fashion-mnist installs them in /usr/share/datasets/fashion-mnist)" if name == "fashion_mnist" else ""
        return f"{name}: dataset files not found and the download failed ({type(err).__name__}; no internet?): put {files} in {where}{hint}, or set data.root to their folder"
    return f"{name}: dataset files not found in {root}/ and the download failed ({type(err).__name__}; no internet?): put torchvision's {meta.torchvision} files there"
