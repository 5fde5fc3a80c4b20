"""DICOM series in a folder: list them with their descriptions, pick one, read it as a 3-D volume.

Series are found with GDCM through SimpleITK (``ImageSeriesReader``), in the folder and its sub-folders.
A series is refused, with a message saying why, when it is not a usable brain MR volume: a single slice,
a localizer (scout, survey, three-plane pilot), not MR, or a body part other than the head.

Usage (not run as a doctest: it needs real data or writes files)::

    for number, series in enumerate(find_series("exam/"), start=1):
        print(number, series.summary)
    volume = read_series(pick_series("exam/", "2"))
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import StudyInputError, require

if TYPE_CHECKING:
    import SimpleITK as sitk

TAGS = {
    "description": "0008|103e",
    "patient_id": "0010|0020",
    "modality": "0008|0060",
    "image_type": "0008|0008",
    "body_part": "0018|0015",
    "orientation": "0020|0037",
}
LOCALIZER_WORDS = re.compile(r"local|scout|survey|pilot|3[- ]?plane|tri[- ]?plan|\bloc\b", re.IGNORECASE)
HEAD_BODY_PARTS = frozenset({"", "HEAD", "BRAIN", "SKULL", "HEADNECK", "HEAD_NECK", "HEAD NECK", "NEURO", "CRANIUM"})


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series: its UID, what its first slice's header says, and its files in slice order."""

    uid: str
    files: tuple[str, ...]
    description: str = ""
    patient_id: str = ""
    modality: str = ""
    image_type: str = ""
    body_part: str = ""
    orientations: int = 1
    """How many distinct slice orientations its files have (a three-plane localizer has three)."""

    @property
    def folder(self) -> Path:
        return Path(self.files[0]).parent

    @property
    def summary(self) -> str:
        """One line for a person choosing a series."""
        name = self.description or "no description"
        return f"'{name}' ({self.modality or '?'}, {len(self.files)} slices, UID {self.uid})"

    def problem(self) -> str | None:
        """Why this series is not a brain MR volume, or ``None`` when it can be used."""
        if len(self.files) < 2:
            return f"it has {len(self.files)} slice; a volume needs several (is it a localizer or a single image?)"
        if "LOCALIZER" in self.image_type.upper() or LOCALIZER_WORDS.search(self.description):
            return "it is a localizer (scout), not a diagnostic volume"
        if self.orientations > 1:
            return f"its slices have {self.orientations} orientations (a multi-plane localizer?), not one volume"
        if self.modality and self.modality.upper() != "MR":
            return f"it is a {self.modality} series, not MR"
        if self.body_part.strip().upper() not in HEAD_BODY_PARTS:
            return f"its body part is {self.body_part}, not the head"
        return None


def _sitk() -> Any:
    return require("SimpleITK", "Reading DICOM")


def _header(path: str) -> dict[str, str]:
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.LoadPrivateTagsOff()
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return {}
    return {key: reader.GetMetaData(tag).strip() for key, tag in TAGS.items() if reader.HasMetaDataKey(tag)}


def find_series(folder: str | Path) -> list[DicomSeries]:
    """Every DICOM series under ``folder`` (sub-folders included), in folder then UID order."""
    sitk = _sitk()
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise StudyInputError(f"{folder} is not a folder; give a DICOM series folder or a NIfTI file.")
    found = []
    for root, dirs, _ in os.walk(folder):
        dirs.sort()
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(root) or ():
            files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(root, uid))
            headers = [_header(f) for f in files]
            first = headers[0]
            orientations = {tuple(round(float(v), 3) for v in h["orientation"].split("\\")) for h in headers
                            if h.get("orientation")}
            found.append(DicomSeries(
                uid=uid,
                files=files,
                description=first.get("description", ""),
                patient_id=first.get("patient_id", ""),
                modality=first.get("modality", ""),
                image_type=first.get("image_type", ""),
                body_part=first.get("body_part", ""),
                orientations=max(1, len(orientations)),
            ))
    return found


def describe(series: list[DicomSeries]) -> str:
    """The numbered list a person picks a series from."""
    return "\n".join(f"  #{number}: {s.summary}" for number, s in enumerate(series, start=1))


def pick_series(folder: str | Path, choice: str | None = None) -> DicomSeries:
    """The series of ``folder`` chosen by number (``"2"``, from 1), by UID, or the only one; checked usable."""
    folder = Path(folder).expanduser()
    series = find_series(folder)
    if not series:
        raise StudyInputError(
            f"No DICOM series found in {folder} (nor in its sub-folders). Give the folder that holds the "
            "series' .dcm files, or a NIfTI file."
        )
    if choice is None:
        if len(series) > 1:
            raise StudyInputError(
                f"{folder} holds {len(series)} DICOM series; say which one, as {folder}#NUMBER or "
                f"{folder}#UID:\n{describe(series)}"
            )
        chosen = series[0]
    else:
        by_number = {str(n): s for n, s in enumerate(series, start=1)}
        chosen = by_number.get(choice.lstrip("#")) or next((s for s in series if s.uid == choice), None)
        if chosen is None:
            raise StudyInputError(f"{folder} has no series '{choice}'. Its series are:\n{describe(series)}")
    problem = chosen.problem()
    if problem:
        raise StudyInputError(f"DICOM series {chosen.summary} in {folder} cannot be used: {problem}.")
    return chosen


def read_series(series: DicomSeries) -> sitk.Image:
    """The series as one 3-D SimpleITK image (slices sorted by position, spacing from their positions)."""
    sitk = _sitk()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(series.files))
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise StudyInputError(f"DICOM series {series.summary} could not be read: {err}".strip()) from None
    if image.GetDimension() != 3 or min(image.GetSize()) < 2:
        raise StudyInputError(f"DICOM series {series.summary} is not a 3-D volume (size {image.GetSize()}).")
    return image
