"""Prepare a scanner study (DICOM series or native NIfTI, skull on) as a BraTS-like case folder.

The steps, each recorded with its parameters and transforms in the case's sidecar
(``<case id>_prepare.json``):

1. read the four sequences (NIfTI named any way, or a DICOM series each; one patient);
2. register T1, T2 and FLAIR rigidly to the T1ce (:mod:`.registration`);
3. resample all four to 1 mm on the T1ce's own frame (one interpolation from each native grid);
4. extract the brain from the 1 mm T1ce (:mod:`.brain`) and zero everything outside it;
5. optionally, register the brain affinely to a template (the T1ce of a BraTS case, which lies on the
   SRI24 atlas grid) and resample onto the template's grid instead.

The folder holds ``<id>_flair/_t1/_t1ce/_t2.nii.gz`` (read by :func:`napari_brainseg.io.load_case` like any
BraTS case), ``<id>_brainmask.nii.gz``, the untouched native T1ce ``<id>_t1ce_native.nii.gz`` and the
sidecar. :func:`labels_to_native` brings a label map of the case back onto the native T1ce's grid.

Usage (not run as a doctest: it needs real data or writes files)::

    inputs = parse_inputs(["t1ce=raw/t1c.nii.gz", "t1=raw/t1.nii.gz", "t2=dicom/#3", "flair=dicom/#4"])
    case = prepare_study(inputs, "prepared/P01")
    seg_native = labels_to_native(nib.load("P01_seg.nii.gz"), read_record(case.folder))
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

from ..jobs import Progress, ProgressCallback, drive
from ..io import MODALITIES, MODALITY_TITLES, SUFFIXES_2018, SUFFIXES_2023, CaseFiles, find_case, read_array, read_nifti
from . import brain, dicom, registration
from .errors import StudyInputError, require
from .geometry import from_nifti, nifti_affine, sample_nearest, sitk_transform, to_nifti, world_matrix

if TYPE_CHECKING:
    import SimpleITK as sitk


REFERENCE = "t1ce"
"""The sequence the others are registered to, and whose frame (or native grid) the case lies on."""
SPACING_MM = 1.0
RECORD_SUFFIX = "_prepare.json"
MASK_SUFFIX = "_brainmask.nii.gz"
NATIVE_SUFFIX = "_t1ce_native.nii.gz"
NATIVE_SEG_SUFFIX = "_seg_native.nii.gz"
"""The labels mapped back to the native T1ce, as ``predict --prepare`` names them."""
RECORD_FORMAT = "napari-brainseg prepared study"
RECORD_VERSION = 1
_NAMES = {
    **{m: m for m in MODALITIES},
    **{suffix.lstrip("-"): m for m, suffix in SUFFIXES_2023.items() if m != "seg"},
    "t1c": "t1ce",
    "t1gd": "t1ce",
}
"""Names accepted for each sequence in ``NAME=PATH`` (BraTS 2018 and 2023 spellings)."""


STAGE = "prepare"
"""The stage name of every :class:`~napari_brainseg.jobs.Progress` that preparing reports."""


@dataclass(frozen=True)
class Source:
    """Where one sequence comes from: a NIfTI file, or a DICOM folder and the series picked in it."""

    path: Path
    series: str | None = None

    @property
    def is_dicom(self) -> bool:
        return self.path.is_dir()


@dataclass(frozen=True)
class PreparedCase:
    """A prepared case folder: its BraTS files, brain mask, native T1ce and sidecar record."""

    folder: Path
    files: CaseFiles
    record: dict[str, Any]

    @classmethod
    def open(cls, folder: str | Path) -> PreparedCase:
        """A case folder written by :func:`prepare_study`."""
        folder = Path(folder).expanduser()
        return cls(folder, find_case(folder), read_record(folder))

    @property
    def brain_mask(self) -> Path:
        return self.folder / self.record["files"]["brain_mask"]

    @property
    def native_t1ce(self) -> Path:
        return self.folder / self.record["files"]["native_t1ce"]


def parse_inputs(specs: Sequence[str]) -> dict[str, Source]:
    """``NAME=PATH`` (``PATH#SERIES`` picks a DICOM series by number or UID) for each of the four sequences."""
    inputs: dict[str, Source] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        modality = _NAMES.get(name.strip().lower())
        if not sep and Path(spec).expanduser().is_dir():
            raise StudyInputError(
                f"Say which series of {spec} is which sequence, as t1ce={spec}#NUMBER t1=... t2=... flair=...; "
                f"its series are:\n{dicom.describe(dicom.find_series(spec)) or '  (none)'}"
            )
        if not sep or modality is None or not value:
            raise StudyInputError(
                f"'{spec}' does not say which sequence it is; write NAME=PATH with NAME one of "
                "t1ce, t1, t2, flair (e.g. t1ce=scans/t1_post.nii.gz, or flair=dicom_folder#3 for a DICOM series)."
            )
        if modality in inputs:
            raise StudyInputError(f"{MODALITY_TITLES[modality]} is given twice ({spec}); give each sequence once.")
        path, _, series = value.partition("#")
        inputs[modality] = Source(Path(path).expanduser(), series or None)
    return inputs


def source_for_file(path: str | Path) -> Source:
    """The source a chosen file stands for: a NIfTI file itself, or the DICOM series that holds it."""
    path = Path(path).expanduser()
    if path.is_dir() or path.name.lower().endswith((".nii", ".nii.gz")):
        return Source(path)
    holds = [s for s in dicom.find_series(path.parent) if path.resolve() in {Path(f).resolve() for f in s.files}]
    series = holds[0] if holds else None
    if series is None:
        raise StudyInputError(f"{path.name} is neither a NIfTI file nor a slice of a DICOM series in {path.parent}.")
    return Source(path.parent, series.uid)


def default_case_id(inputs: dict[str, Source]) -> str:
    """A case id for a study: the name of the folder holding the T1ce file (or of its DICOM folder)."""
    source = inputs.get(REFERENCE)
    if source is None:
        return "case"
    folder = source.path if source.is_dicom else source.path.parent
    return folder.resolve().name or "case"


def check_complete(inputs: dict[str, Source]) -> None:
    """Raise :class:`StudyInputError` unless all four sequences are given and exist."""
    missing = [MODALITY_TITLES[m] for m in MODALITIES if m not in inputs]
    if missing:
        raise StudyInputError(
            f"Missing sequence: {', '.join(missing)}. Preparing a case needs T1ce, T1, T2 and FLAIR "
            "(as t1ce=PATH t1=PATH t2=PATH flair=PATH)."
        )
    for modality, source in inputs.items():
        if not source.path.exists():
            raise StudyInputError(f"{MODALITY_TITLES[modality]} input {source.path} does not exist.")


def _read_nifti(path: Path) -> tuple[sitk.Image, np.ndarray]:
    nifti = read_nifti(path)
    data = read_array(nifti, path)
    image = nib.Nifti1Image(np.asarray(data, dtype=np.float32), nifti.affine)
    return from_nifti(image), nifti.affine.copy()


def read_sequence(modality: str, source: Source) -> tuple[sitk.Image, dict[str, Any]]:
    """One sequence as a SimpleITK image and a record of where it came from (checked: 3-D, several slices)."""
    title = MODALITY_TITLES[modality]
    record: dict[str, Any] = {"path": str(source.path)}
    if source.is_dicom:
        series = dicom.pick_series(source.path, source.series)
        image = dicom.read_series(series)
        affine = nifti_affine(image)
        record |= {"kind": "dicom", "series_uid": series.uid, "description": series.description,
                   "slices": len(series.files), "patient_id": series.patient_id}
    else:
        if source.series:
            raise StudyInputError(f"{title}: {source.path} is a file; '#{source.series}' only picks a DICOM series.")
        image, affine = _read_nifti(source.path)
        record |= {"kind": "nifti"}
    size = image.GetSize()
    if min(size) < 2:
        raise StudyInputError(f"{title} ({source.path}) has size {size}: one slice is not a volume.")
    return image, record | {"shape": list(size), "spacing_mm": list(image.GetSpacing()), "affine_ras": affine.tolist()}


def _check_one_patient(records: dict[str, dict[str, Any]]) -> None:
    ids = {r["patient_id"] for r in records.values() if r.get("patient_id")}
    if len(ids) > 1:
        which = ", ".join(f"{MODALITY_TITLES[m]}: {r['patient_id']}" for m, r in records.items() if r.get("patient_id"))
        raise StudyInputError(f"The series belong to different patients ({which}); give one patient's series.")


def _check_not_empty(modality: str, image: sitk.Image) -> None:
    sitk = require("SimpleITK", "Preparing a scanner study")
    stats = sitk.StatisticsImageFilter()
    stats.Execute(image)
    if stats.GetMaximum() <= stats.GetMinimum():
        raise StudyInputError(f"{MODALITY_TITLES[modality]} is constant ({stats.GetMaximum():g}): it holds no image.")


def _template_t1ce(path: Path) -> Path:
    """The T1ce of a BraTS case folder (or the NIfTI file itself) to use as template."""
    path = Path(path).expanduser()
    if path.is_dir():
        return find_case(path).images[REFERENCE]
    if not path.is_file():
        raise StudyInputError(f"Template {path} does not exist; give a BraTS case folder or its T1ce file.")
    return path


def _grid_record(image: sitk.Image) -> dict[str, Any]:
    return {"shape": list(image.GetSize()), "affine_ras": nifti_affine(image).round(6).tolist()}


def _unused_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise StudyInputError(f"{out} is a file; give a folder for the prepared case.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise StudyInputError(f"{out} exists and is not empty; pass overwrite (--overwrite) or choose another folder.")


def prepare_steps(
    inputs: dict[str, Source],
    out: str | Path,
    case_id: str | None = None,
    template: str | Path | None = None,
    skull_stripped: bool = False,
    overwrite: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> Generator[Progress, None, PreparedCase]:
    """Turn four raw sequences into a BraTS-like case folder ``out``, yielding a ``Progress`` as each step is done.

    The folder is written at the end, all at once: a job closed before its last step writes nothing.
    ``skull_stripped`` skips brain extraction for inputs that already are; ``template`` (a BraTS case
    folder or T1ce file) puts the case on that case's grid by an affine registration. ``should_stop``
    also interrupts a registration under way (raising :class:`~napari_brainseg.jobs.Cancelled`).
    """
    sitk = require("SimpleITK", "Preparing a scanner study")
    if not skull_stripped:
        brain.extractor_version()
    out = Path(out).expanduser()
    case_id = case_id or out.name
    check_complete(inputs)
    _unused_target(out, overwrite)
    template_path = _template_t1ce(template) if template is not None else None
    total = 4 + 3 + (0 if skull_stripped else 1) + (1 if template_path else 0) + 1
    done = 0

    def step(note: str) -> Progress:
        nonlocal done
        done += 1
        return Progress(STAGE, done, total, note=note)

    steps: list[dict[str, Any]] = []
    images: dict[str, sitk.Image] = {}
    sources: dict[str, dict[str, Any]] = {}
    for modality in (REFERENCE, *[m for m in MODALITIES if m != REFERENCE]):
        images[modality], sources[modality] = read_sequence(modality, inputs[modality])
        _check_not_empty(modality, images[modality])
        source = sources[modality]
        yield step(f"read {MODALITY_TITLES[modality]} ({source['kind']}, size {source['shape']})")
    _check_one_patient(sources)
    native = images[REFERENCE]

    to_native: dict[str, np.ndarray] = {REFERENCE: np.eye(4)}  # case-frame T1ce world -> each native world
    registrations: dict[str, Any] = {}
    for modality in MODALITIES:
        if modality == REFERENCE:
            continue
        start = time.perf_counter()
        transform, run = registration.register(native, images[modality], "rigid", should_stop=should_stop)
        to_native[modality] = world_matrix(transform)
        registrations[modality] = run | registration.transform_record(transform) | {
            "seconds": round(time.perf_counter() - start, 2)}
        seconds = registrations[modality]["seconds"]
        yield step(f"registered {MODALITY_TITLES[modality]} to T1ce ({seconds:.1f} s)")
    steps.append({"step": "co-registration", "fixed": REFERENCE, "moving": [m for m in registrations],
                  "transform": "Euler 3-D (rigid)", "settings": registration.SETTINGS, "results": registrations})

    grid = registration.isotropic_grid(native, SPACING_MM)
    t1ce_1mm = registration.resample(native, grid)
    mask = None
    if not skull_stripped:
        start = time.perf_counter()
        mask = brain.extract_brain(t1ce_1mm)
        volume_ml = float(sitk.GetArrayViewFromImage(mask).sum()) * SPACING_MM**3 / 1000
        steps.append({"step": "brain extraction", **brain.SETTINGS, "version": brain.extractor_version(),
                      "brain_volume_ml": round(volume_ml, 1), "seconds": round(time.perf_counter() - start, 2)})
        yield step(f"extracted the brain ({volume_ml:.0f} ml, {steps[-1]['seconds']:.1f} s)")

    case_to_t1ce = np.eye(4)  # case-grid world -> native T1ce world
    if template_path is not None:
        start = time.perf_counter()
        fixed, _ = _read_nifti(template_path)
        moving = t1ce_1mm if mask is None else sitk.Mask(t1ce_1mm, mask)
        transform, run = registration.register(fixed, moving, "affine", fixed_mask=fixed > 0, should_stop=should_stop)
        case_to_t1ce = world_matrix(transform)
        grid = sitk.Image(fixed.GetSize(), sitk.sitkUInt8)
        grid.CopyInformation(fixed)
        steps.append({"step": "template registration", "template": str(template_path), "fixed": "template",
                      "moving": "brain-extracted t1ce at 1 mm", "transform": "affine",
                      "settings": registration.SETTINGS,
                      "result": run | registration.transform_record(transform),
                      "seconds": round(time.perf_counter() - start, 2)})
        yield step(f"registered the brain to the template ({steps[-1]['seconds']:.1f} s)")

    volumes = {m: registration.resample(images[m], grid, sitk_transform(to_native[m] @ case_to_t1ce))
               for m in MODALITIES}
    if mask is not None:
        mask = registration.resample(mask, grid, sitk_transform(case_to_t1ce), labels=True)
        volumes = {m: sitk.Mask(v, mask) for m, v in volumes.items()}
    steps.append({"step": "resampling", "frame": "template" if template_path else "t1ce", "spacing_mm":
                  list(grid.GetSpacing()), "interpolator": "linear (nearest for the brain mask), once per sequence",
                  "grid": _grid_record(grid), "masked": mask is not None})
    record = {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "case_id": case_id,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": sources,
        "steps": steps,
        "case_grid": _grid_record(grid),
        "native_t1ce": {"shape": list(native.GetSize()), "affine_ras": sources[REFERENCE]["affine_ras"]},
        "native_to_case_ras": np.linalg.inv(case_to_t1ce).round(8).tolist(),
        "files": {
            **{m: f"{case_id}{SUFFIXES_2018[m]}.nii.gz" for m in MODALITIES},
            "brain_mask": f"{case_id}{MASK_SUFFIX}" if mask is not None else None,
            "native_t1ce": f"{case_id}{NATIVE_SUFFIX}",
        },
    }
    yield step(f"writing {out}")
    _write_case(out, record, volumes, mask, native, overwrite)
    return PreparedCase(out, find_case(out), record)


def prepare_study(
    inputs: dict[str, Source],
    out: str | Path,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    **options: Any,
) -> PreparedCase:
    """:func:`prepare_steps` (``options`` are its keywords) run to its end: ``progress`` sees each step;
    ``should_stop()`` cancels (:class:`~napari_brainseg.jobs.Cancelled`), writing nothing."""
    return drive(prepare_steps(inputs, out, should_stop=should_stop, **options), progress, should_stop)


def _write_case(out: Path, record: dict[str, Any], volumes: dict[str, sitk.Image], mask: sitk.Image | None,
                native: sitk.Image, overwrite: bool) -> None:
    """Write the folder next to ``out`` under a temporary name, then rename it into place."""
    files = record["files"]
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}-{uuid.uuid4().hex[:12]}")
    temp.mkdir()
    try:
        for modality, volume in volumes.items():
            nib.save(to_nifti(volume, np.float32), temp / files[modality])
        if mask is not None:
            nib.save(to_nifti(mask, np.uint8), temp / files["brain_mask"])
        native_nifti = nib.Nifti1Image(sitk_array(native), np.array(record["native_t1ce"]["affine_ras"]))
        native_nifti.set_qform(native_nifti.affine, 1)
        native_nifti.set_sform(native_nifti.affine, 1)
        nib.save(native_nifti, temp / files["native_t1ce"])
        (temp / f"{record['case_id']}{RECORD_SUFFIX}").write_text(json.dumps(record, indent=2))
        if out.exists():
            if not overwrite and any(out.iterdir()):
                raise StudyInputError(f"{out} appeared while preparing; pass overwrite to replace it.")
            shutil.rmtree(out)
        os.replace(temp, out)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def sitk_array(image: sitk.Image) -> np.ndarray:
    """A SimpleITK image's voxels in nibabel's (x, y, z) order."""
    sitk = require("SimpleITK", "Preparing a scanner study")
    return np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))


def read_record(case: str | Path) -> dict[str, Any]:
    """The sidecar of a prepared case folder (or the sidecar file itself)."""
    path = Path(case).expanduser()
    if path.is_dir():
        found = sorted(path.glob(f"*{RECORD_SUFFIX}"))
        if not found:
            raise StudyInputError(f"{path} has no {RECORD_SUFFIX} sidecar: it was not made by prepare.")
        path = found[0]
    record = json.loads(path.read_text())
    if record.get("format") != RECORD_FORMAT:
        raise StudyInputError(f"{path.name} is not a napari-brainseg prepare sidecar.")
    return record


def labels_to_native(labels: nib.Nifti1Image, record: dict[str, Any]) -> nib.Nifti1Image:
    """A label map of a prepared case, on the native T1ce's grid with its affine (nearest neighbour)."""
    case = record["case_grid"]
    if tuple(labels.shape) != tuple(case["shape"]) or not np.allclose(labels.affine, case["affine_ras"], atol=1e-3):
        raise StudyInputError(
            f"The label map (shape {labels.shape}) is not on the prepared case's grid {tuple(case['shape'])}; "
            "map back the labels made for this case."
        )
    native = record["native_t1ce"]
    native_affine = np.array(native["affine_ras"])
    data = sample_nearest(labels, tuple(native["shape"]), native_affine, np.array(record["native_to_case_ras"]))
    result = nib.Nifti1Image(data.astype(np.uint8), native_affine)
    result.set_qform(native_affine, 1)
    result.set_sform(native_affine, 1)
    return result
