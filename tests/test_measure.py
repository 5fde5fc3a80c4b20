"""RANO bidimensional measurement: longest axial diameter and the longest one perpendicular to it."""

import numpy as np
import pytest

from napari_brainseg.measure import largest_component, rano_diameters


def ellipse(shape, centre, a, b, angle=0.0, slices=None):
    """Boolean (Z, Y, X) volume holding a filled ellipse with semi-axes a, b (voxels) on the given slices."""
    y, x = np.ogrid[: shape[1], : shape[2]]
    u = (y - centre[0]) * np.cos(angle) + (x - centre[1]) * np.sin(angle)
    v = -(y - centre[0]) * np.sin(angle) + (x - centre[1]) * np.cos(angle)
    inside = (u / a) ** 2 + (v / b) ** 2 <= 1
    on = np.zeros(shape[0], dtype=bool)
    on[slices if slices is not None else slice(None)] = True
    return inside[None] & on[:, None, None]


@pytest.mark.parametrize("angle", [0.0, 0.5, 1.3])
def test_diameters_of_an_ellipse_are_its_axes_within_a_voxel(angle):
    mask = ellipse((7, 64, 64), (31.5, 32), a=20, b=9, angle=angle, slices=slice(2, 5))
    measure = rano_diameters(mask, spacing=(3.0, 1.0, 1.0))
    assert measure.longest_mm == pytest.approx(40, abs=1.5)
    assert measure.perpendicular_mm == pytest.approx(18, abs=1.5)
    assert measure.product_mm2 == pytest.approx(measure.longest_mm * measure.perpendicular_mm)
    assert measure.measurable


def test_diameters_are_in_millimetres_with_anisotropic_in_plane_spacing():
    # 30 voxels of 0.5 mm along rows (15 mm), 12 voxels of 2 mm along columns (24 mm): columns win in mm.
    mask = ellipse((3, 48, 48), (24, 24), a=15, b=6, slices=[1])
    measure = rano_diameters(mask, spacing=(1.0, 0.5, 2.0))
    assert measure.longest_mm == pytest.approx(24, abs=2.0)
    assert measure.perpendicular_mm == pytest.approx(15, abs=1.0)


def test_the_slice_with_the_longest_diameter_is_measured():
    mask = ellipse((9, 64, 64), (32, 32), a=10, b=8, slices=[2]) | ellipse((9, 64, 64), (32, 32), a=22, b=6, slices=[5])
    mask |= ellipse((9, 64, 64), (32, 32), a=4, b=4, slices=[3, 4])  # join them into one lesion
    measure = rano_diameters(mask, spacing=(1, 1, 1))
    assert measure.slice_index == 5
    assert measure.longest_mm == pytest.approx(44, abs=1.5)


def test_perpendicular_diameter_crosses_the_enhancing_rim_of_a_ring():
    ring = ellipse((3, 64, 64), (32, 32), a=18, b=12, slices=[1]) & ~ellipse((3, 64, 64), (32, 32), a=14, b=8)
    measure = rano_diameters(ring, spacing=(1, 1, 1))
    assert measure.longest_mm == pytest.approx(36, abs=1.5)
    assert measure.perpendicular_mm == pytest.approx(24, abs=1.5)


def test_a_small_separate_spot_does_not_stretch_the_diameter():
    mask = ellipse((3, 64, 64), (20, 20), a=6, b=6, slices=[1])
    mask[1, 60, 60] = True
    measure = rano_diameters(mask, spacing=(1, 1, 1))
    assert measure.longest_mm == pytest.approx(12, abs=1.5)
    assert largest_component(mask).sum() == mask.sum() - 1


def test_lesions_under_ten_millimetres_are_not_measurable_and_empty_masks_give_none():
    small = ellipse((3, 32, 32), (16, 16), a=4, b=3, slices=[1])
    assert not rano_diameters(small, spacing=(1, 1, 1)).measurable
    assert rano_diameters(np.zeros((3, 8, 8), dtype=bool), spacing=(1, 1, 1)) is None


def test_endpoints_are_voxel_coordinates_on_the_measured_slice():
    mask = ellipse((3, 40, 40), (20, 20), a=12, b=5, slices=[1])
    measure = rano_diameters(mask, spacing=(1, 2.0, 2.0))
    (r0, c0), (r1, c1) = measure.longest_ends
    assert mask[1, int(r0), int(c0)] and mask[1, int(r1), int(c1)]
    assert 2.0 * np.hypot(r1 - r0, c1 - c0) + 2.0 == pytest.approx(measure.longest_mm)  # edge to edge


def test_a_lesion_long_in_one_direction_only_is_not_measurable():
    """RANO: both diameters must reach 10 mm; 25 x 6 mm is not measurable, 12 x 11 mm is."""
    thin = ellipse((3, 40, 40), (20, 20.5), a=12.5, b=3, slices=[1])  # rows 8-32, columns 18-23: 25 x 6 voxels
    measure = rano_diameters(thin, spacing=(1, 1, 1))
    assert measure.longest_mm == pytest.approx(25, abs=0.5)
    assert measure.perpendicular_mm == pytest.approx(6, abs=0.5)
    assert not measure.measurable
    squat = ellipse((3, 40, 40), (20, 20), a=5.5, b=5, slices=[1])  # 12 x 11 voxels
    assert rano_diameters(squat, spacing=(1, 1, 1)).measurable


def test_an_oblique_cross_on_anisotropic_voxels_measures_its_arms_edge_to_edge():
    """Rows of 1 mm, columns of 2 mm: voxel steps (2, 1) and (2, -1) are 45 degree lines in millimetres.

    The long arm is 10 steps of 2*sqrt(2) mm, the short arm, perpendicular in millimetres (not in voxels),
    6 such steps; edge to edge adds one voxel's extent along a 45 degree line: hypot(1, 2) / sqrt(2) mm.
    The arms' voxels touch only through a bridge on the next slice, whose diameters are shorter.
    """
    mask = np.zeros((3, 24, 14), dtype=bool)
    for k in range(11):
        mask[1, 2 * k, k] = True
        mask[2, 2 * k + 1, k] = k < 10
    for j in range(-3, 4):
        mask[1, 10 + 2 * j, 5 - j] = True
        mask[2, 10 + 2 * j + 1, 5 - j] = j < 3
    assert largest_component(mask).sum() == mask.sum(), "one lesion"
    measure = rano_diameters(mask, spacing=(3.0, 1.0, 2.0))
    extent = np.hypot(1, 2) / np.sqrt(2)
    assert measure.longest_mm == pytest.approx(20 * np.sqrt(2) + extent, abs=1e-6)
    assert measure.perpendicular_mm == pytest.approx(12 * np.sqrt(2) + extent, abs=1e-6)
    assert sorted(measure.perpendicular_ends) == [(4.0, 8.0), (16.0, 2.0)]


@pytest.mark.parametrize("angle", [0.4, 1.1])
def test_an_oblique_ellipse_on_anisotropic_voxels_keeps_its_axes_in_millimetres(angle):
    # semi-axes of 16 and 7 mm on 0.5 x 1.5 mm voxels: drawn in millimetres, then sampled on the voxel grid
    rows, cols = np.meshgrid(np.arange(80) * 0.5, np.arange(30) * 1.5, indexing="ij")
    u = (rows - 20) * np.cos(angle) + (cols - 22) * np.sin(angle)
    v = -(rows - 20) * np.sin(angle) + (cols - 22) * np.cos(angle)
    mask = np.zeros((3, 80, 30), dtype=bool)
    mask[1] = (u / 16) ** 2 + (v / 7) ** 2 <= 1
    measure = rano_diameters(mask, spacing=(2.0, 0.5, 1.5))
    assert measure.longest_mm == pytest.approx(32, abs=1.5)
    assert measure.perpendicular_mm == pytest.approx(14, abs=1.5)
