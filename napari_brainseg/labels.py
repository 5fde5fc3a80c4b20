"""BraTS label conventions: classes, evaluation regions and their Dice, colours, volumes and clean-ups.

The plugin works in the BraTS 2017-2021 convention throughout::

    0 background, 1 NCR/NET (necrotic / non-enhancing core), 2 ED (oedema), 4 ET (enhancing)

BraTS 2023+ writes ET as 3; :func:`to_brats2018` and :func:`to_brats2023` convert.
The evaluation regions nest: WT = {1, 2, 4} contains TC = {1, 4} contains ET = {4}.

Example:
    >>> import numpy as np
    >>> seg = np.array([0, 1, 2, 4], dtype=np.uint8)
    >>> regions_from_labels(seg).astype(int).tolist()
    [[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

BACKGROUND, NCR, ED, ET = 0, 1, 2, 4
ET_2023 = 3

LABEL_NAMES: dict[int, str] = {NCR: "NCR/NET", ED: "oedema", ET: "enhancing"}
LABEL_COLORS: dict[int | None, str] = {
    None: "transparent",
    BACKGROUND: "transparent",
    NCR: "#ff3030",
    ED: "#30d030",
    ET: "#ffd700",
}
VALID_LABELS = frozenset({BACKGROUND, NCR, ED, ET})

REGIONS: dict[str, frozenset[int]] = {
    "WT": frozenset({NCR, ED, ET}),
    "TC": frozenset({NCR, ET}),
    "ET": frozenset({ET}),
}
REGION_NAMES: tuple[str, ...] = tuple(REGIONS)


class LabelError(ValueError):
    """A label map that does not follow the BraTS convention."""


def check_labels(seg: np.ndarray) -> None:
    """Raise :class:`LabelError` if ``seg`` holds values outside {0, 1, 2, 4}."""
    found = set(np.unique(seg).tolist())
    extra = found - VALID_LABELS
    if extra:
        hint = " (3 is the BraTS 2023 code for ET: convert with to_brats2018)" if extra == {3} else ""
        raise LabelError(
            f"Label map holds values {sorted(extra)} outside the BraTS labels "
            f"{{0, 1, 2, 4}}{hint}."
        )


def to_brats2018(seg: np.ndarray) -> np.ndarray:
    """Map a BraTS 2023+ label map (ET = 3) to the 2018 convention (ET = 4)."""
    out = np.asarray(seg).astype(np.uint8, copy=True)
    out[out == ET_2023] = ET
    return out


def to_brats2023(seg: np.ndarray) -> np.ndarray:
    """Map a BraTS 2018 label map (ET = 4) to the 2023+ convention (ET = 3)."""
    out = np.asarray(seg).astype(np.uint8, copy=True)
    out[out == ET] = ET_2023
    return out


def regions_from_labels(seg: np.ndarray) -> np.ndarray:
    """Stack the WT, TC and ET masks of a label map along a new first axis (bool)."""
    return np.stack([np.isin(seg, sorted(REGIONS[name])) for name in REGION_NAMES])


def labels_from_regions(regions: np.ndarray) -> np.ndarray:
    """Turn nested WT/TC/ET masks (first axis) into a uint8 label map in {0, 1, 2, 4}.

    Nesting is enforced the way BraTS winners decode: ET wins, then TC, then WT.
    """
    wt, tc, et = (np.asarray(r, dtype=bool) for r in regions)
    seg = np.zeros(wt.shape, dtype=np.uint8)
    seg[wt] = ED
    seg[tc] = NCR
    seg[et] = ET
    return seg


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two masks; 1 when both are empty (the BraTS rule), 0 when only one is."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(a & b) / total


def region_dice(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """WT/TC/ET Dice of a label map against the expert's (:func:`mask_dice` on each region)."""
    pairs = zip(REGION_NAMES, regions_from_labels(pred), regions_from_labels(truth))
    return {name: mask_dice(p, t) for name, p, t in pairs}


def voxel_volume_ml(spacing: Sequence[float]) -> float:
    """Volume of one voxel in millilitres, for a spacing in millimetres."""
    return float(np.prod(spacing)) / 1000.0


def region_volumes_ml(seg: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Volumes in mL of WT, TC, ET and of each label (keyed by its name)."""
    counts = np.bincount(np.asarray(seg, dtype=np.uint8).ravel(), minlength=ET + 1)
    per_voxel = voxel_volume_ml(spacing)
    volumes = {
        name: float(sum(counts[label] for label in members)) * per_voxel
        for name, members in REGIONS.items()
    }
    volumes.update({LABEL_NAMES[label]: float(counts[label]) * per_voxel for label in LABEL_NAMES})
    return volumes


def fill_holes(seg: np.ndarray, label: int) -> np.ndarray:
    """Voxel mask of background holes enclosed by ``label``, slice by slice and in 3-D."""
    mask = seg == label
    filled = ndimage.binary_fill_holes(mask)
    for z in range(mask.shape[0]):
        filled[z] |= ndimage.binary_fill_holes(mask[z])
    return filled & (seg == BACKGROUND)


def _tumour_components(seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """26-connected tumour components (any label) and each one's size; index 0 is the background."""
    components, _ = ndimage.label(seg > 0, structure=np.ones((3, 3, 3), dtype=bool))
    return components, np.bincount(components.ravel())


def small_islands(seg: np.ndarray, min_voxels: int) -> np.ndarray:
    """Voxel mask of tumour components (any label, 26-connected) smaller than ``min_voxels``."""
    if min_voxels < 1:
        raise ValueError(f"min_voxels must be at least 1, got {min_voxels}.")
    components, sizes = _tumour_components(seg)
    small = sizes < min_voxels
    small[0] = False
    return small[components]


def minor_components(seg: np.ndarray, fraction: float) -> np.ndarray:
    """Voxel mask of tumour components smaller than ``fraction`` of the largest one."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}.")
    components, sizes = _tumour_components(seg)
    if sizes.size < 2:
        return np.zeros(seg.shape, dtype=bool)
    minor = sizes < fraction * sizes[1:].max()
    minor[0] = False
    return minor[components]


def small_enhancing(seg: np.ndarray, min_voxels: int) -> np.ndarray:
    """Voxel mask of the enhancing tumour when it has fewer than ``min_voxels`` voxels in all, else nothing.

    nnU-Net's BraTS post-processing relabels such an ET as NCR/NET: a few enhancing voxels in a low-grade
    tumour are far more often a false positive than real enhancement.

    >>> seg = np.array([0, 2, 4, 4, 1], dtype=np.uint8)
    >>> small_enhancing(seg, 3).astype(int).tolist(), bool(small_enhancing(seg, 2).any())
    ([0, 0, 1, 1, 0], False)
    """
    if min_voxels < 0:
        raise ValueError(f"min_voxels must be at least 0, got {min_voxels}.")
    enhancing = seg == ET
    return enhancing if 0 < enhancing.sum() < min_voxels else np.zeros(seg.shape, dtype=bool)
