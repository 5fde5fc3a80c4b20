"""``python -m training {train,finetune,evaluate,average,register}``: train a model, fine-tune one on
corrections, score one, average the weights of several, add one to the plugin's model list.

A run folder (``--out``) that already holds ``state.pt`` is resumed from its last completed epoch:
after an interruption, run the same command again. Under ``torchrun`` (``python -m torch.distributed.run
--nproc_per_node N -m training train ...``) the processes share the work (one GPU each with CUDA).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from napari_brainseg.__main__ import run_command
from napari_brainseg.devices import DEVICES

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "brats2018"


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """The options ``train`` and ``finetune`` share."""
    p.add_argument("--out", required=True, help="run folder (checkpoints, log, split); resumed if it exists")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--val-split", default=None, help="JSON file with 'train' and 'val' case id lists")
    p.add_argument("--val-data", action="extend", nargs="+", default=None,
                   help="folders of validation cases (left out of training)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--patch-size", type=int, nargs=3, default=[96, 96, 96])
    p.add_argument("--samples-per-case", type=int, default=2,
                   help="patches cropped from each case drawn for a step")
    p.add_argument("--cases-per-step", type=int, default=1,
                   help="cases drawn for each step (the batch holds cases-per-step x samples-per-case patches)")
    p.add_argument("--tumour-share", type=float, default=0.5,
                   help="share of patches centred on a tumour voxel (the rest on any brain voxel)")
    p.add_argument("--model-id", default=None)
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--correction-share", type=float, default=0.5,
                   help="least share of patches drawn from corrected cases when original cases are mixed in")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep every epoch's checkpoint in RUN_DIR/epochs/ (for `average`)")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)], help="folders of BraTS cases or corrections")
    _add_run_args(p)
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs")
    p.add_argument("--arch", default="3d", choices=["3d", "2.5d"],
                   help="3-D UNet on patches, or 2-D UNet on axial slices with their neighbours (2.5-D)")
    p.add_argument("--arch-kwargs", type=json.loads, default=None,
                   help='JSON overrides of the network\'s arguments, e.g. \'{"channels": [8, 16], "strides": [2]}\'')


def _add_finetune_args(p: argparse.ArgumentParser) -> None:
    from .finetune import FINETUNE_EPOCHS, FINETUNE_STEPS_PER_EPOCH

    p.add_argument("--base", default="bundled", help="'bundled' or the path of the checkpoint to start from")
    p.add_argument("--data", action="extend", nargs="+", required=True,
                   help="corrections dataset(s), and the original cases to mix in (repeat --data or list several)")
    _add_run_args(p)
    p.set_defaults(epochs=FINETUNE_EPOCHS, steps_per_epoch=FINETUNE_STEPS_PER_EPOCH, lr=None, patch_size=None,
                   version=None)


def _run_settings(args: argparse.Namespace) -> dict:
    return {
        "max_steps": args.max_steps, "device": args.device, "val_split": args.val_split,
        "val_data": args.val_data, "val_fraction": args.val_fraction, "seed": args.seed, "lr": args.lr,
        "patch_size": list(args.patch_size) if args.patch_size else None, "model_id": args.model_id,
        "version": args.version, "correction_share": args.correction_share, "tumour_share": args.tumour_share,
        "samples_per_case": args.samples_per_case, "cases_per_step": args.cases_per_step,
        "keep_checkpoints": args.keep_checkpoints,
    }


def _config(args: argparse.Namespace):
    from .train import TrainConfig

    return TrainConfig(data=args.data, out=args.out, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                       val_every=args.val_every, arch=args.arch, arch_kwargs=args.arch_kwargs, **_run_settings(args))


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_brainseg.jobs import Progress

    from .train import Trainer

    trainer = Trainer(_config(args), log=tqdm.write)
    bar = tqdm(total=trainer.cfg.total_steps, initial=trainer.step, unit="step", disable=trainer.rank != 0)

    def progress(p: Progress) -> None:
        if p.stage == "train":
            bar.update(p.done - bar.n)
            bar.set_postfix(loss=f"{p.loss:.3f}")

    path = trainer.fit(progress)
    bar.close()
    if trainer.rank == 0:
        print(f"Checkpoint: {path}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_brainseg.jobs import Progress, drive

    from .finetune import REPORT_FILE, finetune, finetune_config

    cfg = finetune_config(args.base, args.data, args.out, args.epochs, args.steps_per_epoch, **_run_settings(args))
    bars: dict[str, tqdm] = {}
    quiet = int(os.environ.get("RANK", "0")) != 0

    def progress(p: Progress) -> None:
        if p.stage not in bars:
            unit = "step" if p.stage == "train" else "case"
            bars[p.stage] = tqdm(total=p.total, initial=p.done - 1, desc=p.stage, unit=unit, disable=quiet)
        bars[p.stage].update(p.done - bars[p.stage].n)
        if p.loss is not None:
            bars[p.stage].set_postfix(loss=f"{p.loss:.3f}")

    result = drive(finetune(cfg, log=tqdm.write), progress)
    for bar in bars.values():
        bar.close()
    if result is None:
        return 0
    info = result.info
    print(f"New model {info.model_id} (version {info.version}, parent {info.parent}): {result.checkpoint}")
    print(f"Corrected cases it has seen: {', '.join(info.corrected_cases) or 'none'}")
    print(result.report)
    print(f"Scores per case: {Path(cfg.out) / REPORT_FILE}")
    print(f"To use it in napari: python -m training register {result.checkpoint} --name NAME")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from napari_brainseg.registry import register_model

    entry = register_model(args.checkpoint, name=args.name)
    print(f"Registered model {entry.name!r} ({entry.model_id}, version {entry.version}): {entry.path}")
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
    from napari_brainseg.inference import AUTO

    roi = None if args.one_pass else (args.roi_size or AUTO)
    rows = evaluate_cases(model, cases, device=args.device, tta=args.tta, roi_size=roi,
                          progress=lambda p: print(f"[{p.done}/{p.total}] {p.note}", file=sys.stderr))
    print(f"Model {info.model_id} (version {info.version}) on {len(rows)} case(s):")
    print(format_table(rows))
    for path in args.report or []:
        print(f"Wrote {write_report(rows, path)}")
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from .average import average_checkpoints
    from .evaluate import format_table

    path, rows = average_checkpoints(args.checkpoints, args.out, version=args.version, half=args.half,
                                     val_data=args.data, device=args.device)
    print(f"Averaged the weights of {len(args.checkpoints)} checkpoints: {path}")
    if rows:
        print(f"On its {len(rows)} validation case(s):")
        print(format_table(rows))
    else:
        print(f"Score it before use: python -m training evaluate --model {path} --data DIR")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model from scratch on BraTS cases")
    _add_train_args(train)
    train.set_defaults(func=cmd_train)
    ft = sub.add_parser("finetune", help="fine-tune a model on corrected cases and compare it with its base")
    _add_finetune_args(ft)
    ft.set_defaults(func=cmd_finetune)
    ev = sub.add_parser("evaluate", help="per-case and mean Dice and HD95 for WT, TC, ET")
    ev.add_argument("--model", default="bundled", help="'bundled' or a checkpoint path")
    ev.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)])
    ev.add_argument("--split", default=None, help="a split JSON: score only one subset of it")
    ev.add_argument("--subset", default="val", choices=["train", "val"])
    ev.add_argument("--device", default="auto", choices=DEVICES)
    ev.add_argument("--tta", action="store_true", help="average over test-time flips")
    ev.add_argument("--roi-size", type=int, nargs=3, default=None, help="sliding window size (default: the model's own, 96 96 96 for 3-D)")
    ev.add_argument("--one-pass", action="store_true", help="run the brain box in one pass, not a sliding window")
    ev.add_argument("--report", nargs="*", help="write the scores to .csv and/or .json files")
    ev.set_defaults(func=cmd_evaluate)
    avg = sub.add_parser("average", help="average the weights of checkpoints of one network (e.g. a run's last epochs)")
    avg.add_argument("checkpoints", nargs="+", help="checkpoints of the same network, e.g. RUN_DIR/epochs/model-e0*.pt")
    avg.add_argument("--out", required=True, help="the new checkpoint (never overwritten)")
    avg.add_argument("--version", default=None, help="its version (default: the last checkpoint's)")
    avg.add_argument("--half", action="store_true", help="store fp16 weights (half the file; loaded as fp32)")
    avg.add_argument("--data", nargs="+", default=None,
                     help="score the average on its validation cases found here and record the scores in it")
    avg.add_argument("--device", default="auto", choices=DEVICES)
    avg.set_defaults(func=cmd_average)
    reg = sub.add_parser("register", help="add a checkpoint to the models the plugin offers")
    reg.add_argument("checkpoint", help="a model.pt written by train or finetune")
    reg.add_argument("--name", default=None, help="the name to list it under (default: its model id)")
    reg.set_defaults(func=cmd_register)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(
        args, "Interrupted. The run folder keeps the last completed epoch: run the same command again to resume."
    )


if __name__ == "__main__":
    sys.exit(main())
