"""What a study stores, typed: the one module that knows the stored keys and end-reason strings.

Everything nas-run writes into Optuna (trial and study user attrs) is read and written here, as typed records: the
sampled `Candidate` (family, model config, `Recipe` with its `Augment`, ladder tier), a trial's own record
(`TrialRecord`, through `read(t)`), the race's `RaceRow`s, the retrain's `RetrainResult` with its `SeedRun`s and
`Deployment` figures. The rest of the pipeline reads attributes. The stored JSON is the one studies have always
held (`to_json` writes the same keys in the same order), so a study written by an older nas-run resumes and
reports as it is.

End reasons. Untrained: `rejected:<params|macs|time>` (over budget), `invalid: <message>` (does not build),
`duplicate_of:<n>` (the same candidate trained already), `surplus` (asked for past what the phase needs: during
the race, or past the target by workers that asked at once). Trained: `completed`, `pruned`, `below_chance` (at or
below `search.first_epoch_floor` x chance after the first epoch), `diverged`
(non-finite loss), `time` (ran past its share of `budget.train_seconds`), `out_of_time` (`--minutes` left no time
before the race and the retrain). Ended by trouble: `interrupted` (Ctrl-C / SIGTERM; enqueued again),
`error:<type>: <message>` (CUDA OOM ...).
"""
from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from enum import Enum

from optuna.trial import TrialState


class End(str, Enum):
    """End reasons; the four with a colon take a detail after it (`reason(End.REJECTED, "params")`)."""

    REJECTED = "rejected:"
    INVALID = "invalid:"
    DUPLICATE = "duplicate_of:"
    SURPLUS = "surplus"
    COMPLETED = "completed"
    PRUNED = "pruned"
    BELOW_CHANCE = "below_chance"
    DIVERGED = "diverged"
    TIME_SHARE = "time"
    OUT_OF_TIME = "out_of_time"
    INTERRUPTED = "interrupted"
    ERROR = "error:"


UNTRAINED = (End.REJECTED, End.INVALID, End.DUPLICATE, End.SURPLUS)
STUDY_SEED_STRIDE = 1_000_003  # a prime: trial seeds of different study seeds do not line up


def reason(kind: End, detail: object = "") -> str:
    """The stored string: `invalid: <message>` keeps its space, the others join without one."""
    return f"{kind.value}{' ' if kind is End.INVALID else ''}{detail}" if kind.value.endswith(":") else kind.value


def trial_seed(study_seed: int, number: int) -> int:
    """Every trial's seed, from the study seed and its number (recorded as user attr `seed`)."""
    return (study_seed * STUDY_SEED_STRIDE + number) % 2**31


# --- the candidate: what a trial trains ---

@dataclass(frozen=True)
class Augment:
    """`train.augment`: batched augmentation on the training device, each op off at its zero value (augment.py)."""

    crop: int = 0  # pad by this many pixels and crop back: a random translation
    flip: bool = False  # horizontal
    rotate: float = 0.0  # degrees, U(-rotate, rotate)
    scale: float = 0.0  # zoom U(1 - scale, 1 + scale)
    brightness: float = 0.0
    contrast: float = 0.0
    cutout: int = 0  # square side in pixels


@dataclass(frozen=True)
class Recipe:
    """`train`: how a candidate trains (the keys and defaults are space.TRAIN's; every field is always stored)."""

    batch_size: int
    optimizer: str  # sgd | adam | adamw
    lr: float  # peak lr for onecycle, initial lr otherwise
    momentum: float  # sgd
    nesterov: bool  # sgd
    weight_decay: float  # L2 (sgd, adam) or decoupled (adamw)
    scheduler: str
    warmup_fraction: float  # onecycle's warm-up share of the run
    gamma: float  # lr factor of step / multistep / exponential
    step_fraction: float  # step: spacing, a share of the run
    label_smoothing: float
    class_weight: str = "none"  # none | balanced: each class's loss weighted by n / (classes x its images)
    augment: Augment = Augment()

    def to_json(self) -> dict:
        # class_weight came later: left out at its default, so candidates stored before it read and compare the same
        skip = ("augment",) + (("class_weight",) if self.class_weight == "none" else ())
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip},
                "augment": dataclasses.asdict(self.augment)}

    @classmethod
    def from_json(cls, d: dict) -> Recipe:
        return cls(**{k: v for k, v in d.items() if k != "augment"}, augment=Augment(**d.get("augment", {})))


@dataclass(frozen=True)
class Candidate:
    """A sampled candidate after fill: the model family, its config (the `models.build` keyword arguments the space
    sets: the data's shape, the sampled fields, one list per per-stage field), the recipe, and its ladder tier."""

    family: str
    model: dict = field(hash=False)
    train: Recipe
    tier: str | None = None

    def build(self):
        """The model (`models.build`); ValueError when the config does not build."""
        import models

        return models.build(self.family, **self.model)

    @property
    def widths(self) -> list[int]:
        return list(self.model["widths"])

    def scaled(self, m: float) -> Candidate:
        """Every width (and the fc head's and stem's width) multiplied by m, at least 1 channel each."""
        cfg = dict(self.model)
        cfg["widths"] = [max(1, round(w * m)) for w in cfg["widths"]]
        for key in ("fc_width", "stem_width"):
            if cfg.get(key):
                cfg[key] = max(1, round(cfg[key] * m))
        return dataclasses.replace(self, model=cfg)

    def in_tier(self, tier: str | None) -> Candidate:
        return dataclasses.replace(self, tier=tier)

    def to_json(self) -> dict:
        out = {"family": self.family, "model": dict(self.model), "train": self.train.to_json()}
        return out if self.tier is None else {**out, "tier": self.tier}

    @classmethod
    def from_json(cls, d: dict) -> Candidate:
        return cls(d["family"], dict(d["model"]), Recipe.from_json(d["train"]), d.get("tier"))

    def describe(self) -> str:
        """One line: the family and the fields that shape it (widths, depths, pools, kernel, head ...)."""
        m = self.model
        parts = [self.family]
        for key in ("widths", "depths"):
            if key in m:
                parts.append(f"{key}=" + "/".join(map(str, m[key])))
        if any(m.get("pools", ())[1:]) and not all(m["pools"][1:]):
            parts.append("pools=" + "".join("p" if p else "-" for p in m["pools"]))
        for key in ("kernel_size", "padding", "transition", "head", "separable", "expansion"):
            if key in m:
                parts.append(f"{key}={m[key]}")
        return " ".join(parts)


# --- a trial's record, read ---

class _Attr:
    """A user attr of a trial, read by attribute name (None, or `default`, when the trial has none)."""

    def __init__(self, default=None):
        self.default = default

    def __set_name__(self, owner, name):
        self.key = name

    def __get__(self, record, owner=None):
        return record.attrs.get(self.key, self.default)


class TrialRecord:
    """What nas-run wrote on one trial, by attribute: `read(t).params`. Unset fields read None (or their default)."""

    seed = _Attr()  # the trial's seed (trial_seed)
    params = _Attr()
    macs = _Attr()
    est_train_seconds = _Attr()
    latency_ms = _Attr()
    peak_memory_kb = _Attr()
    trained = _Attr(False)
    end_reason = _Attr("")  # as stored ("" while the trial runs)
    epochs_run = _Attr(0)
    seconds_per_epoch = _Attr()
    images_per_second = _Attr()
    images = _Attr()  # training images processed
    val_images = _Attr()
    tier = _Attr()  # the ladder tier it was searched in (None: a single budget)
    race_of = _Attr()  # a race run: the finalist's trial number
    race_fold = _Attr()  # a race run: its round (None for race runs from before rounds existed)
    first_trial = _Attr()  # index into search.first_trials of the design it trains
    retry_of = _Attr()  # an interrupted trial enqueued again: the trial it retries
    warm_from = _Attr()  # a warm start's carried candidate: "SOURCE_STUDY#trial" (warm.py)

    def __init__(self, trial):
        self.attrs = trial.user_attrs

    @property
    def candidate(self) -> Candidate | None:
        stored = self.attrs.get("candidate")
        return None if stored is None else Candidate.from_json(stored)

    @property
    def end(self) -> tuple[End | None, str]:
        """(kind, detail) of the end reason; (None, "") while the trial runs or for a reason this module does not know."""
        text = self.end_reason
        for kind in End:
            if kind.value.endswith(":") and text.startswith(kind.value):
                return kind, text[len(kind.value):].strip()
            if text == kind.value:
                return kind, ""
        return None, ""


def read(t) -> TrialRecord:
    return TrialRecord(t)


# --- writing (during the trial: Optuna refuses to change a finished trial) ---

def end(trial, kind: End, detail: object = "") -> None:
    trial.set_user_attr("end_reason", reason(kind, detail))


def write_start(trial, seed: int) -> None:
    trial.set_user_attr("seed", seed)


def write_candidate(trial, cand: Candidate) -> None:
    trial.set_user_attr("candidate", cand.to_json())


def write_val_images(trial, n: int) -> None:
    trial.set_user_attr("val_images", n)


def write_cost(trial, cost) -> None:
    trial.set_user_attr("params", cost.params)
    if cost.macs is not None:
        trial.set_user_attr("macs", cost.macs)
    if cost.train_seconds is not None:
        trial.set_user_attr("est_train_seconds", round(cost.train_seconds, 1))
    for key in ("latency_ms", "peak_memory_kb"):
        if getattr(cost, key) is not None:
            trial.set_user_attr(key, round(getattr(cost, key), 4))


def write_training(trial, hist) -> None:
    """What a trained trial records: its end, epochs, speed."""
    trial.set_user_attr("trained", True)
    trial.set_user_attr("end_reason", End(hist.end_reason).value)
    trial.set_user_attr("epochs_run", len(hist.val_acc))
    if hist.epoch_seconds:  # an epoch on all the training images, even where the first ones trained on a share
        trial.set_user_attr("seconds_per_epoch", round(hist.seconds_per_full_epoch(), 2))
        trial.set_user_attr("images_per_second", round(hist.images / sum(hist.epoch_seconds)))
    trial.set_user_attr("images", hist.images)


def race_attrs(finalist, fold: int) -> dict:
    """User attrs of an enqueued race run: the finalist trial again (in its ladder tier), on race round `fold`."""
    return {"race_of": finalist.number, "race_fold": fold, **tier_attr(read(finalist).tier)}


def first_trial_attrs(index: int, tier_name: str | None = None) -> dict:
    """User attrs of an enqueued `search.first_trials` design (with a ladder: one per tier)."""
    return {"first_trial": index, **tier_attr(tier_name)}


def warm_attrs(origin: str) -> dict:
    """User attrs of a candidate a warm start carried over: `origin` is "SOURCE_STUDY#trial"."""
    return {"warm_from": origin}


def retry_attrs(trial) -> dict:
    """User attrs of an interrupted trial enqueued again: what it was enqueued as, and which trial it retries."""
    kept = {k: v for k, v in trial.user_attrs.items()
            if k in ("race_of", "race_fold", "first_trial", "warm_from", "tier")}
    return {"retry_of": trial.number, **kept}


def tier_attr(name: str | None) -> dict:
    return {} if name is None else {"tier": name}


def set_tier(trial, name: str) -> None:
    trial.set_user_attr("tier", name)


# --- questions about one trial ---

def of_tier(trials, name: str | None) -> list:
    """The trials of one ladder tier (all of them for a single budget: name None)."""
    return list(trials) if name is None else [t for t in trials if read(t).tier == name]


def is_race(t) -> bool:
    return "race_of" in t.user_attrs


def is_trained(t) -> bool:
    return bool(t.user_attrs.get("trained"))


def is_untrained(t) -> bool:
    """Ended before training: rejected, invalid, a duplicate or surplus."""
    return read(t).end[0] in UNTRAINED


def is_rejected(t) -> bool:
    """Over budget or not buildable: the candidates the budget and the space turned away."""
    return read(t).end[0] in (End.REJECTED, End.INVALID)


def is_claimed(t) -> bool:
    """Running and not yet ended untrained: most such trials will train."""
    return t.state == TrialState.RUNNING and "end_reason" not in t.user_attrs


def is_enqueued(t) -> bool:
    """Enqueued rather than sampled: a `first_trials` design, a warm start's candidate, a race run, a retry of an
    interrupted or stale trial."""
    return "fixed_params" in t.system_attrs


def last_value(t) -> float | None:
    """The validation accuracy at the last epoch reported (a pruned trial's too), None before the first."""
    return t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None


def last_epoch(t) -> int:
    return max(t.intermediate_values) if t.intermediate_values else 0


# --- questions about a list of trials ---

def trained(trials) -> list:
    """Search trials that trained (completed, or stopped by the pruner or a trial-level fault after training)."""
    return [t for t in trials if is_trained(t) and not is_race(t)]


def full_length(trials) -> list:
    """Search trials that trained the full length (COMPLETE): the ones ranked, raced and plotted as measured."""
    return [t for t in trained(trials) if t.state == TrialState.COMPLETE]


def cut_short(trials) -> list:
    """Search trials that trained but stopped early (pruned, diverged, out of time) and reported an epoch."""
    return [t for t in trained(trials) if t.state != TrialState.COMPLETE and t.intermediate_values]


def count_in_flight(trials, ahead_of: int | None = None) -> int:
    """Trained search trials plus running search trials that have not ended untrained (most will train): a worker
    asks only while these are short of the target. With `ahead_of`, what stands ahead of that sampled trial: of
    the running ones only the enqueued (they train whatever the count: a design dropped would never be queued
    again) and the sampled ones numbered before it. Workers that ask at the same instant see each other's claims
    (the storage numbers new trials one at a time, so a later trial sees an earlier one); the later ones stand
    down and the study stops at the target."""
    def ahead(t) -> bool:
        return ahead_of is None or (t.number != ahead_of and (is_enqueued(t) or t.number < ahead_of))

    return len(trained(trials)) + sum(1 for t in trials if is_claimed(t) and not is_race(t) and ahead(t))


def best_search_trial(trials):
    done = full_length(trials)
    return max(done, key=lambda t: t.value) if done else None


@dataclass(frozen=True)
class Counts:
    """A study's trials by outcome. trained / completed / pruned: search trials; race: race runs that trained;
    rejected: candidates over budget or invalid, never trained; duplicates: candidates already trained (told the
    earlier value), and surplus asks; failed: trials that ended in a fault; running: trials in progress."""

    trained: int = 0
    completed: int = 0
    pruned: int = 0
    race: int = 0
    rejected: int = 0
    duplicates: int = 0
    failed: int = 0
    running: int = 0


def counts(trials) -> Counts:
    c = dict.fromkeys((f.name for f in dataclasses.fields(Counts)), 0)
    for t in trials:
        if t.state == TrialState.RUNNING:
            c["running"] += 1
        elif is_trained(t) and is_race(t):
            c["race"] += 1
        elif is_trained(t):
            c["trained"] += 1
            c["completed" if t.state == TrialState.COMPLETE else "pruned"] += 1
        elif is_rejected(t):
            c["rejected"] += 1
        elif is_untrained(t):
            c["duplicates"] += 1
        elif t.state == TrialState.FAIL:
            c["failed"] += 1
    return Counts(**c)


# --- the study's records: the race and the retrain ---

@dataclass(frozen=True)
class RaceRow:
    """One finalist's standing (race.py): its search run's validation accuracy, each race round's, the mean and std
    of what counts, whether its search run counts as a seed, its first_trials index if it is one of those designs,
    and `kept`: a design that leads because no finalist beat it by more than `search.race_margin`."""

    trial: int
    search_val: float | None
    val_accs: list[float]
    search_counts: bool
    mean: float
    std: float
    params: int | None
    first_trial: int | None
    kept: bool = False

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        if not self.kept:
            del out["kept"]
        return out

    @classmethod
    def from_json(cls, d: dict) -> RaceRow:
        return cls(d["trial"], d.get("search_val"), list(d.get("val_accs", [])), d.get("search_counts", False),
                   d["mean"], d["std"], d.get("params"), d.get("first_trial"), d.get("kept", False))


@dataclass(frozen=True)
class SeedRun:
    """One retrain seed: its test accuracy (fp32), how training ended, when it started, how long it took."""

    seed: int
    test_acc: float
    end_reason: str
    started: float | None = None  # time.time()
    seconds: float | None = None
    train_loss: list[float] = field(default_factory=list)  # per epoch
    val_acc: float | None = None  # the last epoch's search.metric (None when trained on train+val)
    test_balanced_acc: float | None = None  # with search.metric balanced_accuracy: the mean per-class test recall

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        return out if self.test_balanced_acc is not None else {k: v for k, v in out.items() if k != "test_balanced_acc"}

    @classmethod
    def from_json(cls, d: dict) -> SeedRun:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


@dataclass(frozen=True)
class Latency:
    ms: float  # the fastest timing block's median, milliseconds per call
    spread: float  # (slowest - fastest block) / fastest


@dataclass(frozen=True)
class Int8Figures:
    """The int8 copy of an export (model.int8.onnx): its file, size, test accuracy beside fp32's, latency."""

    file: str
    bytes: int
    test_acc: float
    fp32_test_acc: float
    latency_1: Latency
    latency_64: Latency

    def to_json(self) -> dict:
        return {"file": self.file, "bytes": self.bytes, "test_acc": self.test_acc, "fp32_test_acc": self.fp32_test_acc,
                "latency_ms": _latencies_json(self.latency_1, self.latency_64)}

    @classmethod
    def from_json(cls, d: dict) -> Int8Figures:
        return cls(d["file"], d["bytes"], d["test_acc"], d["fp32_test_acc"], *_latencies(d["latency_ms"]))


@dataclass(frozen=True)
class Deployment:
    """What an exported model costs where it ships (deploy.py): onnxruntime latency of 1 and of 64 images on 1
    thread, peak activation memory at batch 1 (fp32 and int8 bytes), the ONNX file's size, the int8 copy."""

    latency_1: Latency
    latency_64: Latency
    peak_fp32_bytes: int
    peak_int8_bytes: int
    onnx_bytes: int
    int8: Int8Figures | None = None

    def to_json(self) -> dict:
        out = {"latency_ms": _latencies_json(self.latency_1, self.latency_64),
               "peak_memory_bytes": {"fp32": self.peak_fp32_bytes, "int8": self.peak_int8_bytes},
               "onnx_bytes": self.onnx_bytes}
        return out if self.int8 is None else {**out, "int8": self.int8.to_json()}

    @classmethod
    def from_json(cls, d: dict | None) -> Deployment | None:
        if not d:
            return None
        peak = d["peak_memory_bytes"]
        return cls(*_latencies(d["latency_ms"]), peak["fp32"], peak["int8"], d["onnx_bytes"],
                   Int8Figures.from_json(d["int8"]) if d.get("int8") else None)


def _latencies_json(one: Latency, many: Latency) -> dict:
    return {"batch_1": dataclasses.asdict(one), "batch_64": dataclasses.asdict(many)}


def _latencies(d: dict) -> tuple[Latency, Latency]:
    return Latency(**d["batch_1"]), Latency(**d["batch_64"])


@dataclass(frozen=True)
class RetrainResult:
    """The retrained winner (retrain.py): its trial, search value, the retrain's length and data, every seed's run,
    the test accuracy's mean and std over them, and (once exported with ONNX) its deployment figures."""

    trial: int
    search_val_acc: float | None
    epochs: int
    train_on: str
    runs: list[SeedRun]
    test_acc_mean: float
    test_acc_std: float
    deployment: Deployment | None = None
    metric: str = "accuracy"  # search.metric: what search_val_acc is, and the figure `headline` gives first

    def to_json(self) -> dict:
        out = {"trial": self.trial, "search_val_acc": self.search_val_acc, "epochs": self.epochs,
               "train_on": self.train_on, "runs": [r.to_json() for r in self.runs],
               "test_acc_mean": self.test_acc_mean, "test_acc_std": self.test_acc_std}
        if self.metric != "accuracy":  # studies before search.metric stored accuracy only, without the key
            out["metric"] = self.metric
        return out if self.deployment is None else {**out, "deployment": self.deployment.to_json()}

    @classmethod
    def from_json(cls, d: dict) -> RetrainResult:
        return cls(d["trial"], d.get("search_val_acc"), d["epochs"], d["train_on"],
                   [SeedRun.from_json(r) for r in d["runs"]], d["test_acc_mean"], d["test_acc_std"],
                   Deployment.from_json(d.get("deployment")), d.get("metric", "accuracy"))

    def balanced(self) -> tuple[float, float] | None:
        """Test balanced accuracy's mean and std over the seeds (None unless the study selected on it)."""
        values = [r.test_balanced_acc for r in self.runs if r.test_balanced_acc is not None]
        if not values:
            return None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    def headline(self) -> str:
        """The test figures in one phrase, the study's metric first: "test balanced accuracy 0.8123 ± 0.0040
        (accuracy 0.8610 ± 0.0021) over 3 seeds"."""
        acc = f"{self.test_acc_mean:.4f} ± {self.test_acc_std:.4f}"
        seeds = f"over {len(self.runs)} seed{'s' if len(self.runs) != 1 else ''}"
        balanced = self.balanced()
        if balanced is None:
            return f"test accuracy {acc} {seeds}"
        return f"test balanced accuracy {balanced[0]:.4f} ± {balanced[1]:.4f} (accuracy {acc}) {seeds}"


@dataclass(frozen=True)
class TailPlan:
    """The race and the retrain as one `--minutes` command sized them (clock.py): finalists, race seeds (rounds + 1)
    and retrain seeds."""

    race_top: int
    race_seeds: int
    retrain_seeds: int

    def describe(self) -> str:
        if not self.race_top:
            race = "no race"
        elif self.race_seeds > 1:
            race = f"race of the top {self.race_top} x {self.race_seeds - 1} round(s)"
        else:
            race = "no race rounds (the finalists compared on their search values)"
        return f"{race}, retrain on {self.retrain_seeds} seed(s)"


# --- the study's own record (user attrs of the study, not of a trial) ---

def stored_space(study) -> tuple[str, str] | None:
    """(YAML text, file name) of the space the study was searched with; None for a study nas-run did not write."""
    if "space" not in study.user_attrs:
        return None
    return study.user_attrs["space"], study.user_attrs.get("space_file", study.study_name)


def store_space(study, text: str, file: str) -> None:
    study.set_user_attr("space", text)
    study.set_user_attr("space_file", file)


def replace_space(study, text: str) -> None:
    """An edited space on resume: the old text joins the history."""
    study.set_user_attr("space_history", [*study.user_attrs.get("space_history", []), study.user_attrs["space"]])
    study.set_user_attr("space", text)


def check_test_split(study, split: dict | None, file: str) -> None:
    """A test split held out of an image folder is recorded on the study's first run; a rerun whose folder gives
    another one (images added, removed or renamed) would measure the winner on other images: one line, exit 2."""
    from search.errors import UserError

    if split is None:
        return
    stored = study.user_attrs.get("test_split")
    if stored is None:
        study.set_user_attr("test_split", split)
    elif stored != split:
        raise UserError(f"{file}: data.root: the held-out test split differs from the one study {study.study_name!r} "
                        f"was searched with ({stored['images']} images then, {split['images']} now, other files): "
                        f"restore the folder, or give the space a new name (a new study)")


def _key(what: str, tier_name: str | None) -> str:
    return what if tier_name is None else f"{what}:{tier_name}"


def race_standings(study, tier_name: str | None = None) -> list[RaceRow]:
    return [RaceRow.from_json(r) for r in study.user_attrs.get(_key("race", tier_name)) or []]


def store_race_standings(study, rows: list[RaceRow], tier_name: str | None = None) -> None:
    study.set_user_attr(_key("race", tier_name), [r.to_json() for r in rows])


def retrain_results(study, tier_name: str | None = None) -> RetrainResult | None:
    """The retrained winner (of a ladder tier); None before the retrain."""
    stored = study.user_attrs.get(_key("retrain", tier_name))
    return None if stored is None else RetrainResult.from_json(stored)


def store_retrain_results(study, results: RetrainResult, tier_name: str | None = None) -> None:
    study.set_user_attr(_key("retrain", tier_name), results.to_json())


def tail_plan(study) -> TailPlan | None:
    """The race and retrain sizes the last `--minutes` command that reached them chose; None: the space's own."""
    stored = study.user_attrs.get("tail")
    return None if stored is None else TailPlan(**stored)


def store_tail_plan(study, plan: TailPlan | None) -> None:
    """This command's sizes (None: the space's own, clearing an earlier command's)."""
    study.set_user_attr("tail", None if plan is None else dataclasses.asdict(plan))


def warm_starts(study) -> list[dict]:
    """Each warm start the study had (warm.WarmStart.record), the first first."""
    return list(study.user_attrs.get("warm_start", []))


def store_warm_start(study, record: dict) -> None:
    """A warm start's provenance, once per source and what it carried (a rerun of the same command adds nothing)."""
    if record not in warm_starts(study):
        study.set_user_attr("warm_start", [*warm_starts(study), record])


def tier_retrain_results(study) -> dict[str, RetrainResult]:
    """Every ladder tier's retrained winner stored on the study, by tier name (whatever the space says now)."""
    prefix = _key("retrain", "")
    return {k[len(prefix):]: RetrainResult.from_json(v) for k, v in sorted(study.user_attrs.items())
            if k.startswith(prefix)}
