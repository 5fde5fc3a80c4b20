"""What the network sees of a case: the brain's bounding box, each channel normalised over brain voxels.

Three normalisations, named by the description a checkpoint records (``ModelInfo.normalisation``):
:data:`Z_SCORE` (mean and standard deviation, MONAI's ``NormalizeIntensity(nonzero=True, channel_wise=True)``),
:data:`ROBUST` (median and interquartile range) and :data:`OUTSIDE_TUMOUR` (mean and standard deviation of the
brain outside the tumour). A large tumour drags a channel's mean and standard deviation: over the 29 BraTS 2018
cases it moved the FLAIR mean by up to 0.5 and its standard deviation by up to 1.9 times those of the tumour-free
brain, so the same oedema looks fainter in a case with more of it. The median and quartiles move less (0.3 and 1.4
times at most), but a model trained on them did worse on held-out cases (weights/MODEL_CARD.md, *Session 11*).
:data:`OUTSIDE_TUMOUR` leaves the tumour out of the statistics (``exclude``): training leaves the expert's out,
and ``segment`` the tumour a first pass finds (:data:`TUMOUR_EXCLUDED`); a model trained on it did worse than
the z-score model on every region, its first pass missing most of a large tumour (*Session 12*). What ships is
a z-score model that leaves the tumour out in a second pass for the whole tumour only
(:data:`~napari_brainseg.inference.SECOND_PASS_STAGE`).

Plain numpy, so that both inference backends and the training data share it without importing torch.

Example:
    >>> import numpy as np
    >>> image = np.zeros((4, 20, 20, 20), dtype=np.float32)
    >>> image[:, 8:12, 8:12, 8:12] = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    >>> brain_box(image)
    (slice(4, 16, None), slice(4, 16, None), slice(4, 16, None))
    >>> crop = normalise(image[(slice(None), *brain_box(image))])
    >>> round(float(crop[crop != 0].mean()), 6) + 0.0, crop[:, 0, 0, 0].tolist()
    (0.0, [0.0, 0.0, 0.0, 0.0])
    >>> robust = normalise(image[(slice(None), *brain_box(image))], ROBUST)
    >>> round(float(np.median(robust[0][robust[0] != 0])), 6) + 0.0
    0.0
"""

from __future__ import annotations

import numpy as np

BRAIN_MARGIN = 4
Z_SCORE = "z-score per channel over brain (non-zero) voxels, background 0"
ROBUST = "median and interquartile range / 1.349 per channel over brain (non-zero) voxels, background 0"
OUTSIDE_TUMOUR = "z-score per channel over brain (non-zero) voxels outside the tumour, background 0"
NORMALISATIONS = {"z-score": Z_SCORE, "robust": ROBUST, "z-score-outside-tumour": OUTSIDE_TUMOUR}
"""The normalisations by short name (the training CLI's ``--normalisation``) and the description a checkpoint
records."""
IQR_TO_STD = 1.349
"""The interquartile range of a normal distribution in standard deviations: robust units match z-score units."""
TUMOUR_EXCLUDED = frozenset({OUTSIDE_TUMOUR})
"""The normalisations whose statistics leave the tumour out (``normalise(..., exclude=tumour)``): a training case
leaves its expert's tumour out; ``segment`` first normalises over the whole brain (no tumour is known yet), then
again outside the tumour that first pass found, and takes every region from the second pass (unless the first
finds no tumour, or half the brain or more)."""


def tumour_to_exclude(labels: np.ndarray, normalisation: str) -> np.ndarray | None:
    """The tumour of ``labels`` (any non-zero label) when ``normalisation`` leaves the tumour out, else None."""
    return labels != 0 if normalisation in TUMOUR_EXCLUDED else None


def brain_box(image: np.ndarray, margin: int = BRAIN_MARGIN) -> tuple[slice, slice, slice]:
    """The bounding box of non-zero voxels over all channels of a (C, Z, Y, X) stack, plus a margin."""
    brain = np.any(image != 0, axis=0)
    if not brain.any():
        raise ValueError("The image holds no brain voxels (all channels are zero).")
    box = []
    for axis, size in enumerate(brain.shape):
        hits = np.flatnonzero(brain.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, size)))
    return tuple(box)


def normalise(image: np.ndarray, normalisation: str = Z_SCORE, exclude: np.ndarray | None = None) -> np.ndarray:
    """Normalise each channel over its non-zero (brain) voxels; background stays 0. Returns float32.

    ``exclude`` (a (Z, Y, X) mask, say a tumour) leaves its voxels out of the statistics, not out of the result;
    where it would leave a channel no voxel, the statistics are over all of its brain.

    :data:`Z_SCORE` is MONAI's ``NormalizeIntensity(nonzero=True, channel_wise=True)``: population standard
    deviation, a constant channel only shifted (its spread taken as 1), an all-zero channel left as it is.
    :data:`ROBUST` subtracts the median and divides by the interquartile range / :data:`IQR_TO_STD` (the same
    rules for a constant or empty channel).
    """
    out = np.array(image, dtype=np.float32)
    for channel in out:
        brain = channel != 0
        values = channel[brain]
        if values.size == 0:
            continue
        kept = channel[brain & ~exclude] if exclude is not None else values
        centre, spread = centre_and_spread(kept if kept.size else values, normalisation)
        channel[brain] = (values - np.float32(centre)) / np.float32(spread)
    return out


def centre_and_spread(values: np.ndarray, normalisation: str = Z_SCORE) -> tuple[float, float]:
    """The centre and spread (never 0: a constant's is 1) that ``normalisation`` takes of one channel's values."""
    statistics = _CENTRE_AND_SPREAD.get(normalisation)
    if statistics is None:
        raise ValueError(
            f"Unknown normalisation {normalisation!r}; this version of napari-brainseg knows "
            f"{', '.join(repr(n) for n in _CENTRE_AND_SPREAD)}. Update the plugin or use a checkpoint trained with it."
        )
    centre, spread = statistics(np.asarray(values))
    return centre, spread if spread != 0 else 1.0


def _mean_and_std(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean(dtype=np.float64)), float(values.std(dtype=np.float64))


def _median_and_iqr(values: np.ndarray) -> tuple[float, float]:
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float(q50), float(q75 - q25) / IQR_TO_STD


_CENTRE_AND_SPREAD = {Z_SCORE: _mean_and_std, ROBUST: _median_and_iqr, OUTSIDE_TUMOUR: _mean_and_std}
