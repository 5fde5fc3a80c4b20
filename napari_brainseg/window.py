"""Gaussian-weighted sliding-window inference in numpy: MONAI's ``sliding_window_inference`` without torch.

Same window placement, padding and blending as ``sliding_window_inference(..., mode="gaussian")``: an image
smaller than the window is zero-padded symmetrically, windows step by ``int(roi * (1 - overlap))`` with the
last one flush with the far edge, each window's output is weighted by a Gaussian (sigma ``sigma_scale`` x the
window, floored at 1e-3) and the sum divided by the summed weights.

Example:
    >>> import numpy as np
    >>> image = np.ones((1, 40, 40, 40), dtype=np.float32)
    >>> out = sliding_window(image, (32, 32, 32), lambda batch: batch * 2, overlap=0.25)
    >>> out.shape, float(out.min()), float(out.max())
    ((1, 40, 40, 40), 2.0, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

OVERLAP = 0.25
SIGMA_SCALE = 0.125
MIN_WEIGHT = 1e-3

Predictor = Callable[[np.ndarray], np.ndarray]
"""Maps a batch of windows (B, C, *roi) to outputs (B, K, *roi)."""


def gaussian_weights(roi: Sequence[int], sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """The blending weight of each voxel of a window: MONAI's Gaussian importance map, float32."""
    weights = np.ones((), dtype=np.float32)
    for size in roi:
        x = np.arange(-(size - 1) / 2.0, (size - 1) / 2.0 + 1, dtype=np.float32)
        axis = np.exp(x**2 / np.float32(-2 * (size * sigma_scale) ** 2))
        weights = weights[..., None] * axis
    return np.maximum(weights, max(float(weights.min()), MIN_WEIGHT)).astype(np.float32)


def _padding(shape: Sequence[int], roi: Sequence[int]) -> list[tuple[int, int]]:
    return [((r - s) // 2, r - s - (r - s) // 2) if r > s else (0, 0) for s, r in zip(shape, roi)]


def window_starts(size: int, roi: int, overlap: float = OVERLAP) -> list[int]:
    """Where the windows along one axis of ``size`` (at least ``roi``) begin; the last ends at the edge."""
    if roi >= size:
        return [0]
    step = max(int(roi * (1 - overlap)), 1)
    return [min(i * step, size - roi) for i in range(math.ceil((size - roi) / step) + 1)]


def window_slices(shape: Sequence[int], roi: Sequence[int], overlap: float = OVERLAP) -> list[tuple[slice, ...]]:
    """Every window over a (padded) ``shape``, in MONAI's order (last axis fastest)."""
    per_axis = [window_starts(s, r, overlap) for s, r in zip(shape, roi)]
    grids = np.meshgrid(*per_axis, indexing="ij")
    return [tuple(slice(int(b), int(b) + r) for b, r in zip(starts, roi))
            for starts in zip(*(g.ravel() for g in grids))]


def count_windows(shape: Sequence[int], roi: Sequence[int], overlap: float = OVERLAP) -> int:
    """How many windows cover ``shape`` (for progress)."""
    return math.prod(len(window_starts(max(s, r), r, overlap)) for s, r in zip(shape, roi))


def sliding_window(
    image: np.ndarray,
    roi: Sequence[int],
    predict: Predictor,
    overlap: float = OVERLAP,
    batch: int = 1,
    sigma_scale: float = SIGMA_SCALE,
) -> np.ndarray:
    """Run ``predict`` over (C, *spatial) ``image`` window by window, ``batch`` at a time; (K, *spatial) float32."""
    roi = tuple(int(r) for r in roi)
    shape = image.shape[1:]
    pads = _padding(shape, roi)
    padded = np.pad(image, [(0, 0), *pads]) if any(any(p) for p in pads) else image
    slices = window_slices(padded.shape[1:], roi, overlap)
    weights = gaussian_weights(roi, sigma_scale)
    output: np.ndarray | None = None
    total_weight = np.zeros(padded.shape[1:], dtype=np.float32)
    for window in slices:
        total_weight[window] += weights
    for first in range(0, len(slices), batch):
        chunk = slices[first : first + batch]
        result = predict(np.stack([padded[(slice(None), *window)] for window in chunk]))
        if output is None:
            output = np.zeros((result.shape[1], *padded.shape[1:]), dtype=np.float32)
        for window, out in zip(chunk, result):
            output[(slice(None), *window)] += out * weights
    output /= total_weight
    return output[(slice(None), *(slice(before, before + s) for (before, _), s in zip(pads, shape)))]
