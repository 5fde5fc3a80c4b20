"""``napari-brainseg predict``: label maps on the input's grid, safe writes, one-line errors for bad input."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_brainseg import devices
from napari_brainseg import model as model_module
from napari_brainseg.__main__ import main
from napari_brainseg.backend import load_for_inference
from napari_brainseg.inference import segment
from napari_brainseg.io import load_case

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def predict(tiny_checkpoint, capsys):
    """Run ``main(["predict", *args])`` with the tiny model on the CPU; return (exit status, stderr lines)."""

    def run(*args: str | Path, model: str | Path = tiny_checkpoint, device: str = "cpu") -> tuple[int, list[str]]:
        status = main(["predict", *map(str, args), "--model", str(model), "--device", device])
        return status, capsys.readouterr().err.strip().splitlines()

    return run


def error_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("error:")]


def assert_same_grid(output: Path, source: Path) -> None:
    written, image = nib.load(str(output)), nib.load(str(source))
    assert written.shape == image.shape
    assert np.array_equal(written.affine, image.affine)
    assert np.array_equal(written.get_sform(), image.get_sform())
    assert written.header["sform_code"] == image.header["sform_code"]
    assert np.allclose(written.get_qform(), image.affine)
    assert written.header.get_zooms() == image.header.get_zooms()
    assert written.header["xyzt_units"] == image.header["xyzt_units"]
    assert written.get_data_dtype() == np.uint8


@pytest.mark.parametrize(("naming", "orientation"), [("brats2018", "LPS"), ("brats2018", "RAS"), ("brats2023", "PIR")])
def test_predict_writes_labels_on_the_input_grid(make_case, predict, tiny_checkpoint, tmp_path, naming, orientation):
    files = make_case(naming=naming, orientation=orientation, spacing=(0.9, 1.0, 1.5))
    status, lines = predict(files.folder, "--output-dir", tmp_path / "out")
    assert status == 0, lines
    output = tmp_path / "out" / f"{files.case_id}_seg.nii.gz"
    assert_same_grid(output, files.images["flair"])
    labels = np.asarray(nib.load(str(output)).dataobj)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 4} and labels.any()
    case = load_case(files)
    expected = segment(case.image, load_for_inference(tiny_checkpoint, device="cpu").model, device="cpu").labels
    assert np.array_equal(labels, case.geometry.to_source(expected)), "labels must sit on their source voxels"


def test_predict_reports_progress_per_case(make_case, predict, tmp_path):
    first, second = make_case(case_id="CaseA"), make_case(case_id="CaseB", naming="brats2023")
    status, lines = predict(first.folder, second.images["t1ce"], "--output-dir", tmp_path / "out")
    assert status == 0, lines
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["CaseA_seg.nii.gz", "CaseB_seg.nii.gz"]
    done = [line for line in lines if " s)" in line]
    assert [line.split(":")[0] for line in done] == ["[1/2] CaseA", "[2/2] CaseB"]
    assert all("wrote" in line for line in done)


def test_output_names_the_file_of_a_single_case(synthetic_case_dir, predict, tmp_path):
    output = tmp_path / "new" / "folder" / "mine.nii.gz"
    status, lines = predict(synthetic_case_dir, "--output", output)
    assert status == 0, lines
    assert nib.load(str(output)).shape == (40, 48, 32)
    assert [p.name for p in output.parent.iterdir()] == ["mine.nii.gz"], "no temporary file is left behind"


def test_output_is_refused_for_several_cases(make_case, predict, tmp_path):
    status, lines = predict(make_case(case_id="A").folder, make_case(case_id="B").folder, "--output", tmp_path / "x.nii.gz")
    assert status != 0
    assert lines == ["error: --output names one file but 2 cases were given; use --output-dir DIR."]


def test_two_cases_with_the_same_id_cannot_share_an_output_folder(make_case, predict, tmp_path):
    first, second = make_case(folder="site1"), make_case(folder="site2")
    status, lines = predict(first.folder, second.folder, "--output-dir", tmp_path / "out")
    assert status != 0 and len(lines) == 1 and "Two cases have the id Synthetic_001" in lines[0]


def test_an_output_that_is_not_nifti_is_refused(synthetic_case_dir, predict, tmp_path):
    status, lines = predict(synthetic_case_dir, "--output", tmp_path / "labels.png")
    assert status != 0 and error_lines(lines) == lines and "must end with .nii.gz" in lines[0]


def test_predict_refuses_to_overwrite_an_existing_output(synthetic_case_dir, predict, tmp_path):
    output = tmp_path / "labels.nii.gz"
    output.write_bytes(b"precious")
    status, lines = predict(synthetic_case_dir, "--output", output)
    assert status != 0
    assert lines == [f"error: {output} exists; pass --overwrite to replace it, or choose another output."]
    assert output.read_bytes() == b"precious"
    status, lines = predict(synthetic_case_dir, "--output", output, "--overwrite")
    assert status == 0, lines
    assert nib.load(str(output)).shape == (40, 48, 32)


def test_the_expert_labels_beside_the_images_are_never_replaced(make_case, predict):
    files = make_case()
    before = files.seg.read_bytes()
    status, lines = predict(files.folder, "--output-dir", files.folder, "--overwrite")
    assert status != 0 and "is one of the input files" in lines[0]
    assert files.seg.read_bytes() == before


def test_an_input_file_is_never_the_output_even_with_overwrite(make_case, predict):
    files = make_case()
    before = files.images["t1"].read_bytes()
    status, lines = predict(files.folder, "--output", files.images["t1"], "--overwrite")
    assert status != 0 and lines == [f"error: Output {files.images['t1']} is one of the input files; choose another output."]
    assert files.images["t1"].read_bytes() == before


def test_an_unwritable_output_folder_fails_before_any_work(synthetic_case_dir, predict, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    status, lines = predict(synthetic_case_dir, "--output-dir", blocker / "out")
    assert status != 0
    assert len(lines) == 1 and lines[0].startswith(f"error: Cannot write to {blocker / 'out'}")


def _unlink_t2(files, replace_volume):
    files.images["t2"].unlink()


def _t1_of_another_shape(files, replace_volume):
    replace_volume(files.images["t1"], np.ones((40, 48, 30), dtype=np.int16))


def _t1ce_shifted(files, replace_volume):
    affine = nib.load(str(files.images["t1ce"])).affine.copy()
    affine[2, 3] += 3
    replace_volume(files.images["t1ce"], np.asarray(nib.load(str(files.images["t1ce"])).dataobj), affine)


def _flair_4d(files, replace_volume):
    replace_volume(files.images["flair"], np.ones((40, 48, 32, 3), dtype=np.int16))


def _t2_2d(files, replace_volume):
    replace_volume(files.images["t2"], np.ones((40, 48), dtype=np.int16))


def _t1_truncated(files, replace_volume):
    path = files.images["t1"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flair_not_nifti(files, replace_volume):
    files.images["flair"].write_text("hello")


def _t1ce_nan(files, replace_volume):
    data = np.asarray(nib.load(str(files.images["t1ce"])).dataobj).astype(np.float32)
    data[10:12, 10, 10] = np.nan
    replace_volume(files.images["t1ce"], data)


def _t2_zeros(files, replace_volume):
    replace_volume(files.images["t2"], np.zeros((40, 48, 32), dtype=np.int16))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_unlink_t2, "Missing modality: T2"),
        (_t1_of_another_shape, r"_t1\.nii\.gz has shape .* co-registered"),
        (_t1ce_shifted, r"_t1ce\.nii\.gz has an affine that differs"),
        (_flair_4d, r"_flair\.nii\.gz is 4-D"),
        (_t2_2d, r"_t2\.nii\.gz is 2-D"),
        (_t1_truncated, r"_t1\.nii\.gz is (corrupt or truncated|not a readable NIfTI)"),
        (_flair_not_nifti, r"_flair\.nii\.gz is not a readable NIfTI"),
        (_t1ce_nan, r"_t1ce\.nii\.gz holds 2 NaN"),
        (_t2_zeros, r"_t2\.nii\.gz is all zeros"),
    ],
)
def test_bad_input_exits_non_zero_with_a_one_line_message(make_case, replace_volume, predict, tmp_path, damage, message):
    files = make_case()
    damage(files, replace_volume)
    status, lines = predict(files.folder, "--output-dir", tmp_path / "out")
    assert status == 1
    errors = error_lines(lines)
    assert len(errors) == 1
    assert re.search(message, errors[0]), errors[0]
    assert not list((tmp_path / "out").glob("*")), "nothing is written for a bad case"


def test_a_bad_case_among_good_ones_does_not_stop_the_others(make_case, replace_volume, predict, tmp_path):
    good, bad = make_case(case_id="Good"), make_case(case_id="Bad")
    replace_volume(bad.images["t2"], np.zeros((40, 48, 32), dtype=np.int16))
    status, lines = predict(bad.folder, good.folder, "--output-dir", tmp_path / "out")
    assert status == 1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["Good_seg.nii.gz"]
    assert error_lines(lines)[-1] == "error: 1 of 2 cases failed; see the messages above."


def test_a_file_that_is_not_a_brats_image_is_refused(predict, tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    status, lines = predict(other, "--output-dir", tmp_path / "out")
    assert status == 1 and len(lines) == 1 and "not named like a BraTS file" in lines[0]


def test_a_foreign_checkpoint_is_refused(synthetic_case_dir, predict, tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    status, lines = predict(synthetic_case_dir, "--output-dir", tmp_path / "out", model=foreign)
    assert status == 1 and len(lines) == 1 and "not a napari-brainseg checkpoint" in lines[0]


def test_missing_bundled_weights_are_reported(synthetic_case_dir, predict, tmp_path, monkeypatch):
    monkeypatch.setattr(model_module, "BUNDLED_PATH", tmp_path / "brainseg_unet3d.pt")
    status, lines = predict(synthetic_case_dir, "--output-dir", tmp_path / "out", model="bundled")
    assert status == 1 and len(lines) == 1 and "bundled weights" in lines[0]


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_an_absent_accelerator_is_reported(synthetic_case_dir, predict, tmp_path, monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    status, lines = predict(synthetic_case_dir, "--output-dir", tmp_path / "out", device=device)
    assert status == 1 and lines == [error_lines(lines)[0]]
    assert f"{device.upper()} was asked for but is not available" in lines[0]


def test_usage_mistakes_exit_2_with_one_line(capsys):
    assert main(["predict", "somewhere"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one of the arguments --output/-o --output-dir is required" in err[0]


def test_help_exits_0(capsys):
    assert main(["predict", "--help"]) == 0
    assert "--output-dir" in capsys.readouterr().out


def test_python_m_napari_brainseg_predicts_in_a_fresh_process(synthetic_case_dir, tiny_checkpoint, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "napari_brainseg", "predict", str(synthetic_case_dir), "--output-dir",
         str(tmp_path / "out"), "--model", str(tiny_checkpoint), "--device", "cpu"],
        check=False, capture_output=True, text=True, encoding="utf-8", cwd=REPO_ROOT, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert_same_grid(tmp_path / "out" / "Synthetic_001_seg.nii.gz", synthetic_case_dir / "Synthetic_001_flair.nii.gz")
    assert "[1/1] Synthetic_001: wrote" in done.stderr


def test_bad_input_fails_before_torch_and_monai_are_imported(tmp_path):
    script = (
        "import sys; from napari_brainseg.__main__ import main; "
        f"status = main(['predict', {str(tmp_path / 'missing')!r}, '--output-dir', {str(tmp_path)!r}]); "
        "print(sorted({'torch', 'monai'} & set(sys.modules))); sys.exit(status)"
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert done.returncode == 1
    assert done.stdout.strip() == "[]"
    assert done.stderr.strip() == f"error: {tmp_path / 'missing'} does not exist."
