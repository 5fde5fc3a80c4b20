"""Uncertainty-guided review: slice scores and the queue that walks the most uncertain slices first."""

import numpy as np
import pytest

from napari_brainseg.review import ReviewQueue, slice_scores


@pytest.fixture
def uncertainty():
    """A (20, 16, 16) map: background noise, plus injected uncertainty on slices 12 (most), 4 and 15."""
    rng = np.random.default_rng(0)
    volume = rng.uniform(0, 0.001, (20, 16, 16)).astype(np.float32)
    volume[12, 2:10, 2:10] = 0.4
    volume[4, 2:8, 2:8] = 0.4
    volume[15, 2:5, 2:5] = 0.3
    return volume


def test_score_is_the_sum_of_uncertainty_in_each_slice_along_any_axis():
    volume = np.zeros((4, 5, 6), dtype=np.float32)
    volume[1, 2, 3] = 0.5
    volume[1, 0, 0] = 0.25
    assert slice_scores(volume, axis=0).tolist() == [0, 0.75, 0, 0]
    assert slice_scores(volume, axis=1).tolist() == [0.25, 0, 0.5, 0, 0]
    assert slice_scores(volume, axis=2).tolist() == [0.25, 0, 0, 0.5, 0, 0]


def test_score_counts_only_voxels_inside_the_region():
    volume = np.full((3, 4, 4), 0.1, dtype=np.float32)
    brain = np.zeros(volume.shape, dtype=bool)
    brain[:, 1:3, 1:3] = True
    assert slice_scores(volume, region=brain) == pytest.approx([0.4, 0.4, 0.4])


def test_navigator_visits_the_slices_with_injected_uncertainty_first(uncertainty):
    queue = ReviewQueue(slice_scores(uncertainty))
    assert queue.queued == [12, 4, 15]  # the noise-only slices are below the floor
    assert [queue.next(), queue.next(), queue.next()] == [12, 4, 15]
    assert queue.next() is None and queue.done


def test_navigator_never_proposes_a_visited_slice_twice(uncertainty):
    queue = ReviewQueue(slice_scores(uncertainty), floor=0.0)
    proposed = []
    while (index := queue.next(current=proposed[-1] if proposed else None)) is not None:
        proposed.append(index)
    assert len(proposed) == len(set(proposed)) == 20
    assert proposed[:3] == [12, 4, 15]


def test_slices_the_user_scrolled_to_count_as_reviewed(uncertainty):
    queue = ReviewQueue(slice_scores(uncertainty))
    queue.mark_visited(4)
    assert queue.reviewed == [4] and queue.queued == [12, 15]
    assert queue.next(current=12) == 15  # the slice shown now counts as seen too
    assert queue.reviewed == [12, 4, 15] and queue.done


def test_previous_steps_back_through_the_slices_next_proposed(uncertainty):
    queue = ReviewQueue(slice_scores(uncertainty))
    assert queue.previous() is None
    queue.next(), queue.next(), queue.next()
    assert [queue.previous(), queue.previous(), queue.previous()] == [4, 12, None]
    assert queue.next() is None  # going back does not put slices back in the queue


def test_all_zero_uncertainty_queues_nothing():
    queue = ReviewQueue(slice_scores(np.zeros((5, 4, 4))))
    assert queue.queued == [] and queue.next() is None
