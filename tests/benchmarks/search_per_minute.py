"""More search per minute (#34): one search against another at equal `--minutes` on three tasks and several study
seeds, beside the plain CNN a user would write in 20 lines. Each run is a user's path: `nas-init FOLDER --params P
--minutes M`, then `nas-run SPACE --trials 300 --minutes M`.

    python tests/benchmarks/search_per_minute.py tasks [--work DIR]
        The three task folders (PNG, train/ and test/), built once from Debian's dataset-fashion-mnist:
        fm8k   28 px grey, 10 classes, 8,000 training images (vs_hand.py's draw), 2,000 test images;
        fm64c  64 px colour (resized, the grey channel in R, G and B), 9 classes (no bags), 3,800 training images;
        fm16x4 16 px grey, 4 coarse classes (tops, trousers and dresses, shoes, bags), 2,000 training images;
        fm28   28 px grey, 10 classes, 3,000 training images; fm32c 32 px colour, 9 classes, 2,000 training images
               (the three of `--minutes 3`: small enough that 3 minutes on 2 cores train more than the designs).
        fm32c8k 32 px colour, 9 classes, 8,000 training images (design_length.py's second colour task).
    python tests/benchmarks/search_per_minute.py plain --task T [--params P] [--seeds 3] [--epochs 30] [--work DIR]
        The plain CNN at the same params (conv-BN-ReLU-maxpool stages down to <= 8 px, widths 12-24-32-48 scaled to
        P, GAP, AdamW + OneCycle, random crops and flips) trained through torchvision's ImageFolder + DataLoader.
    python tests/benchmarks/search_per_minute.py run --task T --seed S [--code new|CHECKOUT] [--minutes 20]
                                                     [--params P] [--trials 300] [--work DIR]
                                                     [--set KEY=VALUE ... --label NAME] [--skip-design]
        One nas-init + nas-run with this checkout's code (new) or another checkout's (a folder holding search/ and
        models/ at an older commit: today's search), then the best first_trials design retrained the same way
        (`nas-export --trial N`).
    python tests/benchmarks/search_per_minute.py table [--work DIR]
    python tests/benchmarks/search_per_minute.py first-rung [--work DIR]
        Of the runs' sampled trials, the share at or below twice chance at the first rung, by batch size.

Every result is appended to DIR/rows.jsonl as it finishes, so a session that stops between runs keeps them. A run's
row: (a) the winner's test accuracy mean ± std and the best design's, retrained the same way; (b) trained search
trials, and the epochs they trained (the search's work where one code's trials are longer); (c) the share of
sampled trials stopped at the first rung at or below twice chance; (d) the search's share of the wall-clock.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import optuna
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
from own_images import write_folder  # noqa: E402
from vs_hand import SOURCE  # noqa: E402

from search import data as D  # noqa: E402
from search.decode import resize, to_channels  # noqa: E402

TASKS = {  # name: (side, channels, training images, test images, class groups (None: every class its own))
    "fm8k": (28, 1, 8000, 2000, None),
    "fm64c": (64, 3, 3800, 1800, [[0], [1], [2], [3], [4], [5], [6], [7], [9]]),
    "fm16x4": (16, 1, 2000, 2000, [[0, 2, 4, 6], [1, 3], [5, 7, 9], [8]]),
    "fm28": (28, 1, 3000, 2000, None),
    "fm32c": (32, 3, 2000, 1800, [[0], [1], [2], [3], [4], [5], [6], [7], [9]]),
    "fm32c8k": (32, 3, 8000, 1800, [[0], [1], [2], [3], [4], [5], [6], [7], [9]]),
}
PARAMS = {"fm8k": 8000, "fm64c": 25000, "fm16x4": 4000, "fm28": 8000, "fm32c": 20000, "fm32c8k": 20000}


def build(work: Path, name: str) -> Path:
    out = work / "tasks" / name
    if (out / "test").exists():
        return out
    side, channels, n_train, n_test, groups = TASKS[name]
    files = {k: D._read_idx(SOURCE / (stem + ".gz")) for k, stem in D.IDX_FILES.items()}
    groups = groups or [[c] for c in range(10)]
    label = {c: g for g, members in enumerate(groups) for c in members}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = files[f"{split}_x"], files[f"{split}_y"]
        keep = torch.tensor([int(v) in label for v in y])
        x, y = x[keep], torch.tensor([label[int(v)] for v in y[keep]])
        _, part = D.stratified_split(y, n / len(y), 0)
        x = x[part].unsqueeze(1) if x.dim() == 3 else x[part]  # (N, 1, H, W)
        x = to_channels(x, channels)
        x = resize(x, (side, side)) if side != x.shape[-1] else x
        write_folder(out / split, x, y[part], [f"class{g}" for g in range(len(groups))], "png")
    return out


def plain_net(side: int, channels: int, classes: int, params: int) -> torch.nn.Module:
    """conv-BN-ReLU-maxpool stages until the map is <= 8 px, then one more conv stage and a pool, GAP, linear; the
    widths 12-24-32-48-... scaled by the largest factor within `params`."""
    from torch import nn

    stages = 1
    while side // 2 ** stages > 8:
        stages += 1
    stages += 1

    def net(scale: float) -> nn.Module:
        widths = [max(1, round(w * scale)) for w in (12, 24, 32, 48, 64, 96)[:stages]]
        layers, cin = [], channels
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
            cin = w
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))

    lo, hi = 0.05, 8.0
    for _ in range(30):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if sum(p.numel() for p in net(mid).parameters()) <= params else (lo, mid)
    return net(lo)


def plain(work: Path, task: str, params: int, seeds: int, epochs: int) -> dict:
    """The plain CNN a user writes: ImageFolder + DataLoader, AdamW + OneCycle, crops (and flips for colour)."""
    from torchvision import datasets, transforms as T

    root = build(work, task)
    side, channels, *_ = TASKS[task]
    tf = [T.RandomCrop(side, padding=max(1, side // 8))] + ([T.RandomHorizontalFlip()] if channels == 3 else [])
    gray = [T.Grayscale()] if channels == 1 else []
    train = datasets.ImageFolder(root / "train", T.Compose(gray + tf + [T.ToTensor()]))
    test = datasets.ImageFolder(root / "test", T.Compose(gray + [T.ToTensor()]))
    accs, t0 = [], time.perf_counter()
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = plain_net(side, channels, len(train.classes), params)
        loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True, num_workers=2, drop_last=True)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * len(loader))
        for _ in range(epochs):
            model.train()
            for x, y in loader:
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
        with torch.no_grad():
            right = sum(int((model(x).argmax(1) == y).sum()) for x, y in torch.utils.data.DataLoader(test, batch_size=512))
        accs.append(right / len(test))
        print(f"plain {task} seed {seed}: test {accs[-1]:.4f}", flush=True)
    return {"what": "plain", "task": task, "params": sum(p.numel() for p in model.parameters()), "accs": accs,
            "minutes_per_seed": (time.perf_counter() - t0) / 60 / seeds}


def _command(code: str, script: str) -> list[str]:
    """A console script of this checkout's install (new) or of another checkout (its search/ and models/ first)."""
    if code == "new":
        return [shutil.which(script)]
    main = {"nas-run": "main", "nas-init": "init_main", "nas-export": "export_main"}[script]
    return [sys.executable, "-c", f"import sys; from search.cli import {main} as m; sys.exit(m(sys.argv[1:]))"]


def _env(code: str) -> dict:
    return os.environ if code == "new" else {**os.environ, "PYTHONPATH": str(Path(code).resolve())}


def run(work: Path, task: str, seed: int, code: str, minutes: float, params: int, trials: int,
        retrain_design: bool = True, settings: tuple = (), label: str | None = None) -> dict:
    root = build(work, task)
    label = label or ("new" if code == "new" else Path(code).name)
    name = f"{task}_{label}_s{seed}"
    out = work / "runs" / name
    out.mkdir(parents=True, exist_ok=True)
    space_file = out / f"{name}.yaml"
    if not space_file.exists():
        subprocess.run([*_command(code, "nas-init"), str(root), "--params", str(params), "--minutes", str(minutes),
                        "--out", str(space_file)], check=True, env=_env(code), cwd=out)
        raw = yaml.safe_load(space_file.read_text())
        raw["name"], raw["search"]["seed"] = name, seed
        for setting in settings:  # --set search.startup=neighbourhood: a variant of nas-init's space
            key, value = setting.split("=", 1)
            *path, last = key.split(".")
            node = raw
            for part in path:
                node = node.setdefault(part, {})
            node[last] = yaml.safe_load(value)
        space_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    log, took = out / "run.log", out / "seconds.json"
    if not took.exists():  # a run that finished keeps its wall-clock: rerunning the row does not run it again
        t0 = time.perf_counter()
        with open(log, "w") as f:
            rc = subprocess.run([*_command(code, "nas-run"), str(space_file), "--trials", str(trials), "--minutes",
                                 str(minutes), "--studies", str(out / "studies"), "--format", "checkpoint"],
                                stdout=f, stderr=subprocess.STDOUT, env=_env(code), cwd=out).returncode
        if rc != 0:
            sys.exit(f"{name}: nas-run failed ({rc}); see {log}")
        took.write_text(json.dumps(time.perf_counter() - t0))
    seconds = json.loads(took.read_text())
    row = {"what": label, "task": task, "seed": seed, "minutes": minutes, "seconds": seconds,
           **measure(out / "studies", name, seconds)}
    design, winner = row.pop("best_design"), row.pop("winner")
    if design == winner:
        row["design_accs"] = row["accs"]
    elif design is not None and retrain_design:  # the best design retrained (retrain.seeds): the search's gain over it
        folder = out / "studies" / name / f"trial-{design}"
        if not (folder / "model_card.json").exists():
            subprocess.run([*_command(code, "nas-export"), name, "--trial", str(design), "--studies",
                            str(out / "studies"), "--format", "checkpoint"], check=True, env=_env(code), cwd=out,
                           stdout=subprocess.DEVNULL)
        row["design_accs"] = [r["test_acc"] for r in json.loads((folder / "model_card.json").read_text())["metrics"]["runs"]]
    return row


def measure(studies: Path, name: str, seconds: float) -> dict:
    """(a)-(d) from the study's storage, read as stored (the same keys at every commit)."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{studies / name}.db")
    trials = study.get_trials(deepcopy=False)
    space = yaml.safe_load(study.user_attrs["space"])
    search = [t for t in trials if t.user_attrs.get("trained") and "race_of" not in t.user_attrs]
    sampled = [t for t in search if "first_trial" not in t.user_attrs]
    classes = json.loads((studies / name / "best" / "model_card.json").read_text())["config"]["num_classes"]
    epochs = space["retrain"]["epochs"]
    first_rung = space["search"].get("min_epochs") or max(1, round(space["search"].get("epochs", epochs) / 7))
    hopeless = [t for t in sampled if t.intermediate_values and max(t.intermediate_values) <= first_rung
                and t.state != optuna.trial.TrialState.COMPLETE and t.intermediate_values[max(t.intermediate_values)] <= 2 / classes]
    ends = [t.datetime_complete for t in search if t.datetime_complete]
    starts = [t.datetime_start for t in search if t.datetime_start]
    designs = [t for t in search if "first_trial" in t.user_attrs and t.state == optuna.trial.TrialState.COMPLETE]
    retrain = study.user_attrs["retrain"]
    race = [t for t in trials if "race_of" in t.user_attrs and t.datetime_complete]
    search_s = (max(ends) - min(starts)).total_seconds() if ends else 0.0
    return {"search_s": round(search_s, 1),  # the tail's parts: where the time that is not search went
            "race_s": round((max(t.datetime_complete for t in race) - min(t.datetime_start for t in race)).total_seconds(), 1)
            if race else 0.0,
            "retrain_s": round(max(r["seconds"] for r in retrain["runs"]), 1), "retrain_seeds": len(retrain["runs"]),
            "accs": [r["test_acc"] for r in retrain["runs"]], "trained": len(search),
            # the search's work: a trial of 30 planned epochs counts twice one of 15 where "trained" counts each once
            "search_epochs": sum(len(t.intermediate_values) for t in search),
            "hopeless_share": len(hopeless) / max(1, len(sampled)),
            "search_share": search_s / seconds,
            "winner_is_design": "first_trial" in trials[retrain["trial"]].user_attrs, "winner": retrain["trial"],
            "best_design": max(designs, key=lambda t: t.value).number if designs else None}


def table(work: Path) -> None:
    rows = [json.loads(line) for line in (work / "rows.jsonl").read_text().splitlines()]
    rows = list({(r["what"], r["task"], r.get("seed")): r for r in rows}.values())  # a row run again: its last

    def ms(a):
        return f"{statistics.fmean(a):.4f} ± {statistics.stdev(a) if len(a) > 1 else 0:.4f}" if a else "-"

    print(f"{'task':8} {'what':12} {'seed':>4} {'winner':>17} {'best design':>17} {'trained':>7} {'hopeless':>8} "
          f"{'search':>6} {'minutes':>7}")
    for r in rows:
        if r["what"] == "plain":
            print(f"{r['task']:8} {'plain CNN':12} {'':>4} {ms(r['accs']):>17} {'':>17} {'':>7} {'':>8} {'':>6} "
                  f"{r['minutes_per_seed']:>6.1f}/seed")
            continue
        print(f"{r['task']:8} {r['what']:12} {r['seed']:>4} {ms(r['accs']):>17} {ms(r.get('design_accs', [])):>17} "
              f"{r['trained']:>7} {r['hopeless_share']:>8.0%} {r['search_share']:>6.0%} {r['seconds'] / 60:>7.1f}")
    print("\nover the study seeds (each seed's test accuracy its retrain seeds' mean):")
    runs: dict[tuple, list] = {}
    for r in rows:
        if r["what"] != "plain":
            runs.setdefault((r["task"], r["what"]), []).append(r)
    for (task, what), rs in sorted(runs.items()):
        mean = lambda key: statistics.fmean(r[key] for r in rs)  # noqa: E731
        print(f"{task:8} {what:12} {len(rs):>2} seeds  winner {ms([statistics.fmean(r['accs']) for r in rs])}  "
              f"best design {ms([statistics.fmean(r['design_accs']) for r in rs if r.get('design_accs')])}  "
              f"trained {mean('trained'):.1f}{epochs(rs)}  hopeless {mean('hopeless_share'):.0%}  "
              f"search {mean('search_share'):.0%}  "
              f"{mean('seconds') / 60:.1f} min  winner a design {sum(r['winner_is_design'] for r in rs)}/{len(rs)}" + tail(rs))


def epochs(rows: list[dict]) -> str:
    """Mean epochs the search trained, over rows that recorded them."""
    got = [r["search_epochs"] for r in rows if "search_epochs" in r]
    return f"  epochs {statistics.fmean(got):.0f}" if got else ""


def tail(rows: list[dict]) -> str:
    """Mean seconds of the search, the race and the retrain (one seed's) over rows that recorded them."""
    rs = [r for r in rows if "race_s" in r]
    if not rs:
        return ""
    return "  s: " + " / ".join(f"{key[:-2]} {statistics.fmean(r[key] for r in rs):.0f}"
                                for key in ("search_s", "race_s", "retrain_s"))


def first_rung(work: Path) -> None:
    """Sampled search trials at or below twice chance at their first rung, by code, task and batch size (a small set
    at a large batch takes few optimizer steps an epoch)."""
    groups: dict[tuple, list[bool]] = {}
    for db in sorted((work / "runs").glob("*/studies/*.db")):
        study = optuna.load_study(study_name=db.stem, storage=f"sqlite:///{db}")
        space = yaml.safe_load(study.user_attrs["space"])
        classes = len(study.user_attrs.get("class_names") or []) or TASK_CLASSES[db.stem.split("_")[0]]
        rung = space["search"].get("min_epochs") or max(1, round((space["search"].get("epochs") or space["retrain"]["epochs"]) / 7))
        for t in study.get_trials(deepcopy=False):
            if not t.user_attrs.get("trained") or "race_of" in t.user_attrs or "first_trial" in t.user_attrs:
                continue
            if rung in t.intermediate_values:
                task, *code, _ = db.stem.split("_")
                key = ("_".join(code), task, t.params.get("train.batch_size"))
                groups.setdefault(key, []).append(t.intermediate_values[rung] <= 2 / classes)
    print(f"{'code':12} {'task':8} {'batch':>5} {'trials':>6} {'<= 2x chance at the first rung':>31}")
    for (code, task, batch), low in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        print(f"{code:12} {task:8} {batch!s:>5} {len(low):>6} {sum(low) / len(low):>31.0%}")


TASK_CLASSES = {name: len(groups) if groups else 10 for name, (*_, groups) in TASKS.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("tasks", "plain", "run", "table", "first-rung"))
    p.add_argument("--work", default="/tmp/nas-run-per-minute")
    p.add_argument("--task", choices=tuple(TASKS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--code", default="new", help="new, or a checkout folder of another commit")
    p.add_argument("--minutes", type=float, default=20)
    p.add_argument("--params", type=int)
    p.add_argument("--trials", type=int, default=300, help="high enough that --minutes ends the search")
    p.add_argument("--skip-design", action="store_true", help="do not retrain the best design (nas-export --trial)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change nas-init's space before the run, e.g. search.startup=neighbourhood (repeatable)")
    p.add_argument("--label", help="the variant's name in the table (default: new, or the code folder's name)")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.what == "tasks":
        for task in TASKS:
            print(task, build(work, task))
        return
    if args.what == "table":
        table(work)
        return
    if args.what == "first-rung":
        first_rung(work)
        return
    params = args.params or PARAMS[args.task]
    if args.what == "plain":
        torch.set_num_threads(os.cpu_count() or 1)
        row = plain(work, args.task, params, args.seeds, args.epochs)
    else:
        row = run(work, args.task, args.seed, args.code, args.minutes, params, args.trials, not args.skip_design,
                  tuple(args.set), args.label)
    with open(work / "rows.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
