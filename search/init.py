"""`nas-init DATA [--params N] [--macs M] [--minutes T] [--out FILE]`: look at your images, write a space for them.

DATA is an image folder (a sub-folder per class, or train/ and test/ holding them) or a Keras-style .npz. The
space follows spaces/mnist_8k.yaml's design (stage slots, fill, the hand net and its separable twin as first
trials, a race), with pools in front that bring large images down to ~28 px early, so the MACs budget holds. The
file is checked as nas-run will check it (parsed, and a candidate within budget found) before it is written.
"""
from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter
from pathlib import Path

from search import data as D
from search import images as I
from search.catalogue import Meta
from search.errors import UserError

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
    heads = [I.header(f) for f in files[::step]]
    sizes = Counter((h, w) for h, w, _ in heads)
    channels = 1 if all(g for _, _, g in heads) else 3
    (h, w), _ = sizes.most_common(1)[0]
    if len(sizes) > 1 or max(h, w) > MAX_OWN_SIZE:
        side = min(MAX_OWN_SIZE, int(statistics.median(min(a, b) for a, b in sizes.elements())))
        return "folder", (side, side), channels
    return "folder", None, channels


def data_summary(data: D.Data, kind: str) -> list[str]:
    m = data.meta
    per_class = Counter(data.train.y.tolist() + data.val.y.tolist())
    counts = [per_class.get(i, 0) for i in range(m.classes)]
    lo, hi = min(counts), max(counts)
    names = ", ".join(m.class_names[:8]) + (", ..." if m.classes > 8 else "")
    lines = [f"{kind}: {len(data.train) + len(data.val):,} training images, {len(data.test):,} test images"
             f"{' (held out of the folder: ' + str(data.test_split['images']) + ')' if data.test_split else ''}",
             f"images: {m.height}x{m.width} px, {m.channels} channel(s)",
             f"classes: {m.classes} ({names}); {lo:,} to {hi:,} training images per class"
             + (f": imbalanced {hi / max(1, lo):.1f}:1 (a stratified validation split keeps the ratio)" if hi > 2 * lo else "")]
    if data.skipped:
        lines.append(f"skipped: {data.skipped} file(s), hidden or not images")
    return lines


# The space nas-init writes: spaces/mnist_8k.yaml's design; {fields} are filled by space_text.
TEMPLATE = """# Written by nas-init for {root}: {classes} classes, {height}x{width} px, {channels} channel(s).
# The design of spaces/mnist_8k.yaml (read it for the why of each key), scaled to these images and this budget.
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
  padding: [same, valid]
  separable: [false, true]      # depthwise 3x3 + pointwise 1x1 after the stem: more channels in the same params
  transition: [pool, pool_1x1]
  squeeze: [0.5, 0.75, 1.0]
  head: [gap, gap_fc]
  fc_width: [0, 16]
  dropout: {{low: 0.0, high: 0.1}}
  bn: true
  bias: false

train:
  batch_size: [64, 128, 256]
  optimizer: [sgd, adamw]
  lr: {{by: optimizer, sgd: {{low: 0.02, high: 0.3, log: true}}, adamw: {{low: 0.001, high: 0.01, log: true}}}}
  momentum: 0.9
  weight_decay: {{low: 1e-5, high: 1e-3, log: true}}
  scheduler: [onecycle, cosine]
  label_smoothing: [0.0, 0.05, 0.1]
  augment:
    rotate: {{low: 0.0, high: 15.0}}   # degrees
    crop: [0, {crop}]                    # random translation up to this many pixels
    flip: [false, true]                # right for most objects, wrong for text and digits: the search finds out

budget:
  params: {params}
  macs: {macs}          # per image
  fill: true              # the sampled widths set each candidate's shape; they are scaled to just under both limits

search:
  trials: 40
  pruner: successive_halving
  min_epochs: 2
  reduction_factor: 3
  race_top: 3
  race_seeds: 2
  race_margin: 0.005
  seed: 0
  first_trials:           # trained first, at full length: the seed task's hand net and recipe, plain and separable
    - &hand_net {{{hand}, model.padding: valid, model.separable: false, model.transition: pool_1x1,
       model.squeeze: 0.5, model.head: gap, model.fc_width: 0, model.dropout: 0.05,
       train.batch_size: 128, train.optimizer: sgd, train.lr.sgd: 0.1, train.weight_decay: 1.0e-4,
       train.scheduler: onecycle, train.label_smoothing: 0.0,
       train.augment.rotate: 7.0, train.augment.crop: 0, train.augment.flip: false}}
    - {{<<: *hand_net, model.separable: true}}

retrain:
  epochs: 15
  seeds: 3
"""


def space_text(name: str, file: str, root: str, kind: str, size: tuple[int, int] | None, channels: int | None, meta: Meta,
               n_train: int, params: int, macs: int, minutes: float | None) -> str:
    """The space file, commented for the reader who will edit it."""
    side = max(meta.height, meta.width)
    early = max(0, math.ceil(math.log2(side / 32))) if side > 32 else 0  # pools that bring the map to <= 32 px
    val = 0.25 if n_train <= 20_000 else 0.1
    crop = max(1, round(side / 14))
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
               f"model.stage{n + 3}.width": 16, f"model.stage{n + 3}.depth": 2, f"model.stage{n + 3}.pool": False}
    hand = ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in design.items())
    size_line = f"  image_size: {list(size) if size[0] != size[1] else size[0]}   # resized once at load (antialiased)\n" if size else ""
    channel_line = f"  channels: {channels}\n" if channels else ""
    return TEMPLATE.format(
        root=root, root_yaml=json.dumps(root), classes=meta.classes, height=meta.height, width=meta.width,
        channels=meta.channels, file=file, minutes=f" --minutes {minutes:g}" if minutes else "", name=name, kind=kind,
        size_line=size_line, channel_line=channel_line, val=val, stages="\n".join(stages), crop=crop, params=params,
        macs=macs, hand=hand)


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
    text = space_text(study, str(target), str(path), kind, size, cfg.channels, m, len(data.train) + len(data.val),
                      params, macs, minutes)
    space = S.parse(S.read_yaml(text), str(target), text)  # as nas-run will read it
    B.preflight(space, m)  # a budget no candidate of this space meets is one line here, not a file that fails later
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    console.print(f"wrote {target}: convnet space, <= {params:,} params and {macs:,} MACs per image, "
                  f"{max(0, len(space.stages) - 5)} early pool(s) for {m.height}x{m.width} px", highlight=False)
    console.print(f"next: nas-run {target} --trials 40{f' --minutes {minutes:g}' if minutes else ''}", highlight=False)
    return 0
