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
