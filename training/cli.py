"""The training steps of the ``napari-brainseg`` command: train, finetune, evaluate, average, ensemble, add-context,
register.

A run folder (``--out``) that already holds ``state.pt`` is resumed from its last completed epoch:
after an interruption, run the same command again. Under ``torchrun`` (``torchrun --nproc_per_node N
-m napari_brainseg train ...``) the processes share the work (one GPU each with CUDA).

Building the parsers imports neither torch nor MONAI; each command imports what it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from napari_brainseg.backend import BACKEND_HELP, BACKENDS
from napari_brainseg.context import ContextRule
from napari_brainseg.devices import DEVICES
from napari_brainseg.preprocess import NORMALISATIONS

from .defaults import (
    DEFAULT_DATA, DEFAULT_LOSS, FINETUNE_EPOCHS, FINETUNE_LR, FINETUNE_STEPS_PER_EPOCH, LOSSES, PRECISIONS,
)

MODEL_HELP = "'bundled', the name of a registered model (see 'napari-brainseg models') or a checkpoint .pt path"
RESUME_HINT = "Interrupted. The run folder keeps the last completed epoch: run the same command again to resume."


def _add_run_args(p: argparse.ArgumentParser, finetuning: bool) -> None:
    """The options ``train`` and ``finetune`` share (``finetuning`` picks their defaults)."""
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run folder (checkpoints, log, split); a run already there is resumed (required)")
    p.add_argument("--epochs", type=int, default=FINETUNE_EPOCHS if finetuning else 60,
                   help="number of epochs (each ends with a checkpoint and, by --val-every, a validation)")
    p.add_argument("--steps-per-epoch", type=int, default=FINETUNE_STEPS_PER_EPOCH if finetuning else 100,
                   help="optimiser steps in an epoch (per process under torchrun)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimiser steps (default: epochs x steps per epoch)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="where to train; auto: the best present")
    p.add_argument("--val-split", default=None, metavar="FILE",
                   help="JSON file with 'train' and 'val' case id lists (default: a seeded split, see --val-fraction)")
    p.add_argument("--val-data", action="extend", nargs="+", default=None, metavar="DIR",
                   help="folders of validation cases, left out of training (default: none)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the cases kept for validation when neither --val-split nor --val-data is given")
    p.add_argument("--seed", type=int, default=0, help="random seed of the split, the initial weights and the patches")
    p.add_argument("--lr", type=float, default=FINETUNE_LR if finetuning else 2e-3,
                   help="peak learning rate (AdamW, warm-up then cosine decay)")
    p.add_argument("--patch-size", type=int, nargs=3, default=None if finetuning else [96, 96, 96],
                   metavar=("Z", "Y", "X"),
                   help="training patch size in voxels" + (" (default: the base model's)" if finetuning else ""))
    p.add_argument("--samples-per-case", type=int, default=2, help="patches cropped from each case drawn for a step")
    p.add_argument("--cases-per-step", type=int, default=1,
                   help="cases drawn for each step (the batch holds cases-per-step x samples-per-case patches)")
    p.add_argument("--tumour-share", type=float, default=0.5,
                   help="share of patches centred on a tumour voxel (the rest on any brain voxel)")
    p.add_argument("--model-id", default=None,
                   help="the new model's id, recorded in its checkpoint (default: brainseg-<RUN_DIR name>)")
    p.add_argument("--version", default=None if finetuning else "1.0.0",
                   help="the new model's version" + (" (default: the base's, +ft<date>)" if finetuning else ""))
    p.add_argument("--correction-share", type=float, default=0.5,
                   help="least share of patches drawn from corrected cases when original cases are mixed in")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep every epoch's checkpoint in RUN_DIR/epochs/ (for 'average')")
    p.add_argument("--loss", default=DEFAULT_LOSS, choices=list(LOSSES),
                   help="on the regions WT/TC/ET: " + "; ".join(f"{name} ({text})" for name, text in LOSSES.items()))
    p.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                   help="bf16: autocast (a training step about 1.6 times as fast on this project's CPU, which has "
                        "AMX); auto: bf16 on CUDA, fp32 elsewhere")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from scratch on BraTS cases",
                       description="Train a new model on labelled BraTS cases. Before the first step it prints the "
                                   "data folders, case counts, steps, device and run folder; rerunning resumes.")
    p.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)], metavar="DIR",
                   help="folders of BraTS cases or corrections")
    _add_run_args(p, finetuning=False)
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs")
    p.add_argument("--arch", default="3d", choices=["3d", "2.5d"],
                   help="3-D UNet on patches, or 2-D UNet on axial slices with their neighbours (2.5-D)")
    p.add_argument("--arch-kwargs", type=json.loads, default=None, metavar="JSON",
                   help='overrides of the network\'s arguments, e.g. \'{"channels": [8, 16], "strides": [2]}\' '
                        "(default: none)")
    p.add_argument("--normalisation", default="z-score", choices=list(NORMALISATIONS),
                   help="each channel over brain voxels: z-score (mean, standard deviation), robust (median, "
                        "interquartile range) or z-score-outside-tumour (mean, standard deviation of the brain outside "
                        "the expert's tumour; the model then segments twice, the second time outside the tumour it "
                        "found first, unless it found none or half the brain); recorded in the checkpoint")
    p.add_argument("--scale", type=int, default=1, choices=[1, 2],
                   help="read the cases this many times coarser (2: a 2 mm context network that sees the whole brain "
                        "in one 64^3 patch; --patch-size is then in 2 mm voxels); recorded in the checkpoint")
    p.set_defaults(func=cmd_train, interrupted=RESUME_HINT)


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a model on corrected cases and compare it with its base",
                       description="Fine-tune a model on corrections exported by the plugin (mixed with original "
                                   "cases when given), then score base and new model on cases neither trained on.")
    p.add_argument("--base", default="bundled", metavar="MODEL", help=f"the model to start from: {MODEL_HELP}")
    p.add_argument("--data", action="extend", nargs="+", required=True, metavar="DIR",
                   help="corrections dataset(s), and the original cases to mix in (repeat --data or list several; "
                        "required)")
    _add_run_args(p, finetuning=True)
    p.set_defaults(func=cmd_finetune, interrupted=RESUME_HINT)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="per-case and mean Dice and HD95 for WT, TC, ET",
                       description="Segment labelled cases and score them against their expert labels (Dice and "
                                   "HD95 for WT, TC and ET). The cases the model was trained on are left out "
                                   "unless --include-training-cases is given.")
    p.add_argument("--model", default="bundled", help=MODEL_HELP)
    p.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)], metavar="DIR",
                   help="folders of labelled BraTS cases")
    p.add_argument("--split", default=None, metavar="FILE",
                   help="a split JSON: score only one subset of it (default: every case found)")
    p.add_argument("--subset", default="val", choices=["train", "val"], help="the subset of --split to score")
    p.add_argument("--include-training-cases", action="store_true",
                   help="also score the cases the model was trained on (its checkpoint lists them)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="where to segment; auto: the best present")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help=BACKEND_HELP)
    p.add_argument("--tta", action="store_true", help="average over test-time flips (about 4x slower)")
    p.add_argument("--roi-size", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                   help="sliding window size (default: the model's own, 96 96 96 for 3-D)")
    p.add_argument("--one-pass", action="store_true", help="run the brain box in one pass, not a sliding window")
    p.add_argument("--report", nargs="*", metavar="FILE",
                   help="write the scores to .csv and/or .json files (default: none)")
    p.set_defaults(func=cmd_evaluate)


def _add_average(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("average", help="average the weights of checkpoints of one network",
                       description="Average the weights of checkpoints of one network (e.g. the last epochs a run "
                                   "kept with --keep-checkpoints) into a new checkpoint.")
    p.add_argument("checkpoints", nargs="+", help="checkpoints of the same network, e.g. RUN_DIR/epochs/model-e0*.pt")
    _add_joined_checkpoint_options(p, version_from="the last checkpoint's", scored_on="its validation cases",
                                   thresholds_from="the last checkpoint's", second_pass_from="the last checkpoint's",
                                   growth_from="the last checkpoint's")
    p.set_defaults(func=cmd_average)


def _add_joined_checkpoint_options(p: argparse.ArgumentParser, version_from: str, scored_on: str,
                                   thresholds_from: str, second_pass_from: str, growth_from: str) -> None:
    """The options of a command that writes one checkpoint made from several: where, version, precision,
    thresholds, second pass, whole-tumour growth, scoring."""
    p.add_argument("--out", required=True, help="the new checkpoint, never overwritten (required)")
    p.add_argument("--version", default=None, help=f"its version (default: {version_from})")
    p.add_argument("--half", action="store_true", help="store fp16 weights (half the file; loaded as fp32)")
    p.add_argument("--thresholds", type=float, nargs=3, default=None, metavar=("WT", "TC", "ET"),
                   help="the probability over which a voxel is in each region, as chosen on validation cases with "
                        f"benchmarks/postprocess.py (default: {thresholds_from})")
    p.add_argument("--second-pass", action=argparse.BooleanOptionalAction, default=None,
                   help="segment twice, the whole tumour the second time with the input normalised over the brain "
                        f"outside the first pass's tumour (default: {second_pass_from})")
    growth = p.add_mutually_exclusive_group()
    growth.add_argument("--wt-growth", type=float, nargs=2, default=None, metavar=("THRESHOLD", "VOXELS"),
                        help="after thresholding, grow the whole tumour into voxels of WT probability over THRESHOLD "
                             "joined to it within VOXELS, as chosen on validation cases with "
                             f"benchmarks/postprocess.py (default: {growth_from})")
    growth.add_argument("--no-wt-growth", dest="wt_growth", action="store_const", const=[],
                        help="no whole-tumour growth")
    p.add_argument("--data", nargs="+", default=None, metavar="DIR",
                   help=f"score it on {scored_on} found here and record the scores in it (default: not scored)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="where to score; auto: the best present")


def _add_ensemble(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ensemble", help="join segmentation checkpoints into one that averages their probabilities",
                       description="Join segmentation checkpoints (they may be different networks that read and "
                                   "write the same) into one ensemble checkpoint: its probabilities are the mean "
                                   "of theirs, at the cost of one pass of each.")
    p.add_argument("checkpoints", nargs="+", help="two or more checkpoints written by train, finetune or average")
    p.add_argument("--model-id", default=None, help="its model id (default: the first checkpoint's + '-ensemble')")
    p.add_argument("--weights", type=_region_weights, nargs="+", default=None, metavar="WT,TC,ET",
                   help="each checkpoint's weight in each region's mean, one WT,TC,ET triple per checkpoint in their "
                        "order (say 1,0,0 0,1,1: the whole tumour from the first, the core and enhancing tumour from "
                        "the second; default: equal)")
    p.add_argument("--core-gate", type=int, default=None, metavar="N",
                   help="keep the core and enhancing tumour only inside the tumour that checkpoint N (1 = the first) "
                        "finds on its own, thresholded and cleaned up: its false core beside another checkpoint's "
                        "smaller whole tumour stays dropped (default: no gate)")
    _add_joined_checkpoint_options(p, version_from="the first checkpoint's",
                                   scored_on="the validation cases every member kept out", thresholds_from="0.5 each",
                                   second_pass_from="off", growth_from="none")
    p.set_defaults(func=cmd_ensemble)


def _region_weights(text: str) -> list[float]:
    """One checkpoint's ``WT,TC,ET`` weights."""
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not three comma-separated numbers (WT,TC,ET), say 1,0,0") from None


def _add_context(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("add-context", help="give a segmentation checkpoint a context network for large tumours",
                       description="Join a segmentation checkpoint and a context network (trained with --scale 2) "
                                   "into one checkpoint: where the context network finds a large whole tumour much "
                                   "larger than the segmentation's, the whole-tumour probability is the mean of both.")
    p.add_argument("checkpoint", help="the segmentation checkpoint")
    p.add_argument("context", help="the context network's checkpoint (napari-brainseg train --scale 2), or a model "
                                   "with a context network, whose context network is taken")
    p.add_argument("--out", required=True, help="the new checkpoint, never overwritten (required)")
    p.add_argument("--version", default=None, help="its version (default: the segmentation checkpoint's)")
    p.add_argument("--half", action="store_true", help="store fp16 weights (half the file; loaded as fp32)")
    rule = ContextRule()
    p.add_argument("--min-voxels", type=int, default=rule.min_voxels,
                   help="the context's whole tumour counts only from this many voxels...")
    p.add_argument("--min-ratio", type=float, default=rule.min_ratio,
                   help="... and this many times the segmentation's whole tumour")
    p.add_argument("--weight", type=float, default=rule.weight,
                   help="the context's share of the whole-tumour probability when it counts")
    p.set_defaults(func=cmd_add_context)


def _add_register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("register", help="add a checkpoint to the models the plugin offers",
                       description="Copy a checkpoint into the user's models folder under a name; the Segment "
                                   "widget and every --model/--base option then accept that name.")
    p.add_argument("checkpoint", help="a model.pt written by train, finetune or average")
    p.add_argument("--name", default=None, help="the name to list it under (default: its model id)")
    p.set_defaults(func=cmd_register)


def _add_train_refine(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-refine", help="train a click-refinement network from a segmentation model",
                       description="Train the network behind click refinement: the base model with extra input "
                                   "channels for clicks, trained on clicks simulated at its own errors (DeepEdit). "
                                   "The base model's validation cases are left out; rerunning resumes.")
    p.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)], metavar="DIR",
                   help="folders of labelled BraTS cases")
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run folder: model.pt (the click checkpoint), state.pt, config.json (required)")
    p.add_argument("--base", default="bundled", metavar="MODEL", help=f"the segmentation model to start from: {MODEL_HELP}")
    p.add_argument("--steps", type=int, default=4000, help="optimiser steps")
    p.add_argument("--batch", type=int, default=2, help="patches per step")
    p.add_argument("--max-clicks", type=int, default=10, help="most simulated clicks before a trained answer")
    p.add_argument("--lr", type=float, default=3e-4, help="learning rate (AdamW)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="where to train; auto: the best present")
    p.add_argument("--val-split", default=None, metavar="FILE",
                   help="JSON split whose 'val' cases are left out (default: the base model's validation cases)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the patches and clicks")
    p.add_argument("--save-every", type=int, default=200, help="write model.pt and state.pt every N steps")
    p.set_defaults(func=cmd_train_refine, interrupted="Interrupted. Run the same command again to resume.")


def add_training_commands(sub: argparse._SubParsersAction) -> None:
    """Add train, finetune, evaluate, average, ensemble, register and train-refine to a subcommand group, in the
    loop's order."""
    for add in (_add_train, _add_finetune, _add_evaluate, _add_average, _add_ensemble, _add_context, _add_register,
                _add_train_refine):
        add(sub)


def _run_settings(args: argparse.Namespace) -> dict:
    return {
        "max_steps": args.max_steps, "device": args.device, "val_split": args.val_split,
        "val_data": args.val_data, "val_fraction": args.val_fraction, "seed": args.seed, "lr": args.lr,
        "patch_size": list(args.patch_size) if args.patch_size else None, "model_id": args.model_id,
        "version": args.version, "correction_share": args.correction_share, "tumour_share": args.tumour_share,
        "samples_per_case": args.samples_per_case, "cases_per_step": args.cases_per_step,
        "keep_checkpoints": args.keep_checkpoints, "precision": args.precision, "loss": args.loss,
    }


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_brainseg.jobs import Progress

    from .train import TrainConfig, Trainer

    cfg = TrainConfig(data=args.data, out=args.out, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                      val_every=args.val_every, arch=args.arch, arch_kwargs=args.arch_kwargs,
                      normalisation=args.normalisation, scale=args.scale, **_run_settings(args))
    trainer = Trainer(cfg, log=tqdm.write)
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
    from napari_brainseg.registry import resolve_model

    from .finetune import REPORT_FILE, finetune, finetune_config

    cfg = finetune_config(resolve_model(args.base), args.data, args.out, args.epochs, args.steps_per_epoch,
                          **_run_settings(args))
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
    print(f"To use it in napari: napari-brainseg register {result.checkpoint} --name NAME")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from napari_brainseg.registry import RegistryWarning, register_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RegistryWarning)
        try:
            entry = register_model(args.checkpoint, name=args.name)
        finally:  # malformed index entries are named whether or not the registration succeeds
            for warning in caught:
                print(f"warning: {warning.message}", file=sys.stderr)
    print(f"Registered model {entry.name!r} ({entry.model_id}, version {entry.version}): {entry.path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from napari_brainseg.backend import load_for_inference
    from napari_brainseg.registry import resolve_model

    from .data import discover_cases, read_split
    from .evaluate import evaluate_cases, format_table, write_report

    loaded = load_for_inference(resolve_model(args.model), args.backend, args.device, args.tta)
    info = loaded.info
    cases = discover_cases(args.data)
    if args.split:
        wanted = set(read_split(args.split)[args.subset])
        cases = [c for c in cases if c.case_id in wanted]
    seen = sorted(set(info.train_cases) & {c.case_id for c in cases})
    if seen and args.include_training_cases:
        print(f"Warning: {len(seen)} of these cases were used to train {info.model_id}: "
              f"{', '.join(seen)}; their scores are not a fair test.", file=sys.stderr)
    elif seen:
        cases = [c for c in cases if c.case_id not in set(seen)]
        print(f"Leaving out the {len(seen)} case(s) {info.model_id} was trained on ({', '.join(seen)}); "
              "--include-training-cases scores them too.", file=sys.stderr)
        if not cases:
            raise ValueError(f"{info.model_id} was trained on every case given; give other cases, "
                             "or pass --include-training-cases.")
    from napari_brainseg.inference import AUTO

    roi = None if args.one_pass else (args.roi_size or AUTO)
    rows = evaluate_cases(loaded.model, cases, device=loaded.device, tta=args.tta, roi_size=roi,
                          **info.segment_options(),
                          progress=lambda p: print(f"[{p.done}/{p.total}] {p.note}", file=sys.stderr))
    print(f"Model {info.model_id} (version {info.version}) on {len(rows)} case(s), {loaded.backend} on "
          f"{loaded.device}:")
    print(format_table(rows))
    for path in args.report or []:
        print(f"Wrote {write_report(rows, path)}")
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from .average import average_checkpoints
    from .evaluate import format_table

    path, rows = average_checkpoints(args.checkpoints, args.out, version=args.version, half=args.half,
                                     val_data=args.data, device=args.device, thresholds=args.thresholds,
                                     second_pass=args.second_pass, wt_growth=args.wt_growth)
    print(f"Averaged the weights of {len(args.checkpoints)} checkpoints: {path}")
    if rows:
        print(f"On its {len(rows)} validation case(s):")
        print(format_table(rows))
    else:
        print(f"Score it before use: napari-brainseg evaluate --model {path} --data DIR")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from .ensemble import ensemble_checkpoints
    from .evaluate import format_table

    path, rows = ensemble_checkpoints(args.checkpoints, args.out, model_id=args.model_id, version=args.version,
                                      half=args.half, val_data=args.data, device=args.device,
                                      thresholds=args.thresholds, second_pass=args.second_pass,
                                      wt_growth=args.wt_growth, weights=args.weights,
                                      core_gate=None if args.core_gate is None else args.core_gate - 1)
    print(f"Joined {len(args.checkpoints)} checkpoints into an ensemble: {path}")
    if rows:
        print(f"On the {len(rows)} validation case(s) none of them trained on:")
        print(format_table(rows))
    print(f"For the ONNX backend (CPU): napari-brainseg export-onnx {path}")
    return 0


def cmd_add_context(args: argparse.Namespace) -> int:
    from .context import add_context

    rule = ContextRule(min_voxels=args.min_voxels, min_ratio=args.min_ratio, weight=args.weight)
    path = add_context(args.checkpoint, args.context, args.out, rule, version=args.version, half=args.half)
    print(f"Joined the segmentation checkpoint and its context network: {path}")
    print(f"For the ONNX backend (CPU): napari-brainseg export-onnx {path}")
    return 0


def cmd_train_refine(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_brainseg.jobs import Progress, drive
    from napari_brainseg.registry import resolve_model

    from .refine import RefineConfig, RefineTrainer

    cfg = RefineConfig(data=args.data, out=args.out, base=str(resolve_model(args.base)), steps=args.steps,
                       batch=args.batch, max_clicks=args.max_clicks, lr=args.lr, device=args.device,
                       val_split=args.val_split, seed=args.seed, save_every=args.save_every)
    trainer = RefineTrainer(cfg, log=tqdm.write)
    bar = tqdm(total=cfg.steps, initial=trainer.step, unit="step")

    def progress(p: Progress) -> None:
        bar.update(p.done - bar.n)
        bar.set_postfix(loss=f"{p.loss:.3f}")

    path = drive(trainer.steps(), progress)
    bar.close()
    print(f"Click-refinement checkpoint: {path}")
    print(f"Measure it: .venv/bin/python benchmarks/click_effort.py --model {path}")
    return 0
