"""The corrections dataset: corrected label maps saved as new, self-contained BraTS cases.

Layout::

    <dataset>/<case_id>/v001/<case_id>_flair.nii.gz   copies of the four source modalities
                             <case_id>_t1.nii.gz       (always BraTS 2018 names)
                             <case_id>_t1ce.nii.gz
                             <case_id>_t2.nii.gz
                             <case_id>_seg.nii.gz      the corrected labels {0, 1, 2, 4}, on the source grid
                             provenance.json           where it came from and what was changed
    <dataset>/<case_id>/v002/...                       the next export of the same case

A version is never overwritten. Each is built in a hidden temporary folder next to the versions and
renamed into place in one step, so a failed export leaves nothing behind and earlier versions untouched.
The temporary folder of an export killed outright is removed by the next export into the dataset
(:mod:`napari_brainseg.atomic` says how it tells a dead export from a running one).
``training.data.discover_cases`` reads such a dataset and uses the newest version of each case.

Example (a synthetic case whose labels stand for the model's prediction):
    >>> from napari_brainseg.io import load_case
    >>> from napari_brainseg.synthetic import write_synthetic_case
    >>> case = load_case(write_synthetic_case("cases/Synthetic_001", "Synthetic_001", shape=(48, 56, 40)))
    >>> corrected = case.seg.copy()
    >>> corrected[corrected == 2] = 0  # the user removes the oedema
    >>> first = export_correction("corrections", case.files, case.geometry, corrected, prediction=case.seg)
    >>> again = export_correction("corrections", case.files, case.geometry, corrected, prediction=case.seg)
    >>> first.folder.as_posix(), again.folder.as_posix(), again.seg_path.name
    ('corrections/Synthetic_001/v001', 'corrections/Synthetic_001/v002', 'Synthetic_001_seg.nii.gz')
"""

from __future__ import annotations

import datetime as _dt
import errno
import gzip
import json
import os
import re
import shutil
from contextlib import suppress
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _package_version
from pathlib import Path

import nibabel as nib
import numpy as np

from .atomic import NO_SPACE, remove_left_overs, temp_folder, write_problem
from .diff import diff_counts
from .io import MODALITIES, SUFFIXES_2018, CaseFiles, Geometry
from .labels import LabelError, check_labels, region_volumes_ml

SIDECAR_NAME = "provenance.json"
SIDECAR_FORMAT = "napari-brainseg-correction"
SIDECAR_FORMAT_VERSION = 1
VERSION_DIR = re.compile(r"^v(\d+)$")
_TEMP_NAME = "export"


class ExportError(RuntimeError):
    """An export that could not be written; nothing was left half-written and earlier versions are intact."""


@dataclass(frozen=True)
class ExportResult:
    """Where one export went: its version folder, label map, provenance sidecar and version number."""

    folder: Path
    seg_path: Path
    sidecar_path: Path
    version: int


def version_folder_name(version: int) -> str:
    return f"v{version:03d}"


def existing_versions(case_dir: str | Path) -> list[int]:
    """The version numbers already exported for a case, ascending."""
    case_dir = Path(case_dir)
    if not case_dir.is_dir():
        return []
    found = (VERSION_DIR.match(p.name) for p in case_dir.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def plugin_version() -> str:
    try:
        return _package_version("napari-brainseg")
    except PackageNotFoundError:
        return "unknown"


def _validated(labels: np.ndarray, geometry: Geometry, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if tuple(labels.shape) != geometry.display_shape:
        raise ExportError(
            f"The {what} have shape {labels.shape} but the case's images have {geometry.display_shape}; "
            "they belong to another case. Export the labels layer made for this case."
        )
    try:
        check_labels(labels)
    except LabelError as err:
        raise ExportError(f"The {what} cannot be exported: {err}") from None
    return labels.astype(np.uint8)


def _copy_as_nii_gz(source: Path, target: Path) -> None:
    """Copy a NIfTI file byte for byte, compressing it when the source is an uncompressed .nii."""
    if source.name.lower().endswith(".gz"):
        shutil.copyfile(source, target)
        return
    with open(source, "rb") as src, gzip.open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)


def _sidecar(
    files: CaseFiles,
    geometry: Geometry,
    labels: np.ndarray,
    prediction: np.ndarray | None,
    version: int,
    model_id: str | None,
    model_version: str | None,
) -> dict:
    corrections = None if prediction is None else diff_counts(prediction, labels, geometry.spacing)
    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_FORMAT_VERSION,
        "case_id": files.case_id,
        "version": version,
        "exported_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "plugin_version": plugin_version(),
        "source": {
            "naming": files.naming,
            "images": {m: str(Path(files.images[m]).resolve()) for m in MODALITIES},
            "seg": str(Path(files.seg).resolve()) if files.seg else None,
        },
        "model": {"id": model_id, "version": model_version},
        "spacing_mm": list(geometry.spacing),
        "label_volumes_ml": {k: round(v, 4) for k, v in region_volumes_ml(labels, geometry.spacing).items()},
        "changed_by_hand": None if corrections is None else corrections["changed_voxels"] > 0,
        "corrections_vs_prediction": corrections,
    }


def _write_version(folder: Path, files: CaseFiles, geometry: Geometry, labels: np.ndarray, sidecar: dict) -> None:
    case_id = files.case_id
    for modality in MODALITIES:
        _copy_as_nii_gz(Path(files.images[modality]), folder / f"{case_id}{SUFFIXES_2018[modality]}.nii.gz")
    nib.save(geometry.to_nifti(labels, np.uint8), str(folder / f"{case_id}{SUFFIXES_2018['seg']}.nii.gz"))
    _write_sidecar(folder, sidecar)


def _failure_message(err: BaseException, case_dir: Path) -> str:
    problem = write_problem(err, case_dir)
    if problem:
        advice = "Free some space or choose" if getattr(err, "errno", None) in NO_SPACE else "Choose"
        return (
            f"Export failed: {problem}. {advice} another corrections folder you can write to, then export "
            "again. Nothing was written; earlier versions are intact."
        )
    if isinstance(err, FileNotFoundError) and err.filename and not str(err.filename).startswith(str(case_dir)):
        return (
            f"Export failed: the source file {err.filename} is gone. Reopen the case from where its files "
            "are now, then export again. Nothing was written; earlier versions are intact."
        )
    return (
        f"Export failed while writing to {case_dir} ({type(err).__name__}: {err}). Check that the "
        "corrections folder is a folder you can write to, then export again. Nothing was written; "
        "earlier versions are intact."
    )


def _write_sidecar(folder: Path, sidecar: dict) -> None:
    (folder / SIDECAR_NAME).write_text(json.dumps(sidecar, indent=2) + "\n")


def _publish(temp: Path, case_dir: Path, sidecar: dict) -> Path:
    """Rename the finished folder to its version; if another export took that number, take the next."""
    while True:
        target = case_dir / version_folder_name(sidecar["version"])
        try:
            if not target.exists():
                os.rename(temp, target)
                return target
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        sidecar["version"] += 1
        _write_sidecar(temp, sidecar)


def export_correction(
    dataset: str | Path,
    files: CaseFiles,
    geometry: Geometry,
    labels: np.ndarray,
    prediction: np.ndarray | None = None,
    model_id: str | None = None,
    model_version: str | None = None,
) -> ExportResult:
    """Save corrected display-space ``labels`` as the next version of ``files.case_id`` in ``dataset``.

    ``prediction`` (the model's labels before correction, display space) adds per-label voxels
    added/removed to the sidecar. Raises :class:`ExportError` and writes nothing on any failure.
    """
    labels = _validated(labels, geometry, "labels")
    if prediction is not None:
        prediction = _validated(prediction, geometry, "model's prediction")
    case_dir = Path(dataset).expanduser() / files.case_id
    created_case_dir = not case_dir.exists()
    folder: Path | None = None
    try:
        case_dir.mkdir(parents=True, exist_ok=True)
        _remove_left_overs(case_dir.parent)
        # What is left of the temporary folder is removed on leaving the block: nothing once it is published.
        with temp_folder(case_dir, _TEMP_NAME) as temp:
            version = max(existing_versions(case_dir), default=0) + 1
            sidecar = _sidecar(files, geometry, labels, prediction, version, model_id, model_version)
            _write_version(temp, files, geometry, labels, sidecar)
            folder = _publish(temp, case_dir, sidecar)
    except Exception as err:
        raise ExportError(_failure_message(err, case_dir)) from err
    finally:
        if folder is None and created_case_dir:  # failed or interrupted: leave no trace
            _remove_if_empty(case_dir)
    return ExportResult(
        folder=folder,
        seg_path=folder / f"{files.case_id}{SUFFIXES_2018['seg']}.nii.gz",
        sidecar_path=folder / SIDECAR_NAME,
        version=sidecar["version"],
    )


def _remove_left_overs(dataset: Path) -> None:
    """Remove the temporary folders of exports into ``dataset`` that were killed (any case)."""
    with suppress(OSError):
        for case_dir in dataset.iterdir():
            if not case_dir.name.startswith("."):
                remove_left_overs(case_dir)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
