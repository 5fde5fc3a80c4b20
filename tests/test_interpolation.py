"""Fill between slices: shape-based interpolation of one label across the gaps between drawn slices."""

import numpy as np
import pytest

from napari_brainseg.interpolation import drawn_slices, fill_between_slices
from napari_brainseg.labels import ED, ET, NCR


def disc(shape, centre, radius):
    y, x = np.ogrid[: shape[0], : shape[1]]
    return np.hypot(y - centre[0], x - centre[1]) <= radius


def test_two_discs_become_a_cone_whose_radius_is_linear_in_z():
    seg = np.zeros((21, 48, 48), dtype=np.uint8)
    z1, r1, z2, r2 = 3, 4.0, 17, 16.0
    seg[z1][disc((48, 48), (24, 23.5), r1)] = ET
    seg[z2][disc((48, 48), (24, 23.5), r2)] = ET
    fill = fill_between_slices(seg, ET)
    assert not fill[: z1 + 1].any() and not fill[z2:].any()
    for z in range(z1 + 1, z2):
        radius = r1 + (r2 - r1) * (z - z1) / (z2 - z1)
        assert np.all(fill[z][disc((48, 48), (24, 23.5), radius - 1)]), f"slice {z} misses the cone's inside"
        assert not np.any(fill[z] & ~disc((48, 48), (24, 23.5), radius + 1)), f"slice {z} spills outside the cone"


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_interpolates_along_any_axis(axis):
    seg = np.zeros((16, 16, 16), dtype=np.uint8)
    square = (slice(4, 12), slice(4, 12))
    for index in (2, 9):
        seg[(*square[:axis], index, *square[axis:])] = NCR
    fill = fill_between_slices(seg, NCR, axis=axis)
    assert drawn_slices(fill, axis).tolist() == list(range(3, 9))
    assert fill.sum() == 6 * 64


def test_only_background_voxels_are_filled_and_other_labels_are_kept():
    seg = np.zeros((7, 12, 12), dtype=np.uint8)
    seg[0, 2:10, 2:10] = seg[6, 2:10, 2:10] = ET
    seg[3, 4:8, 4:8] = NCR  # another label in the gap
    seg[4, 2:10, 2:10] = 0
    fill = fill_between_slices(seg, ET)
    assert not fill[3, 4:8, 4:8].any()
    assert fill[3].sum() == 64 - 16
    assert not fill[0].any() and not fill[6].any()  # the drawn slices stay as drawn


def test_adjacent_or_single_drawn_slices_leave_nothing_to_fill():
    seg = np.zeros((6, 8, 8), dtype=np.uint8)
    seg[2, 2:5, 2:5] = seg[3, 3:6, 3:6] = ED
    assert not fill_between_slices(seg, ED).any()
    seg[3] = 0
    assert not fill_between_slices(seg, ED).any()


def test_every_gap_between_several_drawn_slices_is_filled():
    seg = np.zeros((12, 8, 8), dtype=np.uint8)
    for z in (1, 5, 10):
        seg[z, 2:6, 2:6] = ED
    assert drawn_slices(fill_between_slices(seg, ED)).tolist() == [2, 3, 4, 6, 7, 8, 9]


def test_with_the_prediction_only_slices_where_the_label_was_added_count_as_drawn():
    prediction = np.zeros((10, 16, 16), dtype=np.uint8)
    prediction[:, 1:5, 1:5] = ET  # a predicted tumour on every slice
    seg = prediction.copy()
    seg[2, 10:14, 10:14] = seg[7, 10:14, 10:14] = ET  # a missed lesion drawn on two slices
    assert not fill_between_slices(seg, ET).any()  # every slice holds ET: no gap
    fill = fill_between_slices(seg, ET, reference=prediction)
    assert drawn_slices(fill).tolist() == [3, 4, 5, 6]
    assert fill[3:7, 10:14, 10:14].all() and fill.sum() == 4 * 16


def test_spacing_makes_the_in_plane_distances_physical():
    seg = np.zeros((5, 24, 24), dtype=np.uint8)
    seg[0, 10:14, 10:14] = ET
    seg[4, 4:20, 10:14] = ET  # grows along rows only
    fill = fill_between_slices(seg, ET, spacing=(1.0, 0.5, 2.0))
    rows = [int(fill[z].any(axis=1).sum()) for z in (1, 2, 3)]
    assert rows == sorted(rows) and rows[0] > 4 and rows[-1] < 16
    assert fill[1:4].any(axis=(0, 1)).sum() == 4  # columns never change


def test_background_cannot_be_interpolated():
    with pytest.raises(ValueError, match="background"):
        fill_between_slices(np.zeros((3, 4, 4), dtype=np.uint8), 0)
