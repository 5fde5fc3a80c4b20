"""``napari-brainseg`` (or ``python -m napari_brainseg``): every step of the loop on the command line.

``predict`` segments BraTS cases without a viewer: each case (a folder, or any one of its files, in
either BraTS naming) gets a label map {0, 1, 2, 4} on its own voxel grid (same shape, affine and header
as its images), so it overlays them in any viewer. ``models`` lists the models every ``--model`` and
``--base`` option accepts by name; ``train``, ``finetune``, ``evaluate``, ``average`` and ``register``
come from :mod:`napari_brainseg.training.cli`.

Example::

    napari-brainseg predict data/Brats18_2013_11_1 --output-dir predictions/
    napari-brainseg predict case/ --output case_seg.nii.gz --device cpu --model my-site --tta

torch and MONAI are imported only once the arguments and the input files have been checked, so
mistakes are reported at once; on the CPU (ONNX Runtime, :mod:`napari_brainseg.backend`) ``predict`` does not
import them at all.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .atomic import NO_SPACE, atomic_path, write_problem
from .backend import BACKEND_HELP, BACKENDS
from .cases.cli import add_prepare_command, add_prepare_options
from .devices import DEVICES
from .onnx_model import PRECISIONS, SHIPPED_PRECISION
from .training.cli import MODEL_HELP, add_training_commands

if TYPE_CHECKING:
    import nibabel as nib

    from .backend import LoadedModel
    from .io import CaseFiles, LoadedCase

OUTPUT_EXTENSIONS = (".nii.gz", ".nii")
SEG_SUFFIX = "_seg.nii.gz"


class UsageError(ValueError):
    """Arguments that cannot work together."""


DESCRIPTION = (
    "Brain-tumour segmentation of BraTS MRI, every step of the loop: segment cases, train a model, fine-tune it "
    "on corrected cases, score it, and offer it in napari.\n"
    "A model is named the same way everywhere: 'bundled', a registered name (see 'napari-brainseg models'), "
    "or a checkpoint path.\n"
    "'napari-brainseg COMMAND --help' describes a command and its options."
)
PREDICT_INTERRUPTED = "error: interrupted; outputs already written are complete, the current one was not written."


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each line of a description on its own and ends each option's help with its default."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(super(HelpFormatter, self)._fill_text(line, width, indent) for line in text.splitlines())

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.required or "default" in text or action.default is argparse.SUPPRESS:
            return text
        if action.default is None or action.default is False:
            return f"{text} (default: off)" if action.nargs == 0 else f"{text} (default: none)"
        value = action.default
        shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        return f"{text} (default: {shown.replace('%', '%%')})"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """One line, not argparse's usage block."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="segment BraTS cases into label maps {0, 1, 2, 4}",
        description="Segment BraTS cases; each label map is written on its case's voxel grid (shape, affine, "
                    "header). Progress goes to the terminal; an existing output is never replaced without "
                    "--overwrite, an input never.",
    )
    p.add_argument("cases", nargs="+", metavar="CASE_DIR",
                   help="a case folder, or one file of the case; with --prepare, the study's NAME=PATH inputs")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--output", "-o", metavar="OUT.nii.gz", help="output file (one case only; this or --output-dir)")
    out.add_argument("--output-dir", metavar="DIR",
                     help="write <case id>_seg.nii.gz for each case into DIR (this or --output)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="where to segment; auto: the best present")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help=BACKEND_HELP)
    p.add_argument("--model", default="bundled", help=MODEL_HELP)
    p.add_argument("--tta", action="store_true", help="average over mirrored inputs (about 4x slower)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--prepare", action="store_true",
                   help="the inputs are one scanner study (see 'prepare --help'): prepare it into --output-dir/ID/, "
                        "segment it there, and write the labels on the native T1ce too (ID_seg_native.nii.gz)")
    add_prepare_options(p)
    p.set_defaults(func=cmd_predict, interrupted=PREDICT_INTERRUPTED)


def _add_export_onnx(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx", help="export a model to ONNX for the CPU backend",
        description="Export a checkpoint to ONNX (beside it: model.pt -> model.onnx), with the metadata the CPU "
                    "backend reads and the checkpoint's fingerprint; the export must agree with the checkpoint "
                    "on a random input before it replaces an older one. A checkpoint without an export is also "
                    "exported on first use (in full precision).",
    )
    p.add_argument("model", nargs="?", default="bundled", help=MODEL_HELP)
    p.add_argument("--precision", default=SHIPPED_PRECISION, choices=PRECISIONS,
                   help="fp32; fp16: weights stored as float16, computed in float32; int8: ONNX Runtime's dynamic "
                        "quantization (see benchmarks/precision.py)")
    p.add_argument("--out", default=None, metavar="FILE.onnx", help="where to write it (default: beside the checkpoint)")
    p.set_defaults(func=cmd_export_onnx)


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the bundled and registered models",
                       description="List the models that --model, --base and the Segment widget accept by name: "
                                   "the bundled one and those registered with 'napari-brainseg register'.")
    p.set_defaults(func=cmd_models)


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-brainseg`` command line: one subcommand per step of the loop."""
    parser = _Parser(prog="napari-brainseg", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    _add_predict(sub)
    _add_models(sub)
    _add_export_onnx(sub)
    add_prepare_command(sub)
    add_training_commands(sub)
    return parser


def _has_nifti_extension(path: Path) -> bool:
    return path.name.lower().endswith(OUTPUT_EXTENSIONS)


def _check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and check a file can be written there (before any compute)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OSError(f"Cannot write to {folder} ({err.strerror or err}); choose another output folder.") from None


def plan_outputs(cases: list[CaseFiles], output: str | None, output_dir: str | None, overwrite: bool) -> list[Path]:
    """The output path of each case, after checking none would be silently replaced."""
    if output is not None:
        if len(cases) > 1:
            raise UsageError(f"--output names one file but {len(cases)} cases were given; use --output-dir DIR.")
        outputs = [Path(output).expanduser()]
        if not _has_nifti_extension(outputs[0]):
            raise UsageError(f"--output {output} must end with .nii.gz (or .nii).")
    else:
        outputs = [Path(output_dir).expanduser() / f"{files.case_id}{SEG_SUFFIX}" for files in cases]
        seen: set[Path] = set()
        for path in outputs:
            if path in seen:
                raise UsageError(
                    f"Two cases have the id {path.name[: -len(SEG_SUFFIX)]}; segment them one at a time with --output."
                )
            seen.add(path)
    inputs = {Path(p).resolve() for files in cases for p in [*files.images.values(), files.seg] if p}
    for path in outputs:
        if path.resolve() in inputs:
            raise UsageError(f"Output {path} is one of the input files; choose another output.")
        if path.is_dir():
            raise UsageError(f"Output {path} is a folder; give a file name ending in .nii.gz.")
        if path.exists() and not overwrite:
            raise UsageError(f"{path} exists; pass --overwrite to replace it, or choose another output.")
    for folder in {path.parent for path in outputs}:
        _check_writable(folder)
    return outputs


def write_nifti_atomic(image: nib.Nifti1Image, path: Path, overwrite: bool) -> None:
    """Save a NIfTI image through a temporary file in the same folder, renamed into place at the end.

    A full disk or a refused write raises an ``OSError`` naming the file, the disk, and what became of the old file.
    """
    import nibabel as nib

    existed = path.exists()
    try:
        with atomic_path(path) as temp:
            nib.save(image, temp)
            if path.exists() and not overwrite:
                raise FileExistsError(f"{path} appeared while segmenting; pass --overwrite to replace it.")
    except OSError as err:
        problem = write_problem(err, path.parent)
        if problem is None:
            raise
        kept = f"the existing {path.name} there was kept as it was" if existed else "no partial file was left"
        advice = "Free some space or choose" if err.errno in NO_SPACE else "Choose"
        raise OSError(
            f"could not write {path}: {problem}; {kept}. {advice} another output folder, then run again."
        ) from None


def _segment_one(case: LoadedCase, output: Path, loaded: LoadedModel, args: argparse.Namespace) -> None:
    from .inference import segment

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = segment(case.image, loaded.model, device=loaded.device, tta=args.tta,
                         **loaded.info.segment_options())
    for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)):
        print(f"warning: {case.case_id}: {message}", file=sys.stderr)
    write_nifti_atomic(case.geometry.to_nifti(result.labels), output, args.overwrite)


def cmd_predict(args: argparse.Namespace) -> int:
    from .io import find_case, load_case

    if args.prepare:
        return predict_study(args)
    cases = [find_case(path) for path in args.cases]
    outputs = plan_outputs(cases, args.output, args.output_dir, args.overwrite)
    failed, written = 0, 0
    try:
        with ThreadPoolExecutor(max_workers=1) as reader:
            # Each case is read while the one before is segmented, and the first while the model loads.
            loads = [reader.submit(load_case, cases[0], with_seg=False)]
            from .backend import load_for_inference
            from .registry import resolve_model

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                loaded = load_for_inference(resolve_model(args.model), args.backend, args.device, args.tta)
            for warning in caught:
                print(f"warning: {warning.message}", file=sys.stderr)
            info = loaded.info
            print(f"Model {info.model_id} (version {info.version}) on {loaded.device} ({loaded.backend})",
                  file=sys.stderr)
            for i, (files, output) in enumerate(zip(cases, outputs), start=1):
                if i < len(cases):
                    loads.append(reader.submit(load_case, cases[i], with_seg=False))
                tag = f"[{i}/{len(cases)}] {files.case_id}"
                print(f"{tag}: segmenting...", file=sys.stderr, flush=True)
                start = time.perf_counter()
                try:
                    _segment_one(loads[i - 1].result(), output, loaded, args)
                except (ValueError, RuntimeError, OSError, MemoryError) as err:
                    failed += 1
                    print(f"error: {tag}: {err}", file=sys.stderr)
                    continue
                finally:
                    loads[i - 1] = None  # release the case's images
                written += 1
                print(f"{tag}: wrote {output} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    except KeyboardInterrupt as stop:
        print(f"error: {_stopped_by(stop)} after writing {written} of {len(cases)} outputs; outputs already "
              "written are complete, the current one was not written and no partial file is left.", file=sys.stderr)
        return interrupted_status(stop)
    if failed and len(cases) > 1:
        print(f"error: {failed} of {len(cases)} cases failed; see the messages above.", file=sys.stderr)
    return 1 if failed else 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from .onnx_export import export_onnx
    from .registry import resolve_model

    path, difference = export_onnx(resolve_model(args.model), args.out, args.precision)
    print(f"Wrote {path} ({args.precision}, {path.stat().st_size / 1e6:.1f} MB); on a random input its "
          f"probabilities differ from the checkpoint's by at most {difference:.2g}.")
    return 0


def predict_study(args: argparse.Namespace) -> int:
    """``predict --prepare``: prepare one scanner study, segment it, and map the labels back to the native T1ce."""
    from .cases.cli import prepare_from_args
    from .cases.prepare import NATIVE_SEG_SUFFIX, default_case_id, labels_to_native, parse_inputs
    from .io import load_case

    if args.output_dir is None:
        raise UsageError("--prepare writes a case folder: give --output-dir DIR instead of --output.")
    case_id = args.case_id or default_case_id(parse_inputs(args.cases))
    args.case_id = case_id
    folder = Path(args.output_dir).expanduser() / case_id
    case = prepare_from_args(args.cases, args, folder)
    loaded = load_case(case.files, with_seg=False)
    from .backend import load_for_inference
    from .registry import resolve_model

    runner = load_for_inference(resolve_model(args.model), args.backend, args.device, args.tta)
    info = runner.info
    print(f"Model {info.model_id} (version {info.version}) on {runner.device} ({runner.backend}): segmenting...",
          file=sys.stderr, flush=True)
    start = time.perf_counter()
    seg_path = folder / f"{case_id}{SEG_SUFFIX}"
    _segment_one(loaded, seg_path, runner, args)
    import nibabel as nib

    native_path = folder / f"{case_id}{NATIVE_SEG_SUFFIX}"
    write_nifti_atomic(labels_to_native(nib.load(seg_path), case.record), native_path, args.overwrite)
    print(f"Wrote {seg_path} (prepared grid) and {native_path} (native T1ce grid) "
          f"({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .registry import list_models, models_dir

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entries = list_models()
    for entry in entries:
        dice = " / ".join(f"{entry.metrics[k]:.3f}" for k in ("Dice_WT", "Dice_TC", "Dice_ET") if k in entry.metrics)
        print(f"{entry.name}: {entry.model_id} version {entry.version}"
              + (f", fine-tuned from {entry.parent}" if entry.parent else "")
              + (f", validation Dice WT/TC/ET {dice}" if dice else "")
              + (" (read-only)" if entry.read_only else f"  [{entry.path}]"))
    for warning in caught:
        print(f"unusable: {warning.message}")
    print(f"Registered models live in {models_dir()}.", file=sys.stderr)
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, ``kill``), raised like Ctrl+C so that a command stops and cleans up the same way."""


def _raise_terminated(signum: int, frame: object) -> NoReturn:
    raise Terminated


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (elsewhere: unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_status(stop: KeyboardInterrupt) -> int:
    """The exit status after an interruption: 143 for SIGTERM, 130 for Ctrl+C (128 + the signal's number)."""
    return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)


def _stopped_by(stop: KeyboardInterrupt) -> str:
    return "stopped by SIGTERM" if isinstance(stop, Terminated) else "interrupted"


def run_command(args: argparse.Namespace, interrupted: str = "error: interrupted.") -> int:
    """Run the parsed subcommand; an error becomes an ``error:`` line and status 1, Ctrl+C or SIGTERM
    ``interrupted`` and status 130 or 143."""
    try:
        with sigterm_as_interrupt():
            return args.func(args)
    except (ValueError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        print(interrupted, file=sys.stderr)
        return interrupted_status(stop)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already printed
        return int(done.code or 0)
    return run_command(args, getattr(args, "interrupted", "error: interrupted."))


if __name__ == "__main__":
    sys.exit(main())
