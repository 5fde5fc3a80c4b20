"""``napari-brainseg prepare``: a scanner study (DICOM series or NIfTI, skull on) to a BraTS-like case folder.

Building the parser imports nothing heavy; SimpleITK and the brain extractor are imported when the command runs.

Example::

    napari-brainseg prepare t1ce=raw/t1c.nii.gz t1=raw/t1.nii.gz t2=raw/t2.nii.gz flair=raw/flair.nii.gz --out P01
    napari-brainseg prepare exam_dicom/          # lists the series in the folder, to pick them by number
    napari-brainseg prepare t1ce=exam_dicom/#4 t1=exam_dicom/#2 t2=exam_dicom/#3 flair=exam_dicom/#5 --out P01
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CLINICAL_INSTALL

if TYPE_CHECKING:
    from ..jobs import Progress
    from .prepare import PreparedCase

INPUT_HELP = (
    "each sequence as NAME=PATH, NAME one of t1ce, t1, t2, flair (or t1c, t1n, t2w, t2f); PATH a NIfTI file named "
    "any way, or a DICOM folder with #NUMBER or #UID to pick one of its series. A folder alone lists its series"
)
PREPARE_STEPS = (
    "Steps: read (one patient; localizers and one-slice series refused), rigid co-registration of T1, T2 and FLAIR to "
    "the T1ce (SimpleITK, mutual information), resampling to 1 mm on the T1ce's frame, brain extraction (deepbet), "
    "optionally an affine registration to a template. The case folder holds the four BraTS-named files, the brain "
    "mask, the native T1ce and <id>_prepare.json, which records every step, parameter and transform. "
    f"Needs the clinical extra: {CLINICAL_INSTALL}"
)


def add_prepare_options(p: argparse.ArgumentParser) -> None:
    """The options that ``prepare`` and ``predict --prepare`` share."""
    p.add_argument("--template", metavar="BRATS_CASE",
                   help="register the brain affinely to this BraTS case (folder or T1ce file) and use its grid")
    p.add_argument("--skull-stripped", action="store_true",
                   help="the inputs are already skull-stripped: no brain extraction")
    p.add_argument("--case-id", metavar="ID",
                   help="the case's id in its file names (default: the output folder's name)")


def add_prepare_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="turn a scanner study (DICOM or NIfTI, skull on) into a BraTS-like case",
                       description=f"Prepare a scanner study as a BraTS-like case folder.\n{PREPARE_STEPS}")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=INPUT_HELP)
    p.add_argument("--out", metavar="CASE_DIR", help="the case folder to write (required unless listing series)")
    add_prepare_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty case folder")
    p.set_defaults(func=cmd_prepare, interrupted="error: interrupted; the case folder was not written.")


def print_progress(step: Progress) -> None:
    """One line a step on stderr."""
    print(f"[{step.done}/{step.total}] {step.note}", file=sys.stderr, flush=True)


def _list_series(folder: Path) -> int:
    from .dicom import describe, find_series

    series = find_series(folder)
    if not series:
        print(f"error: no DICOM series in {folder}.", file=sys.stderr)
        return 1
    print(f"{folder} holds {len(series)} DICOM series:\n{describe(series)}")
    print(f"Name each sequence's series, e.g. t1ce={folder}#1 t1={folder}#2 ...", file=sys.stderr)
    return 0


def prepare_from_args(specs: list[str], args: argparse.Namespace, out: Path) -> PreparedCase:
    """:func:`~.prepare.prepare_study` of the ``NAME=PATH`` ``specs`` with the shared options; progress on stderr."""
    from .prepare import parse_inputs, prepare_study

    inputs = parse_inputs(specs)
    start = time.perf_counter()
    case = prepare_study(inputs, out, case_id=args.case_id, template=args.template,
                         skull_stripped=args.skull_stripped, overwrite=args.overwrite, progress=print_progress)
    print(f"Prepared {case.files.case_id} in {out} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return case


def cmd_prepare(args: argparse.Namespace) -> int:
    if len(args.inputs) == 1 and "=" not in args.inputs[0] and Path(args.inputs[0]).is_dir():
        return _list_series(Path(args.inputs[0]))
    if args.out is None:
        raise ValueError("Give the case folder to write with --out CASE_DIR.")
    prepare_from_args(args.inputs, args, Path(args.out))
    return 0
