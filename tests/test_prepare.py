"""Preparing a scanner study: inputs named any way or DICOM series, refused inputs, the case folder and its sidecar,
labels mapped back to the native T1ce grid. Small synthetic studies; the raw clinical case is in test_clinical_case.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_brainseg.cases import prepare
from napari_brainseg.cases.errors import CLINICAL_INSTALL, ClinicalExtraMissing, StudyInputError
from napari_brainseg.cases.prepare import Source, labels_to_native, parse_inputs, prepare_study, read_record
from napari_brainseg.io import MODALITIES, load_case
from napari_brainseg.jobs import Cancelled
from napari_brainseg.synthetic import synthetic_case

sitk = pytest.importorskip("SimpleITK")

SHAPE = (40, 48, 32)


def lps_affine(spacing=(1.0, 1.0, 1.0), origin=(20.0, 24.0, -16.0)) -> np.ndarray:
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = origin
    return affine


def write_dicom_series(
    image: sitk.Image, folder: Path, description: str = "T1 AX POST GAD", patient_id: str = "P01",
    body_part: str = "BRAIN", image_type: str = "ORIGINAL\\PRIMARY\\M", uid: str | None = None,
) -> Path:
    """Write a 3-D SimpleITK image as an MR DICOM series, one file a slice, as a scanner would."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.Cast(image, sitk.sitkInt16)
    direction = image.GetDirection()
    uid = uid or f"1.2.826.0.1.3680043.2.1125.{abs(hash((description, patient_id, str(folder)))) % 10**12}"
    tags = [
        ("0008|0060", "MR"), ("0008|103e", description), ("0010|0020", patient_id), ("0018|0015", body_part),
        ("0008|0008", image_type), ("0020|000e", uid), ("0020|000d", uid + ".1"),
        ("0020|0037", "\\".join(f"{v:.6f}" for v in (*direction[0:7:3], *direction[1:8:3]))),
    ]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        for tag, value in tags:
            plane.SetMetaData(tag, value)
        plane.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))))
        plane.SetMetaData("0020|0013", str(k + 1))
        plane.SetMetaData("0008|0018", f"{uid}.{k + 1}")
        plane.SetMetaData("0018|0050", f"{image.GetSpacing()[2]:.6f}")
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(plane)
    return folder


@pytest.fixture
def study(tmp_path: Path) -> dict[str, Path]:
    """A synthetic skull-stripped study: T1ce at 1 mm; T1, T2, FLAIR with 2 mm slices and their own names."""
    images, seg = synthetic_case(SHAPE, seed=3)
    folder = tmp_path / "scanner"
    folder.mkdir()
    paths = {}
    for modality, name in zip(MODALITIES, ("ax_flair_ir", "T1_SE", "t1_post_gad", "TSE_T2")):
        data, affine = images[modality], lps_affine()
        if modality != "t1ce":
            data, affine = data[:, :, ::2], lps_affine((1.0, 1.0, 2.0))
        paths[modality] = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), paths[modality])
    nib.save(nib.Nifti1Image(seg, lps_affine()), folder / "truth.nii.gz")
    return paths


def specs(paths: dict[str, Path]) -> list[str]:
    return [f"{m}={p}" for m, p in paths.items()]


def test_inputs_are_named_by_sequence_in_either_brats_spelling():
    inputs = parse_inputs(["t1c=a.nii.gz", "T1N=b.nii", "t2w=scans/#3", "flair=d.nii.gz"])
    assert inputs["t1ce"] == Source(Path("a.nii.gz"))
    assert inputs["t1"].path == Path("b.nii")
    assert inputs["t2"] == Source(Path("scans/"), "3")


@pytest.mark.parametrize("spec", ["scan.nii.gz", "pd=scan.nii.gz", "t1ce="])
def test_an_input_without_a_sequence_name_is_refused(spec):
    with pytest.raises(StudyInputError, match="NAME=PATH"):
        parse_inputs([spec])


def test_a_sequence_given_twice_is_refused():
    with pytest.raises(StudyInputError, match="given twice"):
        parse_inputs(["t1ce=a.nii.gz", "t1c=b.nii.gz"])


def test_a_missing_sequence_is_named_and_nothing_is_written(study, tmp_path):
    del study["flair"]
    with pytest.raises(StudyInputError, match="Missing sequence: FLAIR"):
        prepare_study(parse_inputs(specs(study)), tmp_path / "case", skull_stripped=True)
    assert not (tmp_path / "case").exists()


def test_a_prepared_study_is_a_brats_case_at_1_mm_with_its_sidecar(study, tmp_path):
    steps = []
    case = prepare_study(parse_inputs(specs(study)), tmp_path / "P01", skull_stripped=True,
                         progress=steps.append)
    loaded = load_case(case.folder)
    assert loaded.case_id == "P01"
    assert loaded.image.shape == (4, 32, 48, 40)
    assert loaded.spacing == pytest.approx((1.0, 1.0, 1.0))
    assert [s.done for s in steps] == list(range(1, 9)) and {s.total for s in steps} == {8}
    assert steps[-1].note.startswith("writing ")
    record = read_record(case.folder)
    assert record == json.loads((tmp_path / "P01" / "P01_prepare.json").read_text())
    assert [s["step"] for s in record["steps"]] == ["co-registration", "resampling"]
    registered = record["steps"][0]["results"]
    assert set(registered) == {"flair", "t1", "t2"}
    assert all(len(r["world_matrix_ras"]) == 4 and r["sitk_class"] == "Euler3DTransform" for r in registered.values())
    assert record["inputs"]["t1ce"]["path"] == str(study["t1ce"])
    assert sorted(p.name for p in case.folder.iterdir()) == sorted(
        ["P01_flair.nii.gz", "P01_t1.nii.gz", "P01_t1ce.nii.gz", "P01_t2.nii.gz", "P01_t1ce_native.nii.gz",
         "P01_prepare.json"])


def test_labels_of_a_prepared_case_map_back_onto_the_native_t1ce_grid(study, tmp_path):
    case = prepare_study(parse_inputs(specs(study)), tmp_path / "P01", skull_stripped=True)
    truth = nib.load(study["t1ce"].parent / "truth.nii.gz")
    on_case = nib.load(case.files.images["t1ce"])
    native = labels_to_native(nib.Nifti1Image(np.asarray(truth.dataobj), on_case.affine), case.record)
    t1ce = nib.load(study["t1ce"])
    assert native.shape == t1ce.shape
    assert np.allclose(native.affine, t1ce.affine, atol=1e-4)
    assert native.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(native.dataobj), np.asarray(truth.dataobj))


def test_labels_on_another_grid_are_refused(study, tmp_path):
    case = prepare_study(parse_inputs(specs(study)), tmp_path / "P01", skull_stripped=True)
    with pytest.raises(StudyInputError, match="not on the prepared case's grid"):
        labels_to_native(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), case.record)


def test_a_non_empty_output_folder_is_not_replaced_without_overwrite(study, tmp_path):
    (tmp_path / "P01").mkdir()
    (tmp_path / "P01" / "notes.txt").write_text("mine")
    with pytest.raises(StudyInputError, match="not empty"):
        prepare_study(parse_inputs(specs(study)), tmp_path / "P01", skull_stripped=True)
    assert (tmp_path / "P01" / "notes.txt").read_text() == "mine"


def test_cancelling_stops_before_anything_is_written(study, tmp_path):
    with pytest.raises(Cancelled):
        prepare_study(parse_inputs(specs(study)), tmp_path / "P01", skull_stripped=True, should_stop=lambda: True)
    assert list(tmp_path.iterdir()) == [tmp_path / "scanner"]


def test_without_simpleitk_the_message_names_the_install_command(study, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "SimpleITK", None)
    with pytest.raises(ClinicalExtraMissing, match=CLINICAL_INSTALL.replace("[", r"\[").replace("]", r"\]")):
        prepare_study(parse_inputs(specs(study)), tmp_path / "P01", skull_stripped=True)
    assert not (tmp_path / "P01").exists()


def test_without_the_brain_extractor_the_message_names_the_install_command(study, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "deepbet", None)
    with pytest.raises(ClinicalExtraMissing, match=r"napari-brainseg\[clinical\]"):
        prepare_study(parse_inputs(specs(study)), tmp_path / "P01")
    assert not (tmp_path / "P01").exists()


# --- DICOM ---------------------------------------------------------------------------------------------------


def nifti_as_sitk(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def test_a_dicom_series_reads_back_like_the_nifti_it_was_written_from(study, tmp_path):
    series = write_dicom_series(nifti_as_sitk(study["t2"]), tmp_path / "dicom" / "t2")
    from_dicom, record = prepare.read_sequence("t2", Source(series))
    from_nifti, _ = prepare.read_sequence("t2", Source(study["t2"]))
    assert record["kind"] == "dicom" and record["description"] == "T1 AX POST GAD"
    assert from_dicom.GetSize() == from_nifti.GetSize()
    assert np.allclose(from_dicom.GetSpacing(), from_nifti.GetSpacing(), atol=1e-4)
    assert np.allclose(from_dicom.GetOrigin(), from_nifti.GetOrigin(), atol=1e-3)
    assert np.allclose(from_dicom.GetDirection(), from_nifti.GetDirection(), atol=1e-5)
    assert np.array_equal(sitk.GetArrayFromImage(from_dicom), sitk.GetArrayFromImage(from_nifti))


def test_a_study_mixing_dicom_and_nifti_prepares(study, tmp_path):
    dicom_root = tmp_path / "dicom"
    write_dicom_series(nifti_as_sitk(study["flair"]), dicom_root / "s5", description="AX FLAIR")
    write_dicom_series(nifti_as_sitk(study["t2"]), dicom_root / "s2", description="AX T2 TSE")
    inputs = parse_inputs([f"t1ce={study['t1ce']}", f"t1={study['t1']}", f"t2={dicom_root}#1", f"flair={dicom_root}#2"])
    case = prepare_study(inputs, tmp_path / "P01", skull_stripped=True)
    assert case.record["inputs"]["t2"]["description"] == "AX T2 TSE"
    assert case.record["inputs"]["flair"]["description"] == "AX FLAIR"


def test_a_folder_of_several_series_lists_them_for_the_caller_to_pick(study, tmp_path):
    dicom_root = tmp_path / "dicom"
    write_dicom_series(nifti_as_sitk(study["flair"]), dicom_root / "a", description="AX FLAIR")
    write_dicom_series(nifti_as_sitk(study["t2"]), dicom_root / "b", description="AX T2 TSE")
    with pytest.raises(StudyInputError, match=r"holds 2 DICOM series(.|\n)*#1: 'AX FLAIR'(.|\n)*#2: 'AX T2 TSE'"):
        prepare.read_sequence("t2", Source(dicom_root))
    with pytest.raises(StudyInputError, match="has no series '7'"):
        prepare.read_sequence("t2", Source(dicom_root, "7"))


def test_a_folder_without_dicom_is_refused_and_nothing_is_written(study, tmp_path):
    empty = tmp_path / "not_dicom"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    inputs = parse_inputs([*specs({m: p for m, p in study.items() if m != "t2"}), f"t2={empty}"])
    with pytest.raises(StudyInputError, match="No DICOM series found"):
        prepare_study(inputs, tmp_path / "P01", skull_stripped=True)
    assert not (tmp_path / "P01").exists()


def test_a_series_of_one_slice_is_refused(study, tmp_path):
    one = write_dicom_series(nifti_as_sitk(study["t2"])[:, :, 5:6], tmp_path / "one", description="AX T2")
    with pytest.raises(StudyInputError, match="1 slice"):
        prepare.read_sequence("t2", Source(one))


@pytest.mark.parametrize(
    ("tags", "why"),
    [
        ({"description": "3-plane localizer"}, "localizer"),
        ({"description": "AX T2", "image_type": "ORIGINAL\\PRIMARY\\LOCALIZER"}, "localizer"),
        ({"description": "AX T2", "body_part": "CHEST"}, "body part is CHEST"),
    ],
)
def test_a_localizer_or_non_brain_series_is_refused(study, tmp_path, tags, why):
    folder = write_dicom_series(nifti_as_sitk(study["t2"]), tmp_path / "series", **tags)
    with pytest.raises(StudyInputError, match=why):
        prepare.read_sequence("t2", Source(folder))


def test_series_of_two_patients_are_refused_and_nothing_is_written(study, tmp_path):
    t2 = write_dicom_series(nifti_as_sitk(study["t2"]), tmp_path / "t2", patient_id="P01")
    flair = write_dicom_series(nifti_as_sitk(study["flair"]), tmp_path / "flair", patient_id="P02")
    inputs = parse_inputs([f"t1ce={study['t1ce']}", f"t1={study['t1']}", f"t2={t2}", f"flair={flair}"])
    with pytest.raises(StudyInputError, match="different patients"):
        prepare_study(inputs, tmp_path / "P01", skull_stripped=True)
    assert not (tmp_path / "P01").exists()


# --- command line --------------------------------------------------------------------------------------------


def test_the_prepare_command_writes_a_case_folder(study, tmp_path, capsys):
    from napari_brainseg.__main__ import main

    assert main(["prepare", *specs(study), "--out", str(tmp_path / "P01"), "--skull-stripped"]) == 0
    assert load_case(tmp_path / "P01").case_id == "P01"
    assert "[8/8] writing" in capsys.readouterr().err


def test_the_prepare_command_lists_the_series_of_a_dicom_folder(study, tmp_path, capsys):
    from napari_brainseg.__main__ import main

    write_dicom_series(nifti_as_sitk(study["flair"]), tmp_path / "exam" / "5", description="AX FLAIR")
    write_dicom_series(nifti_as_sitk(study["t2"]), tmp_path / "exam" / "2", description="AX T2 TSE")
    assert main(["prepare", str(tmp_path / "exam")]) == 0
    listing = capsys.readouterr().out
    assert "#1: 'AX T2 TSE'" in listing and "#2: 'AX FLAIR'" in listing


def test_predict_prepare_needs_an_output_folder(study, tmp_path, capsys):
    from napari_brainseg.__main__ import main

    assert main(["predict", "--prepare", *specs(study), "--output", str(tmp_path / "x.nii.gz")]) == 1
    assert "--output-dir" in capsys.readouterr().err
