"""Clicks that guide a refinement: their form, their checks, their encoding for a network, and a simulated user.

A click is ``(z, y, x, label)``: a display-space voxel index and what the user says of that voxel, a BraTS
class (1 NCR/NET, 2 oedema, 4 enhancing: "this voxel is this class") or 0 ("not tumour here").

:func:`next_click` is the simulated annotator of interactive-segmentation papers (and of this plugin's click
benchmark and click-network training): the next click goes to the voxel deepest inside the largest 3-D
connected region where the labels disagree with the expert, and carries the expert's label there.

Example:
    >>> import numpy as np
    >>> truth = np.zeros((9, 9, 9), np.uint8); truth[2:7, 2:7, 2:7] = 2
    >>> next_click(np.zeros_like(truth), truth)
    (4, 4, 4, 2)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .labels import BACKGROUND, ED, ET, LABEL_NAMES, NCR, VALID_LABELS

Click = tuple[int, int, int, int]
CLICK_LABELS: tuple[int, ...] = (NCR, ED, ET, BACKGROUND)
"""The labels a click may carry, in the order of the guidance channels (positive classes, then negative)."""
CLICK_NAMES: dict[int, str] = {**LABEL_NAMES, BACKGROUND: "not tumour"}


class ClickError(ValueError):
    """Clicks that cannot be used on this case; the message says which and why."""


class BrainVoxels:
    """Whether a voxel is brain (any modality non-zero), looked up in the volumes without building a mask.

    >>> BrainVoxels(np.array([[[[0, 3]]], [[[0, 0]]]]))[0, 0, 1]
    True
    """

    def __init__(self, volumes: Sequence[np.ndarray]) -> None:
        self._volumes = [np.asarray(volume) for volume in volumes]

    def __getitem__(self, voxel: tuple[int, int, int]) -> bool:
        return any(bool(volume[voxel] != 0) for volume in self._volumes)


def check_clicks(clicks: Sequence[Sequence[int]], shape: Sequence[int], brain: np.ndarray | None = None) -> list[Click]:
    """The clicks as int tuples, after checking each lies in a volume of ``shape`` (inside ``brain``) with a known label.

    ``brain`` is a boolean volume, or anything that answers ``brain[z, y, x]`` (e.g. :class:`BrainVoxels`).
    """
    if len(clicks) == 0:
        raise ClickError("No clicks: place at least one click on the case to refine it.")
    checked = []
    for number, click in enumerate(clicks, start=1):
        if len(click) != 4:
            raise ClickError(f"Click {number} is {tuple(click)}; a click is (z, y, x, label).")
        z, y, x, label = (int(round(float(v))) for v in click)
        if label not in VALID_LABELS:
            raise ClickError(
                f"Click {number} carries label {label}; use 1 (NCR/NET), 2 (oedema), 4 (enhancing) or 0 (not tumour)."
            )
        if not all(0 <= v < s for v, s in zip((z, y, x), shape)):
            raise ClickError(f"Click {number} at voxel {(z, y, x)} lies outside the volume of shape {tuple(shape)}.")
        if brain is not None and not brain[z, y, x]:
            raise ClickError(
                f"Click {number} at voxel {(z, y, x)} lies outside the brain (all modalities are 0 there); "
                "click on the brain."
            )
        checked.append((z, y, x, label))
    return checked


def next_click(labels: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None) -> Click | None:
    """The simulated user's next click (see the module doc), or None when the labels already equal ``truth``.

    Only voxels inside ``region`` (e.g. the brain) count as errors when it is given.
    """
    wrong = np.asarray(labels) != np.asarray(truth)
    if region is not None:
        wrong &= region
    if not wrong.any():
        return None
    components, count = ndimage.label(wrong)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    largest = int(sizes.argmax())
    box = ndimage.find_objects(components)[largest - 1]
    inside = np.pad(components[box] == largest, 1)  # the volume's edge counts as the region's border
    depth = ndimage.distance_transform_edt(inside)[1:-1, 1:-1, 1:-1]
    local = np.unravel_index(int(depth.argmax()), depth.shape)
    z, y, x = (int(i + s.start) for i, s in zip(local, box))
    return z, y, x, int(truth[z, y, x])


def guidance_maps(clicks: Sequence[Click], box: Sequence[slice], sigma: float) -> np.ndarray:
    """One map per :data:`CLICK_LABELS` over ``box``: a unit-peak Gaussian of width ``sigma`` voxels at each click.

    Clicks outside the box still reach into it with their tails.
    """
    shape = tuple(s.stop - s.start for s in box)
    maps = np.zeros((len(CLICK_LABELS), *shape), dtype=np.float32)
    grids = [np.arange(s.start, s.stop, dtype=np.float32) for s in box]
    for z, y, x, label in clicks:
        axes = [np.exp(-((g - c) ** 2) / (2 * sigma**2)) for g, c in zip(grids, (z, y, x))]
        bump = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
        channel = CLICK_LABELS.index(label)
        np.maximum(maps[channel], bump, out=maps[channel])
    return maps
