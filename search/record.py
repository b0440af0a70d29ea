"""A trial's record: what nas-run writes into a trial's user attrs, and every question asked of it.

Only this module knows the attr names and the end-reason strings; everything else asks here (is it a race run?
which round? did it train? its last value?). The strings are the ones studies have always held, so a study
written by an older nas-run resumes and reports as it is.

End reasons. Untrained: `rejected:<params|macs|time>` (over budget), `invalid: <message>` (does not build),
`duplicate_of:<n>` (the same candidate trained already), `surplus` (asked for past what the phase needs: during
the race, or past the target by workers that asked at once). Trained: `completed`, `pruned`, `diverged`
(non-finite loss), `time` (ran past its share of `budget.train_seconds`), `out_of_time` (`--minutes` left no time
before the race and the retrain). Ended by trouble: `interrupted` (Ctrl-C / SIGTERM; enqueued again),
`error:<type>: <message>` (CUDA OOM ...).
"""
from __future__ import annotations

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


def end_reason(t) -> str:
    """The stored end reason as written ("" while the trial runs)."""
    return t.user_attrs.get("end_reason", "")


def end_of(t) -> tuple[End | None, str]:
    """(kind, detail) of a trial's end reason; (None, "") while it runs or for a reason this module does not know."""
    text = end_reason(t)
    for kind in End:
        if kind.value.endswith(":") and text.startswith(kind.value):
            return kind, text[len(kind.value):].strip()
        if text == kind.value:
            return kind, ""
    return None, ""


def trial_seed(study_seed: int, number: int) -> int:
    """Every trial's seed, from the study seed and its number (recorded as user attr `seed`)."""
    return (study_seed * STUDY_SEED_STRIDE + number) % 2**31


# --- writing (during the trial: Optuna refuses to change a finished trial) ---

def end(trial, kind: End, detail: object = "") -> None:
    trial.set_user_attr("end_reason", reason(kind, detail))


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
    trial.set_user_attr("end_reason", hist.end_reason)
    trial.set_user_attr("epochs_run", len(hist.val_acc))
    if hist.epoch_seconds:
        trial.set_user_attr("seconds_per_epoch", round(sum(hist.epoch_seconds) / len(hist.epoch_seconds), 2))
        trial.set_user_attr("images_per_second", round(hist.images / sum(hist.epoch_seconds)))
    trial.set_user_attr("images", hist.images)


def race_attrs(finalist, fold: int) -> dict:
    """User attrs of an enqueued race run: the finalist trial again (in its ladder tier), on race round `fold`."""
    return {"race_of": finalist.number, "race_fold": fold, **_tier_attr(tier(finalist))}


def first_trial_attrs(index: int, tier_name: str | None = None) -> dict:
    """User attrs of an enqueued `search.first_trials` design (with a ladder: one per tier)."""
    return {"first_trial": index, **_tier_attr(tier_name)}


def retry_attrs(trial) -> dict:
    """User attrs of an interrupted trial enqueued again: what it was enqueued as, and which trial it retries."""
    kept = {k: v for k, v in trial.user_attrs.items() if k in ("race_of", "race_fold", "first_trial", "tier")}
    return {"retry_of": trial.number, **kept}


def _tier_attr(name: str | None) -> dict:
    return {} if name is None else {"tier": name}


def set_tier(trial, name: str) -> None:
    trial.set_user_attr("tier", name)


# --- reading ---

def tier(t) -> str | None:
    """The ladder tier a trial was searched in (None: a single budget)."""
    return t.user_attrs.get("tier")


def of_tier(trials, name: str | None) -> list:
    """The trials of one ladder tier (all of them for a single budget: name None)."""
    return list(trials) if name is None else [t for t in trials if tier(t) == name]


def is_race(t) -> bool:
    return "race_of" in t.user_attrs


def race_of(t) -> int | None:
    return t.user_attrs.get("race_of")


def race_fold(t) -> int | None:
    """The race round a race run validates on (None: a search trial, or a race run from before rounds existed)."""
    return t.user_attrs.get("race_fold")


def first_trial(t) -> int | None:
    """Index into `search.first_trials` of the design this trial trains, else None."""
    return t.user_attrs.get("first_trial")


def is_trained(t) -> bool:
    return bool(t.user_attrs.get("trained"))


def is_untrained(t) -> bool:
    """Ended before training: rejected, invalid, a duplicate or surplus."""
    return end_of(t)[0] in UNTRAINED


def is_rejected(t) -> bool:
    """Over budget or not buildable: the candidates the budget and the space turned away."""
    return end_of(t)[0] in (End.REJECTED, End.INVALID)


def is_claimed(t) -> bool:
    """Running and not yet ended untrained: most such trials will train."""
    return t.state == TrialState.RUNNING and "end_reason" not in t.user_attrs


def candidate(t) -> dict | None:
    return t.user_attrs.get("candidate")


def params(t) -> int | None:
    return t.user_attrs.get("params")


def macs(t) -> int | None:
    return t.user_attrs.get("macs")


def epochs_run(t) -> int:
    return t.user_attrs.get("epochs_run", 0)


def seconds_per_epoch(t) -> float | None:
    return t.user_attrs.get("seconds_per_epoch")


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


def is_enqueued(t) -> bool:
    """Enqueued rather than sampled: a `first_trials` design, a race run, a retry of an interrupted or stale trial."""
    return "fixed_params" in t.system_attrs


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


def race_standings(study, tier_name: str | None = None) -> list[dict]:
    return study.user_attrs.get(_key("race", tier_name)) or []


def store_race_standings(study, rows: list[dict], tier_name: str | None = None) -> None:
    study.set_user_attr(_key("race", tier_name), rows)


def retrain_results(study, tier_name: str | None = None) -> dict | None:
    """The retrained winner (of a ladder tier): trial, test accuracy mean and std, runs (see retrain.py); None
    before the retrain."""
    return study.user_attrs.get(_key("retrain", tier_name))


def store_retrain_results(study, results: dict, tier_name: str | None = None) -> None:
    study.set_user_attr(_key("retrain", tier_name), results)
