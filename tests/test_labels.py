"""BraTS label conventions: valid values, 2018/2023 codes, nested regions, volumes and clean-ups."""

from __future__ import annotations

import numpy as np
import pytest

from napari_brainseg.labels import (
    ED,
    ET,
    LABEL_COLORS,
    LABEL_NAMES,
    NCR,
    REGION_NAMES,
    LabelError,
    check_labels,
    fill_holes,
    labels_from_regions,
    mask_dice,
    minor_components,
    region_dice,
    region_volumes_ml,
    regions_from_labels,
    small_enhancing,
    small_islands,
    to_brats2018,
    to_brats2023,
)


def test_the_brats_labels_are_ncr_1_oedema_2_enhancing_4():
    assert (NCR, ED, ET) == (1, 2, 4)
    assert LABEL_NAMES == {1: "NCR/NET", 2: "oedema", 4: "enhancing"}
    assert all(label in LABEL_COLORS for label in (0, 1, 2, 4))


def test_check_labels_accepts_the_brats_values():
    check_labels(np.array([0, 1, 2, 4], dtype=np.uint8))


def test_check_labels_refuses_3_with_a_hint_about_2023():
    with pytest.raises(LabelError, match="BraTS 2023 code for ET"):
        check_labels(np.array([0, 3], dtype=np.uint8))


def test_check_labels_names_every_foreign_value():
    with pytest.raises(LabelError, match=r"\[5, 7\]"):
        check_labels(np.array([0, 5, 7, 1]))


def test_2023_and_2018_codes_convert_both_ways():
    seg_2018 = np.array([0, 1, 2, 4], dtype=np.uint8)
    seg_2023 = to_brats2023(seg_2018)
    assert seg_2023.tolist() == [0, 1, 2, 3]
    assert np.array_equal(to_brats2018(seg_2023), seg_2018)
    assert seg_2018.tolist() == [0, 1, 2, 4], "conversion must not change its input"


def test_regions_nest_whole_tumour_around_core_around_enhancing():
    seg = np.array([0, 1, 2, 4], dtype=np.uint8)
    wt, tc, et = regions_from_labels(seg)
    assert REGION_NAMES == ("WT", "TC", "ET")
    assert wt.tolist() == [False, True, True, True]
    assert tc.tolist() == [False, True, False, True]
    assert et.tolist() == [False, False, False, True]


def test_labels_from_regions_inverts_regions_from_labels():
    seg = np.random.default_rng(0).choice(np.array([0, 1, 2, 4], dtype=np.uint8), size=(6, 7, 8))
    assert np.array_equal(labels_from_regions(regions_from_labels(seg)), seg)


def test_labels_from_regions_lets_enhancing_win_over_a_missing_core_and_whole_tumour():
    wt = np.array([False, True, False])
    tc = np.array([False, False, False])
    et = np.array([False, False, True])
    assert labels_from_regions(np.stack([wt, tc, et])).tolist() == [0, 2, 4]


def test_mask_dice_is_twice_the_overlap_over_the_sizes_and_one_when_both_are_empty():
    a, b = np.zeros(10, bool), np.zeros(10, bool)
    assert mask_dice(a, b) == 1.0
    b[:4] = True
    assert mask_dice(a, b) == 0.0
    a[2:8] = True  # overlap 2, sizes 6 and 4
    assert mask_dice(a, b) == pytest.approx(2 * 2 / 10)


def test_region_dice_scores_whole_tumour_core_and_enhancing_separately():
    truth = np.array([0, 2, 2, 1, 4, 4], dtype=np.uint8)
    pred = np.array([2, 2, 2, 4, 4, 0], dtype=np.uint8)  # one oedema too many, NCR called ET, an ET voxel missed
    scores = region_dice(pred, truth)
    assert list(scores) == list(REGION_NAMES)
    assert scores["WT"] == pytest.approx(2 * 4 / 10)
    assert scores["TC"] == pytest.approx(2 * 2 / 5)
    assert scores["ET"] == pytest.approx(2 * 1 / 4)


def test_region_volumes_count_voxels_times_voxel_volume_in_ml():
    seg = np.zeros((10, 10, 10), dtype=np.uint8)
    seg[0, 0, :4] = NCR
    seg[1, 0, :3] = ED
    seg[2, 0, :2] = ET
    volumes = region_volumes_ml(seg, spacing=(2.0, 1.0, 0.5))  # 1 mm^3 per voxel = 0.001 mL
    assert volumes["WT"] == pytest.approx(0.009)
    assert volumes["TC"] == pytest.approx(0.006)
    assert volumes["ET"] == pytest.approx(0.002)
    assert volumes["NCR/NET"] == pytest.approx(0.004)
    assert volumes["oedema"] == pytest.approx(0.003)
    assert volumes["enhancing"] == pytest.approx(0.002)


def test_fill_holes_finds_background_enclosed_by_a_label_only():
    seg = np.zeros((3, 7, 7), dtype=np.uint8)
    seg[1, 1:6, 1:6] = ED
    seg[1, 3, 3] = 0  # a hole
    seg[1, 2, 2] = NCR  # another label: not a hole to fill
    holes = fill_holes(seg, ED)
    assert np.argwhere(holes).tolist() == [[1, 3, 3]]


def test_small_islands_finds_components_below_the_size_only():
    seg = np.zeros((10, 10, 10), dtype=np.uint8)
    seg[1:4, 1:4, 1:4] = ED  # 27 voxels
    seg[2, 2, 2] = ET  # a different label in the same component
    seg[8, 8, 8] = NCR  # a lone voxel
    islands = small_islands(seg, min_voxels=5)
    assert np.argwhere(islands).tolist() == [[8, 8, 8]]


def test_components_touching_at_a_corner_are_one_and_the_size_limit_itself_is_not_small():
    seg = np.zeros((10, 10, 10), dtype=np.uint8)
    seg[1:3, 1:3, 1:3] = ED  # 8 voxels ...
    seg[3, 3, 3] = NCR  # ... and one touching them at a corner only: 9 voxels, 26-connected
    seg[6:8, 6:8, 6:8] = ET  # 8 voxels
    assert np.argwhere(small_islands(seg, min_voxels=9)).tolist() == np.argwhere(seg == ET).tolist()
    assert not small_islands(seg, min_voxels=8).any(), "a component of exactly min_voxels stays"


def test_small_islands_needs_a_positive_size():
    with pytest.raises(ValueError, match="at least 1"):
        small_islands(np.zeros((2, 2, 2), dtype=np.uint8), 0)


def test_minor_components_are_those_smaller_than_a_fraction_of_the_largest():
    seg = np.zeros((10, 10, 10), dtype=np.uint8)
    seg[0:4, 0:5, 0:5] = ED  # 100 voxels, the main tumour
    seg[8:10, 8:10, 8:10] = ET  # 8 voxels: 8% of the largest
    seg[8:10, 0:3, 8:10] = NCR  # 12 voxels: 12%
    seg[0, 0, 0] = 0
    seg[4, 5, 5] = ED  # touching the main tumour at a corner only: part of it (still 100 voxels)
    minor = minor_components(seg, fraction=0.1)
    assert minor.sum() == 8 and minor[9, 9, 9]
    assert not minor_components(seg, fraction=0.08).any(), "exactly the fraction of the largest is not minor"
    assert not minor_components(seg, fraction=0.0).any()
    assert not minor_components(np.zeros_like(seg), fraction=0.5).any()


def test_small_enhancing_marks_all_enhancing_voxels_only_when_their_total_is_under_the_threshold():
    seg = np.zeros((10, 10, 10), dtype=np.uint8)
    seg[0:4, 0:5, 0:5] = ED
    seg[1, 1, 1:4] = ET  # 3 voxels in one focus
    seg[8, 8, 8:10] = ET  # 2 in another: 5 in all
    assert np.array_equal(small_enhancing(seg, 6), seg == ET)
    assert not small_enhancing(seg, 5).any()  # 5 voxels are not fewer than 5
    assert not small_enhancing(seg, 0).any()  # 0 switches the rule off
    assert not small_enhancing(np.where(seg == ET, ED, seg), 100).any()  # no ET at all: nothing to relabel
