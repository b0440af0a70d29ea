"""Warm start (`nas-run SPACE --from SOURCE`): a new search begins from what an earlier study learned.

- The earlier study's retrained winner (its best sampled full-length trial where a design won: `CANDIDATES`)
  comes first: it is mapped onto this space (`carry`: a number outside this space's range is clipped into it, a
  choice it does not offer or a parameter it does not have is dropped, and the run says which), enqueued after the
  designs, before anything is sampled, and trained at full length (objective.py); the parameters it lacks are
  sampled. Where the budget fills (`budget.fill`), its widths set the shape and fill sizes it to this budget, each
  ladder tier's.
- The net's parameters (`model.*`) carry only where both spaces lay their stages out alike (the same family, the
  same stage count, pooling at the same stages): `model.stage1.width` of a 28-px space whose stage 1 keeps the full
  resolution says nothing of stage 1 of a 64-px space that pools there, and what separable convolutions, a head or
  padding were worth there says little of them on a net laid out otherwise. Where the layouts differ the net is
  dropped (named once), the carried trial takes this space's first design's net, and what carries is the training
  recipe (`train.*`: optimizer, learning rate, schedule, batch, augmentation; nas-init writes such pairs for another
  image size). On 28 -> 64 px that reached the cold run's final test by 12-20% of its time at 5 of 5 seeds in
  cold's wall-clock; with the 28-px winner's separable net carried too, 3 of 5 in 1.3x it (RESULTS.md, "Warm start
  across image sizes").
- The sampler is shown the earlier study's trained search trials as evidence (`EvidenceSampler`), mapped the same
  way, their validation values as ranks within their own study (the two tasks' accuracies are not on one scale;
  this study's values are shown as ranks too), numbered before this study's trials. Each counts as one trial:
  TPE's good set is the best tenth of all trials, so the earlier study's share of it is its share of the trials
  and shrinks as this study's own come in (with 50 earlier trials, half after 50 here); TPE also weighs the
  oldest observations of its other set down past 25. Each also stands in for one start-up trial (`startup_trials`,
  the neighbourhood's or TPE's random one): the start-up is there because the sampler has nothing to learn from.
  Not where the net did not carry: the evidence is then the recipe alone; the run keeps its start-up (the
  neighbourhood's, around this space's designs, or TPE's random one) and the sampler is shown the evidence after
  it (on 28 -> 64 px the run reached the cold run's test by half its time at 4 of 5 seeds, against 1 of 5 with the
  start-up replaced: RESULTS.md, "Warm start (b): the start-up kept").
- The source is opened read-only (SQLite in mode=ro; PostgreSQL in read-only transactions): read, never written.

OptunaHub's MetaLearnTPESampler (task-similarity weighted TPE over source studies) was the other way the issue
named: `optunahub.load_module` fetches its code from GitHub when the run starts, which an offline install (this
project's, and many users') cannot do; the weighted evidence needs nothing beyond Optuna. It also uses the sources
only once this study has `n_startup_trials` (10) COMPLETE trials: successive halving leaves 2-7 in nas-init's 3- and
6-minute runs on 28-32 px tasks (RESULTS.md, "Warm start").
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from search import record as rec
from search.errors import UserError
from search.space import Param, Space, SpaceError, parse, read_yaml, same_value
from search.study_view import StudyView, ViewSampler

# Full-length trials carried over and enqueued, besides designs: the source's retrained winner where it was sampled,
# else its best sampled trial. Three cost 3 full-length trainings of a 16-trial run and won 1 race of 15; the
# evidence alone was as good and 20% faster (RESULTS.md, "Warm start"): one keeps the earlier winner's shape.
CANDIDATES = 1
EVIDENCE_MOST = 50  # the source's trained trials the sampler is shown at most (the latest)


@dataclass(frozen=True)
class Source:
    """Where the earlier study lives: an Optuna storage URL and the study's name in it."""

    url: str
    name: str

    def describe(self) -> str:
        sqlite = self.url.startswith("sqlite:///")
        where = self.url[len("sqlite:///"):] if sqlite else self.url.split("@")[-1]  # no password in logs or reports
        return f"{self.name} ({where})"


def locate(text: str, studies: str) -> Source:
    """--from: a study name in --studies (sqlite:///STUDIES/NAME.db), a .db file, or a storage URL; `#NAME` after a
    file or URL picks one study where it holds several."""
    where, _, name = text.partition("#")
    if "://" not in where and not where.endswith(".db"):
        return Source(f"sqlite:///{Path(studies) / where}.db", where)
    url = where if "://" in where else f"sqlite:///{where}"
    return Source(url, name)


def open_source(source: Source) -> optuna.Study:
    """The source study, opened so that nothing can write to it; a missing file, storage or study is one line."""
    url, engine = source.url, {}
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not path.is_file():
            raise UserError(f"--from: no study storage at {path} (expected a study name in --studies, a .db file or "
                            f"a storage URL)")
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    elif url.startswith("postgresql"):
        engine = {"connect_args": {"options": "-c default_transaction_read_only=on", "connect_timeout": 10}}
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine, skip_table_creation=True)
        names = optuna.get_all_study_names(storage)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--from: cannot read {source.describe()}: {first}") from None
    name = source.name or (names[0] if len(names) == 1 else "")
    if name not in names:
        held = ", ".join(names) or "none"
        raise UserError(f"--from: no study {source.name!r} in {source.url.split('@')[-1]} (it holds: {held}; "
                        f"name one as FILE.db#NAME or URL#NAME)" if source.name or names else
                        f"--from: {source.url.split('@')[-1]} holds no study")
    return optuna.load_study(study_name=name, storage=storage)


@dataclass(frozen=True)
class Carried:
    """One earlier trial, mapped onto this space: its number and value there, the parameters it brings."""

    trial: int
    value: float
    params: dict


@dataclass(frozen=True)
class WarmStart:
    """What a warm start brings: the candidates to enqueue, the sampler's evidence, what the mapping changed."""

    source: Source
    candidates: tuple[Carried, ...]
    designs: tuple[str, ...]  # its best trials that are this space's designs: "n (first_trials[i])"
    evidence: tuple[FrozenTrial, ...]
    clipped: tuple[str, ...]  # "name v -> w (trial n)", for the candidates
    dropped: tuple[str, ...]  # "name (why)", over the source's trained trials
    stages_apart: str | None = None  # why its net's parameters did not carry (`_stages_apart`), or None: they did

    @property
    def startup_left(self) -> bool:
        """Whether this run keeps its own start-up trials before the sampler learns (see the module docstring)."""
        return self.stages_apart is not None

    def lines(self) -> list[str]:
        """What the run and --check print."""
        trials = ", ".join(f"{c.trial} (val {c.value:.4f})" for c in self.candidates)
        out = [f"warm start from {self.source.describe()}: its trials {trials} train at full length after the "
               f"designs, mapped onto this space; the sampler starts from {len(self.evidence)} of its trained trials, "
               + ("after this space's start-up trials (its nets are laid out otherwise)" if self.startup_left else
                  "each in place of a start-up trial")]
        if self.designs:
            out.append("warm start: its trials " + ", ".join(self.designs) + " are this space's designs, trained as such")
        if self.clipped:
            out.append("warm start: clipped into this space's ranges: " + "; ".join(self.clipped))
        if self.dropped:
            out.append("warm start: dropped (left to the sampler): " + "; ".join(self.dropped))
        return out

    def record(self) -> dict:
        """What the study keeps (rec.store_warm_start): the report's provenance."""
        return {"study": self.source.name, "storage": self.source.describe(),
                "trials": [c.trial for c in self.candidates], "designs": list(self.designs), "evidence": len(self.evidence),
                "clipped": list(self.clipped), "dropped": list(self.dropped)}

    def attrs(self, carried: Carried) -> dict:
        """User attrs of an enqueued carried candidate: where it came from (the dashboard shows them)."""
        return rec.warm_attrs(f"{self.source.name}#{carried.trial}")


def read(text: str, studies: str, space: Space, own_url: str) -> WarmStart:
    """`--from TEXT` for a run of `space` writing to `own_url`: the warm start, or one line (exit 2) when the source
    is missing, is this study, has no full-length trial, or shares no searched parameter with this space."""
    source = locate(text, studies)
    study = open_source(source)
    source = dataclasses.replace(source, name=study.study_name)
    if _where(source.url) == _where(own_url) and source.name == space.name:
        raise UserError(f"--from: {source.describe()} is the study this run writes to; name an earlier study")
    trials = study.get_trials(deepcopy=False)
    done = rec.full_length(trials)
    if not done:
        raise UserError(f"--from: {source.describe()} has no full-length search trial to start from")
    target = Target.of(space, _stages_apart(study, space))
    if not any(carry(t.params, target)[0] for t in rec.trained(trials)):
        theirs, searched = sorted({n for t in done for n in t.params}), sorted(target.searched)
        raise UserError(f"--from: {source.describe()} shares no searched parameter with {space.file} (its "
                        f"parameters: {', '.join(theirs[:6])}{', ...' if len(theirs) > 6 else ''}; this space's: "
                        f"{', '.join(searched[:6])}{', ...' if len(searched) > 6 else ''}"
                        f"{'; ' + NET_PREFIX + '* not carried: ' + target.stages_apart if target.stages_apart else ''})")
    candidates, designs, clipped, dropped = [], [], {}, {}
    # where the net does not carry, the carried trial takes the first design's (the net these images were given)
    net = {n: v for n, v in (space.search.first_trials or ({},))[0].items()
           if n.startswith(NET_PREFIX)} if target.stages_apart else {}
    for t in _ranked(done, _winners(study)):
        params, moved, _ = carry(t.params, target)
        params = {**net, **params} if params else params
        design = next((i for i, d in enumerate(space.search.first_trials)  # the design, and values it left to the
                       if d.items() <= params.items()), None)  # sampler: trained as that design
        if design is not None:
            designs.append(f"{t.number} (first_trials[{design}])")
            continue
        for name, note in moved.items():
            clipped.setdefault(name, f"{note} (trial {t.number})")
        if params and all(params != c.params for c in candidates):
            candidates.append(Carried(t.number, t.value, params))
        if len(candidates) == CANDIDATES:
            break
    for t in rec.trained(trials):  # what the candidates and the evidence leave out, each named once
        for name, why in carry(t.params, target)[2].items():
            dropped.setdefault(name, why)
    return WarmStart(source, tuple(candidates), tuple(designs), tuple(evidence(trials, target)),
                     tuple(f"{n} {v}" for n, v in sorted(clipped.items())),
                     tuple(f"{n} ({v})" for n, v in sorted(dropped.items())), target.stages_apart)


NET_PREFIX = "model."  # the net's parameters: they carry where the stages are laid out alike


def layout(space: Space) -> str:
    """A space's stages as a family and a mark per stage: p pools first, - does not, ? searched, . no pool key."""
    def mark(stage: dict) -> str:
        p = stage.get("pool")
        return "." if p is None else "?" if p.choices is not None else "p" if p.value else "-"
    return f"{space.family} " + "".join(mark(st) for st in space.stages)


def _stages_apart(study, space: Space) -> str | None:
    """Why the source's net parameters do not carry onto `space` (their stage layouts, see `layout`), or
    None: the same layout, or the source's space cannot be read (an older study: mapped by name as before)."""
    stored = rec.stored_space(study)
    try:
        theirs = layout(parse(read_yaml(stored[0]), stored[1], stored[0])) if stored else None
    except (SpaceError, yaml.YAMLError):
        theirs = None
    ours = layout(space)
    if theirs is None or theirs == ours:
        return None
    first = "; the carried trial takes first_trials[0]'s net" if space.search.first_trials else ""
    return (f"its stages are laid out otherwise: {theirs} against {ours}, p: pools first, -: does not, ?: "
            f"searched{first}")


def _where(url: str) -> str:
    """A storage URL as a place: an SQLite file by its absolute path."""
    return str(Path(url[len("sqlite:///"):]).resolve()) if url.startswith("sqlite:///") else url


def _winners(study) -> list[int]:
    """The source's retrained winners (one per ladder tier), largest tier last."""
    found = [rec.retrain_results(study)] + list(rec.tier_retrain_results(study).values())
    return list(dict.fromkeys(r.trial for r in found if r is not None))


def _ranked(done: list, winners: list[int]) -> list:
    """Full-length search trials, the retrained winners first, then by validation value."""
    first = [t for n in winners for t in done if t.number == n]
    return first + sorted((t for t in done if t.number not in winners), key=lambda t: -t.value)


@dataclass(frozen=True)
class Target:
    """What an earlier trial is mapped onto: this space's searched parameters by Optuna name, and its conditional
    keys (the branch parameters, each with the key it belongs to and the choice of `by` it stands for)."""

    searched: dict[str, Param]
    branch_of: dict[str, tuple[str, str, Any]]  # branch name -> (conditional key's name, its `by`, the choice)
    stages_apart: str | None = None  # why the net's parameters do not carry (`_stages_apart`), or None: they do

    @classmethod
    def of(cls, space: Space, stages_apart: str | None = None) -> Target:
        return cls({n: p for n, p in space.params().items() if p.distribution() is not None},
                   {b.name: (p.name, p.by, value) for p in space.conditional_keys() for value, b in p.branches},
                   stages_apart)

    def name_for(self, name: str, params: dict) -> str | None:
        """This space's name for an earlier trial's parameter: the same name; where this space makes the key
        conditional, the branch of the trial's choice (train.lr with optimizer sgd -> train.lr.sgd); where the
        earlier space did and this one does not, the key (train.lr.sgd -> train.lr)."""
        if name in self.searched:
            return name
        for branch, (key, by, value) in self.branch_of.items():
            if key == name and by in params and same_value(params[by], value) and branch in self.searched:
                return branch
        key = name.rsplit(".", 1)[0]
        return key if key in self.searched and key not in self.branch_of else None


def carry(params: dict, target: Target) -> tuple[dict, dict[str, str], dict[str, str]]:
    """An earlier trial's parameters on this space -> (the values kept, by this space's names, clipped into range;
    {name: "v -> w"} for the clipped numbers; {name: why} for the dropped)."""
    kept, clipped, dropped = {}, {}, {}
    for source_name, v in params.items():
        if target.stages_apart and source_name.startswith(NET_PREFIX):
            dropped[NET_PREFIX + "*"] = target.stages_apart
            continue
        name = target.name_for(source_name, params)
        p = target.searched.get(name) if name else None
        if p is None:
            dropped[source_name] = "not searched in this space"
        elif p.choices is not None:
            hits = [c for c in p.choices if same_value(v, c)]
            if hits:
                kept[name] = hits[0]
            else:
                dropped[f"{name}={v}"] = f"not among {list(p.choices)}"
        elif not isinstance(v, (int, float)) or isinstance(v, bool):
            dropped[name] = f"{v!r} is not a number here"
        else:
            w = min(max(v, p.low), p.high)
            if p.step:
                w = min(p.high, p.low + round((w - p.low) / p.step) * p.step)
            w = int(round(w)) if p.is_int else float(w)
            if abs(w - v) > 1e-9 * max(1.0, abs(v)):
                clipped[name] = f"{v:g} -> {w:g}"
            kept[name] = w
    return kept, clipped, dropped


def evidence(trials, target: Target) -> list[FrozenTrial]:
    """The source's trained search trials (the latest EVIDENCE_MOST) as trials of this space: mapped parameters with
    this space's distributions; a full-length trial's value is its rank within its study, from 0 (worst) to 1; a
    cut-short one is PRUNED with its last epoch (TPE places pruned trials by epoch, then value); numbered -n..-1."""
    done = sorted(rec.full_length(trials), key=lambda t: t.value)
    quantile = {t.number: (i + 0.5) / len(done) for i, t in enumerate(done)}
    out = []
    for t in rec.trained(trials)[-EVIDENCE_MOST:]:
        params = carry(t.params, target)[0]
        if not params:
            continue
        full = t.number in quantile
        e = optuna.trial.create_trial(
            state=TrialState.COMPLETE if full else TrialState.PRUNED, value=quantile[t.number] if full else None,
            params=params, distributions={n: target.searched[n].distribution() for n in params},
            intermediate_values=None if full else {rec.last_epoch(t): 0.0})
        out.append(e)
    for i, e in enumerate(out):
        e.number = i - len(out)
    return out


class _WithEvidence(StudyView):
    """A study as the wrapped sampler sees it: the evidence first, then the study's own trials with each
    full-length value as its rank within the study (the evidence's scale)."""

    def __init__(self, study, evidence: tuple[FrozenTrial, ...]):
        super().__init__(study)
        self._evidence = evidence

    def shown(self, trials: list, states) -> list:
        done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
        quantile = {t.number: (i + 0.5) / len(done) for i, t in enumerate(done)}
        ranked = []
        for t in trials:
            if t.number in quantile:
                t = copy.copy(t)
                t.value = quantile[t.number]
            ranked.append(t)
        return [e for e in self._evidence if states is None or e.state in states] + ranked


class EvidenceSampler(ViewSampler):
    """`sampler`, shown the earlier study's trials besides this study's once this study has `after` finished trials
    of its own (its own start-up, where the earlier trials do not stand in for it; see the module docstring)."""

    def __init__(self, sampler: optuna.samplers.BaseSampler, evidence: tuple[FrozenTrial, ...], after: int = 0):
        super().__init__(sampler)
        self.evidence, self.after, self._held = evidence, after, after > 0

    def view(self, study, trial):
        if self._held:  # until the study has `after` finished trials; they only grow, so counted until then
            finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            self._held = len(finished) < self.after
        return _WithEvidence(study, () if self._held else self.evidence)

