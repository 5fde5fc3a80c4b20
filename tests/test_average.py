"""Weight averaging: a run can keep every epoch's checkpoint, and ``napari-brainseg average`` writes
the mean of several checkpoints of one network as a new self-describing checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_brainseg.__main__ import main
from napari_brainseg.backend import load_for_inference
from napari_brainseg.inference import segment
from napari_brainseg.io import BratsInputError, find_case, load_case
from napari_brainseg.model import CheckpointError, ModelInfo, build_network, load_model, save_checkpoint
from napari_brainseg.synthetic import write_synthetic_case
from napari_brainseg.training.average import average_checkpoints
from napari_brainseg.training.evaluate import evaluate_cases
from napari_brainseg.training.train import MODEL_FILE, epoch_checkpoint

TINY_ARCH = {"channels": [4, 8], "strides": [2], "num_res_units": 1}


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory) -> Path:
    """A three-epoch run of the CLI (one step each) that keeps every epoch's checkpoint."""
    root = tmp_path_factory.mktemp("average")
    for seed in range(3):
        write_synthetic_case(root / "data" / f"Case_{seed}", f"Case_{seed}", shape=(40, 48, 32), seed=seed)
    assert main(["train", "--data", str(root / "data"), "--out", str(root / "run"), "--epochs", "3",
                 "--steps-per-epoch", "1", "--patch-size", "32", "32", "32", "--arch-kwargs", json.dumps(TINY_ARCH),
                 "--device", "cpu", "--keep-checkpoints"]) == 0
    return root


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path)[0].state_dict()


def test_a_run_keeps_one_checkpoint_per_epoch_and_the_last_is_the_run_s_model(kept_run):
    run = kept_run / "run"
    kept = sorted((run / "epochs").iterdir())
    assert kept == [epoch_checkpoint(run, e) for e in (1, 2, 3)]
    last, final = weights(kept[-1]), weights(run / MODEL_FILE)
    assert all(torch.equal(last[k], final[k]) for k in final)


def test_the_average_holds_the_mean_of_the_weights_and_segments(kept_run, tmp_path):
    kept = sorted((kept_run / "run" / "epochs").iterdir())
    out, rows = average_checkpoints(kept[1:], tmp_path / "avg.pt", version="9.9.9")
    assert rows == []
    model, info = load_model(out)
    b, c = weights(kept[1]), weights(kept[2])
    mean = model.state_dict()
    assert all(torch.allclose(mean[k], (b[k] + c[k]) / 2, atol=1e-6) for k in mean if mean[k].is_floating_point())
    assert any(not torch.equal(b[k], c[k]) for k in b), "the epochs differ, so the test means something"
    assert info.version == "9.9.9" and info.metrics == {}
    assert info.training["averaged"] == [str(p) for p in kept[1:]]
    case = load_case(kept_run / "data" / "Case_0")
    assert set(np.unique(segment(case.image, model, device="cpu").labels).tolist()) <= {0, 1, 2, 4}


def test_with_data_the_average_is_scored_on_its_validation_cases_and_keeps_the_scores(kept_run, tmp_path):
    kept = sorted((kept_run / "run" / "epochs").iterdir())
    out, rows = average_checkpoints(kept, tmp_path / "avg.pt", val_data=[kept_run / "data"], half=True)
    model, info = load_model(out)
    assert [r["case_id"] for r in rows] == info.val_cases and info.val_cases
    assert info.metrics["averaged_checkpoints"] == 3
    assert info.metrics["Dice_WT"] == pytest.approx(np.mean([r["Dice_WT"] for r in rows]))
    rescored = evaluate_cases(model, [find_case(kept_run / "data" / c) for c in info.val_cases])
    assert [r["Dice_ET"] for r in rescored] == [r["Dice_ET"] for r in rows], "the scores are of the fp16 file"


def test_validation_data_without_the_model_s_validation_cases_is_refused(kept_run, tmp_path):
    write_synthetic_case(tmp_path / "other" / "Other_1", "Other_1", shape=(40, 48, 32), seed=5)
    kept = sorted((kept_run / "run" / "epochs").iterdir())
    with pytest.raises(BratsInputError, match="None of the model's validation cases"):
        average_checkpoints(kept, tmp_path / "avg.pt", val_data=[tmp_path / "other"])
    assert not (tmp_path / "avg.pt").exists()


def test_checkpoints_of_different_networks_are_refused(kept_run, tmp_path):
    other = ModelInfo(model_id="other", arch_kwargs={**ModelInfo("x").arch_kwargs, **TINY_ARCH, "channels": [4, 16]})
    foreign = save_checkpoint(tmp_path / "other.pt", build_network(other), other)
    with pytest.raises(CheckpointError, match="different network"):
        average_checkpoints([epoch_checkpoint(kept_run / "run", 1), foreign], tmp_path / "avg.pt")
    assert not (tmp_path / "avg.pt").exists()


def test_one_checkpoint_is_not_enough_to_average(kept_run, tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints([epoch_checkpoint(kept_run / "run", 1)], tmp_path / "avg.pt")


def test_the_cli_writes_fp16_weights_and_never_overwrites(kept_run, tmp_path, capsys):
    kept = [str(p) for p in sorted((kept_run / "run" / "epochs").iterdir())]
    out = tmp_path / "avg.pt"
    assert main(["average", *kept, "--out", str(out), "--half"]) == 0
    assert "Averaged the weights of 3 checkpoints" in capsys.readouterr().out
    raw = torch.load(out, weights_only=True)["state_dict"]
    assert {v.dtype for v in raw.values() if v.is_floating_point()} == {torch.float16}
    before = out.read_bytes()
    assert main(["average", *kept, "--out", str(out)]) != 0
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == before


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_thresholds_chosen_on_validation_go_into_the_checkpoint_and_predict_applies_them(kept_run, tmp_path,
                                                                                        backend, capsys):
    """``predict`` (and the Segment widget) give what ``segment`` gives at the checkpoint's own thresholds: a low
    one takes far more of the brain into the tumour than a high one."""
    kept = [str(p) for p in sorted((kept_run / "run" / "epochs").iterdir())]
    case = load_case(kept_run / "data" / "Case_0")
    tumour = {}
    for name, value in (("low", 0.01), ("high", 0.99)):
        path = tmp_path / f"{name}.pt"
        assert main(["average", *kept, "--out", str(path), "--thresholds", *[str(value)] * 3]) == 0
        info = load_model(path)[1]
        assert info.thresholds == [value] * 3 and "each over its `thresholds` value" in info.output
        out = tmp_path / f"{name}.nii.gz"
        assert main(["predict", str(kept_run / "data" / "Case_0"), "--output", str(out), "--model", str(path),
                     "--backend", backend]) == 0
        written = np.asarray(nib.load(out).dataobj)
        loaded = load_for_inference(path, backend, "cpu")
        expected = segment(case.image, loaded.model, device="cpu", threshold=[value] * 3).labels
        np.testing.assert_array_equal(written, np.asarray(case.geometry.to_nifti(expected).dataobj))
        if backend == "onnx":  # the Segment widget's job, which runs the CPU default
            from napari_brainseg._widgets.segment import load_and_segment

            result, _ = load_and_segment(case.image, path, "cpu", False, lambda _: None, lambda: False)
            np.testing.assert_array_equal(result.labels, expected)
        tumour[name] = np.count_nonzero(written)
    assert tumour["low"] > 2 * tumour["high"]
    capsys.readouterr()


def test_the_average_keeps_the_last_checkpoint_s_thresholds_unless_told(kept_run, tmp_path):
    kept = sorted((kept_run / "run" / "epochs").iterdir())
    out, _ = average_checkpoints(kept, tmp_path / "avg.pt")
    assert load_model(out)[1].thresholds == load_model(kept[-1])[1].thresholds == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("values", [["0.3", "1.5", "0.5"], ["0", "0.5", "0.5"]])
def test_thresholds_outside_0_to_1_are_refused_before_anything_is_written(kept_run, tmp_path, capsys, values):
    kept = [str(p) for p in sorted((kept_run / "run" / "epochs").iterdir())]
    out = tmp_path / "avg.pt"
    assert main(["average", *kept, "--out", str(out), "--thresholds", *values]) != 0
    assert "each between 0 and 1" in capsys.readouterr().err
    assert not out.exists()


def test_the_second_pass_is_recorded_when_asked_and_kept_from_the_last_checkpoint_otherwise(kept_run, tmp_path):
    first, *_, last = sorted((kept_run / "run" / "epochs").iterdir())
    network, info = load_model(last)
    info.second_pass = True
    twice = save_checkpoint(tmp_path / "last-twice.pt", network, info)
    for extra, expected in (([], True), (["--no-second-pass"], False)):
        out = tmp_path / f"avg{len(extra)}.pt"
        assert main(["average", str(first), str(twice), "--out", str(out), *extra]) == 0
        assert load_model(out)[1].second_pass is expected
    assert main(["average", str(first), str(last), "--out", str(tmp_path / "asked.pt"), "--second-pass"]) == 0
    assert load_model(tmp_path / "asked.pt")[1].segment_options()["second_pass"] is True


def test_whole_tumour_growth_is_recorded_when_asked_kept_from_the_last_checkpoint_and_turned_off(kept_run, tmp_path):
    first, *_, last = sorted((kept_run / "run" / "epochs").iterdir())
    grown = tmp_path / "grown.pt"
    assert main(["average", str(first), str(last), "--out", str(grown), "--wt-growth", "0.1", "5"]) == 0
    info = load_model(grown)[1]
    assert info.wt_growth == [0.1, 5] and info.segment_options()["wt_growth"] == [0.1, 5]
    kept, off = tmp_path / "kept.pt", tmp_path / "off.pt"
    assert main(["average", str(first), str(grown), "--out", str(kept)]) == 0
    assert main(["average", str(first), str(grown), "--out", str(off), "--no-wt-growth"]) == 0
    assert load_model(kept)[1].wt_growth == [0.1, 5] and load_model(off)[1].wt_growth is None


def test_whole_tumour_growth_that_is_not_usable_is_refused_before_anything_is_written(kept_run, tmp_path, capsys):
    kept = [str(p) for p in sorted((kept_run / "run" / "epochs").iterdir())]
    out = tmp_path / "avg.pt"
    assert main(["average", *kept, "--out", str(out), "--wt-growth", "0.1", "2.5"]) != 0
    assert "whole number of voxels" in capsys.readouterr().err
    assert not out.exists()
