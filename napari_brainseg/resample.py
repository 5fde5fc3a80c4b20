"""Coarser grids for a network that sees the whole brain: block-mean down-sampling and linear up-sampling.

A context network (:mod:`.context`) reads each (Z, Y, X) volume ``factor`` times coarser along every axis: the
mean of each ``factor``-cubed block, the volume zero-padded at its far end to a whole number of blocks
(scikit-image's ``block_reduce``). Label
maps go down region by region (a block is in WT, TC or ET when at least half of it is). Probabilities come back
to the fine grid by linear interpolation between block centres (PyTorch's ``interpolate(mode="trilinear",
align_corners=False)``), cropped to the fine shape: written out here, because SciPy's ``ndimage.zoom(order=1,
grid_mode=True)``, which computes the same, took 0.86 s against 0.27 s on a brain box.

Plain numpy and scikit-image, so that both inference backends and the training data share it without importing torch.

Example:
    >>> import numpy as np
    >>> volume = np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4).repeat(2, 1).repeat(2, 2)
    >>> downsample(volume, 2)[0, 0, 0].tolist()
    [0.5, 2.5]
    >>> upsample(downsample(volume, 2), 2, (2, 2, 4))[0, 0, 0].tolist()
    [0.5, 1.0, 2.0, 2.5]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.measure import block_reduce

from .labels import labels_from_regions, regions_from_labels


def _check_factor(factor: int) -> int:
    if int(factor) != factor or factor < 1:
        raise ValueError(f"A resampling factor is a whole number of at least 1; got {factor!r}.")
    return int(factor)


def downsample(volumes: np.ndarray, factor: int) -> np.ndarray:
    """The block means of a (C, Z, Y, X) stack, ``factor`` times coarser along each spatial axis (float32)."""
    factor = _check_factor(factor)
    volumes = np.asarray(volumes, dtype=np.float32)
    return block_reduce(volumes, (1, factor, factor, factor), np.mean, cval=0).astype(np.float32, copy=False)


def downsample_labels(labels: np.ndarray, factor: int) -> np.ndarray:
    """A (Z, Y, X) BraTS label map ``factor`` times coarser: each block in the regions that fill half of it."""
    regions = downsample(regions_from_labels(labels).astype(np.float32), factor) >= 0.5
    return labels_from_regions(regions)


def upsample(volumes: np.ndarray, factor: int, shape: Sequence[int]) -> np.ndarray:
    """A (C, z, y, x) stack back on the fine (Z, Y, X) grid ``shape`` it was down-sampled from: linear between
    block centres, the edge blocks' values held beyond their centres."""
    factor = _check_factor(factor)
    out = np.asarray(volumes, dtype=np.float32)
    for axis, fine in enumerate(shape, start=1):
        coarse = out.shape[axis]
        if -(-fine // factor) != coarse:
            raise ValueError(f"A coarse axis of {coarse} voxels cannot come from a fine one of {fine} voxels at "
                             f"factor {factor}.")
        position = np.clip((np.arange(fine) + 0.5) / factor - 0.5, 0, coarse - 1)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, coarse - 1)
        weight = (position - low).astype(np.float32).reshape([-1 if a == axis else 1 for a in range(out.ndim)])
        out = np.take(out, low, axis=axis) * (1 - weight) + np.take(out, high, axis=axis) * weight
    return out
