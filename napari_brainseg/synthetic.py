"""A synthetic, BraTS-like glioma case: for the sample data, the tests and the benchmarks.

Not a real patient. The contrasts follow what a radiologist sees in a high-grade glioma: oedema bright
on FLAIR and T2, an enhancing rim bright on T1ce, a necrotic core dark on T1/T1ce and bright on T2,
ventricles dark on FLAIR/T1 and bright on T2, inside a skull-stripped brain (background exactly 0).
Arrays are in source voxel order (x, y, z) with an LPS affine, as BraTS ships its files.

Example:
    >>> images, seg = synthetic_case(shape=(48, 56, 40))
    >>> sorted(images), seg.shape, sorted(set(seg.ravel().tolist()))
    (['flair', 't1', 't1ce', 't2'], (48, 56, 40), [0, 1, 2, 4])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .io import MODALITIES, NAMINGS, CaseFiles
from .labels import ED, ET, NCR, to_brats2023

SYNTHETIC_CASE_ID = "Synthetic_glioma_001"
SAMPLE_SHAPE = (240, 240, 155)
LPS_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])

# Mean intensity per tissue and modality: background, brain, ventricles, oedema, enhancing, necrosis.
_TISSUE_MEANS = {
    "flair": (0, 380, 110, 760, 560, 260),
    "t1": (0, 470, 140, 340, 420, 190),
    "t1ce": (0, 480, 150, 360, 980, 170),
    "t2": (0, 360, 950, 780, 520, 880),
}
_BRAIN, _VENTRICLES, _OEDEMA, _ENHANCING, _NECROSIS = 1, 2, 3, 4, 5


def _radius_field(shape: Sequence[int], centre: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    return np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)))


def _smooth_noise(shape: Sequence[int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Noise smoothed over ``sigma`` voxels, made on a coarse grid and zoomed up (fast for big volumes)."""
    factor = max(1, int(sigma // 2))
    coarse = [int(np.ceil(s / factor)) + 1 for s in shape]
    noise = ndimage.gaussian_filter(rng.standard_normal(coarse), sigma / factor)
    if factor > 1:
        noise = ndimage.zoom(noise, factor, order=1)
    noise = noise[tuple(slice(0, s) for s in shape)]
    return noise / (np.abs(noise).max() + 1e-9)


def synthetic_case(
    shape: Sequence[int] = SAMPLE_SHAPE, seed: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Four int16 modalities and their uint8 BraTS labels {0, 1, 2, 4}, all of ``shape``."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    size = np.array(shape, dtype=float)
    centre = size / 2
    brain = _radius_field(shape, centre, size * np.array([0.36, 0.42, 0.42])) < 1 + 0.04 * _smooth_noise(
        shape, rng, max(shape) / 16
    )
    ventricles = _radius_field(shape, centre + size * [0.0, 0.02, 0.05], size * [0.05, 0.12, 0.08]) < 1
    tumour_centre = centre + size * np.array([0.13, -0.08, 0.06])
    r = _radius_field(shape, tumour_centre, size * np.array([0.11, 0.10, 0.12]))
    wobble = 0.15 * _smooth_noise(shape, rng, max(shape) / 20)
    oedema, rim, core = r < 1.6 + 2 * wobble, r < 1.0 + wobble, r < 0.65 + wobble
    tissue = np.zeros(shape, dtype=np.uint8)
    tissue[brain] = _BRAIN
    tissue[brain & ventricles & ~oedema] = _VENTRICLES
    tissue[brain & oedema] = _OEDEMA
    tissue[brain & rim] = _ENHANCING
    tissue[brain & core] = _NECROSIS
    seg = np.zeros(shape, dtype=np.uint8)
    seg[tissue == _OEDEMA], seg[tissue == _ENHANCING], seg[tissue == _NECROSIS] = ED, ET, NCR

    texture = _smooth_noise(shape, rng, 2.0)
    bias = 1 + 0.1 * _smooth_noise(shape, rng, max(shape) / 6)
    images = {}
    for modality in MODALITIES:
        means = np.asarray(_TISSUE_MEANS[modality], dtype=float)
        values = means[tissue] * bias * (1 + 0.08 * texture) + rng.normal(0, 12, shape)
        images[modality] = np.where(tissue > 0, np.clip(values, 1, None), 0).astype(np.int16)
    return images, seg


def write_synthetic_case(
    folder: str | Path,
    case_id: str = SYNTHETIC_CASE_ID,
    naming: str = "brats2018",
    shape: Sequence[int] = SAMPLE_SHAPE,
    affine: np.ndarray = LPS_AFFINE,
    with_seg: bool = True,
    seed: int = 0,
) -> CaseFiles:
    """Write a synthetic case as BraTS NIfTI files (``naming`` "brats2018" or "brats2023")."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffixes = NAMINGS[naming]
    images, seg = synthetic_case(shape, seed)
    paths = {}
    for modality, data in images.items():
        paths[modality] = folder / f"{case_id}{suffixes[modality]}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), paths[modality])
    seg_path = None
    if with_seg:
        seg_path = folder / f"{case_id}{suffixes['seg']}.nii.gz"
        labels = to_brats2023(seg) if naming == "brats2023" else seg
        nib.save(nib.Nifti1Image(labels, affine), seg_path)
    return CaseFiles(case_id, paths, seg_path, naming)
