"""How long the study report takes for a large study: a real study's trials copied until the study holds N (1,000 by
default) into a fresh SQLite study, then `report.write` timed (storage read, figures, tables, importances; the data
sections are left out, they do not grow with the trials).

    python tests/benchmarks/report_speed.py --study fm8k --studies /tmp/nas-run-vs-hand/studies [--trials 1000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from search import report  # noqa: E402
from search.run import load_stored  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--study", required=True)
    p.add_argument("--studies", default="studies")
    p.add_argument("--trials", type=int, default=1000)
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    source, space = load_stored(args.study, None, args.studies)
    finished = [t for t in source.get_trials() if t.state.is_finished()]
    work = Path(tempfile.mkdtemp(prefix="nas-run-report-speed-"))
    big = optuna.create_study(study_name=space.name, storage=f"sqlite:///{work}/big.db", direction="maximize")
    for key, value in source.user_attrs.items():
        big.set_user_attr(key, value)
    copies = [finished[i % len(finished)] for i in range(args.trials)]
    big.add_trials([optuna.trial.create_trial(state=t.state, value=t.value, params=t.params, distributions=t.distributions,
                                              user_attrs=t.user_attrs, intermediate_values=t.intermediate_values)
                    for t in copies])
    t0 = time.perf_counter()
    page = report.write(big, space, work / space.name)
    seconds = time.perf_counter() - t0
    print(f"{len(big.trials)} trials: report written in {seconds:.1f} s ({page}, {page.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
