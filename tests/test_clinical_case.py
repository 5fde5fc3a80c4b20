"""The raw clinical case TCGA-FG-6692 (native space, skull on, three grids): registration, brain extraction,
labels mapped back, DICOM, and the whole ``predict --prepare`` run (marked slow).

The reference brain mask and labels lie on the SRI24 atlas grid; the README's NiftyReg affine ``M`` (atlas ->
native T1ce, RAS mm) brings them to any grid of the case. They come from an automatic pipeline, not an expert.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from napari_brainseg.cases.geometry import sample_nearest
from napari_brainseg.cases.prepare import (
    Source,
    labels_to_native,
    parse_inputs,
    prepare_study,
    read_sequence,
    sitk_array,
)
from napari_brainseg.labels import mask_dice, regions_from_labels

sitk = pytest.importorskip("SimpleITK")
pytest.importorskip("deepbet")

CLINICAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clinical" / "TCGA-FG-6692"
SEQUENCES = {"t1ce": "t1c", "t1": "t1", "t2": "t2", "flair": "flair"}


@pytest.fixture(scope="module")
def raw_dir() -> Path:
    if not (CLINICAL_DIR / "t1c.nii.gz").is_file():
        pytest.skip(f"raw clinical case not found at {CLINICAL_DIR}")
    return CLINICAL_DIR


def raw_inputs(raw_dir: Path) -> list[str]:
    return [f"{name}={raw_dir / file}.nii.gz" for name, file in SEQUENCES.items()]


@pytest.fixture(scope="module")
def prepared(raw_dir, tmp_path_factory):
    return prepare_study(parse_inputs(raw_inputs(raw_dir)), tmp_path_factory.mktemp("clinical") / "TCGA-FG-6692")


def atlas_to(grid: nib.Nifti1Image, atlas_file: Path, grid_to_native_t1ce: np.ndarray, raw_dir: Path) -> np.ndarray:
    """A reference volume on the atlas grid, sampled (nearest) on ``grid`` through the README's affine."""
    atlas_to_t1ce = np.loadtxt(raw_dir / "affine_ref-atlas_flo-t1c.txt")
    return sample_nearest(nib.load(atlas_file), grid.shape, grid.affine,
                          np.linalg.inv(atlas_to_t1ce) @ grid_to_native_t1ce).astype(np.uint8)


def case_to_native(record) -> np.ndarray:
    return np.linalg.inv(np.array(record["native_to_case_ras"]))


def test_co_registration_recovers_a_known_rigid_transform_within_1_mm(raw_dir):
    from napari_brainseg.cases.geometry import world_matrix
    from napari_brainseg.cases.registration import register, resample

    t1ce = sitk.ReadImage(str(raw_dir / "t1c.nii.gz"), sitk.sitkFloat32)
    known = sitk.Euler3DTransform()
    known.SetCenter(t1ce.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in t1ce.GetSize()]))
    known.SetRotation(np.radians(2.0), np.radians(-1.5), np.radians(8.0))
    known.SetTranslation((6.0, -4.0, 3.0))
    moved = resample(t1ce, t1ce, known)  # moved(p) = t1ce(known(p)), on the T1ce's own grid

    found, _ = register(t1ce, moved, "rigid")

    truth = np.linalg.inv(world_matrix(known))  # a T1ce point -> the same anatomy in `moved`
    head = np.argwhere(sitk.GetArrayFromImage(t1ce).transpose(2, 1, 0) > 100)[::20]
    points = nib.affines.apply_affine(nib.load(raw_dir / "t1c.nii.gz").affine, head)
    error = np.linalg.norm(nib.affines.apply_affine(world_matrix(found), points)
                           - nib.affines.apply_affine(truth, points), axis=1)
    assert error.mean() < 1.0


def test_brain_extraction_agrees_with_the_reference_mask(prepared, raw_dir):
    mask = nib.load(prepared.brain_mask)
    reference = atlas_to(mask, raw_dir / "reference_brain_mask_atlas.nii.gz", case_to_native(prepared.record), raw_dir)
    assert mask_dice(np.asarray(mask.dataobj) > 0, reference > 0) >= 0.95


def test_the_prepared_case_is_1_mm_skull_stripped_and_recorded(prepared):
    t1ce = nib.load(prepared.files.images["t1ce"])
    assert t1ce.header.get_zooms() == pytest.approx((1.0, 1.0, 1.0))
    mask = np.asarray(nib.load(prepared.brain_mask).dataobj) > 0
    assert not np.asarray(t1ce.dataobj)[~mask].any()
    steps = [s["step"] for s in prepared.record["steps"]]
    assert steps == ["co-registration", "brain extraction", "resampling"]


def test_labels_mapped_back_land_on_the_native_grid_with_the_native_affine(prepared, raw_dir):
    on_case = nib.load(prepared.files.images["t1ce"])
    labels_file = raw_dir / "reference_labels_atlas.nii.gz"
    case_labels = atlas_to(on_case, labels_file, case_to_native(prepared.record), raw_dir)

    native = labels_to_native(nib.Nifti1Image(case_labels, on_case.affine), prepared.record)

    t1c = nib.load(raw_dir / "t1c.nii.gz")
    assert native.shape == t1c.shape
    assert np.allclose(native.affine, t1c.affine, atol=1e-4)
    direct = atlas_to(t1c, labels_file, np.eye(4), raw_dir)  # the README's own mapping to the native T1ce
    assert mask_dice(regions_from_labels(np.asarray(native.dataobj))[0], regions_from_labels(direct)[0]) > 0.9


def test_a_dicom_series_written_from_the_raw_t1ce_reads_back_through_the_same_path(raw_dir, tmp_path):
    from test_prepare import write_dicom_series

    folder = write_dicom_series(sitk.ReadImage(str(raw_dir / "t1c.nii.gz")), tmp_path / "t1c", "MRHR T1 AX POST GAD")
    from_dicom, record = read_sequence("t1ce", Source(folder))
    from_nifti, _ = read_sequence("t1ce", Source(raw_dir / "t1c.nii.gz"))
    assert record["kind"] == "dicom" and record["slices"] == 26
    # DICOM stacks slices along row x column (right-handed); this NIfTI stores them the other way round.
    dicom = nib.as_closest_canonical(nib.Nifti1Image(sitk_array(from_dicom), np.array(record["affine_ras"])))
    nifti = nib.as_closest_canonical(nib.Nifti1Image(sitk_array(from_nifti), nib.load(raw_dir / "t1c.nii.gz").affine))
    assert np.allclose(dicom.affine, nifti.affine, atol=1e-3)
    assert np.array_equal(np.asarray(dicom.dataobj), np.asarray(nifti.dataobj))


@pytest.mark.slow
def test_predict_prepare_finds_the_right_frontal_lesion(raw_dir, tmp_path):
    from napari_brainseg.__main__ import main

    assert main(["predict", "--prepare", *raw_inputs(raw_dir), "--output-dir", str(tmp_path)]) == 0

    folder = tmp_path / "TCGA-FG-6692"
    native = nib.load(folder / "TCGA-FG-6692_seg_native.nii.gz")
    t1c = nib.load(raw_dir / "t1c.nii.gz")
    assert native.shape == t1c.shape and np.allclose(native.affine, t1c.affine, atol=1e-4)
    reference = atlas_to(t1c, raw_dir / "reference_labels_atlas.nii.gz", np.eye(4), raw_dir) > 0
    found = np.asarray(native.dataobj) > 0
    assert mask_dice(found, reference) >= 0.5
    components, _ = ndimage.label(found)
    largest = components == np.argmax(np.bincount(components[components > 0]))
    assert np.count_nonzero(largest & reference) > 0.5 * np.count_nonzero(largest)
    centre = nib.affines.apply_affine(t1c.affine, np.argwhere(largest).mean(axis=0))
    head = nib.affines.apply_affine(t1c.affine, (np.array(t1c.shape) - 1) / 2)
    assert centre[0] > head[0] and centre[1] > head[1]  # RAS: right and anterior of the field of view's centre
