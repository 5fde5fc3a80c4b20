"""The case report: one call writes a PNG or PDF page and returns what the page says."""

import numpy as np
import pytest

from napari_brainseg.labels import ED, ET, NCR, region_volumes_ml
from napari_brainseg.report import montage_slices, write_case_report

SHAPE = (24, 40, 40)


@pytest.fixture
def case():
    """FLAIR and T1ce of a box-shaped brain, and a tumour: an enhancing disc of 20 mm (slices 9-14)."""
    rng = np.random.default_rng(0)
    images = {m: np.zeros(SHAPE, dtype=np.float32) for m in ("flair", "t1ce")}
    for image in images.values():
        image[2:22, 4:36, 4:36] = rng.uniform(100, 200, (20, 32, 32))
    y, x = np.ogrid[:40, :40]
    r = np.hypot(y - 20, x - 20)
    seg = np.zeros(SHAPE, dtype=np.uint8)
    seg[8:16][:, r < 14] = ED
    seg[9:15][:, r < 10] = ET  # 20 voxels across, edge to edge
    seg[10:14][:, r < 5] = NCR
    return images, seg


def test_report_is_written_as_pdf_or_png_and_is_not_empty(tmp_path, case):
    images, seg = case
    for name in ("report.pdf", "report.png"):
        summary = write_case_report(tmp_path / name, images, seg, (1.0, 1.0, 1.0), "Case_01", "tiny")
        assert (tmp_path / name).stat().st_size > 10_000
        assert summary["path"] == str(tmp_path / name)
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.pdf", "report.png"]  # no temporary files left


def test_report_states_case_model_volumes_and_rano_measure(tmp_path, case):
    images, seg = case
    spacing = (2.0, 1.0, 1.0)
    summary = write_case_report(tmp_path / "r.png", images, seg, spacing, "Case_01", "brainseg-unet3d")
    volumes = region_volumes_ml(seg, spacing)
    assert summary["case_id"] == "Case_01" and summary["model_id"] == "brainseg-unet3d"
    assert summary["volumes_ml"] == {
        k: pytest.approx(volumes[k], abs=0.01) for k in ("WT", "TC", "ET", "oedema", "NCR/NET")
    }
    rano = summary["rano"]
    assert 9 <= rano["slice"] <= 14
    assert rano["longest_mm"] == pytest.approx(20, abs=1.5) and rano["perpendicular_mm"] == pytest.approx(20, abs=1.5)
    assert rano["product_mm2"] == pytest.approx(rano["longest_mm"] * rano["perpendicular_mm"], rel=0.01)
    assert rano["measurable"]
    assert rano["slice"] in summary["slices"]  # the measured slice is in the montage
    text = "\n".join(summary["text"])
    for expected in ("Case_01", "brainseg-unet3d", "RANO", f"{rano['longest_mm']:.1f} mm", "origin unknown"):
        assert expected in text


def test_report_says_whether_the_mask_was_corrected_by_hand(tmp_path, case):
    images, seg = case
    unchanged = write_case_report(tmp_path / "a.png", images, seg, (1, 1, 1), "C", "m", prediction=seg.copy())
    assert unchanged["corrected"] is False and "not corrected" in unchanged["text"][2]
    corrected = seg.copy()
    corrected[15, 18:22, 18:22] = ET
    summary = write_case_report(tmp_path / "b.png", images, corrected, (1, 1, 1), "C", "m", prediction=seg)
    assert summary["corrected"] is True and summary["changed_voxels"] == 16
    assert "corrected by hand (16 voxels" in summary["text"][2]


def test_report_without_enhancing_tumour_says_there_is_nothing_to_measure(tmp_path, case):
    images, seg = case
    seg[seg == ET] = NCR
    summary = write_case_report(tmp_path / "r.pdf", images, seg, (1, 1, 1), "C")
    assert summary["rano"] is None and "no enhancing tumour" in summary["text"][3]
    assert "Model: unknown" in summary["text"]


def test_report_never_overwrites_silently_and_accepts_only_png_or_pdf(tmp_path, case):
    images, seg = case
    target = tmp_path / "r.pdf"
    target.write_bytes(b"earlier report")
    with pytest.raises(FileExistsError, match="already exists"):
        write_case_report(target, images, seg, (1, 1, 1), "C")
    assert target.read_bytes() == b"earlier report"
    write_case_report(target, images, seg, (1, 1, 1), "C", overwrite=True)
    assert target.read_bytes().startswith(b"%PDF")
    with pytest.raises(ValueError, match="PNG or PDF"):
        write_case_report(tmp_path / "r.jpg", images, seg, (1, 1, 1), "C")


def test_report_refuses_images_of_another_case(tmp_path, case):
    images, seg = case
    with pytest.raises(ValueError, match="different cases"):
        write_case_report(tmp_path / "r.png", {**images, "t1ce": images["t1ce"][:-1]}, seg, (1, 1, 1), "C")
    with pytest.raises(ValueError, match="T1ce"):
        write_case_report(tmp_path / "r.png", {"flair": images["flair"]}, seg, (1, 1, 1), "C")


def test_montage_spreads_slices_over_the_tumour():
    seg = np.zeros((50, 4, 4), dtype=np.uint8)
    seg[10:41, 1, 1] = ED
    assert montage_slices(seg, count=5) == [15, 20, 25, 30, 35]
    assert montage_slices(seg, count=5, include=12) == [12, 20, 25, 30, 35]
    assert montage_slices(np.zeros((9, 2, 2)), count=2) == [3, 5]
