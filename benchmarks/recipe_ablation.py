"""Compare training recipes: short runs of equal length on the same cases and split, side by side.

Each recipe changes one lever against the previous bundled model's recipe (v1.1.0), so the table shows what each
lever does at a fixed number of steps. Made for a GPU machine, where every recipe runs in its own process at the
same time; on a CPU give ``--only NAME`` to run one. Prints mean validation Dice per region of each recipe, read
from each run's ``log.jsonl``.

    python benchmarks/recipe_ablation.py --data DIR --split training/splits/brats2018-v2.json --out RUNS \
        --epochs 12 --device cuda --workers 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDE = {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 1}
RECIPES: dict[str, dict] = {
    "v1.1 (8-ch UNet, 2 patches of 1 case)": {"arch_kwargs": None, "cases_per_step": 1, "samples_per_case": 2},
    "wide (16-ch UNet)": {"arch_kwargs": WIDE, "cases_per_step": 1, "samples_per_case": 2},
    "wide, 2 cases a step": {"arch_kwargs": WIDE, "cases_per_step": 2, "samples_per_case": 1},
    "wide, 2 cases, 128^3 patches": {"arch_kwargs": WIDE, "cases_per_step": 2, "samples_per_case": 1,
                                     "patch_size": [128, 128, 128]},
    "wide, 2 cases, 2/3 tumour patches": {"arch_kwargs": WIDE, "cases_per_step": 2, "samples_per_case": 1,
                                          "tumour_share": 2 / 3},
}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.split(" (")[0]).strip("-").lower()


def run_one(name: str, args: argparse.Namespace) -> None:
    """Train one recipe to its end (resumes if its folder holds a run)."""
    sys.path.insert(0, str(ROOT))
    from napari_brainseg.training.train import TrainConfig, Trainer

    cfg = TrainConfig(data=args.data, out=str(Path(args.out) / _slug(name)), epochs=args.epochs,
                      steps_per_epoch=args.steps_per_epoch, device=args.device, val_split=args.split, seed=args.seed,
                      lr=args.lr, num_workers=args.workers, val_every=args.val_every, **RECIPES[name])
    Trainer(cfg, log=lambda msg: print(f"[{_slug(name)}] {msg}", flush=True)).fit()


def table(out: Path) -> str:
    """Markdown table of each recipe's last validation scores and training time."""
    rows = ["| recipe | steps | train s | Dice WT | Dice TC | Dice ET |", "| --- | --- | --- | --- | --- | --- |"]
    for name in RECIPES:
        log = out / _slug(name) / "log.jsonl"
        entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        scored = [e for e in entries if "val" in e]
        if not scored:
            rows.append(f"| {name} | - | - | - | - | - |")
            continue
        last, seconds = scored[-1], sum(e["seconds"] for e in entries)
        val = last["val"]
        rows.append(f"| {name} | {last['step']} | {seconds:.0f} | {val['Dice_WT']:.3f} | {val['Dice_TC']:.3f} "
                    f"| {val['Dice_ET']:.3f} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, help="folders of labelled BraTS cases")
    parser.add_argument("--split", required=True, help="split file; its val cases found in --data are validated on")
    parser.add_argument("--out", required=True, help="folder for one run folder per recipe")
    parser.add_argument("--epochs", type=int, default=12, help="epochs of every run")
    parser.add_argument("--steps-per-epoch", type=int, default=100, help="optimiser steps an epoch")
    parser.add_argument("--val-every", type=int, default=4, help="validate every N epochs (and at the end)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--workers", type=int, default=0, help="data-loading worker processes per run")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of every run")
    parser.add_argument("--only", choices=list(RECIPES), help="run this recipe alone, in this process")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds after which unfinished runs are stopped (their last validation is reported)")
    args = parser.parse_args()
    if args.only:
        run_one(args.only, args)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    argv = [a for a in sys.argv[1:]]
    procs = {}
    for name in RECIPES:
        log = (out / f"{_slug(name)}.log").open("w")
        procs[name] = subprocess.Popen([sys.executable, __file__, *argv, "--only", name], stdout=log,
                                       stderr=subprocess.STDOUT)
    start = time.monotonic()
    while any(p.poll() is None for p in procs.values()):
        if args.deadline and time.monotonic() - start > args.deadline:
            for p in procs.values():
                p.kill()
            break
        time.sleep(5)
    print(table(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
