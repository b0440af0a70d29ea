"""YAML search space -> validated `Space`; `space.sample(trial, meta)` -> a `record.Candidate`.

Grammar, for every searchable key: a scalar is fixed, a list is a categorical choice, a mapping
`{low, high, log?, step?}` is a range (int or float as the key's type says), and a mapping `{by: KEY, VALUE: ...}`
is conditional: one scalar / choice / range per value of the categorical key KEY (a key of the same section, or a
parameter's full name), e.g. `lr: {by: optimizer, sgd: {low: 0.02, high: 0.3}, adamw: {low: 0.001, high: 0.01}}`.
Only the branch of the value sampled for KEY is sampled, under a name of its own (`train.lr.sgd`): a name whose
range changed from trial to trial would drop out of multivariate TPE's joint model. `model.stages` is a list of
per-stage mappings (one entry per stage, each value again scalar / choice / range / conditional). The sections
data, budget, search and retrain hold fixed values only. Every error names file, key path and expected form.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna.distributions
import yaml

import models
from search.catalogue import DATASETS, OWN_DATA, Meta
from search.errors import SpaceError
from search.record import Augment, Candidate, Recipe

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("onecycle", "cosine", "step", "multistep", "exponential", "none")
SAMPLERS = ("tpe", "random", "qmc", "gp", "cmaes")
PRUNERS = ("successive_halving", "hyperband", "median", "none")
TRAIN_ON = ("train", "train+val")
SET_BY_DATASET = ("in_channels", "num_classes", "image_size")
MIN_SIZE, MAX_SIZE = 8, 512  # data.image_size, pixels


REQUIRED = object()  # a Spec default: the key must be given


@dataclass(frozen=True)
class Spec:
    """One key: its type, default (REQUIRED, or None for an optional key left unset), a check and the words
    for what it expects."""

    type: type
    default: Any
    expected: str
    ok: Callable[[Any], bool] = lambda v: True
    choices: tuple = ()


def _num(lo=None, hi=None, lo_open=False, hi_open=False):
    def ok(v):
        return not (
            (lo is not None and (v < lo or (lo_open and v == lo)))
            or (hi is not None and (v > hi or (hi_open and v == hi)))
        )

    return ok


def _s(choices: tuple, default) -> Spec:
    return Spec(str, default, "one of " + ", ".join(choices), choices=choices)


POS_INT = ("an integer >= 1", _num(1))
NONNEG = ("a number >= 0", _num(0))
FRACTION = ("a number in [0, 1)", _num(0, 1, hi_open=True))

COLOUR = 'a colour name (white, black, grey, ...), "#rrggbb" or [r, g, b] with values 0-255'
DATA = {
    "dataset": _s((*DATASETS, *OWN_DATA), REQUIRED),
    "root": Spec(str, "data", "a path (a folder; for arrays the .npz file)"),
    "val_fraction": Spec(float, 0.1, "a number in (0, 0.5]", _num(0, 0.5, lo_open=True)),
    "extra": Spec(bool, False, "true or false (svhn only: add the 531k-image extra split)"),
    # unset: the images' own size (folder: when they all share one)
    "image_size": Spec(int, None, f"an integer in [{MIN_SIZE}, {MAX_SIZE}] or [height, width] of them (pixels)",
                       _num(MIN_SIZE, MAX_SIZE)),
    "channels": Spec(int, None, "1 or 3 (unset: 1 when every image is grey, else 3)", lambda v: v in (1, 3)),
    "test_fraction": Spec(float, 0.2, "a number in (0, 0.5] (folder without test/: the held-out test share)",
                          _num(0, 0.5, lo_open=True)),
    # white: transparent icons, cut-outs and logos are made to be seen on a page, and a page is white unless told
    "background": Spec(str, "white", COLOUR + " (what transparent pixels are composited onto)"),
}
LADDER = "; or a ladder: a list of them, increasing, one search tier each"
BUDGET = {
    "params": Spec(int, None, "an integer > 0 (trainable parameters)" + LADDER, _num(1)),
    "macs": Spec(int, None, "an integer > 0 (multiply-accumulates per image)" + LADDER, _num(1)),
    "train_seconds": Spec(float, None, "a number > 0 (seconds of one full retrain)", _num(0, lo_open=True)),
    "fill": Spec(bool, False, "true or false (scale every candidate's widths to just under the params/MACs limits)"),
    "latency_ms": Spec(float, None, "a number > 0 (milliseconds for one image in onnxruntime, 1 CPU thread)",
                       _num(0, lo_open=True)),
    "peak_memory_kb": Spec(float, None, "a number > 0 (KB of activations live at once, batch 1, fp32)",
                           _num(0, lo_open=True)),
}
LADDER_PRUNERS = ("successive_halving", "median", "none")  # Hyperband's bracket studies read the storage directly
METRICS = ("accuracy", "balanced_accuracy")
SEARCH = {
    "trials": Spec(int, 50, *POS_INT),
    # balanced_accuracy: the mean of the per-class recalls, so a model cannot score by ignoring a small class
    "metric": Spec(str, "accuracy", "accuracy or balanced_accuracy (the mean of the per-class recalls)",
                   choices=METRICS),
    "epochs": Spec(int, None, *POS_INT),  # unset: retrain.epochs (full fidelity)
    "data_fraction": Spec(float, 1.0, "a number in (0, 1]", _num(0, 1, lo_open=True)),
    "sampler": _s(SAMPLERS, "tpe"),
    "multivariate": Spec(bool, True, "true or false"),
    "seed": Spec(int, 0, "an integer >= 0", _num(0)),
    "pruner": _s(PRUNERS, "successive_halving"),
    "min_epochs": Spec(int, None, "an integer >= 1 (epochs every trial trains before its first rung)", _num(1)),
    "reduction_factor": Spec(int, 3, "an integer >= 2 (1 in reduction_factor trials goes on at each rung)", _num(2)),
    "first_rung_fraction": Spec(float, 1.0, "a number in (0, 1] (share of the training images each epoch before the "
                                "first rung trains on; 1: all)", _num(0, 1, lo_open=True)),
    "startup": _s(("random", "neighbourhood"), "random"),
    "startup_trials": Spec(int, 10, "an integer >= 0", _num(0)),
    "warmup_epochs": Spec(int, 1, "an integer >= 0", _num(0)),
    # off by default: a OneCycle warm-up can leave a good trial at chance after its first epoch (RESULTS.md,
    # "The first-epoch stop")
    "first_epoch_floor": Spec(float, 0.0, "a number >= 0 (a sampled trial at or below this multiple of chance after "
                              "its first epoch stops; 0: never)", _num(0)),
    "race_top": Spec(int, 3, "an integer >= 0 (finalists raced on more seeds; 0: no race)", _num(0)),
    "race_first_trials": Spec(bool, True, "true or false (the search.first_trials designs race too, wherever they "
                              "ranked: the winner has to beat them on fresh images)"),
    "race_margin": Spec(float, 0.0, "a number in [0, 0.1] (mean validation accuracy a finalist must gain over the "
                        "best raced first_trials design to replace it)", _num(0, 0.1)),
    "race_seeds": Spec(int, 3, "an integer >= 2 (race_seeds - 1 race rounds per finalist)", _num(2)),
    # unset: data.val_fraction (a race round validates on as many images as the search)
    "race_val_fraction": Spec(float, None, "a number in (0, 0.5] (share of the training data each race round "
                              "validates on)", _num(0, 0.5, lo_open=True)),
    "max_rejections": Spec(int, 200, *POS_INT),
    "max_failures": Spec(int, 3, "an integer >= 1 (failed trials in a row that stop the run)", _num(1)),
}
RETRAIN = {
    "epochs": Spec(int, REQUIRED, *POS_INT),
    "seeds": Spec(int, 3, *POS_INT),
    "train_on": _s(TRAIN_ON, "train+val"),
}
TRAIN = {
    "batch_size": Spec(int, 128, *POS_INT),
    "optimizer": _s(OPTIMIZERS, "sgd"),
    "lr": Spec(float, REQUIRED, "a number > 0", _num(0, lo_open=True)),
    "momentum": Spec(float, 0.9, *FRACTION),
    "nesterov": Spec(bool, True, "true or false"),
    "weight_decay": Spec(float, 5e-4, *NONNEG),
    "scheduler": _s(SCHEDULERS, "onecycle"),
    "warmup_fraction": Spec(float, 0.25, *FRACTION),
    "gamma": Spec(float, 0.1, "a number in (0, 1]", _num(0, 1, lo_open=True)),
    "step_fraction": Spec(float, 1 / 3, "a number in (0, 1)", _num(0, 1, True, True)),
    "label_smoothing": Spec(float, 0.0, *FRACTION),
    "class_weight": _s(("none", "balanced"), "none"),
}
AUGMENT = {
    "crop": Spec(int, 0, "an integer >= 0 (padding in pixels)", _num(0)),
    "flip": Spec(bool, False, "true or false"),
    "rotate": Spec(float, 0.0, "a number in [0, 180] (degrees)", _num(0, 180)),
    "scale": Spec(float, 0.0, *FRACTION),
    "brightness": Spec(float, 0.0, *NONNEG),
    "contrast": Spec(float, 0.0, *FRACTION),
    "cutout": Spec(int, 0, "an integer >= 0 (square side in pixels)", _num(0)),
}
STAGE = {  # per-stage keys (a family's tuple fields without the plural s)
    "width": Spec(int, REQUIRED, "an integer >= 1 (channels)", _num(1)),
    "depth": Spec(int, REQUIRED, "an integer >= 0 (convs or blocks; 0 leaves the stage out, not the first)", _num(0)),
    "pool": Spec(bool, REQUIRED, "true or false (the stage starts with a transition; default: every stage but the first)"),
}
TOP = ("name", "data", "model", "train", "budget", "search", "retrain", "target")


# The fixed sections, typed. Their keys, defaults and checks are the tables above (one place); the parser fills
# every field, resolving the defaults that depend on other keys (search.epochs from retrain.epochs ...).
@dataclass(frozen=True)
class DataConfig:
    dataset: str
    root: str
    val_fraction: float
    extra: bool
    image_size: tuple[int, int] | None  # (height, width); None: the images' own
    channels: int | None  # None: 1 when every image is grey, else 3 (built-in datasets: their own)
    test_fraction: float
    background: tuple[int, int, int] = (255, 255, 255)  # RGB under transparent pixels (images with alpha)


@dataclass(frozen=True)
class BudgetConfig:
    """The budget; with a ladder (`params` or `macs` a list) the whole ladder, whose `tier(name)` is one rung."""

    params: int | tuple[int, ...] | None  # None: no limit; a tuple: a ladder
    macs: int | tuple[int, ...] | None
    train_seconds: float | None
    fill: bool
    latency_ms: float | None = None
    peak_memory_kb: float | None = None

    def limits(self) -> dict[str, float]:
        """The limits that are set, by the `budget.Cost` field each bounds (one tier's: not the ladder's)."""
        assert not self.tiers(), "limits() of a ladder: take one tier's"
        return {k: v for k in ("params", "macs", "train_seconds", "latency_ms", "peak_memory_kb")
                if (v := getattr(self, k)) is not None}

    def tiers(self) -> tuple[str, ...]:
        """The ladder's tier names, smallest first (`params_2000` ...); () for a single budget."""
        key = "params" if isinstance(self.params, tuple) else "macs" if isinstance(self.macs, tuple) else None
        return tuple(f"{key}_{v}" for v in getattr(self, key)) if key else ()

    def each_tier(self) -> tuple[str | None, ...]:
        """What to loop over for a race, a retrain, a price: the ladder's tiers, or (None,): the one budget."""
        return self.tiers() or (None,)

    def tier(self, name: str | None) -> BudgetConfig:
        """One tier's budget, every limit a number (None: a single budget, itself)."""
        if name is None:
            return self
        i = self.tiers().index(name)
        pick = {k: v[i] for k in ("params", "macs") if isinstance(v := getattr(self, k), tuple)}
        return dataclasses.replace(self, **pick)


@dataclass(frozen=True)
class SearchConfig:
    trials: int
    metric: str  # what validation selects on and the test reports first: accuracy or balanced_accuracy
    epochs: int
    data_fraction: float
    sampler: str
    multivariate: bool
    seed: int
    pruner: str
    min_epochs: int
    reduction_factor: int
    first_rung_fraction: float  # the epochs up to the first rung (min_epochs) train on this share of the images
    startup: str  # random: the sampler's own start-up; neighbourhood: 1-3 parameters from the incumbent
    startup_trials: int
    warmup_epochs: int
    first_epoch_floor: float  # x chance (1 / classes): the validation accuracy a sampled trial must pass at epoch 1
    race_top: int
    race_first_trials: bool
    race_margin: float
    race_seeds: int
    race_val_fraction: float
    max_rejections: int
    max_failures: int
    first_trials: tuple = ()  # of {parameter name: value}, trained before anything is sampled


@dataclass(frozen=True)
class RetrainConfig:
    epochs: int
    seeds: int
    train_on: str


def data_config(**values) -> DataConfig:
    """A data section from keyword values, checked and completed with the defaults as a space file's is."""
    return _data_section({"data": values}, "<data>")


def _data_section(raw: dict, file: str) -> DataConfig:
    """The data section; `image_size` may be one int or [height, width], the one list a fixed section takes."""
    values = dict(_mapping(raw.get("data", {}) or {}, file, "data"))
    size = values.pop("image_size", None)
    background = values.pop("background", DATA["background"].default)
    data = _fixed_section({"data": values}, "data", DATA, file)
    data["background"] = _colour(background, file, "data.background")
    if size is not None:
        spec = DATA["image_size"]
        if isinstance(size, list) and len(size) == 2:
            size = tuple(_value(v, spec, file, "data.image_size") for v in size)
        elif isinstance(size, list):
            raise SpaceError(file, "data.image_size", spec.expected, size)
        else:
            size = (_value(size, spec, file, "data.image_size"),) * 2
    data["image_size"] = size
    return DataConfig(**data)


for _cls, _specs in ((DataConfig, DATA), (BudgetConfig, BUDGET), (SearchConfig, SEARCH), (RetrainConfig, RETRAIN),
                     (Recipe, {**TRAIN, "augment": None}), (Augment, AUGMENT)):
    assert [f.name for f in dataclasses.fields(_cls) if f.name != "first_trials"] == list(_specs), _cls
assert all(f.default == AUGMENT[f.name].default for f in dataclasses.fields(Augment))  # off is off in both


def _colour(value, file: str, key: str) -> tuple[int, int, int]:
    """A colour as YAML gives it, a name or "#rrggbb" (PIL's table, as CSS names them) or [r, g, b], -> (r, g, b)."""
    from PIL import ImageColor

    if isinstance(value, list) and len(value) == 3 and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
        return tuple(value)
    if isinstance(value, str):
        try:
            return tuple(ImageColor.getrgb(value)[:3])
        except ValueError:
            pass
    raise SpaceError(file, key, COLOUR, value)


def recipe(augment: dict | None = None, **values) -> Recipe:
    """A training recipe from keyword values (`lr` required), checked and completed with the defaults as a space
    file's `train` section is."""
    train = _params(values, TRAIN, "<train>", "train")
    aug = _params(augment or {}, AUGMENT, "<train>", "train.augment")
    for p in [*train.values(), *aug.values()]:
        if p.distribution() is not None or p.by is not None:
            raise SpaceError("<train>", p.name, "a fixed value", p.domain(), show_got=False)
    return Recipe(**{k: p.value for k, p in train.items()}, augment=Augment(**{k: p.value for k, p in aug.items()}))


class _Loader(yaml.SafeLoader):
    """Safe YAML that also reads `1e-3` as a float (YAML 1.1 wants `1.0e-3`, a classic trap)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def read_yaml(text: str):
    """yaml.safe_load, with `_Loader` (a SafeLoader subclass: no arbitrary objects) for the float fix."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@dataclass(frozen=True)
class Param:
    """A searchable key: fixed value, categorical choice, range, or conditional (a branch per value of the
    categorical parameter `by`, each a Param with a name of its own). `name` is the Optuna name."""

    name: str
    value: Any = None
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    is_int: bool = False
    by: str | None = None  # conditional: the Optuna name of the categorical parameter that picks the branch
    branches: tuple = ()  # conditional: ((value of `by`, Param), ...)

    def branch(self, chosen) -> Param:
        """The branch for the value `chosen` of `by`."""
        return next(p for value, p in self.branches if same_value(chosen, value))

    def distribution(self):
        """Optuna's distribution for this key, or None for a fixed value."""
        D = optuna.distributions
        if self.choices is not None:
            return D.CategoricalDistribution(list(self.choices))
        if self.low is None:
            return None
        if self.is_int:
            return D.IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return D.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def compatible(self, other: "Param") -> bool:
        """Trials of `self` can go on under `other`: the same fixed value, or distributions Optuna accepts under
        one name (a moved or widened range; not new choices, nor a change of log scale or type)."""
        a, b = self.distribution(), other.distribution()
        if a is None or b is None:
            return a is None and b is None and self.value == other.value
        try:
            optuna.distributions.check_distribution_compatibility(a, b)
        except ValueError:
            return False
        return True

    def domain(self) -> str:
        """The values it may take, in words: `choices [...]`, `range low..high [log]`, `fixed value`, or per value of
        `by` for a conditional key."""
        if self.by is not None:
            return f"by {self.by}: " + "; ".join(f"{_text(v)}: {p.domain()}" for v, p in self.branches)
        if self.choices is not None:
            return f"choices {list(self.choices)}"
        if self.low is not None:
            return f"range {self.low}..{self.high}" + (" log" if self.log else "")
        return f"fixed {self.value!r}"

    def sample(self, trial, chosen=None):
        """Suggest this key's value on `trial` (a conditional key: its branch for `chosen`, the value of `by`)."""
        if self.by is not None:
            return self.branch(chosen).sample(trial)
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.low is not None:
            if self.is_int:
                return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
            return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)
        return self.value


@dataclass(frozen=True)
class Space:
    file: str
    name: str
    data: DataConfig
    family: str
    model: dict[str, Param]
    stages: list[dict[str, Param]]
    train: dict[str, Param]
    augment: dict[str, Param]
    budget: BudgetConfig
    search: SearchConfig
    retrain: RetrainConfig
    target: float | None
    text: str = field(repr=False, default="")

    def params(self) -> dict[str, Param]:
        """Every key by its Optuna name (fixed ones included; a conditional key's branches by theirs)."""
        return _by_name(self.model, self.stages, self.train, self.augment)

    def conditionals(self) -> dict[str, str]:
        """Conditional keys by name -> the name of the parameter that picks their branch."""
        return {p.name: p.by for p in self.conditional_keys()}

    def conditional_keys(self) -> list[Param]:
        """The conditional keys, each with its `by` and its branches."""
        return [p for p in _keys(self.model, self.stages, self.train, self.augment) if p.by is not None]

    def sample(self, trial, meta: Meta) -> Candidate:
        """Suggest every searchable value on `trial`; return the candidate for data of shape `meta`. Conditional
        keys come after the others (their `by` is known then); without them the order is the file's."""
        keys = _keys(self.model, self.stages, self.train, self.augment)
        values = {p.name: p.sample(trial) for p in keys if p.by is None}
        values |= {p.name: p.sample(trial, values[p.by]) for p in keys if p.by is not None}
        cfg = {"in_channels": meta.channels, "num_classes": meta.classes, "image_size": meta.image_size}
        for key, p in self.model.items():
            cfg[key] = values[p.name]
        for stage in self.stages:
            for key, p in stage.items():
                cfg.setdefault(key + "s", []).append(values[p.name])
        train = {key: values[p.name] for key, p in self.train.items()}
        augment = Augment(**{key: values[p.name] for key, p in self.augment.items()})
        return Candidate(self.family, cfg, Recipe(**train, augment=augment))


def load(path: str | Path) -> Space:
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpaceError(file, "(file)", "a readable YAML file", e.strerror, show_got=True) from None
    try:
        raw = read_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpaceError(file, where, f"valid YAML ({problem})", None, show_got=False) from None
    return parse(raw, file, text)


def default_min_epochs(epochs: int) -> int:
    """search.min_epochs when the space leaves it out: ~epochs / 7 (15 epochs: rungs at 2 and 6)."""
    return max(1, round(epochs / 7))


def parse(raw: Any, file: str = "<space>", text: str = "") -> Space:
    if not isinstance(raw, dict):
        raise SpaceError(file, "(top level)", "a mapping of sections " + ", ".join(TOP), type(raw).__name__)
    _no_unknown(raw, TOP, file, "")
    for section in ("data", "model", "retrain"):
        if section not in raw:
            raise SpaceError(file, section, "a section (required)", None, show_got=False)
    data = _data_section(raw, file)
    budget = _budget_section(raw, file)
    retrain = RetrainConfig(**_fixed_section(raw, "retrain", RETRAIN, file))
    search_raw = dict(_mapping(raw.get("search", {}) or {}, file, "search"))
    first_trials_raw = search_raw.pop("first_trials", [])
    search = _fixed_section({"search": search_raw}, "search", SEARCH, file)
    if search["epochs"] is None:
        search["epochs"] = retrain.epochs
    if search["min_epochs"] is None:
        search["min_epochs"] = default_min_epochs(search["epochs"])
    if search["race_val_fraction"] is None:
        search["race_val_fraction"] = data.val_fraction
    if data.extra and data.dataset != "svhn":
        raise SpaceError(file, "data.extra", "false (the extra split exists for svhn only)", True)

    model_raw = _mapping(raw["model"], file, "model")
    family = model_raw.get("family")
    if family not in models.names():
        raise SpaceError(file, "model.family", "one of " + ", ".join(models.names()), family)
    model, stages = _model_params(model_raw, family, file)

    train_raw = _mapping(raw.get("train", {}), file, "train")
    augment_raw = _mapping(train_raw.get("augment", {}), file, "train.augment")
    train = _params({k: v for k, v in train_raw.items() if k != "augment"}, TRAIN, file, "train")
    augment = _params(augment_raw, AUGMENT, file, "train.augment")
    model, train, augment, *stages = _resolve_conditionals([model, train, augment, *stages], file)

    target = raw.get("target")
    if target is not None and not (_is_number(target) and 0 < target <= 1):
        raise SpaceError(file, "target", "a test accuracy in (0, 1], e.g. 0.994", target)
    name = raw.get("name", Path(file).stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SpaceError(file, "name", "a study name of letters, digits, '_', '.', '-'", name)
    if search["race_val_fraction"] + data.val_fraction >= 1:
        raise SpaceError(file, "search.race_val_fraction", f"less than 1 - data.val_fraction "
                         f"({1 - data.val_fraction:g}: a race round must leave images to train on)",
                         search["race_val_fraction"])
    if budget.tiers() and search["pruner"] not in LADDER_PRUNERS:
        raise SpaceError(file, "search.pruner", "one of " + ", ".join(LADDER_PRUNERS) + " (a budget ladder prunes "
                         "within each tier)", search["pruner"])
    if search["min_epochs"] > search["epochs"]:
        raise SpaceError(file, "search.min_epochs", f"at most search.epochs ({search['epochs']})", search["min_epochs"])
    first_trials = _first_trials(first_trials_raw, model, stages, train, augment, file)
    return Space(file, name, data, family, model, stages, train, augment, budget,
                 SearchConfig(**search, first_trials=tuple(first_trials)), retrain, target, text)


def _keys(model, stages, train, augment) -> list[Param]:
    """Every key of the space, in the file's order (model, stages, train, augment)."""
    return [*model.values(), *(p for stage in stages for p in stage.values()), *train.values(), *augment.values()]


def _by_name(model, stages, train, augment) -> dict[str, Param]:
    """Every key by its Optuna name (fixed ones included; a conditional key's branches by theirs)."""
    out = {}
    for p in _keys(model, stages, train, augment):
        out.update({b.name: b for _, b in p.branches} if p.by is not None else {p.name: p})
    return out


def _resolve_conditionals(groups: list[dict[str, Param]], file) -> list[dict[str, Param]]:
    """Conditional keys' `by` as a full parameter name, checked: a categorical parameter (a list of choices), one
    branch per choice, no branch for anything else."""
    names = {p.name: p for group in groups for p in group.values()}
    out = []
    for group in groups:
        resolved = {}
        for key, p in group.items():
            if p.by is not None:
                section = p.name.rsplit(".", 1)[0]
                by = p.by if p.by in names else f"{section}.{p.by}"
                target = names.get(by)
                if target is None or target.choices is None:
                    what = "not a parameter of this space" if target is None else "not a list of choices"
                    raise SpaceError(file, f"{_key_path(p.name)}.by", "a categorical key of the same section or a "
                                     f"parameter's full name, with a list of choices ({p.by} is {what})", p.by)
                for value, branch in p.branches:
                    if not any(same_value(value, c) for c in target.choices):
                        raise SpaceError(file, f"{_key_path(p.name)}.{_text(value)}", f"a value of {by} (one of "
                                         f"{', '.join(map(_text, target.choices))}), one branch each", value)
                missing = [c for c in target.choices if not any(same_value(v, c) for v, _ in p.branches)]
                if missing:
                    raise SpaceError(file, f"{_key_path(p.name)}.{_text(missing[0])}", f"a branch for every value of "
                                     f"{by}", None, show_got=False)
                branches = tuple((c, p.branch(c)) for c in target.choices)  # in the order of by's choices
                p = dataclasses.replace(p, by=by, branches=branches)
            resolved[key] = p
        out.append(resolved)
    return out


def _key_path(name: str) -> str:
    """The file's key path of an Optuna name: model.stage1.width -> model.stages[1].width."""
    return re.sub(r"^model\.stage(\d+)\.", r"model.stages[\1].", name)


def _text(v) -> str:
    """A value as the YAML file spells it (true, not True)."""
    return str(v).lower() if isinstance(v, bool) else str(v)


def _first_trials(raw, model, stages, train, augment, file) -> list[dict]:
    """`search.first_trials`: designs trained before anything is sampled (a hand net, a known recipe), each a
    mapping from searched parameters' names (as the dashboard shows them; a conditional key's branch by its own
    name) to values inside their ranges or choices; the parameters left out are sampled as usual."""
    if not isinstance(raw, list):
        raise SpaceError(file, "search.first_trials", "a list of mappings {parameter name: value}", raw)
    params = _by_name(model, stages, train, augment)
    searched = {name: p for name, p in params.items() if p.distribution() is not None}
    parents = {p.name: p for p in _keys(model, stages, train, augment) if p.by is not None}
    branch_of = {b.name: (parent, value) for parent in parents.values() for value, b in parent.branches}
    out = []
    for i, entry in enumerate(raw):
        key = f"search.first_trials[{i}]"
        entry = _mapping(entry, file, key)
        for name, v in entry.items():
            p = searched.get(name)
            if p is None:
                what = ("conditional: name its branch, " + " or ".join(b.name for _, b in parents[name].branches)
                        if name in parents else "fixed in this space" if name in params else
                        "not a parameter of this space")
                raise SpaceError(file, f"{key}.{name}", "the name of a searched parameter, e.g. "
                                 f"{next(iter(searched), 'model.stage0.width')} ({name} is {what})", v, show_got=False)
            if name in branch_of:
                parent, value = branch_of[name]
                if parent.by in entry and not same_value(entry[parent.by], value):
                    raise SpaceError(file, f"{key}.{name}", f"the branch of {parent.by}: {_text(entry[parent.by])} "
                                     f"({parent.branch(entry[parent.by]).name})", v)
            inside = any(same_value(v, c) for c in p.choices) if p.choices is not None else (
                _is_number(v) and p.low <= v <= p.high and (not p.is_int or isinstance(v, int)))
            if not inside:
                raise SpaceError(file, f"{key}.{name}", f"a value of its {p.domain()}", v)
        out.append(dict(entry))
    return out


def same_value(v, choice) -> bool:
    """`v` is this choice (1 is not true, 1 is 1.0)."""
    return v == choice and (isinstance(v, bool) == isinstance(choice, bool)) and isinstance(v, str) == isinstance(choice, str)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _mapping(v, file, key) -> dict:
    if not isinstance(v, dict):
        raise SpaceError(file, key, "a mapping", v)
    return v


def _no_unknown(raw: dict, known, file, prefix):
    for k in raw:
        if k not in known:
            raise SpaceError(file, prefix + str(k), "a known key (one of " + ", ".join(known) + ")", k, show_got=False)


def _budget_section(raw, file) -> BudgetConfig:
    """budget: fixed values, except that params and macs may each be a ladder (an increasing list); two ladders
    have one entry per tier each. A ladder needs fill: a candidate is scaled to the tier it is searched for."""
    values = dict(_mapping(raw.get("budget", {}) or {}, file, "budget"))
    ladders = {}
    for key in ("params", "macs"):
        v = values.get(key)
        if isinstance(v, list):
            spec = BUDGET[key]
            rungs = tuple(_value(x, spec, file, f"budget.{key}[{i}]") for i, x in enumerate(v))
            if len(rungs) < 2 or any(a >= b for a, b in zip(rungs, rungs[1:])):
                raise SpaceError(file, f"budget.{key}", "a ladder: a list of 2 or more integers > 0, strictly "
                                 "increasing", v)
            ladders[key] = rungs
            values[key] = rungs[0]  # checked as a number below; the ladder goes back in after
    budget = BudgetConfig(**{**_fixed_section({"budget": values}, "budget", BUDGET, file), **ladders})
    if len({len(v) for v in ladders.values()}) > 1:
        raise SpaceError(file, "budget.macs", f"a ladder as long as budget.params ({len(ladders['params'])} tiers)",
                         list(ladders["macs"]))
    if ladders and not budget.fill:
        raise SpaceError(file, "budget.fill", "true with a ladder (each candidate is scaled to its tier's limits)",
                         False)
    if budget.fill and budget.params is None and budget.macs is None:
        raise SpaceError(file, "budget.fill", "a params or macs limit to fill (or fill: false)", True)
    return budget


def _fixed_section(raw, section, specs, file) -> dict:
    values = _mapping(raw.get(section, {}) or {}, file, section)
    _no_unknown(values, specs, file, section + ".")
    out = {}
    for key, spec in specs.items():
        if key not in values:
            if spec.default is REQUIRED:
                raise SpaceError(file, f"{section}.{key}", spec.expected + " (required)", None, show_got=False)
            out[key] = spec.default
            continue
        out[key] = _value(values[key], spec, file, f"{section}.{key}", fixed=True)
    return out


def _value(v, spec: Spec, file, key, fixed=False):
    """Check one scalar against its spec; returns it (ints accepted where floats are expected)."""
    hint = " (this section takes fixed values only)" if fixed and isinstance(v, (list, dict)) else ""
    if spec.type is bool:
        good = isinstance(v, bool)
    elif spec.type is int:
        good = isinstance(v, int) and not isinstance(v, bool)
    elif spec.type is float:
        good = _is_number(v)
        v = float(v) if good else v
    else:
        good = isinstance(v, str) and (not spec.choices or v in spec.choices)
    if not good or not spec.ok(v):
        raise SpaceError(file, key, spec.expected + hint, v)
    return v


def _param(v, spec: Spec, file, key, name) -> Param:
    if isinstance(v, dict) and "by" in v:
        by = v["by"]
        if not isinstance(by, str):
            raise SpaceError(file, key + ".by", "the name of a categorical key (a list of choices)", by)
        branches = tuple((value, _param(branch, spec, file, f"{key}.{_text(value)}", f"{name}.{_text(value)}"))
                         for value, branch in v.items() if value != "by")
        if not branches:
            raise SpaceError(file, key, f"a branch per value of {by} (a conditional key)", v)
        for value, branch in branches:
            if branch.by is not None:
                raise SpaceError(file, f"{key}.{_text(value)}", "a scalar, a list of choices or a range (branches do "
                                 "not nest)", "a conditional", show_got=True)
        return Param(name, by=by, branches=branches)
    if isinstance(v, list):
        if not v:
            raise SpaceError(file, key, "a non-empty list of choices", v)
        choices = tuple(_value(c, spec, file, f"{key}[{i}]") for i, c in enumerate(v))
        if len(set(choices)) != len(choices):
            raise SpaceError(file, key, "choices without repeats", v)
        return Param(name, choices=choices)
    if isinstance(v, dict):
        if spec.type not in (int, float):
            raise SpaceError(file, key, spec.expected + " or a list of them (a range needs a numeric key)", v)
        _no_unknown(v, ("low", "high", "log", "step"), file, key + ".")
        for end in ("low", "high"):
            if end not in v:
                raise SpaceError(file, f"{key}.{end}", "a number (a range needs low and high)", None, show_got=False)
        low = _value(v["low"], spec, file, key + ".low")
        high = _value(v["high"], spec, file, key + ".high")
        if low > high:
            raise SpaceError(file, key, "low <= high", f"low={low}, high={high}")
        log = v.get("log", False)
        if not isinstance(log, bool):
            raise SpaceError(file, key + ".log", "true or false", log)
        if log and low <= 0:
            raise SpaceError(file, key + ".low", "a number > 0 for a log range", low)
        step = v.get("step")
        if step is not None:
            if not _is_number(step) or step <= 0 or (spec.type is int and not isinstance(step, int)):
                raise SpaceError(file, key + ".step", f"a {spec.type.__name__} > 0", step)
            if log:
                raise SpaceError(file, key + ".step", "no step on a log range", step)
        return Param(name, low=low, high=high, log=log, step=step, is_int=spec.type is int)
    return Param(name, value=_value(v, spec, file, key))


def _params(raw: dict, specs: dict[str, Spec], file, section) -> dict[str, Param]:
    _no_unknown(raw, specs, file, section + ".")
    out = {}
    for key, spec in specs.items():
        if key in raw:
            out[key] = _param(raw[key], spec, file, f"{section}.{key}", f"{section}.{key}")
        elif spec.default is REQUIRED:
            raise SpaceError(file, f"{section}.{key}", spec.expected + " (required)", None, show_got=False)
        else:
            out[key] = Param(f"{section}.{key}", value=spec.default)
    return out


def _model_specs(family: str) -> tuple[dict[str, Spec], dict[str, Spec]]:
    """Specs of a family's config fields from the dataclass: (plain fields, per-stage fields by stage key)."""
    cls = models.config_class(family)
    choices = getattr(cls, "CHOICES", {})
    plain, stage = {}, {}
    for f in dataclasses.fields(cls):
        if f.name in SET_BY_DATASET:
            continue
        if isinstance(f.default, tuple):
            stage[f.name[:-1]] = STAGE[f.name[:-1]]
        elif isinstance(f.default, bool):
            plain[f.name] = Spec(bool, f.default, "true or false")
        elif isinstance(f.default, int):
            plain[f.name] = Spec(int, f.default, "an integer >= 0", _num(0))
        elif isinstance(f.default, float):
            plain[f.name] = (
                Spec(float, f.default, *FRACTION) if "dropout" in f.name else Spec(float, f.default, "a number > 0", _num(0, lo_open=True))
            )
        else:
            plain[f.name] = _s(choices[f.name], f.default)
    return plain, stage


def _values(p: Param) -> tuple:
    """The values a key can take (a range by its low end only, enough for the checks above)."""
    if p.by is not None:
        return tuple(v for _, b in p.branches for v in _values(b))
    return p.choices if p.choices is not None else (p.low,) if p.low is not None else (p.value,)


def _model_params(raw: dict, family: str, file: str):
    plain_specs, stage_specs = _model_specs(family)
    for key in raw:
        if key in SET_BY_DATASET:
            raise SpaceError(file, f"model.{key}", "no value: it is set by the dataset", raw[key])
        if key in models.per_stage_fields(family):
            raise SpaceError(file, f"model.{key}", "per-stage values under model.stages", raw[key])
    rest = {k: v for k, v in raw.items() if k not in ("family", "stages")}
    model = _params(rest, plain_specs, file, "model")
    model = {k: p for k, p in model.items() if k in rest}  # unset keys keep the family's defaults
    stages = []
    if "stages" in raw:
        stage_list = raw["stages"]
        if not isinstance(stage_list, list) or not stage_list:
            raise SpaceError(file, "model.stages", "a non-empty list of per-stage mappings", stage_list)
        for i, st in enumerate(stage_list):
            key = f"model.stages[{i}]"
            st = _mapping(st, file, key)
            _no_unknown(st, stage_specs, file, key + ".")
            missing = [k for k in stage_specs if k not in st and k != "pool"]
            if missing:
                raise SpaceError(file, f"{key}.{missing[0]}", "a value for every stage", None, show_got=False)
            stage = {k: _param(v, stage_specs[k], file, f"{key}.{k}", f"model.stage{i}.{k}") for k, v in st.items()}
            if "pool" in stage_specs and "pool" not in stage:
                stage["pool"] = Param(f"model.stage{i}.pool", value=i > 0)
            stages.append(stage)
        first = stages[0]
        if "depth" in first and 0 in _values(first["depth"]):
            raise SpaceError(file, "model.stages[0].depth", "an integer >= 1 (the first stage holds the stem)", 0)
        if "pool" in first and True in _values(first["pool"]):
            raise SpaceError(file, "model.stages[0].pool", "false (nothing to pool before the stem)", True)
    return model, stages
