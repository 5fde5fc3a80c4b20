"""Training data: find labelled cases in BraTS folders and corrections datasets, split them, sample patches.

Cases are found recursively under each folder given, in either BraTS naming. A corrections dataset
(written by the plugin's export) holds ``<case_id>/v<N>/`` version folders: the newest version of
each case is used unless ``all_versions`` is asked for. When the same case id is found in several
places, the later data folder wins (so corrections given after the original data replace it).

Example:
    >>> cases = discover_cases(["../shared/data/brats2018"])  # doctest: +SKIP
    >>> split = make_split([c.case_id for c in cases], val_fraction=0.2, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from napari_brainseg.inference import brain_box, normalise
from napari_brainseg.io import BratsInputError, CaseFiles, find_case, is_case_folder, load_case

VERSION_DIR = re.compile(r"^v(\d+)$")


def _version_of(files: CaseFiles) -> int:
    match = VERSION_DIR.match(files.folder.name)
    return int(match.group(1)) if match else 0


def is_correction(files: CaseFiles) -> bool:
    """True for a case read from a corrections dataset's version folder."""
    return _version_of(files) > 0


def _case_folders(root: Path) -> Iterable[Path]:
    if is_case_folder(root):
        yield root
    for sub in sorted(p for p in root.rglob("*") if p.is_dir()):
        if is_case_folder(sub):
            yield sub


def discover_cases(folders: Sequence[str | Path], all_versions: bool = False) -> list[CaseFiles]:
    """Every labelled case under ``folders``; the newest correction of a case unless ``all_versions``."""
    chosen: dict[str, CaseFiles] = {}
    every: list[CaseFiles] = []
    for root in folders:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise BratsInputError(f"Data folder {root} does not exist or is not a folder.")
        labelled = [f for f in map(find_case, _case_folders(root)) if f.seg is not None]
        every += labelled
        for files in sorted(labelled, key=_version_of):  # newest version last, so it wins
            chosen[files.case_id] = files
    found = every if all_versions else list(chosen.values())
    if not found:
        raise BratsInputError(
            f"No labelled BraTS cases (four modalities and a _seg/-seg file) under {', '.join(map(str, folders))}."
        )
    return sorted(found, key=lambda f: (f.case_id, _version_of(f)))


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
    Path(path).write_text(json.dumps(split, indent=2) + "\n")


def load_training_case(files: CaseFiles) -> dict:
    """A case cropped to the brain and normalised: ``image`` (4, z, y, x) and ``label`` (1, z, y, x)."""
    case = load_case(files)
    box = brain_box(case.image)
    return {
        "image": normalise(case.image[(slice(None), *box)]),
        "label": case.seg[box][None].astype(np.uint8),
        "case_id": case.case_id,
    }


def training_transforms(patch_size: Sequence[int], samples_per_case: int):
    """MONAI augmentation: tumour-weighted patch crops, flips on every axis, intensity jitter."""
    from monai.transforms import (
        Compose,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandScaleIntensityd,
        RandShiftIntensityd,
        SpatialPadd,
    )

    keys = ["image", "label"]
    return Compose(
        [
            SpatialPadd(keys, spatial_size=patch_size),
            RandCropByPosNegLabeld(
                keys, label_key="label", spatial_size=patch_size, pos=2, neg=1, num_samples=samples_per_case
            ),
            *(RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in range(3)),
            RandScaleIntensityd("image", factors=0.1, prob=0.5),
            RandShiftIntensityd("image", offsets=0.1, prob=0.5),
        ]
    )
