"""Training data: find labelled cases in BraTS folders and corrections datasets, split them, sample patches.

Cases are found recursively under each folder given, in either BraTS naming. A corrections dataset
(written by the plugin's export) holds ``<case_id>/v<N>/`` version folders: the newest complete version
of each case is used unless ``all_versions`` is asked for. Exports may run meanwhile: their hidden
temporary folders are never entered, and an incomplete version (edited by hand) is reported and skipped.
A corrected case replaces the original case of the same id whatever the order of the folders; between two
equal candidates the later folder wins.

Fine-tuning mixes a handful of corrected cases with many original ones: :func:`sampling_weights`
draws the corrected cases for at least a set share of the patches so that they are not drowned.

Example (synthetic cases; real ones are e.g. ``../shared/data/brats2018``):
    >>> from napari_brainseg.synthetic import write_synthetic_case
    >>> for i in range(5):
    ...     _ = write_synthetic_case(f"cases/Case_{i}", f"Case_{i}", shape=(48, 56, 40), seed=i)
    >>> _ = write_synthetic_case("corrections/Case_1/v002", "Case_1", shape=(48, 56, 40))
    >>> _ = Path("corrections/Case_1/v002/provenance.json").write_text("{}")  # an export writes it last
    >>> cases = discover_cases(["cases", "corrections"])
    >>> len(cases), [c.case_id for c in cases if is_correction(c)]
    (5, ['Case_1'])
    >>> split = make_split([c.case_id for c in cases], val_fraction=0.2, seed=0)
    >>> len(split["train"]), len(split["val"])
    (4, 1)
"""

from __future__ import annotations

import json
import math
import os
import random
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from napari_brainseg.atomic import write_text_atomic
from napari_brainseg.export import SIDECAR_NAME, VERSION_DIR
from napari_brainseg.preprocess import Z_SCORE, brain_box, normalise, tumour_to_exclude
from napari_brainseg.io import BratsInputError, CaseFiles, find_case, is_case_folder, load_case
from napari_brainseg.resample import downsample, downsample_labels


class IncompleteVersionWarning(UserWarning):
    """A corrections version folder that lacks a file was skipped."""


def _version_of(files: CaseFiles) -> int:
    match = VERSION_DIR.match(files.folder.name)
    return int(match.group(1)) if match else 0


def is_correction(files: CaseFiles) -> bool:
    """True for a case read from a corrections dataset's version folder."""
    return _version_of(files) > 0


def _case_folders(root: Path) -> Iterator[Path]:
    """Folders under ``root`` (itself included) holding BraTS-named files, in path order.

    Hidden folders (an export in progress) are not entered, and a folder removed during the walk is passed over.
    """
    for folder, subfolders, _ in os.walk(root):  # os.walk passes over folders that vanish before it lists them
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        try:
            if is_case_folder(folder):
                yield Path(folder)
        except FileNotFoundError:
            continue


def _lacks(files: CaseFiles) -> str | None:
    """What a corrections version lacks (its labels, its provenance sidecar); None when it is complete."""
    lacks = [what for what, present in (("labels", files.seg is not None),
                                        (f"{SIDECAR_NAME} sidecar", (files.folder / SIDECAR_NAME).is_file()))
             if not present]
    return f"no {' and no '.join(lacks)}" if lacks else None


def discover_cases(folders: Sequence[str | Path], all_versions: bool = False) -> list[CaseFiles]:
    """Every labelled case under ``folders``; the newest correction of a case unless ``all_versions``.

    A corrections version that is incomplete (no labels, no provenance sidecar, a modality missing: copied
    or edited by hand) is skipped with an :class:`IncompleteVersionWarning` naming the case, the version, what
    it lacks and what is used instead.
    """
    every: list[CaseFiles] = []
    incomplete: list[tuple[Path, str]] = []
    for root in folders:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise BratsInputError(f"Data folder {root} does not exist or is not a folder.")
        for folder in _case_folders(root):
            try:
                files = find_case(folder)
            except BratsInputError as err:  # e.g. a modality missing
                if not VERSION_DIR.match(folder.name):
                    raise
                incomplete.append((folder, str(err)))
                continue
            problem = _lacks(files) if is_correction(files) else None
            if problem:
                incomplete.append((folder, problem))
            elif files.seg is not None:
                every.append(files)
    chosen: dict[str, CaseFiles] = {}
    for files in every:  # in folder order, so that the later of two equal versions wins
        current = chosen.get(files.case_id)
        if current is None or _version_of(files) >= _version_of(current):
            chosen[files.case_id] = files
    for folder, problem in incomplete:
        _report_incomplete(folder, problem, chosen.get(folder.parent.name))
    found = every if all_versions else list(chosen.values())
    if not found:
        raise BratsInputError(
            f"No labelled BraTS cases (four modalities and a _seg/-seg file) under {', '.join(map(str, folders))}."
        )
    return sorted(found, key=lambda f: (f.case_id, _version_of(f)))


def _report_incomplete(folder: Path, problem: str, used: CaseFiles | None) -> None:
    if used is None:
        instead = "the case is left out"
    elif is_correction(used):
        instead = f"its version {used.folder.name} is used instead"
    else:
        instead = f"the original case in {used.folder} is used instead"
    warnings.warn(
        f"Corrections of case {folder.parent.name}, version {folder.name}, are incomplete and skipped ({problem}); "
        f"{instead}. Export the case again from the plugin, or remove {folder}.",
        IncompleteVersionWarning, stacklevel=3,
    )


def make_split(case_ids: Sequence[str], val_fraction: float = 0.2, seed: int = 0) -> dict[str, list[str]]:
    """A seeded split by case into ``train`` and ``val`` id lists (at least one of each when possible)."""
    ids = sorted(set(case_ids))
    random.Random(seed).shuffle(ids)
    n_val = min(max(1, round(len(ids) * val_fraction)), len(ids) - 1) if len(ids) > 1 else 0
    return {"train": sorted(ids[n_val:]), "val": sorted(ids[:n_val])}


def read_split(path: str | Path) -> dict[str, list[str]]:
    """A split file: JSON with ``train`` and ``val`` lists of case ids."""
    try:
        split = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BratsInputError(f"Cannot read split file {path}: {err}") from None
    if not isinstance(split, dict) or not {"train", "val"} <= split.keys():
        raise BratsInputError(f"Split file {path} must be a JSON object with 'train' and 'val' lists.")
    overlap = set(split["train"]) & set(split["val"])
    if overlap:
        raise BratsInputError(f"Split file {path} puts {sorted(overlap)} in both train and val.")
    return {"train": list(split["train"]), "val": list(split["val"])}


def write_split(split: dict[str, list[str]], path: str | Path) -> None:
    """Write a split file atomically (other processes of a distributed run may be reading it)."""
    write_text_atomic(path, json.dumps(split, indent=2) + "\n")


def shard_cases(cases: Sequence[CaseFiles], rank: int, world: int) -> list[CaseFiles]:
    """One process's share of the training cases, corrected and original cases dealt out evenly.

    A process left without a case (more processes than cases) gets them all.
    """
    corrected = [c for c in cases if is_correction(c)]
    original = [c for c in cases if not is_correction(c)]
    return corrected[rank::world] + original[rank::world] or list(cases)


def sampling_weights(cases: Sequence[CaseFiles], correction_share: float) -> list[float] | None:
    """Per-case sampling weights that draw corrected cases for at least ``correction_share`` of the patches.

    ``None`` when the cases are all corrected or all original (uniform sampling). Otherwise the corrected
    cases share ``max(correction_share, their fraction of the cases)`` equally, the original cases the rest.
    """
    if not 0 < correction_share < 1:
        raise ValueError(f"The corrections' share of patches must be between 0 and 1, got {correction_share}.")
    corrected = [is_correction(c) for c in cases]
    n_corrected, n = sum(corrected), len(corrected)
    if n_corrected in (0, n):
        return None
    share = max(correction_share, n_corrected / n)
    return [share / n_corrected if c else (1 - share) / (n - n_corrected) for c in corrected]


def load_training_case(files: CaseFiles, normalisation: str = Z_SCORE, scale: int = 1) -> dict:
    """A case cropped to the brain, ``scale`` times coarser (a model's ``info.scale``, as ``segment`` reads it) and
    normalised (a model's ``info.normalisation``; one of :data:`~napari_brainseg.preprocess.TUMOUR_EXCLUDED` leaves
    the expert's tumour out of the statistics): ``image`` (4, z, y, x) and ``label`` (1, z, y, x)."""
    case = load_case(files)
    box = brain_box(case.image)
    image, label = case.image[(slice(None), *box)], case.seg[box]
    if scale > 1:
        image, label = downsample(image, scale), downsample_labels(label, scale)
    tumour = tumour_to_exclude(label, normalisation)
    return {
        "image": normalise(image, normalisation, exclude=tumour),
        "label": label[None].astype(np.uint8),
        "case_id": case.case_id,
    }


def training_transforms(patch_size: Sequence[int], samples_per_case: int, tumour_share: float = 0.5):
    """MONAI augmentation of patch crops (``tumour_share`` of them centred on tumour).

    Spatial: flips, small scalings (up to 10%) and rotations (up to 15 degrees, in the planes where the patch
    is at least 32 voxels wide both ways: in-plane only for the thin slabs of a 2.5-D model). Intensity, to cover
    scanners and protocols the few training cases do not: per-channel scale and shift, gamma, noise,
    blur and simulated low resolution (down- then up-sampling: thick-slice acquisitions such as the 2013 cases).
    """
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandGaussianNoised,
        RandGaussianSmoothd,
        RandScaleIntensityd,
        RandShiftIntensityd,
        RandSimulateLowResolutiond,
        SpatialPadd,
    )

    keys = ["image", "label"]
    thick = [size >= 32 for size in patch_size]
    rotate = [math.radians(15) if all(thick[j] for j in range(3) if j != axis) else 0.0 for axis in range(3)]
    blur = (0.5, 1.0)
    return Compose(
        [
            SpatialPadd(keys, spatial_size=patch_size),
            RandCropByPosNegLabeld(
                keys, label_key="label", spatial_size=patch_size, pos=tumour_share, neg=1 - tumour_share,
                num_samples=samples_per_case,
            ),
            RandAffined(keys, prob=0.3, rotate_range=rotate, scale_range=[0.1] * 3,
                        mode=("bilinear", "nearest"), padding_mode="zeros"),
            *(RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in range(3)),
            RandScaleIntensityd("image", factors=0.1, prob=0.5, channel_wise=True),
            RandShiftIntensityd("image", offsets=0.1, prob=0.5, channel_wise=True),
            RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5)),
            RandGaussianNoised("image", prob=0.15, std=0.1),
            RandGaussianSmoothd("image", prob=0.15, sigma_x=blur, sigma_y=blur, sigma_z=blur),
            RandSimulateLowResolutiond("image", prob=0.15, zoom_range=(0.5, 1.0)),
        ]
    )
