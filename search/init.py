"""`nas-init DATA [--params N] [--macs M] [--minutes T] [--out FILE]`: look at your images, write a space for them.

DATA is an image folder (a sub-folder per class, or train/ and test/ holding them) or a Keras-style .npz. The
space has stage slots, fill, two designs as first trials (plain and separable) and a race. Its designs suit the
images: small grey ones get spaces/mnist_8k.yaml's hand net; colour or larger ones the plain net a user would
write for them, halving the map stage by stage down to 8 px or less. The training length follows the number of
training images, and the augmentation the colour. The file is checked as nas-run will check it (parsed, and a
candidate within budget found) before it is written.
"""
from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections import Counter
from pathlib import Path

from search import data as D
from search import images as I
from search.catalogue import Meta
from search.decode import header
from search.errors import UserError
from search.space import default_min_epochs

MAX_OWN_SIZE = 128  # larger images are resized to this side by default (set data.image_size to keep more)
MACS_PER_PARAM_PIXEL = 2_000_000 / (8000 * 28 * 28)  # mnist_8k's budget: 2M MACs for 8k params at 28x28


def look(path: Path) -> tuple[str, tuple[int, int] | None, int | None]:
    """(dataset kind, image_size to write or None for the images' own, channels or None) from a quick look."""
    if path.is_file() and path.suffix.lower() == ".npz":
        return "arrays", None, None
    if not path.exists():
        raise UserError(f"{path}: no such folder or .npz file")
    listing = I.scan_folder(path)
    files = [f for f, _ in listing.train + (listing.test or [])]
    step = max(1, len(files) // 2000)  # headers of up to ~2,000 images say enough about the sizes
    heads = [header(f) for f in files[::step]]  # upright: a sideways tag swaps height and width
    sizes = Counter((h, w) for h, w, _ in heads)
    channels = 1 if all(g for _, _, g in heads) else 3
    (h, w), _ = sizes.most_common(1)[0]
    if len(sizes) > 1 or max(h, w) > MAX_OWN_SIZE:
        side = min(MAX_OWN_SIZE, int(statistics.median(min(a, b) for a, b in sizes.elements())))
        return "folder", (side, side), channels
    return "folder", None, channels


BALANCED_ABOVE = 3.0  # largest / smallest class: above this ratio the search selects on balanced accuracy


def class_counts(data: D.Data) -> list[int]:
    """Training images (train and validation splits) per class."""
    per_class = Counter(data.train.y.tolist() + data.val.y.tolist())
    return [per_class.get(i, 0) for i in range(data.meta.classes)]


def imbalance(data: D.Data) -> float:
    """Training images of the largest class per image of the smallest."""
    counts = class_counts(data)
    return max(counts) / max(1, min(counts))


def data_summary(data: D.Data, kind: str) -> list[str]:
    m = data.meta
    counts = class_counts(data)
    lo, hi = min(counts), max(counts)
    names = ", ".join(m.class_names[:8]) + (", ..." if m.classes > 8 else "")
    lines = [f"{kind}: {len(data.train) + len(data.val):,} training images, {len(data.test):,} test images"
             f"{' (held out of the folder: ' + str(data.test_split['images']) + ')' if data.test_split else ''}",
             f"images: {m.height}x{m.width} px, {m.channels} channel(s)",
             f"classes: {m.classes} ({names}); {lo:,} to {hi:,} training images per class"
             + (f": imbalanced {hi / max(1, lo):.1f}:1 (a stratified validation split keeps the ratio)" if hi > 2 * lo else "")]
    if data.skipped:
        lines.append(f"skipped: {data.skipped} file(s), hidden or not images")
    return lines + [f"note: {note}" for note in data.notes]


# The space nas-init writes; {fields} are filled by space_text. Two designs: small grey images get
# spaces/mnist_8k.yaml's (the seed task's hand net: unpadded convs, one pool, a 1x1 squeeze); colour or larger
# images get the plain net a user would write (a conv-BN-ReLU stage per halving of the map down to 8 px or less,
# then a last pool), which the digit net does not suit.
TEMPLATE = """# Written by nas-init for {root}: {classes} classes, {height}x{width} px, {channels} channel(s),
# {n_train:,} training images. {design_note}
# Run: nas-run {file} --trials 40{minutes}    Price it first: nas-run {file} --check
name: {name}

data:
  dataset: {kind}
  root: {root_yaml}
{size_line}{channel_line}  val_fraction: {val}      # held out of training for selection and pruning (stratified, seeded)

model:
  family: convnet
  stages:                 # a stage = `depth` 3x3 convs of `width` channels; pool: true starts it with a transition
{stages}
{model_keys}
  bn: true
  bias: false

train:
  batch_size: {batch_sizes}   # {batch_note}
  optimizer: [sgd, adamw]
  lr: {{by: optimizer, sgd: {{low: 0.02, high: 0.3, log: true}}, adamw: {{low: 0.001, high: 0.01, log: true}}}}
  momentum: 0.9
  weight_decay: {{low: 1e-5, high: 1e-3, log: true}}
  scheduler: [onecycle, cosine]
  label_smoothing: [0.0, 0.05, 0.1]
{class_weight}  augment:
{augment}

budget:
  params: {params}
  macs: {macs}          # per image
  fill: true              # the sampled widths set each candidate's shape; they are scaled to just under both limits

search:
  trials: 40
  metric: {metric}
{search_epochs}{min_epochs}  pruner: successive_halving  # first rung at ~epochs / 7 (search.min_epochs), 1 in 3 goes on at each rung
  reduction_factor: 3
  startup: neighbourhood  # the first 10 sampled trials each change 1-3 values of the best so far (2x the trials a minute)
  race_top: 3
  race_seeds: 2
  race_margin: 0.005
  seed: 0
  first_trials:           # trained first, at full length: {design_name} and recipe, plain and separable
    - &design {{{design}}}
{second_design}

retrain:
  epochs: {epochs}             # {epochs_note}
  seeds: 3
"""
DIGIT_MODEL_KEYS = """  padding: [same, valid]
  separable: [false, true]      # depthwise 3x3 + pointwise 1x1 after the stem: more channels in the same params
  transition: [pool, pool_1x1]
  squeeze: [0.5, 0.75, 1.0]
  head: [gap, gap_fc]
  fc_width: [0, 16]
  dropout: {low: 0.0, high: 0.1}"""
PLAIN_MODEL_KEYS = """  final_pool: [true, false]     # a last 2x2 max-pool before the head (the plain net's last stage pools too)
  separable: [false, true]      # depthwise 3x3 + pointwise 1x1 after the stem: more channels in the same params
  head: [gap, gap_fc]
  fc_width: [0, 32]
  dropout: {low: 0.0, high: 0.2}"""
PLAIN_WIDTHS = (12, 24, 32, 48, 64, 96, 128)  # the plain design's widths per stage: a user's 12-24-32-48 net, on
PLAIN_HIGHS = (32, 48, 64, 96, 128, 160, 192)  # the upper ends of the searched width ranges (fill sets the size)
FINAL_MAP = 8  # the plain design halves the map until its last convs run at this many px or fewer
REFERENCE = (8000, 15)  # mnist_8k's training length: 15 epochs for 8,000 images; a set n times smaller trains
EPOCHS_RANGE = (30, 60)  # sqrt(n) times as many epochs (42 at 1,000), within this range. At least the 30 a user's
# plain CNN trains: both designs retrained 1.1-1.7 pt higher at 30 than at 15-22 on 3,800-8,000 images, 40 no higher
# (RESULTS.md, "nas-init's training length")


def training_epochs(n_train: int) -> int:
    """Epochs for `n_train` training images: more passes over a smaller set, so that it still takes enough optimizer
    steps, but fewer than its size alone would ask (a small set also overfits sooner)."""
    images, epochs = REFERENCE
    return max(EPOCHS_RANGE[0], min(EPOCHS_RANGE[1], round(epochs * math.sqrt(images / max(1, n_train)))))


# A rung decides on what a trial learned in its first optimizer steps: on the small sets of the --minutes 3
# benchmark, 75-100% of sampled trials at batch 256 (6-9 steps an epoch) were near chance at the first rung whatever
# the rung; batch 128 23% at ~23 steps before it, 9% at ~47; batch 64 6-8% at 47-94 (RESULTS.md, "--minutes 3").
BATCH_SIZES = (16, 32, 64, 128, 256)
MIN_STEPS_PER_EPOCH = 15  # the batch sizes searched: the three largest with at least this many steps an epoch
FIRST_RUNG_STEPS = 45  # the first rung comes after at least this many steps at the largest of them


def batch_sizes(n_search: int) -> list[int]:
    """The batch sizes to search for `n_search` training images an epoch (8,000 images: 64, 128, 256)."""
    fit = [b for b in BATCH_SIZES if n_search / b >= MIN_STEPS_PER_EPOCH] or list(BATCH_SIZES[:1])
    return fit[-3:]


def first_rung(search_epochs: int, n_search: int, largest_batch: int) -> int:
    """search.min_epochs: nas-run's default (~epochs / 7), or later where an epoch at the largest batch size takes
    too few steps to tell a slow starter from a hopeless one; at most half the trial."""
    steps = max(1, n_search // largest_batch)
    return max(default_min_epochs(search_epochs), min(search_epochs // 2, math.ceil(FIRST_RUNG_STEPS / steps)))


def _yaml_items(design: dict, width: int = 110) -> str:
    """A flow mapping's items, wrapped for the reader (continuation lines indented under the first)."""
    items = [f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in design.items()]
    lines = [""]
    for item in items:
        if lines[-1] and len(lines[-1]) + len(item) + 2 > width:
            lines.append("")
        lines[-1] += (", " if lines[-1] else "") + item
    return ",\n       ".join(lines)


def digit_design(side: int) -> tuple[list[str], dict]:
    """(stage lines, design) of spaces/mnist_8k.yaml, with early pools that bring a map over 32 px to <= 32."""
    early = max(0, math.ceil(math.log2(side / 32))) if side > 32 else 0
    stages = ["    - {width: {low: 4, high: 16}, depth: [1, 2]}                 # the stem, at full resolution"]
    stages += ["    - {width: {low: 4, high: 16}, depth: 1, pool: true}          # an early pool: halves the map"] * early
    stages += ["    - {width: {low: 4, high: 24}, depth: [0, 1, 2], pool: false}  # wider, same resolution (0: no stage)",
               "    - {width: {low: 4, high: 32}, depth: [0, 1], pool: false}     # wider again",
               "    - {width: {low: 8, high: 32}, depth: [1, 2, 3], pool: true}   # after a pool",
               "    - {width: {low: 8, high: 32}, depth: [0, 1, 2], pool: [true, false]}  # a second pool, or more here"]
    n = 1 + early  # index of the first mnist_8k slot after the stem and the early pools
    design = {f"model.stage{i}.width": 8 for i in range(n)} | {"model.stage0.depth": 1}  # early stages: depth fixed
    design |= {f"model.stage{n}.width": 12, f"model.stage{n}.depth": 1, f"model.stage{n + 1}.width": 16,
               f"model.stage{n + 1}.depth": 1, f"model.stage{n + 2}.width": 12, f"model.stage{n + 2}.depth": 1,
               f"model.stage{n + 3}.width": 16, f"model.stage{n + 3}.depth": 2, f"model.stage{n + 3}.pool": False,
               "model.padding": "valid", "model.separable": False, "model.transition": "pool_1x1",
               "model.squeeze": 0.5, "model.head": "gap", "model.fc_width": 0, "model.dropout": 0.05,
               "train.batch_size": 128, "train.optimizer": "sgd", "train.lr.sgd": 0.1, "train.weight_decay": 1.0e-4,
               "train.scheduler": "onecycle", "train.label_smoothing": 0.0,
               "train.augment.rotate": 7.0, "train.augment.crop": 0, "train.augment.flip": False}
    return stages, design


def plain_design(height: int, width: int, colour: bool) -> tuple[list[str], dict]:
    """(stage lines, design) of the plain net: a stem at full resolution, then a stage per halving of the map until
    its convs run at FINAL_MAP px or fewer (or the short side would vanish), each one conv-BN-ReLU at widths
    12-24-32-48..., a last pool, GAP; AdamW with OneCycle, random crops (and flips for colour images)."""
    side = max(height, width)
    pools = max(1, min(math.ceil(math.log2(side / FINAL_MAP)), int(math.log2(min(height, width))) - 1))
    stages, design, size = [], {}, side
    for i in range(pools + 1):
        low, high = (8 if i < 2 else 16), PLAIN_HIGHS[min(i, len(PLAIN_HIGHS) - 1)]
        where = f"the stem, at {size} px" if i == 0 else f"pool to {size} px"
        pool = "" if i == 0 else ", pool: true"
        stages.append(f"    - {{width: {{low: {low}, high: {high}}}, depth: [1, 2]{pool}}}".ljust(66) + f"# {where}")
        design |= {f"model.stage{i}.width": PLAIN_WIDTHS[min(i, len(PLAIN_WIDTHS) - 1)], f"model.stage{i}.depth": 1}
        size //= 2
    design |= {"model.final_pool": True, "model.separable": False, "model.head": "gap", "model.fc_width": 0,
               "model.dropout": 0.0, "train.batch_size": 64, "train.optimizer": "adamw", "train.lr.adamw": 0.005,
               "train.weight_decay": 5.0e-4, "train.scheduler": "onecycle", "train.label_smoothing": 0.0,
               "train.augment.crop": _crop(side), "train.augment.flip": colour}
    # every augmentation key the space searches is set: one left out would be sampled (colour jitter, rotation),
    # and the design would not be the plain net it says it is
    design |= {"train.augment.brightness": 0.0, "train.augment.contrast": 0.0} if colour else {"train.augment.rotate": 0.0}
    return stages, design


def _crop(side: int) -> int:
    return max(1, round(side / 14))


def augment_lines(side: int, colour: bool) -> str:
    """Colour photos: crops, flips and colour jitter; grey images (digits, text, scans): small rotations and crops,
    flips left to the search (wrong for digits, right for clothes)."""
    lines = [f"    crop: [0, {_crop(side)}]                    # random translation up to this many pixels",
             "    flip: [false, true]                # right for most objects, wrong for text and digits: the search finds out"]
    if colour:
        lines += ["    brightness: [0.0, 0.2]", "    contrast: [0.0, 0.2]"]
    else:
        lines.insert(0, "    rotate: {low: 0.0, high: 15.0}   # degrees")
    return "\n".join(lines)


def class_weight_line(ratio: float) -> str:
    """Imbalanced over BALANCED_ABOVE : 1: the search may weight the loss by class (or not)."""
    if ratio <= BALANCED_ABOVE:
        return ""
    return "  class_weight: [none, balanced]   # balanced: each class weighs the same in the loss, whatever its count\n"


def metric_line(ratio: float) -> str:
    """search.metric and its comment: balanced accuracy when the classes are imbalanced over BALANCED_ABOVE : 1."""
    if ratio > BALANCED_ABOVE:
        return (f"balanced_accuracy   # classes imbalanced {ratio:.1f}:1: the mean per-class recall, so a net cannot "
                "score by ignoring a small class")
    return f"accuracy            # classes balanced within {BALANCED_ABOVE:g}:1 ({ratio:.1f}:1); balanced_accuracy for more"


SEARCH_SHARE = 0.6  # with --minutes, the search's share of the wall-clock (nas-run sizes the race and retrain to <= 40%)
DESIGN_SHARE = 1 / 3  # of the search's share, the most the two designs (trained first, at full planned length) may take
MIN_SEARCH_EPOCHS = 4
SLOW_DESIGN = 2.0  # with --minutes, the separable design is left out when an epoch of it takes this many times the
# plain one's: on CPU its depthwise convs run far below their MACs (3x the plain design's time on the 64-px task, for
# fewer MACs), and trained first at full length it took the search's time; the search may still sample it


def slow_separable_note(seconds: list[float]) -> str:
    """Why the separable design is left out ("" when it is not): its epoch against the plain one's."""
    if len(seconds) < 2 or seconds[1] <= SLOW_DESIGN * seconds[0]:
        return ""
    return (f"the separable design is left out: an epoch of it takes ~{seconds[1]:.0f} s here, {seconds[1] / seconds[0]:.1f}x "
            f"the plain one's (--minutes); the search may still sample separable: true")


def design_wall_seconds(design_seconds: list[float], workers: int) -> float:
    """Wall-clock of one epoch of every design, the designs training at once on `workers` single-thread workers."""
    return max(max(design_seconds), sum(design_seconds) / max(1, workers))


def search_epochs(retrain_epochs: int, design_seconds: list[float], minutes: float, workers: int) -> int:
    """`search.epochs` for a `--minutes` run: the longest planned length (up to the retrain's) at which the designs
    (seconds per epoch each), trained first on `workers` single-thread workers, take at most DESIGN_SHARE of the
    search's time, so that sampled candidates get the rest; never below MIN_SEARCH_EPOCHS (or the retrain's)."""
    fit = int(minutes * 60 * SEARCH_SHARE * DESIGN_SHARE / design_wall_seconds(design_seconds, workers))
    return max(min(MIN_SEARCH_EPOCHS, retrain_epochs), min(retrain_epochs, fit))


def search_epochs_line(epochs: int, retrain_epochs: int, minutes: float, wall_seconds: float) -> str:
    if epochs >= retrain_epochs:
        return ""
    return (f"  epochs: {epochs}               # --minutes {minutes:g}: an epoch of the designs takes ~{wall_seconds:.0f} s "
            f"here, so trials\n                          # train {epochs} epochs, the retrain {retrain_epochs}: the designs "
            "leave the search two thirds of its time\n")


def space_text(name: str, file: str, root: str, kind: str, size: tuple[int, int] | None, channels: int | None, meta: Meta,
               n_train: int, params: int, macs: int, minutes: float | None, ratio: float = 1.0,
               search_epochs_text: str = "", slow_separable: str = "", trial_epochs: int | None = None) -> str:
    """The space file, commented for the reader who will edit it. `slow_separable`: why the separable design is
    left out (else it is the second design); `trial_epochs`: search.epochs where it is not the retrain's."""
    side = max(meta.height, meta.width)
    colour = meta.channels == 3
    if colour or side > 32:
        stages, design = plain_design(meta.height, meta.width, colour)
        keys, design_name = PLAIN_MODEL_KEYS, "a plain conv-BN-ReLU-pool net"
        note = ("Designs: the plain net a user would write for them (a conv-BN-ReLU\n# stage per halving of the "
                f"map down to <= {FINAL_MAP} px, AdamW + OneCycle), plain and separable; the search starts there.")
    else:
        stages, design = digit_design(side)
        keys, design_name = DIGIT_MODEL_KEYS, "the seed task's hand net"
        note = "The design of spaces/mnist_8k.yaml (read it for the why of each\n# key), scaled to this budget."
    if ratio > BALANCED_ABOVE:  # trained for what it is selected on: a small class's few validation images cannot
        design["train.class_weight"] = "balanced"  # be relied on to tell the weighted nets (RESULTS.md, imbalance)
    epochs = training_epochs(n_train)
    val = 0.25 if n_train <= 20_000 else 0.1
    n_search = round(n_train * (1 - val))
    batches = batch_sizes(n_search)
    design["train.batch_size"] = min(design["train.batch_size"], max(batches))  # the design's, or the largest searched
    rung = first_rung(trial_epochs or epochs, n_search, max(batches))
    min_epochs = "" if rung == default_min_epochs(trial_epochs or epochs) else (
        f"  min_epochs: {rung}            # the first rung: >= {FIRST_RUNG_STEPS} steps at batch {max(batches)} "
        f"({n_search // max(batches)} an epoch)\n")
    size_line = f"  image_size: {list(size) if size[0] != size[1] else size[0]}   # resized once at load (antialiased)\n" if size else ""
    channel_line = f"  channels: {channels}\n" if channels else ""
    return TEMPLATE.format(
        root=root, root_yaml=json.dumps(root), classes=meta.classes, height=meta.height, width=meta.width,
        channels=meta.channels, n_train=n_train, design_note=note, file=file,
        minutes=f" --minutes {minutes:g}" if minutes else "", name=name, kind=kind, size_line=size_line,
        channel_line=channel_line, val=val, stages="\n".join(stages), model_keys=keys,
        augment=augment_lines(side, colour), metric=metric_line(ratio), class_weight=class_weight_line(ratio),
        search_epochs=search_epochs_text, min_epochs=min_epochs, params=params, macs=macs, design_name=design_name,
        batch_sizes="[" + ", ".join(map(str, batches)) + "]",
        batch_note=f"each >= {MIN_STEPS_PER_EPOCH} steps an epoch on {n_search:,} images",
        second_design=f"    # {slow_separable}" if slow_separable else "    - {<<: *design, model.separable: true}",
        design=_yaml_items(design), epochs=epochs,
        epochs_note=f"{REFERENCE[1]} x sqrt({REFERENCE[0]:,} / {n_train:,} training images): a smaller set needs "
                    f"more passes; in {EPOCHS_RANGE[0]}-{EPOCHS_RANGE[1]}")


TIMED_IMAGES = 1500  # nas-init times one real epoch of the design on this many images (a few seconds) and scales
WARMUP_STEPS = 3  # untimed steps of each design before its timed epoch (why: design_epoch_seconds)


def design_epoch_seconds(space, data: D.Data, n_images: int) -> list[float]:
    """Seconds one search epoch of each design takes in a single-thread worker (as `--workers auto` runs on a CPU):
    one real epoch (augmentation and validation included) on up to TIMED_IMAGES of the images, scaled to the search's
    split. Each design is timed: on the 64-px colour task the separable one took 3x the plain one's 4.2 s."""
    import time

    import torch

    from search import check
    from search.train import train

    n_val = round(n_images * space.data.val_fraction)
    k = min(len(data.train), TIMED_IMAGES)
    part = D.Split(data.train.x[:k], data.train.y[:k])
    v = max(1, k * n_val // max(1, n_images - n_val))  # validation images in the search's proportion
    val = D.Split(data.val.x[:v], data.val.y[:v])
    threads, seconds = torch.get_num_threads(), []
    torch.set_num_threads(1)
    try:
        for cand, model in check.design_models(space, data.meta):
            torch.manual_seed(0)
            # a few untimed steps first: the process's first steps are slow (allocation, kernel choice); they put the
            # plain design, timed first, at 7.0 s an epoch against 3.4-3.6 s timed again, and the separable one at
            # 1.5x of it instead of 2.4-2.9x (RESULTS.md, "the 64-px colour task at `--minutes 20`")
            warm = min(k, WARMUP_STEPS * cand.train.batch_size)
            train(model, D.Split(part.x[:warm], part.y[:warm]), None, data.mean, data.std, cand.train, 1)
            t0 = time.perf_counter()
            train(model, part, val, data.mean, data.std, cand.train, 1)
            seconds.append((time.perf_counter() - t0) * (n_images - n_val) / k)
    finally:
        torch.set_num_threads(threads)
    return seconds


def init(data_path: str, params: int = 8000, macs: int | None = None, minutes: float | None = None,
         out: str | None = None, console=None) -> int:
    from search import budget as B
    from search import space as S

    path = Path(data_path)
    kind, size, channels = look(path)
    cfg = S.data_config(dataset=kind, root=str(path), **({"image_size": list(size)} if size else {}),
                        **({"channels": channels} if channels else {}))
    try:
        data = D.load(cfg, "cpu", 0)
    except UserError as e:
        raise UserError(f"{data_path}: {e}" if not str(e).startswith(str(path)) else str(e)) from None
    for line in data_summary(data, kind):
        console.print(line, highlight=False)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem.strip("._-") or "data") + f"_{params // 1000 or params}k"
    target = Path(out) if out else Path(f"{name}.yaml")
    if target.exists():
        raise UserError(f"{target}: exists; nas-init does not overwrite a file (choose another with --out)")
    m = data.meta
    macs = macs or int(MACS_PER_PARAM_PIXEL * params * m.height * m.width)
    study = re.sub(r"[^A-Za-z0-9_.-]+", "_", target.stem) or name
    n = len(data.train) + len(data.val)
    text = space_text(study, str(target), str(path), kind, size, cfg.channels, m, n, params, macs, minutes, imbalance(data))
    space = S.parse(S.read_yaml(text), str(target), text)  # as nas-run will read it
    B.preflight(space, m)  # a budget no candidate of this space meets is one line here, not a file that fails later
    if minutes:
        seconds, workers = design_epoch_seconds(space, data, n), os.cpu_count() or 1
        slow = slow_separable_note(seconds)
        seconds = seconds[:1] if slow else seconds
        epochs = search_epochs(space.retrain.epochs, seconds, minutes, workers)
        line = search_epochs_line(epochs, space.retrain.epochs, minutes, design_wall_seconds(seconds, workers))
        if line or slow:
            text = space_text(study, str(target), str(path), kind, size, cfg.channels, m, n, params, macs, minutes,
                              imbalance(data), line, slow, epochs)
            space = S.parse(S.read_yaml(text), str(target), text)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    pools = sum(1 for stage in space.stages if stage["pool"].value is True)
    shorter = f" (search trials {space.search.epochs}, to fit --minutes {minutes:g})" if (
        space.search.epochs < space.retrain.epochs) else ""
    console.print(f"wrote {target}: convnet space, <= {params:,} params and {macs:,} MACs per image, {pools} pool(s) "
                  f"for {m.height}x{m.width} px, {space.retrain.epochs} epochs{shorter} for {n:,} training images, "
                  f"selected on {space.search.metric.replace('_', ' ')}", highlight=False)
    console.print(f"next: nas-run {target} --trials 40{f' --minutes {minutes:g}' if minutes else ''}", highlight=False)
    return 0
