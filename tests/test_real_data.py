"""One real BraTS 2018 case: it loads in display order, and its expert labels survive an export unchanged."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_brainseg.export import export_correction
from napari_brainseg.io import LoadedCase, load_case


@pytest.fixture(scope="module")
def real_case(real_case_dir) -> LoadedCase:
    return load_case(real_case_dir)


def test_a_real_case_loads_as_155_slices_of_240_by_240(real_case):
    assert real_case.image.shape == (4, 155, 240, 240)
    assert real_case.image.dtype == np.float32
    assert real_case.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert real_case.files.naming == "brats2018"


def test_the_expert_labels_of_a_real_case_are_brats_labels(real_case):
    assert real_case.seg.shape == (155, 240, 240)
    assert set(np.unique(real_case.seg).tolist()) <= {0, 1, 2, 4}
    assert real_case.seg.any()


def test_exporting_the_expert_labels_reproduces_the_original_file(real_case, tmp_path):
    result = export_correction(tmp_path, real_case.files, real_case.geometry, real_case.seg)
    written, original = nib.load(str(result.seg_path)), nib.load(str(real_case.files.seg))
    assert np.array_equal(np.asarray(written.dataobj), np.asarray(original.dataobj))
    assert np.array_equal(written.affine, original.affine)
    flair = nib.load(str(real_case.files.images["flair"]))
    assert np.array_equal(written.get_qform(), flair.get_qform())
    assert np.array_equal(written.get_sform(), flair.get_sform())
    assert written.header["qform_code"] == flair.header["qform_code"]
    assert written.header["sform_code"] == flair.header["sform_code"]
    assert np.array_equal(load_case(result.folder).image, real_case.image)
