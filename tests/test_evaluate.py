"""Scores that tell one metric from a near miss: HD95 (not the maximum), per region, on the right grid."""

from __future__ import annotations

import numpy as np
import pytest

from napari_brainseg.labels import ED, ET, NCR
from napari_brainseg.training.evaluate import compare_scores, region_scores

CUBE = (slice(4, 14), slice(4, 14), slice(4, 14))


def with_labels(*boxes: tuple[int, tuple[slice, ...]]) -> np.ndarray:
    seg = np.zeros((24, 24, 24), dtype=np.uint8)
    for label, box in boxes:
        seg[box] = label
    return seg


def test_hd95_ignores_one_outlying_voxel_that_the_maximum_distance_would_not():
    truth = with_labels((ED, CUBE))
    pred = truth.copy()
    pred[22, 22, 22] = ED  # 9 voxels from the cube's corner along each axis, about 15.6 mm
    scores = region_scores(pred, truth, (1, 1, 1))
    assert scores["HD95_WT"] == 0.0, "one of several hundred surface voxels is beyond the 95th percentile"
    assert scores["Dice_WT"] == pytest.approx(2 * 1000 / 2001)


def test_hd95_of_a_uniform_shift_scales_with_the_spacing_of_its_axis():
    truth = with_labels((ED, CUBE))
    shifted = with_labels((ED, (slice(4, 14), slice(4, 14), slice(7, 17))))  # three voxels along axis 2
    assert region_scores(shifted, truth, (1, 1, 1))["HD95_WT"] == pytest.approx(3)
    assert region_scores(shifted, truth, (1, 1, 2))["HD95_WT"] == pytest.approx(6)
    assert region_scores(shifted, truth, (2, 2, 1))["HD95_WT"] == pytest.approx(3)


def test_each_region_is_scored_on_its_own_labels():
    truth = with_labels((ED, CUBE), (NCR, (slice(6, 12), slice(6, 12), slice(6, 12))),
                        (ET, (slice(6, 9), slice(6, 12), slice(6, 12))))
    pred = truth.copy()
    pred[pred == NCR] = ET  # all of TC called enhancing: WT and TC perfect, ET too big
    scores = region_scores(pred, truth, (1, 1, 1))
    assert scores["Dice_WT"] == pytest.approx(1) and scores["Dice_TC"] == pytest.approx(1)
    assert scores["Dice_ET"] == pytest.approx(2 * 108 / (216 + 108))
    assert list(scores) == ["Dice_WT", "HD95_WT", "Dice_TC", "HD95_TC", "Dice_ET", "HD95_ET"]


def test_a_comparison_calls_lower_dice_and_higher_hd95_worse():
    base = [{"case_id": "a", "Dice_WT": 0.80, "HD95_WT": 5.0}, {"case_id": "b", "Dice_WT": 0.90, "HD95_WT": 3.0}]
    new = [{"case_id": "a", "Dice_WT": 0.70, "HD95_WT": 4.0}, {"case_id": "b", "Dice_WT": 0.90, "HD95_WT": 3.0}]
    rows = {row["metric"]: row for row in compare_scores(base, new)}
    assert rows["Dice_WT"]["base"] == pytest.approx(0.85) and rows["Dice_WT"]["new"] == pytest.approx(0.80)
    assert rows["Dice_WT"]["change"] == pytest.approx(-0.05) and rows["Dice_WT"]["worse"] is True
    assert rows["HD95_WT"]["change"] == pytest.approx(-0.5) and rows["HD95_WT"]["worse"] is False
    tiny = compare_scores(base, [{**row, "Dice_WT": row["Dice_WT"] - 0.0004} for row in base])
    assert tiny[0]["change"] == 0 and tiny[0]["worse"] is False, "a change under 0.0005 is no change"
