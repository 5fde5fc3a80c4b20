"""Uncertainty-guided review: which slices to look at first, and which have been looked at.

The score of a slice is the *sum* of the voxel-wise uncertainty over the slice's voxels inside a
region (by default the whole slice; the Review widget passes the brain, the voxels where any
modality is non-zero). With the test-time-augmentation spread of :func:`inference.segment` (0 where
all flips agree, up to 0.5), the sum is roughly the number of voxels whose label the model is unsure
of, so a slice with a large uncertain rim outranks one with a single uncertain voxel. A mean would
rank a slice with three uncertain voxels at the edge of the tumour above the tumour's centre slice.

:class:`ReviewQueue` walks those slices from the highest score down. Slices below a floor (a fraction
of the best slice's score, and always those with no uncertainty at all) are not queued. A slice
counts as reviewed once the user has been on it, whether the queue took them there or they scrolled.

Example:
    >>> import numpy as np
    >>> uncertainty = np.zeros((6, 4, 4), dtype=np.float32)
    >>> uncertainty[4, :2] = 0.4; uncertainty[1, 0] = 0.3
    >>> queue = ReviewQueue(slice_scores(uncertainty))
    >>> queue.queued, queue.next(), queue.next(), queue.next()
    ([4, 1], 4, 1, None)
"""

from __future__ import annotations

import numpy as np

DEFAULT_FLOOR = 0.05
"""Slices scoring below this fraction of the highest slice score are not worth a look."""


def slice_scores(uncertainty: np.ndarray, axis: int = 0, region: np.ndarray | None = None) -> np.ndarray:
    """Per-slice sum of voxel uncertainty along ``axis``, counting only voxels in ``region`` if given."""
    values = np.asarray(uncertainty, dtype=np.float64)
    if region is not None:
        if region.shape != values.shape:
            raise ValueError(f"The region's shape {region.shape} differs from the uncertainty's {values.shape}.")
        values = np.where(region, values, 0.0)
    return values.sum(axis=tuple(a for a in range(values.ndim) if a != axis))


class ReviewQueue:
    """The slices to review along one axis, best first, and the user's progress through them."""

    def __init__(self, scores: np.ndarray, floor: float = DEFAULT_FLOOR):
        self.scores = np.asarray(scores, dtype=np.float64)
        top = float(self.scores.max(initial=0.0))
        by_score = np.argsort(-self.scores, kind="stable")
        self.order: list[int] = [int(i) for i in by_score if self.scores[i] > 0 and self.scores[i] >= floor * top]
        self.visited: set[int] = set()
        self._history: list[int] = []
        self._position = -1

    def mark_visited(self, index: int) -> None:
        """Record that the user has seen slice ``index`` (the queue will not propose it again)."""
        self.visited.add(int(index))

    def next(self, current: int | None = None) -> int | None:
        """The highest-scoring slice not yet seen (``current`` counts as seen), or None when all are done."""
        if current is not None:
            self.mark_visited(current)
        for index in self.order:
            if index not in self.visited:
                self.mark_visited(index)
                self._history.append(index)
                self._position = len(self._history) - 1
                return index
        return None

    def previous(self) -> int | None:
        """The slice that :meth:`next` proposed before the one shown now, or None at the start."""
        if self._position <= 0:
            return None
        self._position -= 1
        return self._history[self._position]

    @property
    def queued(self) -> list[int]:
        """Slices still to review, best first."""
        return [i for i in self.order if i not in self.visited]

    @property
    def reviewed(self) -> list[int]:
        """Queued slices the user has seen, in the queue's order."""
        return [i for i in self.order if i in self.visited]

    @property
    def done(self) -> bool:
        return not self.queued
