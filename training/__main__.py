"""``python -m training {train,evaluate}``: train the bundled model's architecture, score a model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "brats2018"


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)], help="folders of BraTS cases or corrections")
    p.add_argument("--out", required=True, help="run folder (checkpoints, log, split); resumed if it exists")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--val-split", default=None, help="JSON file with 'train' and 'val' case id lists")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--patch-size", type=int, nargs=3, default=[96, 96, 96])
    p.add_argument("--model-id", default=None)
    p.add_argument("--version", default="1.0.0")


def _config(args: argparse.Namespace, **extra):
    from .train import TrainConfig

    return TrainConfig(
        data=args.data, out=args.out, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        max_steps=args.max_steps, device=args.device, val_split=args.val_split, val_fraction=args.val_fraction,
        val_every=args.val_every, seed=args.seed, lr=args.lr, patch_size=list(args.patch_size),
        model_id=args.model_id, version=args.version, **extra,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .train import Trainer

    trainer = Trainer(_config(args), log=tqdm.write)
    bar = tqdm(total=trainer.cfg.total_steps, initial=trainer.step, unit="step", disable=trainer.rank != 0)

    def progress(step: int, total: int, loss: float) -> None:
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{loss:.3f}")

    path = trainer.fit(progress)
    bar.close()
    if trainer.rank == 0:
        print(f"Checkpoint: {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from napari_brainseg.model import load_model

    from .data import discover_cases, read_split
    from .evaluate import evaluate_cases, format_table, write_report

    model, info = load_model(args.model)
    cases = discover_cases(args.data)
    if args.split:
        wanted = set(read_split(args.split)[args.subset])
        cases = [c for c in cases if c.case_id in wanted]
    overlap = sorted(set(info.train_cases) & {c.case_id for c in cases})
    if overlap:
        print(f"Warning: {len(overlap)} of these cases were used to train {info.model_id}: "
              f"{', '.join(overlap)}; their scores are not a fair test.", file=sys.stderr)
    roi = args.roi_size if args.roi_size else None
    rows = evaluate_cases(model, cases, device=args.device, tta=args.tta, roi_size=roi,
                          progress=lambda i, n, row: print(f"[{i}/{n}] {row['case_id']}", file=sys.stderr))
    print(f"Model {info.model_id} (version {info.version}) on {len(rows)} case(s):")
    print(format_table(rows))
    for path in args.report or []:
        print(f"Wrote {write_report(rows, path)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model from scratch on BraTS cases")
    _add_train_args(train)
    train.set_defaults(func=cmd_train)
    ev = sub.add_parser("evaluate", help="per-case and mean Dice and HD95 for WT, TC, ET")
    ev.add_argument("--model", default="bundled", help="'bundled' or a checkpoint path")
    ev.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)])
    ev.add_argument("--split", default=None, help="a split JSON: score only one subset of it")
    ev.add_argument("--subset", default="val", choices=["train", "val"])
    ev.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ev.add_argument("--tta", action="store_true", help="average over test-time flips")
    ev.add_argument("--roi-size", type=int, nargs=3, default=None, help="sliding window size (default: one pass)")
    ev.add_argument("--report", nargs="*", help="write the scores to .csv and/or .json files")
    ev.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
