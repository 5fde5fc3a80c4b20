"""Fill between slices: shape-based interpolation of one label between the slices where it was drawn.

As 3D Slicer's "Fill between slices": draw a label on a few slices along an axis, and the slices in
each gap between two drawn slices are filled with a shape that morphs from one outline to the other.
The morph interpolates signed distance maps (negative inside, in millimetres, the zero level half a
voxel outside the outermost voxel centres) linearly along the axis, so that two discs of radii r1 and
r2 become a cone.

Which slices count as drawn: every slice holding the label, or, when the model's prediction is given
as ``reference``, every slice where the label was *added* by hand (voxels of the label that the
prediction did not have). The second lets a user add a lesion the model missed next to a predicted
tumour that already spans all slices.

What is written: only background voxels (0) of the in-between slices become the label. Voxels of
other labels are never changed, nor are the drawn slices themselves.

Example:
    >>> import numpy as np
    >>> seg = np.zeros((5, 9, 9), dtype=np.uint8)
    >>> seg[0, 2:7, 2:7] = seg[4, 2:7, 2:7] = 2
    >>> fill = fill_between_slices(seg, label=2)
    >>> [int(fill[z].sum()) for z in range(5)]
    [0, 25, 25, 25, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
from scipy import ndimage

from .labels import BACKGROUND


def drawn_slices(mask: np.ndarray, axis: int = 0) -> np.ndarray:
    """Indices of the slices along ``axis`` that hold any voxel of ``mask``."""
    others = tuple(a for a in range(mask.ndim) if a != axis)
    return np.flatnonzero(np.asarray(mask, dtype=bool).any(axis=others))


def signed_distance(mask: np.ndarray, sampling: Sequence[float] | None = None) -> np.ndarray:
    """Signed distance to a 2-D mask's outline: negative inside, positive outside, 0 half a voxel out."""
    mask = np.asarray(mask, dtype=bool)
    half = 0.5 * float(min(sampling)) if sampling is not None else 0.5
    inside = ndimage.distance_transform_edt(mask, sampling=sampling)
    outside = ndimage.distance_transform_edt(~mask, sampling=sampling)
    return np.where(mask, half - inside, outside - half)


def interpolate_slices(
    first: np.ndarray, last: np.ndarray, steps: int, sampling: Sequence[float] | None = None
) -> np.ndarray:
    """The ``steps`` masks between two 2-D masks, morphed through their signed distance maps."""
    d_first, d_last = signed_distance(first, sampling), signed_distance(last, sampling)
    weights = np.arange(1, steps + 1, dtype=float) / (steps + 1)
    return np.stack([(1 - w) * d_first + w * d_last <= 0 for w in weights])


def fill_between_slices(
    seg: np.ndarray,
    label: int,
    axis: int = 0,
    spacing: Sequence[float] | None = None,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Mask of the background voxels to set to ``label`` so that it fills every gap between drawn slices.

    ``spacing`` (mm per axis) makes the in-plane distances physical; ``reference`` is the prediction,
    when only slices the user added ``label`` to should count as drawn.
    """
    seg = np.asarray(seg)
    if label == BACKGROUND:
        raise ValueError("Pick a label to fill between slices; background (0) cannot be interpolated.")
    drawn = seg == label
    if reference is not None:
        if reference.shape != seg.shape:
            raise ValueError(f"The prediction's shape {reference.shape} differs from the labels' {seg.shape}.")
        drawn &= np.asarray(reference) != label
    drawn = np.moveaxis(drawn, axis, 0)
    sampling = None if spacing is None else [s for a, s in enumerate(spacing) if a != axis]
    fill = np.zeros(drawn.shape, dtype=bool)
    slices = drawn_slices(drawn)
    for start, stop in pairwise(slices):
        if stop - start > 1:
            fill[start + 1 : stop] = interpolate_slices(drawn[start], drawn[stop], stop - start - 1, sampling)
    return np.moveaxis(fill, 0, axis) & (seg == BACKGROUND)
