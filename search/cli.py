"""Command line: `nas-run SPACE [--check] [--trials N] ...`, `nas-export`, `nas-report`, `nas-init`, `nas-predict`.

User-input trouble is one line on stderr and exit status 2, before anything is written.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time

from rich.console import Console

from search.errors import OneLineError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        sys.stderr.write(f"{self.prog}: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of minutes > 0, got {text!r}")
    return value


def _workers(text: str) -> int | str:
    return "auto" if text == "auto" else _positive(text)


def run_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nas-run", description="Search a YAML space of small CNNs under a budget.")
    p.add_argument("space", help="the YAML search space, e.g. spaces/mnist_8k.yaml")
    p.add_argument("--check", action="store_true", help="validate the space and show budget fit; train nothing")
    p.add_argument("--trials", type=_positive, help="trained trials to reach (default: search.trials)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///STUDIES/NAME.db)")
    p.add_argument("--studies", default="studies", help="output directory (default: studies)")
    p.add_argument("--workers", type=_workers, default="auto", help="worker processes on this machine (default: auto, "
                   "one single-thread worker per core; on GPUs several per GPU)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--no-retrain", action="store_true", help="search only: skip retraining and export")
    p.add_argument("--format", choices=("checkpoint", "onnx", "pt2", "all"), default="all",
                   help="what the winner is exported to besides checkpoint.pt (default: all; the deployment "
                        "figures and the int8 model come with onnx)")
    p.add_argument("--heartbeat", type=_positive, default=10, help="seconds between trial heartbeats (stale after 3x)")
    p.add_argument("--minutes", type=_minutes, help="wall-clock budget of this command: the search stops in time "
                   "for the race and the retrain (default: none, --trials decides)")
    p.add_argument("--from", dest="warm_from", metavar="STUDY",
                   help="warm start: begin from an earlier study (a name in --studies, a .db file, or a storage URL; "
                        "FILE.db#NAME or URL#NAME picks one of several): its winner trains after your designs, mapped "
                        "onto this space and budget, and the sampler starts from its trials; it is only read")
    p.add_argument("--samples", type=_positive, default=300, help="--check: candidates to sample")
    return p


def _formats(choice: str) -> tuple[str, ...]:
    """nas-run's --format: the checkpoint always (the report and nas-export start from it), and the choice."""
    return ("checkpoint", "onnx", "pt2") if choice == "all" else tuple(dict.fromkeys(("checkpoint", choice)))


def make_console() -> Console:
    """A terminal's own console; into a log or a pipe, a line per event as it happens, never wrapped (a long
    storage URL broke the run's first line in two, so `grep` found half of it); tables stay 140 columns."""
    if sys.stdout.isatty():
        return Console()
    sys.stdout.reconfigure(line_buffering=True)
    return Console(width=140, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    started = time.time()  # --minutes counts from here
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C works even when started with SIGINT ignored
    args = run_parser().parse_args(argv)
    console = make_console()
    try:
        from search import space as S

        space = S.load(args.space)
        if args.check:
            import torch

            from search import check
            from search.workers import pick_device, plan_workers

            k, threads = plan_workers(args.workers, args.device)
            torch.set_num_threads(threads)
            if args.warm_from:
                from search.run import read_warm_start
                from search.study import default_storage

                read_warm_start(args.warm_from, args.studies, space,
                                args.storage or default_storage(space.name, args.studies), console)
            return check.run(space, args.samples, console, args.trials, k, pick_device(args.device), args.minutes)
        from search.run import RunOptions, run

        return run(space, console, RunOptions(trials=args.trials, storage=args.storage, studies=args.studies,
                                              workers=args.workers, device=args.device, heartbeat=args.heartbeat,
                                              retrain_winner=not args.no_retrain, minutes=args.minutes, started=started,
                                              formats=_formats(args.format), warm_from=args.warm_from))
    except OneLineError as e:
        sys.stderr.write(f"nas-run: {e}\n")
        return e.status
    except KeyboardInterrupt:  # outside a trial (loading, retraining): nothing half-written is kept
        sys.stderr.write("nas-run: interrupted; the same command resumes (an unfinished retrain starts over)\n")
        return 130


def _one_line(prog: str, command) -> int:
    """Run `command()`; user or infrastructure trouble is one line on stderr and its exit status."""
    try:
        return command()
    except OneLineError as e:
        sys.stderr.write(f"{prog}: {e}\n")
        return e.status


def export_main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="nas-export", description="Export a trial of a finished study.")
    p.add_argument("study", help="study name (its storage is sqlite:///STUDIES/NAME.db)")
    p.add_argument("--trial", type=int, help="trial number (default: the race's winner)")
    p.add_argument("--format", choices=("checkpoint", "onnx", "pt2", "all"), default="all")
    p.add_argument("--storage", help="Optuna storage URL")
    p.add_argument("--studies", default="studies")
    p.add_argument("--out", help="output directory (default: STUDIES/NAME/best, with --trial N STUDIES/NAME/trial-N)")
    args = p.parse_args(argv)

    def command():
        from search import export
        from search.run import export_study

        formats = export.FORMATS if args.format == "all" else (args.format,)
        return export_study(args.study, make_console(), trial=args.trial,
                            storage=args.storage, studies=args.studies, formats=formats, out=args.out)

    return _one_line("nas-export", command)


def init_main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="nas-init", description="Look at an image folder or .npz and write a search space for it.")
    p.add_argument("data", help="a folder of class sub-folders (or train/ and test/ holding them), or an .npz file")
    p.add_argument("--params", type=_positive, default=8000, help="parameter budget (default 8000)")
    p.add_argument("--macs", type=_positive, help="MACs per image (default: mnist_8k's MACs per param and pixel)")
    p.add_argument("--minutes", type=_minutes, help="the wall-clock budget you will give nas-run (printed in the next command)")
    p.add_argument("--out", help="the space file to write (default: NAME.yaml here; never overwritten)")
    args = p.parse_args(argv)

    def command():
        from search.init import init

        return init(args.data, args.params, args.macs, args.minutes, args.out, make_console())

    return _one_line("nas-init", command)


def predict_main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="nas-predict", description="Run an exported model on image files or folders; CSV out.")
    p.add_argument("model_dir", help="an export folder, e.g. studies/NAME/best")
    p.add_argument("paths", nargs="+", help="image files or folders (recursive)")
    p.add_argument("--csv", help="write the CSV here (default: stdout; predictions.csv with --evaluate)")
    p.add_argument("--top", type=_positive, default=1, help="labels per image, most probable first (default 1)")
    p.add_argument("--evaluate", action="store_true",
                   help="PATH is a folder with a sub-folder per class: print accuracy, balanced accuracy, per-class "
                        "recall and the confusion matrix, and write them as JSON beside the CSV")
    args = p.parse_args(argv)

    def command():
        from search.predict import predict

        return predict(args.model_dir, args.paths, args.csv, args.top, args.evaluate)

    return _one_line("nas-predict", command)


def report_main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="nas-report", description="Write STUDIES/NAME/report.html for a study (finished or running).")
    p.add_argument("study", help="study name (its storage is sqlite:///STUDIES/NAME.db)")
    p.add_argument("--storage", help="Optuna storage URL")
    p.add_argument("--studies", default="studies")
    args = p.parse_args(argv)

    def command():
        from search.run import report_study

        return report_study(args.study, make_console(), storage=args.storage, studies=args.studies)

    return _one_line("nas-report", command)


if __name__ == "__main__":
    sys.exit(main())
