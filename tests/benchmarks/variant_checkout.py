"""A checkout of this commit's search/ and models/ with one change, for a benchmark's `--code`:

    python tests/benchmarks/variant_checkout.py shared-ladder DIR
        one TPE over all ladder tiers (study.py without TieredSampler): ladder.py --code DIR (#34 item 7)
    python tests/benchmarks/variant_checkout.py local-startup DIR
        the start-up's trials as a small step around the incumbent in every number and a few choices
        (local_startup.py), the shape of hub-startup's, in place of neighbourhood.py's 1-3 fresh values
    python tests/benchmarks/variant_checkout.py hub-startup DIR [--registry PATH]
        the start-up's trials from OptunaHub's CatCMAwM centred on the incumbent (hub_centred.py) in place of
        neighbourhood.py's: search_per_minute.py run --code DIR (#34 item 3). PATH: the `package` folder of a
        checkout of github.com/optuna/optunahub-registry (`optunahub.load_module` clones it at run time: offline
        here); its samplers/catcmawm is copied beside the variant with sample_relative's float/int key-value swap
        mended, and NAS_RUN_HUB must name it when the variant runs (printed).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TIERED = "    study.sampler = TieredSampler(sampler) if space.budget.tiers() else sampler\n"
NEIGHBOURHOOD = "        sampler = NeighbourhoodSampler(sampler, space.search.startup_trials, space.search.seed)\n"
SWAPPED = ("{k: v for k, v in zip(solution.x, float_search_space.keys())}",
           "{k: v for k, v in zip(solution.z, integer_search_space.keys())}")


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        sys.exit(f"{path}: the line to change is not there (the code moved on): {old.strip()}")
    path.write_text(text.replace(old, new))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variant", choices=("shared-ladder", "local-startup", "hub-startup"))
    p.add_argument("dir", type=Path)
    p.add_argument("--registry", type=Path, help="optunahub-registry's package folder (hub-startup)")
    args = p.parse_args()
    out = args.dir.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD", "search", "models"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    study = out / "search" / "study.py"
    if args.variant == "shared-ladder":
        replace(study, TIERED, "    study.sampler = sampler  # benchmark variant: one TPE over all ladder tiers\n")
        return
    if args.variant == "local-startup":
        shutil.copy(HERE / "local_startup.py", out / "search" / "local_startup.py")
        replace(study, NEIGHBOURHOOD, "        from search.local_startup import LocalStepSampler  # benchmark variant\n"
                                      "        sampler = LocalStepSampler(sampler, space.search.startup_trials, "
                                      "space.search.seed)\n")
        return
    if args.registry is None:
        sys.exit("hub-startup needs --registry (optunahub-registry's package folder)")
    shutil.copy(HERE / "hub_centred.py", out / "search" / "hub_centred.py")
    replace(study, NEIGHBOURHOOD, "        from search.hub_centred import HubCentredSampler  # benchmark variant\n"
                                  "        sampler = HubCentredSampler(sampler, space.search.startup_trials, "
                                  "space.search.seed)\n")
    hub = out / "hub" / "samplers" / "catcmawm"
    shutil.copytree(args.registry / "samplers" / "catcmawm", hub)
    for old in SWAPPED:
        replace(hub / "catcmawm.py", old, old.replace("for k, v in", "for v, k in"))
    print(f"run it with NAS_RUN_HUB={out / 'hub'}")


if __name__ == "__main__":
    main()
