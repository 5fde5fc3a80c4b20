"""What the network sees of a case: the brain's bounding box, z-scored per channel over brain voxels.

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
"""

from __future__ import annotations

import numpy as np

BRAIN_MARGIN = 4


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


def normalise(image: np.ndarray) -> np.ndarray:
    """Z-score each channel over its non-zero (brain) voxels; background stays 0.

    The same as MONAI's ``NormalizeIntensity(nonzero=True, channel_wise=True)``: population standard deviation,
    a constant channel only shifted (its std taken as 1), an all-zero channel left as it is. Returns float32.
    """
    out = np.array(image, dtype=np.float32)
    for channel in out:
        brain = channel != 0
        values = channel[brain]
        if values.size == 0:
            continue
        mean = values.mean(dtype=np.float64)
        std = values.std(dtype=np.float64)
        channel[brain] = (values - np.float32(mean)) / np.float32(std if std != 0 else 1.0)
    return out
