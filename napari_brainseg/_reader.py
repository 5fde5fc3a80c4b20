"""npe2 reader: a BraTS case (its folder or any one of its files) or a single NIfTI volume.

* A BraTS case opens as the four modality layers, plus its label map if the case has one
  (2018-2021 ``_flair`` and 2023+ ``-t2f`` namings, ``.nii`` and ``.nii.gz``). A case with a bad file
  raises :class:`~napari_brainseg.io.BratsInputError`, whose message napari shows.
* Any other NIfTI (or a BraTS-named file whose case is incomplete) opens as one image layer named after
  the file; an integer volume with "seg" in its name opens as a Labels layer.
* Anything else: ``None``, so that napari tries other readers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .io import (
    BratsInputError,
    _strip_nifti_extension,
    find_case,
    is_case_folder,
    load_case,
    load_volume,
    parse_brats_name,
)
from .labels import LabelError, check_labels, to_brats2018
from .layers import REFERENCE_ROLE, CaseContext, LayerDataTuple, case_layers, labels_layer_data, modality_from_name

ReaderFunction = Callable[[str | list[str]], list[LayerDataTuple]]
_MAX_LABEL = 255


def _single_path(path: str | list[str]) -> Path | None:
    if isinstance(path, list | tuple):
        return Path(path[0]) if len(path) == 1 else None
    return Path(path)


def _is_complete_case_file(path: Path) -> bool:
    if parse_brats_name(path) is None:
        return False
    try:
        find_case(path)
    except BratsInputError:
        return False
    return True


def get_reader(path: str | list[str]) -> ReaderFunction | None:
    """The function that reads ``path``, or ``None`` when this plugin cannot read it."""
    single = _single_path(path)
    if single is None:
        return None
    if single.is_dir():
        return read_case if is_case_folder(single) else None
    if not single.is_file() or not _strip_nifti_extension(single.name):
        return None
    return read_case if _is_complete_case_file(single) else read_volume


def read_case(path: str | list[str]) -> list[LayerDataTuple]:
    """The layers of the BraTS case at ``path`` (a folder or one of the case's files)."""
    return case_layers(load_case(_single_path(path)))


def read_volume(path: str | list[str]) -> list[LayerDataTuple]:
    """One NIfTI volume as an image layer, or as a Labels layer when it is an integer "seg" map."""
    path = _single_path(path)
    stem = _strip_nifti_extension(path.name)
    volume, geometry = load_volume(path)
    context = CaseContext(_case_id(path, stem), geometry.spacing, geometry=geometry)
    if "seg" in stem.lower() and _is_label_volume(volume):
        return [_labels_from_file(volume, stem, context, path)]
    modality = modality_from_name(stem)
    metadata = context.metadata(path=path, **({"modality": modality} if modality else {}))
    kwargs = {"name": stem, "scale": context.spacing, "colormap": "gray", "metadata": metadata}
    return [(volume, kwargs, "image")]


def _case_id(path: Path, stem: str) -> str:
    """The case a lone file belongs to: its BraTS id, its folder for "flair.nii.gz"-like names, else itself."""
    parsed = parse_brats_name(path)
    if parsed:
        return parsed[0]
    return path.parent.name if modality_from_name(stem) else stem


def _is_label_volume(volume: np.ndarray) -> bool:
    return bool(volume.min() >= 0 and volume.max() <= _MAX_LABEL and np.all(volume == np.rint(volume)))


def _labels_from_file(volume: np.ndarray, stem: str, context: CaseContext, path: Path) -> LayerDataTuple:
    """BraTS colours for a BraTS label map (2023's ET = 3 read as 4); napari's colours otherwise."""
    seg = volume.astype(np.uint8)
    values = set(np.unique(seg).tolist())
    if 3 in values and 4 not in values:
        seg = to_brats2018(seg)
    try:
        check_labels(seg)
    except LabelError:
        kwargs = {"name": stem, "scale": context.spacing, "metadata": context.metadata(path=path)}
        return volume.astype(np.uint8), kwargs, "labels"
    return labels_layer_data(seg, stem, context, role=REFERENCE_ROLE, path=path)
