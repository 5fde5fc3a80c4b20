"""Bidimensional tumour measurement as RANO reads it: two perpendicular axial diameters and their product.

RANO (Wen et al., 2010) measures an enhancing lesion on the axial slice where it is largest: the
longest in-plane diameter, then the longest diameter perpendicular to it; the product of the two is
the lesion's size. Here the lesion is the largest 3-D connected component (26-connected) of the mask,
so that a small, separate enhancing spot cannot stretch a diameter across healthy tissue; the
necrotic cavity inside an enhancing rim counts as part of the lesion, as it does on the scanner.
Diameters are in millimetres (``spacing`` is per display axis) and measured edge to edge, as a reader
with calipers does: the distance between the two outermost voxel centres plus one voxel's size
along the line, so that a lesion N voxels across measures N voxels.

Example:
    >>> import numpy as np
    >>> mask = np.zeros((3, 21, 21), dtype=bool)
    >>> mask[1, 10, 2:19] = mask[1, 6:15, 10] = True      # a cross: 17 x 9 voxels
    >>> m = rano_diameters(mask, spacing=(1.0, 1.0, 1.0))
    >>> m.slice_index, m.longest_mm, m.perpendicular_mm, m.product_mm2
    (1, 17.0, 9.0, 153.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

AXIAL = 0
MEASURABLE_MM = 10.0
"""RANO's smallest measurable lesion: both perpendicular diameters at least 10 mm."""

Point = tuple[float, float]


@dataclass(frozen=True)
class RanoMeasure:
    """Two perpendicular diameters on one axial slice; endpoints are in-plane voxel (row, column)."""

    slice_index: int
    longest_mm: float
    perpendicular_mm: float
    longest_ends: tuple[Point, Point]
    perpendicular_ends: tuple[Point, Point]

    @property
    def product_mm2(self) -> float:
        return self.longest_mm * self.perpendicular_mm

    @property
    def measurable(self) -> bool:
        """Both diameters reach RANO's 10 mm threshold for measurable disease."""
        return min(self.longest_mm, self.perpendicular_mm) >= MEASURABLE_MM


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (empty if the mask is)."""
    components, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def _hull_points(points: np.ndarray) -> np.ndarray:
    """The convex hull's vertices (the only candidates for a longest diameter), or all points if flat."""
    if len(points) < 3:
        return points
    try:
        return points[ConvexHull(points).vertices]
    except QhullError:  # all points on one line
        return points


def longest_diameter(points_mm: np.ndarray) -> tuple[float, int, int]:
    """Length and the two indices (into ``points_mm``) of the longest distance between points."""
    hull = _hull_points(points_mm)
    gaps = np.linalg.norm(hull[:, None, :] - hull[None, :, :], axis=-1)
    i, j = np.unravel_index(int(np.argmax(gaps)), gaps.shape)
    first = int(np.flatnonzero((points_mm == hull[i]).all(axis=1))[0])
    second = int(np.flatnonzero((points_mm == hull[j]).all(axis=1))[0])
    return float(gaps[i, j]), first, second


def longest_perpendicular(points_mm: np.ndarray, direction: np.ndarray, step_mm: float) -> tuple[float, int, int]:
    """The longest chord perpendicular to ``direction``: points are grouped in strips ``step_mm`` wide."""
    along = points_mm @ direction
    across = points_mm @ np.array([-direction[1], direction[0]])
    strips = np.rint((along - along.min()) / step_mm).astype(int)
    best = (0.0, 0, 0)
    for strip in np.unique(strips):
        members = np.flatnonzero(strips == strip)
        low, high = members[np.argmin(across[members])], members[np.argmax(across[members])]
        length = float(across[high] - across[low])
        if length > best[0]:
            best = (length, int(low), int(high))
    return best


def rano_diameters(mask: np.ndarray, spacing: Sequence[float], axis: int = AXIAL) -> RanoMeasure | None:
    """RANO's perpendicular diameters of the largest lesion in ``mask``, or None if the mask is empty."""
    lesion = np.moveaxis(largest_component(np.asarray(mask, dtype=bool)), axis, 0)
    if not lesion.any():
        return None
    in_plane = np.array([s for a, s in enumerate(spacing) if a != axis], dtype=float)
    best: tuple[float, int, np.ndarray, int, int] | None = None
    for index in np.flatnonzero(lesion.any(axis=(1, 2))):
        points = np.argwhere(lesion[index]) * in_plane
        length, i, j = longest_diameter(points)
        if best is None or length > best[0]:
            best = (length, int(index), points, i, j)
    length, index, points, i, j = best
    direction = (points[j] - points[i]) / length if length > 0 else np.array([0.0, 1.0])
    across = np.array([-direction[1], direction[0]])
    width, k, m = longest_perpendicular(points, direction, step_mm=float(in_plane.min()))
    return RanoMeasure(
        index,
        length + voxel_extent(direction, in_plane),
        width + voxel_extent(across, in_plane),
        _ends(points, in_plane, i, j),
        _ends(points, in_plane, k, m),
    )


def voxel_extent(direction: np.ndarray, in_plane: np.ndarray) -> float:
    """One voxel's size along a line of unit ``direction`` (mm): the spacing, weighted by direction."""
    return float(np.hypot(*(direction * in_plane)))


def _ends(points_mm: np.ndarray, in_plane: np.ndarray, i: int, j: int) -> tuple[Point, Point]:
    first, second = points_mm[i] / in_plane, points_mm[j] / in_plane
    return (float(first[0]), float(first[1])), (float(second[0]), float(second[1]))
