"""The corrections dataset: exact overlay on the source, versions never overwritten, atomic writes, provenance."""

from __future__ import annotations

import datetime as dt
import errno
import importlib.metadata
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_brainseg import export
from napari_brainseg.export import ExportError, ExportResult, export_correction
from napari_brainseg.io import MODALITIES, NAMINGS, LoadedCase, case_files_from_paths, load_case
from napari_brainseg.labels import ED, ET, NCR, region_volumes_ml
from napari_brainseg.training.data import discover_cases

CASE_ID = "Synthetic_001"


@pytest.fixture
def case(make_case) -> LoadedCase:
    return load_case(make_case(case_id=CASE_ID))


@pytest.fixture
def dataset(tmp_path) -> Path:
    return tmp_path / "corrections"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def corrected(seg: np.ndarray) -> np.ndarray:
    """The labels with a block of oedema painted in and all enhancing tumour erased."""
    out = seg.copy()
    out[:4, :4, :4] = ED
    out[out == ET] = 0
    return out


# --- overlay on the source --------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", ["LPS", "RAS", "PIR"])
def test_exported_labels_overlay_their_source_voxel_for_voxel(make_case, dataset, orientation):
    files = make_case(case_id=CASE_ID, orientation=orientation, spacing=(0.9, 1.1, 2.0))
    case = load_case(files)
    result = export_correction(dataset, case.files, case.geometry, case.seg)
    written, source_seg, flair = (nib.load(str(p)) for p in (result.seg_path, files.seg, files.images["flair"]))
    assert written.shape == flair.shape
    assert np.array_equal(np.asarray(written.dataobj), np.asarray(source_seg.dataobj))
    assert written.get_data_dtype() == np.uint8
    assert np.array_equal(written.affine, flair.affine)
    assert np.array_equal(written.get_sform(), flair.get_sform())
    codes = [(image.header["qform_code"], image.header["sform_code"]) for image in (written, flair)]
    assert codes == [(2, 1), (2, 1)], "the source's qform and sform codes (make_case writes BraTS's)"
    assert np.allclose(written.get_qform(), flair.affine)
    assert written.header.get_zooms() == flair.header.get_zooms()


def test_the_exported_case_loads_back_to_the_same_display_arrays(case, dataset):
    result = export_correction(dataset, case.files, case.geometry, corrected(case.seg))
    again = load_case(result.folder)
    assert again.case_id == CASE_ID
    assert np.array_equal(again.image, case.image)
    assert np.array_equal(again.seg, corrected(case.seg))
    assert np.array_equal(again.geometry.affine, case.geometry.affine)


def test_modalities_are_copied_byte_for_byte_under_2018_names(case, dataset):
    result = export_correction(dataset, case.files, case.geometry, case.seg)
    for modality in MODALITIES:
        copy = result.folder / f"{CASE_ID}_{modality}.nii.gz"
        assert copy.read_bytes() == case.files.images[modality].read_bytes()
    assert sorted(p.name for p in result.folder.iterdir()) == sorted(
        [*(f"{CASE_ID}_{m}.nii.gz" for m in MODALITIES), f"{CASE_ID}_seg.nii.gz", "provenance.json"]
    )


def test_a_2023_named_case_is_exported_with_2018_names_and_labels(make_case, dataset):
    case = load_case(make_case(case_id="BraTS-GLI-00001-000", naming="brats2023"))
    result = export_correction(dataset, case.files, case.geometry, case.seg)
    assert result.seg_path.name == "BraTS-GLI-00001-000_seg.nii.gz"
    for modality in MODALITIES:
        copy = result.folder / f"BraTS-GLI-00001-000_{modality}.nii.gz"
        assert copy.read_bytes() == case.files.images[modality].read_bytes()
    assert set(np.unique(np.asarray(nib.load(str(result.seg_path)).dataobj)).tolist()) == {0, 1, 2, 4}


def test_an_uncompressed_source_is_stored_compressed_with_identical_contents(case, dataset, tmp_path):
    plain = {}
    for modality in MODALITIES:
        plain[modality] = tmp_path / f"{CASE_ID}{NAMINGS['brats2018'][modality]}.nii"
        nib.save(nib.load(str(case.files.images[modality])), str(plain[modality]))
    files = case_files_from_paths(plain)
    result = export_correction(dataset, files, case.geometry, case.seg)
    copy = nib.load(str(result.folder / f"{CASE_ID}_t1ce.nii.gz"))
    source = nib.load(str(plain["t1ce"]))
    assert np.array_equal(np.asarray(copy.dataobj), np.asarray(source.dataobj))
    assert copy.header.binaryblock == source.header.binaryblock


def test_integer_labels_of_any_width_are_stored_as_uint8(case, dataset):
    result = export_correction(dataset, case.files, case.geometry, case.seg.astype(np.int32))
    assert nib.load(str(result.seg_path)).get_data_dtype() == np.uint8


# --- versions ---------------------------------------------------------------------------------------------------


def test_export_never_overwrites_an_earlier_version(case, dataset):
    first = export_correction(dataset, case.files, case.geometry, case.seg)
    before = snapshot(first.folder)
    second = export_correction(dataset, case.files, case.geometry, corrected(case.seg))
    assert (first.version, second.version) == (1, 2)
    assert first.folder == dataset / CASE_ID / "v001" and second.folder == dataset / CASE_ID / "v002"
    assert snapshot(first.folder) == before
    assert json.loads(second.sidecar_path.read_text())["version"] == 2
    assert np.array_equal(load_case(second.folder).seg, corrected(case.seg))


def test_a_new_version_follows_the_highest_even_with_gaps_and_training_takes_it(case, dataset):
    first = export_correction(dataset, case.files, case.geometry, case.seg)
    shutil.copytree(first.folder, dataset / CASE_ID / "v005")  # v002-v004 deleted by hand
    assert [f.folder.name for f in discover_cases([dataset])] == ["v005"], "the highest, not the first or last"
    newest = export_correction(dataset, case.files, case.geometry, corrected(case.seg))
    assert newest.version == 6 and newest.folder == dataset / CASE_ID / "v006"
    assert json.loads(newest.sidecar_path.read_text())["version"] == 6
    assert [f.folder.name for f in discover_cases([dataset])] == ["v006"]
    assert [f.folder.name for f in discover_cases([dataset], all_versions=True)] == ["v001", "v005", "v006"]


def test_version_numbers_past_999_still_count_up(case, dataset):
    export_correction(dataset, case.files, case.geometry, case.seg).folder.rename(dataset / CASE_ID / "v999")
    assert export_correction(dataset, case.files, case.geometry, case.seg).folder.name == "v1000"
    assert [f.folder.name for f in discover_cases([dataset])] == ["v1000"], "1000 is newer than 999"
    assert export_correction(dataset, case.files, case.geometry, case.seg).folder.name == "v1001"


def test_an_export_that_loses_the_race_for_a_version_number_takes_the_next(case, dataset, monkeypatch):
    first = export_correction(dataset, case.files, case.geometry, case.seg)
    before = snapshot(first.folder)
    monkeypatch.setattr(export, "existing_versions", lambda case_dir: [])  # as if v001 appeared meanwhile
    second = export_correction(dataset, case.files, case.geometry, corrected(case.seg))
    assert second.version == 2 and second.folder.name == "v002"
    assert json.loads(second.sidecar_path.read_text())["version"] == 2
    assert snapshot(first.folder) == before


def test_discover_cases_trains_on_the_newest_version_of_each_case(make_case, dataset):
    a = load_case(make_case(case_id="CaseA"))
    b = load_case(make_case(case_id="CaseB", seed=1))
    export_correction(dataset, a.files, a.geometry, a.seg)
    newest = export_correction(dataset, a.files, a.geometry, corrected(a.seg))
    export_correction(dataset, b.files, b.geometry, b.seg)
    found = discover_cases([dataset])
    assert [(f.case_id, f.folder.name) for f in found] == [("CaseA", "v002"), ("CaseB", "v001")]
    assert found[0].seg == newest.seg_path
    assert len(discover_cases([dataset], all_versions=True)) == 3


def test_discover_cases_ignores_an_export_still_in_progress(case, dataset):
    export_correction(dataset, case.files, case.geometry, case.seg)
    shutil.copytree(dataset / CASE_ID / "v001", dataset / CASE_ID / ".export-unfinished")
    assert [f.folder.name for f in discover_cases([dataset], all_versions=True)] == ["v001"]


# --- failures ---------------------------------------------------------------------------------------------------


def test_a_failure_while_writing_leaves_no_trace_and_earlier_versions_intact(case, dataset, monkeypatch):
    export_correction(dataset, case.files, case.geometry, case.seg)
    before = snapshot(dataset)

    def broken_save(*args, **kwargs):
        raise RuntimeError("simulated crash in the middle of the export")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(ExportError, match="simulated crash.*Nothing was written; earlier versions are intact"):
        export_correction(dataset, case.files, case.geometry, corrected(case.seg))
    assert snapshot(dataset) == before
    assert [p.name for p in (dataset / CASE_ID).iterdir()] == ["v001"]


def test_a_failed_first_export_leaves_no_case_folder(case, dataset, monkeypatch):
    dataset.mkdir()

    def broken_save(*args, **kwargs):
        raise OSError("simulated")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(ExportError):
        export_correction(dataset, case.files, case.geometry, case.seg)
    assert list(dataset.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "message"),
    [(errno.ENOSPC, "disk holding .* is full. Free some space"), (errno.EACCES, "no permission to write")],
)
def test_a_full_disk_or_a_refused_write_midway_is_explained_and_cleaned_up(case, dataset, monkeypatch, code, message):
    export_correction(dataset, case.files, case.geometry, case.seg)
    before = snapshot(dataset)
    real_copy, copies = shutil.copyfile, []

    def copy_then_fail(source, target, **kwargs):
        copies.append(target)
        if len(copies) == 3:
            raise OSError(code, os.strerror(code), str(target))
        return real_copy(source, target, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", copy_then_fail)
    with pytest.raises(ExportError, match=message):
        export_correction(dataset, case.files, case.geometry, corrected(case.seg))
    assert snapshot(dataset) == before
    assert [p.name for p in (dataset / CASE_ID).iterdir()] == ["v001"]


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS])
def test_a_read_only_dataset_folder_is_refused_with_advice(case, dataset, monkeypatch, code):
    """Simulated (root may write anywhere): making any folder inside the dataset is refused."""
    dataset.mkdir()
    real_mkdir = os.mkdir

    def refuse_inside_dataset(path, *args, **kwargs):
        if Path(path).parent == dataset or dataset in Path(path).parents:
            raise OSError(code, os.strerror(code), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refuse_inside_dataset)
    with pytest.raises(ExportError, match=f"no permission to write in {dataset / CASE_ID}. Choose another corrections folder"):
        export_correction(dataset, case.files, case.geometry, case.seg)
    assert list(dataset.iterdir()) == []


def test_a_dataset_path_that_is_a_file_is_refused(case, tmp_path):
    not_a_folder = tmp_path / "corrections"
    not_a_folder.write_text("a file")
    with pytest.raises(ExportError, match="Export failed"):
        export_correction(not_a_folder, case.files, case.geometry, case.seg)
    assert not_a_folder.read_text() == "a file"


def test_a_source_file_that_disappeared_is_named(case, dataset):
    case.files.images["t2"].unlink()
    with pytest.raises(ExportError, match=r"source file .*_t2\.nii\.gz is gone"):
        export_correction(dataset, case.files, case.geometry, case.seg)
    assert not (dataset / CASE_ID).exists()


def test_labels_of_the_wrong_shape_are_refused_before_anything_is_written(case, dataset):
    with pytest.raises(ExportError, match="belong to another case"):
        export_correction(dataset, case.files, case.geometry, case.seg[:-1])
    assert not dataset.exists()


def test_labels_outside_the_brats_set_are_refused_before_anything_is_written(case, dataset):
    labels = case.seg.copy()
    labels[0, 0, 0] = 3
    with pytest.raises(ExportError, match="BraTS 2023 code"):
        export_correction(dataset, case.files, case.geometry, labels)
    assert not dataset.exists()


def test_a_prediction_of_the_wrong_shape_is_refused(case, dataset):
    with pytest.raises(ExportError, match="model's prediction"):
        export_correction(dataset, case.files, case.geometry, case.seg, prediction=case.seg[:, :-1])
    assert not dataset.exists()


# --- provenance -------------------------------------------------------------------------------------------------


def test_the_sidecar_records_sources_model_volumes_and_corrections(case, dataset):
    prediction = case.seg
    labels = corrected(case.seg)
    result = export_correction(dataset, case.files, case.geometry, labels, prediction=prediction,
                               model_id="brainseg-unet3d", model_version="1.0.0")
    assert isinstance(result, ExportResult)
    sidecar = json.loads(result.sidecar_path.read_text())
    assert sidecar["case_id"] == CASE_ID and sidecar["version"] == 1
    assert sidecar["source"]["images"] == {m: str(case.files.images[m].resolve()) for m in MODALITIES}
    assert sidecar["source"]["seg"] == str(case.files.seg.resolve())
    assert sidecar["model"] == {"id": "brainseg-unet3d", "version": "1.0.0"}
    assert sidecar["plugin_version"] == importlib.metadata.version("napari-brainseg")
    exported = dt.datetime.fromisoformat(sidecar["exported_utc"])
    assert exported.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.timezone.utc) - exported) < dt.timedelta(minutes=5)
    assert sidecar["label_volumes_ml"] == pytest.approx(region_volumes_ml(labels, case.spacing), abs=1e-4)
    assert sidecar["changed_by_hand"] is True
    changes = sidecar["corrections_vs_prediction"]
    painted = np.count_nonzero((labels == ED) & (prediction != ED))
    assert changes["oedema"]["added_voxels"] == painted > 0
    assert changes["enhancing"]["removed_voxels"] == np.count_nonzero(prediction == ET) > 0
    assert changes["enhancing"]["added_voxels"] == 0
    assert changes["NCR/NET"]["removed_voxels"] == np.count_nonzero((prediction == NCR) & (labels != NCR))


def test_an_untouched_prediction_is_recorded_as_not_changed_by_hand(case, dataset):
    result = export_correction(dataset, case.files, case.geometry, case.seg, prediction=case.seg.copy())
    sidecar = json.loads(result.sidecar_path.read_text())
    assert sidecar["changed_by_hand"] is False
    assert sidecar["corrections_vs_prediction"]["changed_voxels"] == 0


def test_without_a_prediction_the_sidecar_says_changes_are_unknown(case, dataset):
    sidecar = json.loads(export_correction(dataset, case.files, case.geometry, case.seg).sidecar_path.read_text())
    assert sidecar["changed_by_hand"] is None
    assert sidecar["corrections_vs_prediction"] is None
    assert sidecar["model"] == {"id": None, "version": None}


@pytest.mark.parametrize(("naming", "case_id", "suffixes"), [
    ("brats2018", "Brats18_Test_1", ("_flair", "_t1", "_t1ce", "_t2", "_seg")),
    ("brats2023", "BraTS-GLI-00002-000", ("-t2f", "-t1n", "-t1c", "-t2w", "-seg")),
])
def test_every_sidecar_field_of_an_anisotropic_case(make_case, dataset, naming, case_id, suffixes):
    """0.9 x 1.1 x 2.0 mm voxels (x, y, z as stored): 1.98 mm^3 = 0.00198 mL each; display axes are (z, y, x)."""
    files = make_case(case_id=case_id, naming=naming, spacing=(0.9, 1.1, 2.0))
    case = load_case(files)
    prediction = np.zeros(case.geometry.display_shape, dtype=np.uint8)
    prediction[10:12, 20:23, 15:19] = ED  # 24 voxels,
    prediction[11, 21, 16:18] = ET  # 2 of them enhancing
    labels = prediction.copy()
    labels[11, 21, 16:18] = NCR  # 2 enhancing -> NCR
    labels[10:12, 23, 15:19] = ED  # 8 oedema drawn
    labels[10, 20, 15] = 0  # 1 oedema erased
    result = export_correction(dataset, files, case.geometry, labels, prediction=prediction,
                               model_id="brainseg-unet3d", model_version="1.1.0")
    sidecar = json.loads(result.sidecar_path.read_text())
    exported = dt.datetime.fromisoformat(sidecar.pop("exported_utc"))
    assert exported.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.timezone.utc) - exported) < dt.timedelta(minutes=5)
    assert sidecar.pop("spacing_mm") == pytest.approx([2.0, 1.1, 0.9]), "display order: z, y, x"
    names = [f"{case_id}{suffix}.nii.gz" for suffix in suffixes]
    folder = files.folder.resolve()
    assert sidecar == {
        "format": "napari-brainseg-correction",
        "format_version": 1,
        "case_id": case_id,
        "version": 1,
        "plugin_version": importlib.metadata.version("napari-brainseg"),
        "source": {
            "naming": naming,
            "images": {modality: str(folder / name) for modality, name in zip(MODALITIES, names)},
            "seg": str(folder / names[4]),
        },
        "model": {"id": "brainseg-unet3d", "version": "1.1.0"},
        "label_volumes_ml": {"WT": 0.0614, "TC": 0.004, "ET": 0.0, "NCR/NET": 0.004, "oedema": 0.0574,
                             "enhancing": 0.0},
        "changed_by_hand": True,
        "corrections_vs_prediction": {
            "NCR/NET": {"label": 1, "added_voxels": 2, "removed_voxels": 0, "added_ml": 0.004, "removed_ml": 0.0},
            "oedema": {"label": 2, "added_voxels": 8, "removed_voxels": 1, "added_ml": 0.0158, "removed_ml": 0.002},
            "enhancing": {"label": 4, "added_voxels": 0, "removed_voxels": 2, "added_ml": 0.0, "removed_ml": 0.004},
            "changed_voxels": 11,
            "changed_ml": 0.0218,
        },
    }


# --- exports killed midway, and exports running side by side ------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[1]

# The child exports for real and stops after writing the label map into its temporary folder: killed, or
# paused until told to go on (the pause is this script's, not a setting of the export).
EXPORT_AND_STOP = """
import os, pickle, signal, sys, nibabel
from napari_brainseg.export import export_correction
args = pickle.load(open(sys.argv[1], "rb"))
real_save = nibabel.save
def save_then_stop(image, path):
    real_save(image, path)
    print(path, flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.readline()
nibabel.save = save_then_stop
print(export_correction(*args).folder.name, flush=True)
"""


def start_export(tmp_path: Path, case: LoadedCase, dataset: Path, how: str) -> tuple[subprocess.Popen, Path]:
    """An export of ``case`` in a child process, stopped in the middle; returns it and its temporary folder."""
    (tmp_path / "args.pkl").write_bytes(pickle.dumps((dataset, case.files, case.geometry, corrected(case.seg))))
    child = subprocess.Popen([sys.executable, "-c", EXPORT_AND_STOP, str(tmp_path / "args.pkl"), how], cwd=REPO_ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8")
    temp = Path(child.stdout.readline().strip()).parent
    assert temp.parent == dataset / case.case_id and temp.name.startswith(".export~tmp~")
    return child, temp


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_the_folder_of_a_killed_export_is_removed_by_the_next_export_of_any_case(case, make_case, dataset, tmp_path):
    export_correction(dataset, case.files, case.geometry, case.seg)
    child, temp = start_export(tmp_path, case, dataset, "kill")
    child.wait(timeout=120)
    assert temp.is_dir(), "a hard kill cannot clean up"

    other = load_case(make_case(case_id="Other_001"))
    export_correction(dataset, other.files, other.geometry, other.seg)
    assert not temp.exists()
    assert sorted(p.name for p in (dataset / CASE_ID).iterdir()) == ["v001"]


@pytest.mark.skipif(sys.platform == "win32", reason="process checks")
def test_an_export_still_running_is_never_disturbed_by_another(case, dataset, tmp_path):
    child, temp = start_export(tmp_path, case, dataset, "pause")
    mine = export_correction(dataset, case.files, case.geometry, case.seg)
    assert temp.is_dir() and mine.version == 1
    out, _ = child.communicate("go on\n", timeout=120)
    assert child.returncode == 0 and out.split()[-1] == "v002"
    assert sorted(p.name for p in (dataset / CASE_ID).iterdir()) == ["v001", "v002"]
    assert [f.folder.name for f in discover_cases([dataset], all_versions=True)] == ["v001", "v002"]
