"""Datasets as uint8 tensors on the training device, a fixed seeded validation split, per-channel stats.

Load once (torchvision's files, a folder of gzipped/plain IDX files, an image folder or an .npz: images.py),
convert to `data.channels` and resize to `data.image_size` when asked, cache the decoded tensors under
~/.cache/nas-run (NAS_RUN_CACHE overrides) so the next run loads in about a second, carve a stratified
validation split from the training data with the study seed, compute normalization on the training split only,
and move everything to the device once. Batches are later sliced from these tensors. Class names travel with
the data (Meta) into the report, the checkpoint and the exported model.
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

from search import images as I
from search.catalogue import DATASETS, OWN_DATA, Meta
from search.decode import Decoding, header, resize, to_channels
from search.errors import UserError

if TYPE_CHECKING:
    from search.space import DataConfig


# 2: EXIF orientation applied, transparency composited, 16-bit PNGs scaled, palette PNGs in colour (1: none of it);
# for .npz files, the notes on their pixel range
DECODER_VERSION = 2
TEST_SPLIT_SEED = 0  # the held-out test split of a folder without test/: the same on every run and machine
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
    test_split: dict | None = None  # folder without test/: the held-out test split's size and digest
    skipped: int = 0  # files in an image folder that are hidden or not images
    notes: tuple[str, ...] = ()  # what the reader saw and the user should know (an .npz's pixel range)


def load(data_cfg: DataConfig, device: str | torch.device = "cpu", seed: int = 0) -> Data:
    """The dataset named by the space's `data` section, split and on `device`."""
    raw = _cached_raw(data_cfg)
    _, channels, height, width = raw["train_x"].shape
    builtin = DATASETS.get(data_cfg.dataset)
    meta = Meta(channels, height, width, tuple(raw["classes"]), builtin.train_size if builtin else 0,
                builtin.torchvision if builtin else "")
    train_idx, val_idx = stratified_split(raw["train_y"], data_cfg.val_fraction, seed)
    x = raw["train_x"][train_idx]
    pixels = x.transpose(0, 1).reshape(meta.channels, -1)
    mean = torch.stack([c.double().mean() for c in pixels]) / 255  # one channel at a time: bounded memory
    std = torch.stack([c.double().std() for c in pixels]) / 255
    dev = torch.device(device)
    if dev.type == "cuda":  # the images live on the GPU: refuse, in one line, what would not fit there
        need, free = raw["train_x"].nbytes + raw["test_x"].nbytes, torch.cuda.mem_get_info(dev)[0]
        if need > I.MEMORY_SHARE * free:
            raise UserError(f"{data_cfg.root}: the images take {need / 2**30:.1f} GiB, more than {I.MEMORY_SHARE:.0%} of "
                            f"{dev}'s free memory ({free / 2**30:.1f} GiB): set data.image_size smaller")
    to = lambda t: t.to(dev, non_blocking=True)  # noqa: E731
    return Data(
        train=Split(to(x), to(raw["train_y"][train_idx])),
        val=Split(to(raw["train_x"][val_idx]), to(raw["train_y"][val_idx])),
        test=Split(to(raw["test_x"]), to(raw["test_y"])),
        mean=to(mean.float()),
        std=to(std.float()),
        meta=meta,
        test_split=raw.get("test_split"),
        skipped=int(raw.get("skipped", 0)),
        notes=tuple(raw.get("notes", ())),
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


def searched_share(split: Split, fraction: float, seed: int) -> Split:
    """`split`, or the fixed stratified share of it that `search.data_fraction` asks for."""
    if fraction >= 1:
        return split
    return split.subset(stratified_split(split.y, fraction, seed)[1])


def _cache_dir() -> Path:
    return Path(os.environ.get("NAS_RUN_CACHE", Path.home() / ".cache" / "nas-run"))


def _cached_raw(cfg: DataConfig) -> dict:
    """{train_x, train_y, test_x, test_y: uint8 (N, C, H, W) / int64 (N,), classes: names, ...}, converted to
    `cfg.channels` and `cfg.image_size`, from the cache when the files are unchanged."""
    if cfg.dataset in OWN_DATA:
        return _own_raw(cfg)
    name, root = cfg.dataset, Path(cfg.root)
    idx = _find_idx(root, DATASETS[name]) if name in ("mnist", "fashion_mnist") else None
    signature = [name, str(root.resolve()), cfg.extra]
    if idx:  # local IDX files: a changed file means a new cache entry
        signature += [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in idx.values()]
    key = hashlib.sha256(repr(signature).encode()).hexdigest()[:16]
    cache = _cache_dir() / f"{name}-{key}.pt"
    if cache.exists():
        raw = torch.load(cache, weights_only=True)
    else:
        raw = {k: _read_idx(p) for k, p in idx.items()} if idx else _torchvision(name, root, cfg.extra)
        for k in ("train_x", "test_x"):
            if raw[k].dim() == 3:
                raw[k] = raw[k].unsqueeze(1)
        raw = {k: v.contiguous() for k, v in raw.items()}
        _save(cache, raw)
    raw["classes"] = DATASETS[name].class_names
    return conform(raw, cfg.channels, cfg.image_size)


def conform(raw: dict, channels: int | None, size: tuple[int, int] | None) -> dict:
    """The images converted to `channels` and resized to `size` (None: as they are)."""
    for k in ("train_x", "test_x"):
        x = raw[k]
        if channels:
            x = to_channels(x, channels)
        if size:
            x = torch.cat([resize(x[i:i + 4096], size) for i in range(0, len(x), 4096)]) if len(x) else x
        raw[k] = x
    return raw


def _save(cache: Path, raw: dict) -> None:
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        torch.save(raw, tmp)
        tmp.replace(cache)  # atomic: parallel workers never read a half-written cache
    except OSError:
        pass  # a read-only home only costs the next run a decode


def decoding(cfg: DataConfig) -> Decoding:
    """How the space's image files are read: upright, transparency over `data.background`."""
    return Decoding(orient=True, background=cfg.background)


def _own_raw(cfg: DataConfig) -> dict:
    """An image folder or an .npz, decoded once and cached by the files' names, sizes and times (and, for a folder,
    how they are decoded: DECODER_VERSION changes when the same file decodes to other pixels)."""
    root = Path(cfg.root)
    if cfg.dataset == "arrays":
        parts = [str(root.resolve()), root.stat().st_mtime_ns if root.is_file() else 0, cfg.channels, cfg.image_size,
                 DECODER_VERSION]
    else:
        listing = I.scan_folder(root)
        parts = [str(root.resolve()), listing.signature, cfg.channels, cfg.image_size,
                 None if listing.test else cfg.test_fraction, DECODER_VERSION, decoding(cfg)]
    cache = _cache_dir() / f"{cfg.dataset}-{hashlib.sha256(repr(parts).encode()).hexdigest()[:16]}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=True)
    if cfg.dataset == "arrays":
        raw = I.read_npz(root)
        channels = cfg.channels or raw["train_x"].shape[1]
        raw = conform(raw, channels, cfg.image_size)
    else:
        raw = _decode_folder(listing, cfg)
    _save(cache, raw)
    return raw


def _decode_folder(listing: I.Listing, cfg: DataConfig) -> dict:
    """Decode the folder's images at one size and channel count; hold out a stratified test split when the folder
    has no test/ (TEST_SPLIT_SEED: the same images on every run and machine)."""
    train = listing.train
    if listing.test is None:
        labels = torch.tensor([c for _, c in train])
        rest, part = stratified_split(labels, cfg.test_fraction, TEST_SPLIT_SEED)
        test, train = [train[i] for i in part.tolist()], [train[i] for i in rest.tolist()]
        names = "\n".join(os.path.relpath(f, listing.root) for f, _ in test)
        test_split = {"images": len(test), "sha256": hashlib.sha256(names.encode()).hexdigest()}
    else:
        test, test_split = listing.test, None
    files = [f for f, _ in train + test]
    how = decoding(cfg)
    first = header(Path(files[0]), how)
    I.check_memory(str(listing.root), len(files), cfg.channels or 3, cfg.image_size or first[:2])  # before decoding
    x, _, _ = I.decode_all(files, cfg.channels, cfg.image_size, how,
                           progress=I.progress_bar(len(files), "decoding", at_least=5000))
    n = len(train)
    return {"train_x": x[:n], "train_y": torch.tensor([c for _, c in train], dtype=torch.long),
            "test_x": x[n:], "test_y": torch.tensor([c for _, c in test], dtype=torch.long),
            "classes": listing.classes, "test_split": test_split, "skipped": listing.skipped}


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
