"""Finding BraTS cases on disk, loading them in display orientation, and refusing unusable files."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_brainseg.io import (
    MODALITIES,
    BratsInputError,
    CaseFiles,
    case_files_from_paths,
    find_case,
    is_case_folder,
    load_case,
    load_seg,
    load_volume,
    parse_brats_name,
    read_nifti,
)

SOURCE_SHAPE = (40, 48, 32)  # x, y, z
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_case(folder: Path, case_id: str, data: np.ndarray, affine: np.ndarray) -> CaseFiles:
    """Four modalities holding the same voxels, for geometry tests."""
    folder.mkdir(parents=True, exist_ok=True)
    for modality in MODALITIES:
        nib.save(nib.Nifti1Image(data, affine), str(folder / f"{case_id}_{modality}.nii.gz"))
    return find_case(folder)


# --- finding a case ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("naming", ["brats2018", "brats2023"])
def test_find_case_recognises_both_namings(make_case, naming):
    written = make_case(case_id="BraTS-GLI-00001-000", naming=naming)
    found = find_case(written.folder)
    assert found.case_id == "BraTS-GLI-00001-000"
    assert found.naming == naming
    assert found.images == written.images
    assert found.seg == written.seg


@pytest.mark.parametrize("naming", ["brats2018", "brats2023"])
def test_opening_one_file_finds_the_whole_case(make_case, naming):
    written = make_case(naming=naming)
    assert find_case(written.images["t1ce"]) == find_case(written.folder)


def test_opening_one_file_ignores_other_cases_in_the_same_folder(make_case):
    first = make_case(case_id="CaseA", folder="shared")
    make_case(case_id="CaseB", folder="shared")
    assert find_case(first.images["flair"]).case_id == "CaseA"
    with pytest.raises(BratsInputError, match="several cases"):
        find_case(first.folder)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Brats18_2013_11_1_t1.nii.gz", ("Brats18_2013_11_1", "t1", "brats2018")),
        ("Brats18_2013_11_1_t1ce.nii.gz", ("Brats18_2013_11_1", "t1ce", "brats2018")),
        ("Brats18_2013_11_1_seg.nii", ("Brats18_2013_11_1", "seg", "brats2018")),
        ("BraTS-GLI-00001-000-t1n.nii.gz", ("BraTS-GLI-00001-000", "t1", "brats2023")),
        ("BraTS-GLI-00001-000-t1c.nii.gz", ("BraTS-GLI-00001-000", "t1ce", "brats2023")),
        ("BraTS-GLI-00001-000-t2f.nii.gz", ("BraTS-GLI-00001-000", "flair", "brats2023")),
        ("notes_t1.txt", None),
        ("_t1.nii.gz", None),
    ],
)
def test_brats_names_tell_t1_from_t1ce(name, expected):
    assert parse_brats_name(name) == expected


def test_t1_and_t1ce_files_load_into_their_own_channels(make_case):
    files = make_case()
    case = load_case(files)
    t1, _ = load_volume(files.images["t1"])
    t1ce, _ = load_volume(files.images["t1ce"])
    assert np.array_equal(case.image[MODALITIES.index("t1")], t1)
    assert np.array_equal(case.image[MODALITIES.index("t1ce")], t1ce)
    assert not np.array_equal(t1, t1ce)


def test_is_case_folder_needs_a_brats_named_file(tmp_path, synthetic_case_dir):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    assert is_case_folder(synthetic_case_dir)
    assert not is_case_folder(tmp_path / "empty")


def test_files_of_four_patients_are_refused_naming_the_odd_ones(make_case):
    cases = [make_case(case_id=f"Patient_{i}", with_seg=False) for i in range(4)]
    picked = {m: cases[i].images[m] for i, m in enumerate(MODALITIES)}
    with pytest.raises(BratsInputError, match="not all from one case") as err:
        case_files_from_paths(picked)
    for i, m in enumerate(MODALITIES[1:], start=1):
        assert f"{cases[i].images[m].name} (case Patient_{i})" in str(err.value)
    assert "not from case Patient_0" in str(err.value)


def test_one_file_of_another_patient_is_named(make_case):
    mine, other = make_case(case_id="Mine"), make_case(case_id="Other")
    picked = {**mine.images, "t2": other.images["t2"]}
    with pytest.raises(BratsInputError, match=rf"{other.images['t2'].name} \(case Other\) is not from case Mine"):
        case_files_from_paths(picked, mine.seg)
    with pytest.raises(BratsInputError, match=rf"{other.seg.name} \(case Other\)"):
        case_files_from_paths(mine.images, other.seg)


def test_case_files_from_paths_names_the_missing_modality(make_case):
    files = make_case()
    with pytest.raises(BratsInputError, match="Missing modality: T1ce"):
        case_files_from_paths({m: p for m, p in files.images.items() if m != "t1ce"})


# --- geometry ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("naming", ["brats2018", "brats2023"])
def test_load_case_gives_a_float_stack_in_display_order_with_labels(make_case, naming):
    case = load_case(make_case(naming=naming))
    x, y, z = SOURCE_SHAPE
    assert case.image.shape == (4, z, y, x)
    assert case.image.dtype == np.float32
    assert case.seg.dtype == np.uint8 and case.seg.shape == (z, y, x)
    assert set(np.unique(case.seg).tolist()) == {0, 1, 2, 4}
    assert case.geometry.shape == SOURCE_SHAPE
    assert case.geometry.display_shape == (z, y, x)


@pytest.mark.parametrize("orientation", ["LPS", "RAS"])
def test_display_axes_run_inferior_to_superior_anterior_to_posterior_right_to_left(tmp_path, orientation):
    x, y, z = np.meshgrid(*(np.arange(n) for n in SOURCE_SHAPE), indexing="ij")
    nx, ny, _ = SOURCE_SHAPE
    if orientation == "LPS":
        affine, left, posterior = LPS, x, y
    else:
        affine, left, posterior = np.eye(4), nx - 1 - x, ny - 1 - y
    superior = z
    for name, world in [("S", superior), ("P", posterior), ("L", left)]:
        files = write_case(tmp_path / name, "Axes", (world + 1).astype(np.int16), affine)
        image = load_case(files).image[0]
        axis = "SPL".index(name)
        steps = np.diff(image, axis=axis)
        assert np.all(steps == 1), f"display axis {axis} should run towards {name}"


@pytest.mark.parametrize("orientation", ["RAS", "LAS", "SPL", "PIR"])
def test_every_voxel_order_of_the_same_anatomy_gives_the_same_display_arrays(make_case, orientation):
    reference = load_case(make_case(orientation="LPS"))
    other = load_case(make_case(orientation=orientation))
    assert np.array_equal(other.image, reference.image)
    assert np.array_equal(other.seg, reference.seg)
    assert other.geometry.display_shape == reference.geometry.display_shape


@pytest.mark.parametrize("orientation", ["LPS", "RAS", "SPL"])
def test_spacing_is_reported_along_the_display_axes(make_case, orientation):
    case = load_case(make_case(orientation=orientation, spacing=(0.9, 0.8, 2.5)))
    assert case.spacing == pytest.approx((2.5, 0.8, 0.9))


def test_to_source_undoes_to_display(make_case):
    files = make_case(orientation="PIR")
    source = np.asarray(nib.load(str(files.images["t2"])).dataobj)
    data, geometry = load_volume(files.images["t2"])
    assert np.array_equal(geometry.to_source(data), source)
    assert np.array_equal(geometry.to_display(source), data)


def test_a_trailing_singleton_fourth_axis_is_accepted(make_case, replace_volume):
    files = make_case()
    data = np.asarray(nib.load(str(files.images["t1"])).dataobj)
    replace_volume(files.images["t1"], data[..., None])
    assert load_case(files).image.shape[1:] == SOURCE_SHAPE[::-1]


def test_labels_written_as_2023_are_mapped_to_the_2018_convention(make_case):
    files = make_case(naming="brats2023")
    assert 3 in np.unique(np.asarray(nib.load(str(files.seg)).dataobj))
    seg = load_case(files).seg
    assert set(np.unique(seg).tolist()) == {0, 1, 2, 4}


# --- unusable input ---------------------------------------------------------------------------------------------


def test_a_missing_modality_is_named(make_case):
    files = make_case()
    files.images["t2"].unlink()
    with pytest.raises(BratsInputError, match="Missing modality: T2"):
        find_case(files.folder)


def test_a_folder_without_brats_files_is_refused(tmp_path):
    with pytest.raises(BratsInputError, match="No BraTS files"):
        find_case(tmp_path)


def test_a_path_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(BratsInputError, match="does not exist"):
        find_case(tmp_path / "nowhere")


def test_modalities_of_different_shapes_are_refused(make_case, replace_volume):
    files = make_case()
    replace_volume(files.images["t1"], np.ones((40, 48, 30), dtype=np.int16))
    with pytest.raises(BratsInputError, match=r"_t1\.nii\.gz has shape .*co-registered"):
        load_case(files)


def test_modalities_on_different_grids_are_refused(make_case, replace_volume):
    files = make_case()
    data = np.asarray(nib.load(str(files.images["t1ce"])).dataobj)
    shifted = nib.load(str(files.images["t1ce"])).affine.copy()
    shifted[0, 3] += 2.0
    replace_volume(files.images["t1ce"], data, shifted)
    with pytest.raises(BratsInputError, match="affine that differs .* by up to 2 mm"):
        load_case(files)


def test_a_4d_file_is_refused(make_case, replace_volume):
    files = make_case()
    replace_volume(files.images["flair"], np.ones((*SOURCE_SHAPE, 2), dtype=np.int16))
    with pytest.raises(BratsInputError, match="4-D"):
        load_case(files)


def test_a_2d_file_is_refused(make_case, replace_volume):
    files = make_case()
    replace_volume(files.images["t2"], np.ones(SOURCE_SHAPE[:2], dtype=np.int16))
    with pytest.raises(BratsInputError, match="2-D"):
        load_case(files)


def test_a_truncated_file_is_reported_as_corrupt(make_case):
    files = make_case()
    path = files.images["t1"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BratsInputError, match=r"_t1\.nii\.gz is (corrupt or truncated|not a readable NIfTI)"):
        load_case(files)


def test_a_file_with_a_nifti_name_but_other_contents_is_refused(make_case):
    files = make_case()
    files.images["flair"].write_text("this is not an image")
    with pytest.raises(BratsInputError, match="not a readable NIfTI"):
        load_case(files)


def test_a_file_that_is_not_nifti_is_refused(tmp_path):
    other = tmp_path / "scan.png"
    other.write_bytes(b"\x89PNG\r\n")
    with pytest.raises(BratsInputError, match="not a NIfTI file"):
        read_nifti(other)
    with pytest.raises(BratsInputError, match="not named like a BraTS file"):
        find_case(other)


def test_nans_are_refused(make_case, replace_volume):
    files = make_case()
    data = np.asarray(nib.load(str(files.images["t1ce"])).dataobj).astype(np.float32)
    data[5, 5, 5] = np.nan
    replace_volume(files.images["t1ce"], data)
    with pytest.raises(BratsInputError, match="1 NaN"):
        load_case(files)


def test_an_all_zero_volume_is_refused(make_case, replace_volume):
    files = make_case()
    replace_volume(files.images["t2"], np.zeros(SOURCE_SHAPE, dtype=np.int16))
    with pytest.raises(BratsInputError, match="all zeros"):
        load_case(files)


def test_labels_outside_the_brats_set_are_refused(make_case, replace_volume):
    files = make_case()
    seg = np.asarray(nib.load(str(files.seg)).dataobj).copy()
    seg[0, 0, 0] = 5
    replace_volume(files.seg, seg)
    with pytest.raises(BratsInputError, match=r"values \[5\]"):
        load_case(files)


def test_labels_on_another_grid_are_refused(make_case, replace_volume):
    files = make_case()
    case = load_case(files, with_seg=False)
    replace_volume(files.seg, np.zeros((40, 48, 31), dtype=np.uint8))
    with pytest.raises(BratsInputError, match="another case"):
        load_seg(files.seg, case.geometry)


def test_load_case_can_skip_the_labels(make_case):
    assert load_case(make_case(), with_seg=False).seg is None
