"""Your own images as uint8 tensors: an image folder (a sub-folder per class) or a Keras-style .npz, decoded,
converted to 1 or 3 channels and resized the same way for training (data.py) and for prediction (nas-predict).

Decoding and resizing are decode.py's (orientation, transparency, 16-bit samples), a process per core.
Bad input is one line naming the file or key (UserError, exit 2).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from search.decode import Decoding, header, read_image, to_channels
from search.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MEMORY_SHARE = 0.5  # decoded images may take at most this share of the machine's memory


@dataclass(frozen=True)
class Listing:
    """An image folder, scanned: class names (sorted folder names), (file, class index) per split, and a signature
    of every file's name, size and time (the cache key's part from the files)."""

    root: Path
    classes: tuple[str, ...]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]] | None  # None: no test/ folder, a test split is held out (data.py)
    skipped: int  # hidden files and files that are not images
    signature: str


def is_image(path: Path | str) -> bool:
    name = os.path.basename(str(path))
    return name.lower().endswith(EXTENSIONS) and not name.startswith(".")


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(class_dir: Path, stats: list) -> tuple[list[str], int]:
    """Images under one class folder (recursive, sorted, as path strings) and how many other files were skipped;
    appends (path, size, mtime) of each image to `stats`. One os.scandir pass, no Path objects: 60,000 files in
    a fraction of a second."""
    found, skipped, todo = [], 0, [str(class_dir)]
    while todo:
        with os.scandir(todo.pop()) as entries:
            for e in entries:
                if e.name.startswith("."):
                    skipped += e.is_file()
                elif e.is_dir():
                    todo.append(e.path)
                elif e.name.lower().endswith(EXTENSIONS):
                    st = e.stat()
                    found.append(e.path)
                    stats.append((e.path, st.st_size, st.st_mtime_ns))
                else:
                    skipped += 1
    return sorted(found), skipped


def scan_folder(root: Path) -> Listing:
    """`root/train/<class>/...` (+ optional `root/test/<class>/...`), or `root/<class>/...` directly."""
    if not root.is_dir():
        raise UserError(f"{root}: not a folder (expected a folder of class sub-folders, or train/ and test/ in it)")
    train_dir = root / "train" if (root / "train").is_dir() else root
    test_dir = root / "test" if train_dir != root and (root / "test").is_dir() else None
    folders = _class_folders(train_dir)
    if not folders:
        raise UserError(f"{train_dir}: no class folders (expected one sub-folder of images per class)")
    if len(folders) < 2:
        raise UserError(f"{train_dir}: only one class folder ({folders[0].name}); a classifier needs at least 2")
    classes = tuple(p.name for p in folders)
    train, skipped, stats = [], 0, []
    for i, folder in enumerate(folders):
        files, n = _files(folder, stats)
        if not files:
            raise UserError(f"{folder}: no images (expected files ending in {', '.join(EXTENSIONS)})")
        train += [(f, i) for f in files]
        skipped += n
    test = None
    if test_dir is not None:
        test = []
        for folder in _class_folders(test_dir):
            if folder.name not in classes:
                raise UserError(f"{folder}: class {folder.name!r} is not among the training classes ({', '.join(classes)})")
            files, n = _files(folder, stats)
            test += [(f, classes.index(folder.name)) for f in files]
            skipped += n
        if not test:
            raise UserError(f"{test_dir}: no test images (remove the folder to hold a test split out of train/)")
    digest = hashlib.sha256("\n".join(f"{p}\0{n}\0{t}" for p, n, t in sorted(stats)).encode()).hexdigest()[:16]
    return Listing(root, classes, train, test, skipped, digest)


def decode(path: Path, channels: int, size: tuple[int, int] | None = None,
           decoding: Decoding = Decoding()) -> torch.Tensor:
    """One image file -> uint8 (channels, H, W), resized to `size` (H, W) when given. UserError names the file."""
    return read_image(str(path), channels, decoding, size)


def _decode_chunk(args) -> tuple[int, object]:
    """Decode files[start:...] in a worker process -> (start, one uint8 array (n, C, H, W) when the images agree in
    shape, else a list of (C, H, W) arrays). `channels` None keeps each image's own (1 or 3); `size` None keeps
    its own size, but every image must have `expect`'s (the first image's) or a UserError names the two."""
    start, files, channels, size, expect, decoding = args
    torch.set_num_threads(1)
    out = []
    for f in files:
        x = read_image(f, channels, decoding, size)
        if size is None and tuple(x.shape[1:]) != expect:
            raise UserError(f"images of different sizes ({expect[0]}x{expect[1]}, and {x.shape[1]}x{x.shape[2]} in {f}): "
                            f"set data.image_size (an int, or [height, width]) to resize them all to one")
        out.append(x)
    if len({tuple(x.shape) for x in out}) == 1:
        return start, torch.stack(out).numpy()
    return start, [x.numpy() for x in out]


def decode_all(files: list[str], channels: int | None, size: tuple[int, int] | None,
               decoding: Decoding = Decoding(), progress=None) -> tuple[torch.Tensor, int, tuple[int, int]]:
    """Every file -> (uint8 (N, C, H, W), C, (H, W)), decoded by a process per core (decoding a small image holds
    the GIL most of the time, so threads barely help). `channels` None: 1 when every image is grey, else 3;
    `size` None: the images' own, which must agree. The first unreadable file raises UserError naming it."""
    import multiprocessing as mp

    import torchvision.io  # noqa: F401  (registers torch.ops.image, once, before forking)

    expect = None
    if size is None:
        h, w, _ = header(Path(files[0]), decoding)
        expect = (h, w)
    chunk = 512
    jobs = [(i, files[i:i + chunk], channels, size, expect, decoding) for i in range(0, len(files), chunk)]
    procs = min(os.cpu_count() or 1, len(jobs))
    pool = mp.get_context("fork").Pool(procs) if procs > 1 else None  # fork: the children need only file names
    blocks = []
    try:
        for start, block in (pool.imap_unordered(_decode_chunk, jobs) if pool else map(_decode_chunk, jobs)):
            blocks.append((start, block))
            if progress:
                progress(len(block))
    finally:
        if pool is not None:
            pool.terminate()
    images = [(start + j, a[None]) for start, block in blocks for j, a in enumerate(block)] if any(
        isinstance(b, list) for _, b in blocks) else blocks
    channels = channels or (3 if any(a.shape[1] == 3 for _, a in images) else 1)
    size = size or expect
    out = torch.empty((len(files), channels, *size), dtype=torch.uint8)
    for start, block in images:
        x = torch.from_numpy(block)
        out[start:start + len(x)] = to_channels(x, channels)
    return out, channels, size


def progress_bar(total: int, what: str, at_least: int = 2000):
    """advance(n) for a transient rich progress bar on stderr, for `total` images when that many are worth
    waiting for (a terminal and at least `at_least` images); else None."""
    import sys

    if total < at_least or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    task = bar.add_task(f"{what} {total:,} images", total=total)
    bar.start()

    def advance(n: int) -> None:
        bar.advance(task, n)
        if bar.finished:
            bar.stop()

    return advance


def available_memory() -> int:
    """Bytes of memory this machine has (MemAvailable on Linux, else the physical total)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(where: str, n: int, channels: int, size: tuple[int, int]) -> None:
    """Refuse, before decoding, a data set whose decoded tensors would not fit in a safe share of memory."""
    need, have = n * channels * size[0] * size[1], int(available_memory() * MEMORY_SHARE)
    if need > have:
        side = int((have / (n * channels)) ** 0.5)
        raise UserError(f"{where}: {n:,} images at {channels}x{size[0]}x{size[1]} decode to {need / 2**30:.1f} GiB, more than "
                        f"{MEMORY_SHARE:.0%} of this machine's available memory ({have / 2**30:.1f} GiB): set data.image_size "
                        f"to {max(8, side)} or less")


# --- arrays: one .npz in Keras' convention ---

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def read_npz(path: Path) -> dict:
    """x_train, y_train, x_test, y_test (+ class_names) -> uint8 (N, C, H, W) images, int64 labels, class names."""
    if not path.is_file():
        raise UserError(f"{path}: no such file (expected an .npz with {', '.join(NPZ_KEYS)})")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable .npz file ({str(e).splitlines()[0][:120]})") from None
    with npz:
        missing = [k for k in NPZ_KEYS if k not in npz.files]
        if missing:
            raise UserError(f"{path}: key {missing[0]}: missing (expected {', '.join(NPZ_KEYS)}, and optionally class_names)")
        arrays = {k: npz[k] for k in NPZ_KEYS}
        names = [str(n) for n in npz["class_names"]] if "class_names" in npz.files else None
    out, notes = {}, []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y):
            raise UserError(f"{path}: x_{split} holds {len(x)} images but y_{split} {len(y)} labels (expected as many)")
        out[f"{split}_x"] = _npz_images(path, f"x_{split}", x, notes)
        out[f"{split}_y"] = _npz_labels(path, f"y_{split}", y)
    classes = len(names) if names else int(max(out["train_y"].max(), out["test_y"].max())) + 1
    for split in ("train", "test"):
        bad = (out[f"{split}_y"] < 0) | (out[f"{split}_y"] >= classes)
        if bad.any():
            raise UserError(f"{path}: y_{split}: labels out of range (expected 0 to {classes - 1}"
                            f"{' for the ' + str(classes) + ' class_names' if names else ''}, got {int(out[f'{split}_y'][bad][0])})")
    if out["train_x"].shape[1:] != out["test_x"].shape[1:]:
        raise UserError(f"{path}: x_test: images of shape {tuple(out['test_x'].shape[1:])}, x_train {tuple(out['train_x'].shape[1:])} (expected the same)")
    out["classes"] = tuple(names) if names else tuple(str(i) for i in range(classes))
    out["notes"] = notes[:1]  # x_test says the same as x_train
    return out


FAINT = 128  # uint8 pixels that never reach this are far below 255: the user hears the range seen


def _npz_images(path: Path, key: str, x: np.ndarray, notes: list[str]) -> torch.Tensor:
    """Images in any of Keras' layouts -> uint8 (N, C, H, W). uint8 pixels are taken as they are (a range far
    below 255 is said in `notes`: the search normalizes it away, but nas-predict's images must use it too); floats
    in [0, 1] are pixels / 255, whole-number floats in [0, 255] pixels stored as floats; other floats are refused,
    naming the range found."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise UserError(f"{path}: {key}: shape {x.shape} (expected (N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3)")
    lo, hi = (x.min(), x.max()) if x.size else (0, 0)
    if x.dtype == np.uint8:
        if x.size and hi < FAINT:
            notes.append(f"{path}: {key}: uint8 pixels from {lo} to {hi} (255 is white): kept as they are, so images "
                         f"given to the exported model (nas-predict) must use the same range")
        return torch.from_numpy(np.ascontiguousarray(x))
    if np.issubdtype(x.dtype, np.floating) and x.size and 0 <= lo and hi <= 1:
        return torch.from_numpy(np.ascontiguousarray(np.rint(x * 255).astype(np.uint8)))
    if np.issubdtype(x.dtype, np.floating) and x.size and 0 <= lo and hi <= 255 and np.all(np.mod(x, 1) == 0):
        notes.append(f"{path}: {key}: whole-number floats from {lo:g} to {hi:g}: read as 8-bit pixels (0-255)")
        return torch.from_numpy(np.ascontiguousarray(x.astype(np.uint8)))
    found = f", from {lo:g} to {hi:g}" if x.size and np.issubdtype(x.dtype, np.number) else ""
    raise UserError(f"{path}: {key}: dtype {x.dtype}{found} (expected uint8 pixels, or floats in [0, 1])")


def _npz_labels(path: Path, key: str, y: np.ndarray) -> torch.Tensor:
    y = y.reshape(len(y), -1)[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating)
                                                                   and np.all(np.mod(y, 1) == 0))):
        raise UserError(f"{path}: {key}: expected integer class labels, one per image (got dtype {y.dtype}, shape {y.shape})")
    return torch.from_numpy(y.astype(np.int64))
