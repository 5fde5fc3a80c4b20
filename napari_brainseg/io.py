"""Find BraTS cases on disk and load their NIfTI volumes in a fixed display orientation.

Both namings are recognised:

* BraTS 2018-2021: ``<id>_flair``, ``<id>_t1``, ``<id>_t1ce``, ``<id>_t2``, ``<id>_seg``
* BraTS 2023+:     ``<id>-t2f``,   ``<id>-t1n``, ``<id>-t1c``,  ``<id>-t2w``, ``<id>-seg``

Every volume is reoriented to :data:`DISPLAY_AXCODES` (axis 0 inferior->superior, so that napari's
slider walks axial slices; rows anterior->posterior; columns right->left, the radiological view).
:class:`Geometry` remembers the source affine and header so that a label map drawn in display space
is written back voxel for voxel onto its source (:meth:`Geometry.to_nifti`).

Example (a synthetic case; a real one reads the same, e.g. ``../shared/data/brats2018/Brats18_2013_11_1``):
    >>> from napari_brainseg.synthetic import write_synthetic_case
    >>> files = write_synthetic_case("Synthetic_001", "Synthetic_001", shape=(48, 56, 40))  # x, y, z
    >>> case = load_case("Synthetic_001")
    >>> case.case_id, case.image.shape, case.spacing  # (modalities, z, y, x)
    ('Synthetic_001', (4, 40, 56, 48), (1.0, 1.0, 1.0))
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

from .labels import LabelError, check_labels, to_brats2018

MODALITIES: tuple[str, ...] = ("flair", "t1", "t1ce", "t2")
"""Channel order of every image stack and of the model's input."""

MODALITY_TITLES = {"flair": "FLAIR", "t1": "T1", "t1ce": "T1ce", "t2": "T2"}
SUFFIXES_2018 = {"flair": "_flair", "t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "seg": "_seg"}
SUFFIXES_2023 = {"flair": "-t2f", "t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "seg": "-seg"}
NAMINGS = {"brats2018": SUFFIXES_2018, "brats2023": SUFFIXES_2023}
NIFTI_EXTENSIONS = (".nii.gz", ".nii")
DISPLAY_AXCODES = ("S", "P", "L")
_AFFINE_TOLERANCE_MM = 1e-3


class BratsInputError(ValueError):
    """Input files that cannot be used as a BraTS case; the message says what to do."""


@dataclass(frozen=True)
class CaseFiles:
    """The files of one BraTS case: four modalities, and the label map if there is one."""

    case_id: str
    images: dict[str, Path]
    seg: Path | None = None
    naming: str = "brats2018"

    @property
    def folder(self) -> Path:
        return self.images[MODALITIES[0]].parent


@dataclass(frozen=True)
class Geometry:
    """Where a volume's voxels sit: its source affine, shape and header, and the display mapping."""

    affine: np.ndarray
    shape: tuple[int, int, int]
    header: nib.Nifti1Header = field(repr=False)

    @property
    def _source_ornt(self) -> np.ndarray:
        return io_orientation(self.affine)

    def to_display(self, array: np.ndarray) -> np.ndarray:
        """Reorder a source-space array (last three axes) into display orientation."""
        return _reorient(array, ornt_transform(self._source_ornt, axcodes2ornt(DISPLAY_AXCODES)))

    def to_source(self, array: np.ndarray) -> np.ndarray:
        """Reorder a display-space array back into the source file's voxel order."""
        return _reorient(array, ornt_transform(axcodes2ornt(DISPLAY_AXCODES), self._source_ornt))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the display axes."""
        zooms = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        order = ornt_transform(self._source_ornt, axcodes2ornt(DISPLAY_AXCODES))[:, 0].astype(int)
        display = np.empty(3)
        display[order] = zooms
        return tuple(float(z) for z in display)

    @property
    def display_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.to_display(np.empty(self.shape, dtype=bool)).shape)

    def to_nifti(self, display_array: np.ndarray, dtype: type = np.uint8) -> nib.Nifti1Image:
        """A NIfTI image of a display-space array, with this geometry's affine and header."""
        if tuple(display_array.shape) != self.display_shape:
            raise BratsInputError(
                f"Array of shape {display_array.shape} does not match the case's "
                f"shape {self.display_shape}; was it made for another case?"
            )
        header = self.header.copy()
        header.set_data_dtype(dtype)
        data = np.ascontiguousarray(self.to_source(np.asarray(display_array)).astype(dtype))
        image = nib.Nifti1Image(data, self.affine, header)
        image.header.set_slope_inter(1.0, 0.0)
        image.set_qform(self.affine, int(self.header["qform_code"]) or 1)
        image.set_sform(self.affine, int(self.header["sform_code"]) or 1)
        return image


@dataclass
class LoadedCase:
    """A BraTS case in display orientation: a (4, Z, Y, X) float32 stack, labels, geometry."""

    files: CaseFiles
    image: np.ndarray
    geometry: Geometry
    seg: np.ndarray | None = None

    @property
    def case_id(self) -> str:
        return self.files.case_id

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.geometry.spacing


def _reorient(array: np.ndarray, transform: np.ndarray) -> np.ndarray:
    lead = array.ndim - 3
    if lead == 0:
        return apply_orientation(array, transform)
    return np.stack([_reorient(a, transform) for a in array])


def _strip_nifti_extension(name: str) -> str | None:
    for ext in NIFTI_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return None


def parse_brats_name(path: str | Path) -> tuple[str, str, str] | None:
    """``(case_id, role, naming)`` for a BraTS file name, role being a modality or ``"seg"``."""
    stem = _strip_nifti_extension(Path(path).name)
    if stem is None:
        return None
    for naming, suffixes in NAMINGS.items():
        # Longest suffix first, so that "_t1ce" is not read as "_t1".
        for role, suffix in sorted(suffixes.items(), key=lambda kv: -len(kv[1])):
            if stem.lower().endswith(suffix) and len(stem) > len(suffix):
                return stem[: -len(suffix)], role, naming
    return None


def is_case_folder(folder: str | Path) -> bool:
    """True when ``folder`` holds at least one file with a BraTS name."""
    folder = Path(folder)
    return folder.is_dir() and any(parse_brats_name(p) for p in folder.iterdir() if p.is_file())


def find_case(path: str | Path) -> CaseFiles:
    """The BraTS case in a folder, or the case a single BraTS-named file belongs to."""
    path = Path(path).expanduser()
    if not path.exists():
        raise BratsInputError(f"{path} does not exist.")
    if path.is_file():
        parsed = parse_brats_name(path)
        if parsed is None:
            raise BratsInputError(
                f"{path.name} is not named like a BraTS file (<id>_flair.nii.gz or <id>-t2f.nii.gz); "
                "open the case folder, or pick the four files one by one."
            )
        return _case_from_folder(path.parent, only_id=parsed[0])
    return _case_from_folder(path)


def _case_from_folder(folder: Path, only_id: str | None = None) -> CaseFiles:
    found: dict[str, dict[str, Path]] = {}
    namings: dict[str, str] = {}
    for p in sorted(folder.iterdir()):
        parsed = parse_brats_name(p) if p.is_file() else None
        if parsed is None or (only_id is not None and parsed[0] != only_id):
            continue
        case_id, role, naming = parsed
        found.setdefault(case_id, {})[role] = p
        namings[case_id] = naming
    if not found:
        raise BratsInputError(
            f"No BraTS files in {folder}. Expected <id>_flair/_t1/_t1ce/_t2.nii.gz (2018-2021) "
            "or <id>-t2f/-t1n/-t1c/-t2w.nii.gz (2023+)."
        )
    if len(found) > 1:
        raise BratsInputError(
            f"{folder} holds files of several cases ({', '.join(sorted(found))}); open one case "
            "folder, or one file of the case you want."
        )
    (case_id, roles), = found.items()
    return case_files_from_paths({r: p for r, p in roles.items() if r != "seg"}, roles.get("seg"),
                                 case_id=case_id, naming=namings[case_id])


def case_files_from_paths(
    images: dict[str, str | Path],
    seg: str | Path | None = None,
    case_id: str | None = None,
    naming: str = "brats2018",
) -> CaseFiles:
    """A :class:`CaseFiles` from four modality paths chosen one by one (checks none is missing)."""
    missing = [m for m in MODALITIES if m not in images or images[m] in (None, "")]
    if missing:
        have = ", ".join(f"{m}={Path(images[m]).name}" for m in MODALITIES if m not in missing)
        raise BratsInputError(
            f"Missing modality: {', '.join(MODALITY_TITLES[m] for m in missing)}"
            f"{' (found ' + have + ')' if have else ''}. A case needs FLAIR, T1, T1ce and T2."
        )
    paths = {m: Path(images[m]).expanduser() for m in MODALITIES}
    for m, p in paths.items():
        if not p.is_file():
            raise BratsInputError(f"{MODALITY_TITLES[m]} file {p} does not exist.")
    seg = Path(seg).expanduser() if seg else None
    _check_one_case([*paths.values(), *([seg] if seg else [])])
    if case_id is None:
        parsed = parse_brats_name(paths[MODALITIES[0]])
        case_id = parsed[0] if parsed else _strip_nifti_extension(paths[MODALITIES[0]].name) or "case"
    return CaseFiles(case_id, paths, seg, naming)


def _check_one_case(paths: list[Path]) -> None:
    """Refuse files whose BraTS names give different case ids (files named otherwise are not compared)."""
    ids = {p: parsed[0] for p in paths if (parsed := parse_brats_name(p)) is not None}
    counts = Counter(ids.values())
    if len(counts) < 2:
        return
    most = max(counts.values())
    case_id = next(i for i in ids.values() if counts[i] == most)  # the commonest; on a tie, the first file's
    odd = [f"{p.name} (case {i})" for p, i in ids.items() if i != case_id]
    raise BratsInputError(
        f"These files are not all from one case: {', '.join(odd)} {'is' if len(odd) == 1 else 'are'} not "
        f"from case {case_id} like {next(p.name for p, i in ids.items() if i == case_id)}. "
        "Pick the four files (and labels) of one case."
    )


def read_nifti(path: str | Path) -> nib.Nifti1Image:
    """Open a 3-D NIfTI file (a trailing singleton 4th axis is dropped) or say why it cannot be used."""
    path = Path(path)
    if _strip_nifti_extension(path.name) is None:
        raise BratsInputError(f"{path.name} is not a NIfTI file: expected a .nii or .nii.gz file.")
    try:
        image = nib.load(str(path))
    except FileNotFoundError:
        raise BratsInputError(f"{path} does not exist.") from None
    except (ImageFileError, EOFError, OSError, zlib.error, ValueError) as err:
        raise BratsInputError(f"{path.name} is not a readable NIfTI file ({err}).") from None
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise BratsInputError(f"{path.name} is not a NIfTI file (it reads as {type(image).__name__}).")
    shape = image.shape
    if len(shape) == 4 and shape[3] == 1:
        image = image.slicer[..., 0]
    elif len(shape) != 3:
        raise BratsInputError(
            f"{path.name} is {len(shape)}-D with shape {shape}; each modality must be one 3-D volume."
        )
    return image


def read_array(image: nib.Nifti1Image, path: str | Path) -> np.ndarray:
    """The voxel array of an opened NIfTI (scaled if the header says so), corrupt data reported clearly."""
    try:
        return np.asanyarray(image.dataobj)
    except (EOFError, OSError, zlib.error, ValueError) as err:
        raise BratsInputError(
            f"{Path(path).name} is corrupt or truncated ({err}); copy it again from its source."
        ) from None


def load_volume(path: str | Path, dtype: type | None = None) -> tuple[np.ndarray, Geometry]:
    """One 3-D NIfTI as a display-orientation array (``dtype``, or as stored) and its :class:`Geometry`."""
    image = read_nifti(path)
    geometry = Geometry(image.affine.copy(), tuple(int(s) for s in image.shape), image.header.copy())
    data = geometry.to_display(read_array(image, path))
    return (data if dtype is None else data.astype(dtype, copy=False)), geometry


def _check_intensities(data: np.ndarray, path: Path) -> None:
    n_nan = int(np.count_nonzero(~np.isfinite(data))) if data.dtype.kind == "f" else 0
    if n_nan:
        raise BratsInputError(
            f"{path.name} holds {n_nan} NaN or infinite voxels; replace them (e.g. with 0) before segmenting."
        )
    if not np.any(data):
        raise BratsInputError(f"{path.name} is all zeros: it holds no image. Check that it is the right file.")


def _same_grid(a: Geometry, b: Geometry) -> bool:
    return a.shape == b.shape and np.allclose(a.affine, b.affine, atol=_AFFINE_TOLERANCE_MM)


def load_case(source: str | Path | CaseFiles, with_seg: bool = True) -> LoadedCase:
    """Load and validate a BraTS case (a folder, one of its files, or :class:`CaseFiles`)."""
    files = source if isinstance(source, CaseFiles) else find_case(source)
    image, reference = None, None
    for channel, modality in enumerate(MODALITIES):
        path = files.images[modality]
        data, geometry = load_volume(path)
        _check_intensities(data, path)
        if reference is None:
            reference = geometry
            image = np.empty((len(MODALITIES), *data.shape), dtype=np.float32)
        elif not _same_grid(reference, geometry):
            raise BratsInputError(_mismatch_message(files, modality, reference, geometry))
        image[channel] = data
    seg = None
    if with_seg and files.seg is not None:
        seg = load_seg(files.seg, reference)
    return LoadedCase(files, image, reference, seg)


def load_seg(path: str | Path, reference: Geometry) -> np.ndarray:
    """A label map on ``reference``'s grid, in display orientation and the 2018 convention."""
    data, geometry = load_volume(path)
    if not _same_grid(reference, geometry):
        raise BratsInputError(
            f"Label map {Path(path).name} has shape {geometry.shape} and affine that differ from the "
            f"images' {reference.shape}; it belongs to another case or was resampled."
        )
    seg = to_brats2018(np.rint(data).astype(np.uint8))
    try:
        check_labels(seg)
    except LabelError as err:
        raise BratsInputError(f"{Path(path).name}: {err}") from None
    return seg


def _mismatch_message(files: CaseFiles, modality: str, ref: Geometry, other: Geometry) -> str:
    first = files.images[MODALITIES[0]].name
    this = files.images[modality].name
    if ref.shape != other.shape:
        what = f"shape {other.shape} but {first} has {ref.shape}"
    else:
        what = f"an affine that differs from {first}'s by up to {np.abs(ref.affine - other.affine).max():.3g} mm"
    return (
        f"{this} has {what}. The four modalities must be co-registered on one voxel grid; "
        "register and resample them first (BraTS data already is)."
    )

