"""The correction diff: what a person added and removed per label, relative to the model's prediction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_brainseg.diff import ADDED, DIFF_NAMES, RELABELLED, REMOVED, UNCHANGED, confusion, diff_counts, diff_map
from napari_brainseg.labels import LabelError


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A prediction and its correction: 3 oedema voxels drawn, 2 enhancing erased, 1 oedema made NCR."""
    prediction = np.zeros((4, 5, 6), dtype=np.uint8)
    prediction[0, 0, :2] = 4
    prediction[1, 0, 0] = 2
    corrected = np.zeros_like(prediction)
    corrected[2, 0, :3] = 2
    corrected[1, 0, 0] = 1
    return prediction, corrected


def test_diff_map_codes_added_removed_and_relabelled_voxels(pair):
    prediction, corrected = pair
    codes = diff_map(prediction, corrected)
    assert codes.dtype == np.uint8 and codes.shape == prediction.shape
    assert np.argwhere(codes == ADDED).tolist() == [[2, 0, 0], [2, 0, 1], [2, 0, 2]]
    assert np.argwhere(codes == REMOVED).tolist() == [[0, 0, 0], [0, 0, 1]]
    assert np.argwhere(codes == RELABELLED).tolist() == [[1, 0, 0]]
    assert np.count_nonzero(codes == UNCHANGED) == codes.size - 6
    assert set(DIFF_NAMES) == {ADDED, REMOVED, RELABELLED}


def test_diff_counts_per_label_voxels_and_millilitres(pair):
    prediction, corrected = pair
    counts = diff_counts(prediction, corrected, spacing=(2.0, 2.0, 2.0))  # 0.008 mL per voxel
    assert counts["oedema"] == {"label": 2, "added_voxels": 3, "removed_voxels": 1,
                                "added_ml": pytest.approx(0.024), "removed_ml": pytest.approx(0.008)}
    assert counts["enhancing"]["added_voxels"] == 0 and counts["enhancing"]["removed_voxels"] == 2
    assert counts["NCR/NET"]["added_voxels"] == 1 and counts["NCR/NET"]["removed_voxels"] == 0
    assert counts["changed_voxels"] == 6
    assert counts["changed_ml"] == pytest.approx(0.048)


def test_diff_counts_are_json_ready(pair):
    counts = diff_counts(*pair, spacing=(1.0, 1.0, 1.0))
    assert json.loads(json.dumps(counts)) == counts


def test_an_untouched_prediction_has_no_changes(pair):
    prediction, _ = pair
    assert not diff_map(prediction, prediction).any()
    counts = diff_counts(prediction, prediction.copy(), spacing=(1.0, 1.0, 1.0))
    assert counts["changed_voxels"] == 0
    assert all(counts[name]["added_voxels"] == counts[name]["removed_voxels"] == 0
               for name in ("NCR/NET", "oedema", "enhancing"))


def test_confusion_counts_every_voxel_once(pair):
    prediction, corrected = pair
    matrix = confusion(prediction, corrected)
    assert matrix.sum() == prediction.size
    assert matrix[4, 0] == 2 and matrix[0, 2] == 3 and matrix[2, 1] == 1


def test_label_maps_of_different_shapes_are_refused(pair):
    prediction, corrected = pair
    with pytest.raises(ValueError, match="differ in shape"):
        diff_map(prediction, corrected[:-1])


def test_labels_outside_the_brats_set_are_refused(pair):
    prediction, corrected = pair
    corrected[0, 0, 0] = 3
    with pytest.raises(LabelError):
        diff_counts(prediction, corrected, spacing=(1.0, 1.0, 1.0))


def test_a_prediction_with_labels_outside_the_brats_set_is_refused(pair):
    prediction, corrected = pair
    prediction[3, 4, 5] = 3
    for compare in (diff_map, confusion):
        with pytest.raises(LabelError, match=r"values \[3\]"):
            compare(prediction, corrected)
    with pytest.raises(LabelError):
        diff_counts(prediction, corrected, spacing=(1.0, 1.0, 1.0))
