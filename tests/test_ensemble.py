"""Ensembles: ``napari-brainseg ensemble`` joins checkpoints of different networks into one checkpoint whose
probabilities are the mean of theirs, and that every other command takes like a single model."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_brainseg.__main__ import main
from napari_brainseg.ensemble_network import Ensemble
from napari_brainseg.inference import SECOND_PASS_STAGE, SEGMENT_STAGE, gate_core, segment
from napari_brainseg.io import load_case
from napari_brainseg.labels import labels_from_regions
from napari_brainseg.model import DEFAULT_ARCH_KWARGS, CheckpointError, ModelInfo, build_network, load_model, save_checkpoint
from napari_brainseg.model import OUTPUT_BEFORE_THRESHOLDS
from napari_brainseg.onnx_export import export_onnx
from napari_brainseg.onnx_model import load_onnx_model
from napari_brainseg.refine import refinement_network
from napari_brainseg.synthetic import write_synthetic_case
from napari_brainseg.training.ensemble import ensemble_checkpoints
from napari_brainseg.training.finetune import finetune, finetune_config
from napari_brainseg.training.refine import simulate_session
from napari_brainseg.training.train import MODEL_FILE, drive

NARROW = {**DEFAULT_ARCH_KWARGS, "channels": [4, 8], "strides": [2]}
WIDE = {**DEFAULT_ARCH_KWARGS, "channels": [8, 16, 16], "strides": [2, 2], "num_res_units": 1}


def member(folder: Path, name: str, arch_kwargs: dict, seed: int, **info) -> Path:
    torch.manual_seed(seed)
    model_info = ModelInfo(model_id=name, version="1.0.0", arch_kwargs=dict(arch_kwargs), **info)
    return save_checkpoint(folder / f"{name}.pt", build_network(model_info), model_info)


@pytest.fixture
def members(tmp_path) -> list[Path]:
    """Two different networks, trained on overlapping cases, each holding out different ones."""
    return [member(tmp_path, "narrow", NARROW, 0, train_cases=["A", "B"], val_cases=["C", "D"]),
            member(tmp_path, "wide", WIDE, 1, train_cases=["A", "C"], val_cases=["B", "D"])]


def test_the_ensemble_s_probabilities_are_the_mean_of_its_members(members, tmp_path):
    path, rows = ensemble_checkpoints(members, tmp_path / "both.pt", model_id="both", version="2.0.0")
    ensemble, info = load_model(path)
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.inference_mode():
        expected = torch.stack([torch.sigmoid(load_model(m)[0](x)) for m in members]).mean(0)
        got = torch.sigmoid(ensemble(x))
    assert torch.allclose(got, expected, atol=1e-5)
    assert (info.model_id, info.version, info.arch, rows) == ("both", "2.0.0", "ensemble", [])
    assert [m["arch_kwargs"]["channels"] for m in info.arch_kwargs["members"]] == [[4, 8], [8, 16, 16]]


def test_region_weights_take_each_region_from_the_members_they_say(members, tmp_path):
    path, _ = ensemble_checkpoints(members, tmp_path / "split.pt", weights=[[1, 0, 1], [0, 3, 1]])
    ensemble, info = load_model(path)
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.inference_mode():
        narrow, wide = (torch.sigmoid(load_model(m)[0](x)) for m in members)
        got = torch.sigmoid(ensemble(x))
    assert info.arch_kwargs["weights"] == [[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]]
    assert torch.allclose(got[:, :2], torch.stack([narrow[:, 0], wide[:, 1]], 1), atol=1e-5)
    assert torch.allclose(got[:, 2], (narrow[:, 2] + wide[:, 2]) / 2, atol=1e-5)
    onnx_path, difference = export_onnx(path)
    assert difference < 1e-3


@pytest.mark.parametrize(("weights", "message"), [
    ([[1, 0, 0]], "one row of 3 .* for each of the 2 members; got \\[3\\] weights in 1 rows"),
    ([[1, 0], [0, 1]], "got \\[2, 2\\] weights in 2 rows"),
    ([[1, -1, 0], [0, 1, 1]], "at least 0"),
    ([[1, 0, 0], [0, 1, 0]], "every region needs a member with a weight over 0"),
])
def test_region_weights_that_do_not_fit_the_members_are_refused(members, tmp_path, weights, message):
    with pytest.raises(ValueError, match=message):
        ensemble_checkpoints(members, tmp_path / "bad.pt", weights=weights)
    assert not (tmp_path / "bad.pt").exists()


def test_the_command_takes_region_weights_one_triple_per_checkpoint(members, tmp_path, capsys):
    assert main(["ensemble", *map(str, members), "--weights", "1,0,0", "0,1,1", "--out", str(tmp_path / "w.pt")]) == 0
    assert load_model(tmp_path / "w.pt")[1].arch_kwargs["weights"] == [[1, 0, 0], [0, 1, 1]]
    assert main(["ensemble", *map(str, members), "--weights", "1;0;0", "0,1,1", "--out", str(tmp_path / "x.pt")]) == 2
    assert "'1;0;0' is not three comma-separated numbers" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_it_trained_on_what_any_member_trained_on_and_validates_on_what_none_did(members, tmp_path):
    info = load_model(ensemble_checkpoints(members, tmp_path / "both.pt")[0])[1]
    assert info.train_cases == ["A", "B", "C"] and info.val_cases == ["D"]
    assert info.parent == "narrow + wide" and info.model_id == "narrow-ensemble"
    assert [m["model_id"] for m in info.training["ensemble"]] == ["narrow", "wide"]


def test_half_weights_are_stored_and_segment_as_the_members_rounded_do(members, tmp_path):
    path, _ = ensemble_checkpoints(members, tmp_path / "half.pt", half=True)
    stored = torch.load(path, weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    assert path.stat().st_size < sum(m.stat().st_size for m in members)


def test_the_ensemble_segments_a_case_and_exports_to_onnx(members, tmp_path):
    write_synthetic_case(tmp_path / "Case_000", "Case_000", shape=(40, 48, 32), seed=3)
    case = load_case(tmp_path / "Case_000")
    path, _ = ensemble_checkpoints(members, tmp_path / "both.pt")
    model, _ = load_model(path)
    labels = segment(case.image, model, device="cpu").labels
    assert labels.shape == case.image.shape[1:] and set(np.unique(labels)) <= {0, 1, 2, 4}
    onnx_path, difference = export_onnx(path)
    assert onnx_path == path.with_suffix(".onnx") and difference < 1e-3
    assert load_onnx_model(path).info.arch == "ensemble"


def test_an_ensemble_is_fine_tuned_as_one_model(members, tmp_path):
    data = tmp_path / "data"
    for seed in range(2):
        write_synthetic_case(data / f"Case_{seed}", f"Case_{seed}", shape=(40, 48, 32), seed=seed)
    base, _ = ensemble_checkpoints(members, tmp_path / "both.pt")
    cfg = finetune_config(base=str(base), data=[str(data)], out=str(tmp_path / "ft"), epochs=1, steps_per_epoch=1,
                          patch_size=(32, 32, 32), device="cpu")
    drive(finetune(cfg))
    tuned, info = load_model(tmp_path / "ft" / MODEL_FILE)
    assert info.arch == "ensemble" and len(tuned.members) == 2


def test_a_click_network_can_start_from_an_ensemble(members, tmp_path):
    base, _ = ensemble_checkpoints(members, tmp_path / "both.pt")
    network, info = refinement_network(base)
    x = torch.randn(1, 4, 32, 32, 32)
    guided = torch.cat([x, torch.rand(1, info.arch_kwargs["in_channels"] - 4, 32, 32, 32)], 1)
    with torch.inference_mode():
        assert torch.allclose(network(guided), load_model(base)[0](x), atol=1e-5), "new channels start at zero"


def test_models_that_read_differently_cannot_be_joined(tmp_path):
    first = member(tmp_path, "four", NARROW, 0)
    other = member(tmp_path, "three", {**NARROW, "in_channels": 3}, 0, channels=["flair", "t1ce", "t2"])
    with pytest.raises(CheckpointError, match=r"three\.pt \(three\) differs from the first model \(four\) in its "
                                              r"channels"):
        ensemble_checkpoints([first, other], tmp_path / "both.pt")
    assert not (tmp_path / "both.pt").exists()


def test_a_checkpoint_from_before_per_region_thresholds_joins_one_that_has_them(tmp_path):
    old = member(tmp_path, "old", NARROW, 0, output=OUTPUT_BEFORE_THRESHOLDS)
    new = member(tmp_path, "new", WIDE, 1, thresholds=[0.4, 0.5, 0.5])
    path, _ = ensemble_checkpoints([new, old], tmp_path / "both.pt", thresholds=[0.4, 0.5, 0.5])
    assert load_model(path)[1].thresholds == [0.4, 0.5, 0.5]


def test_one_checkpoint_or_an_existing_file_is_refused(members, tmp_path):
    with pytest.raises(ValueError, match="at least two checkpoints, got 1"):
        ensemble_checkpoints(members[:1], tmp_path / "one.pt")
    taken = tmp_path / "taken.pt"
    taken.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="never overwritten"):
        ensemble_checkpoints(members, taken)
    assert taken.read_bytes() == b"keep me"


def test_the_command_joins_them_and_says_how_to_export(members, tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["ensemble", *map(str, members), "--out", str(tmp_path / "both.pt"), "--version", "3.0.0"]) == 0
    assert f"Joined 2 checkpoints into an ensemble: {tmp_path / 'both.pt'}" in out.getvalue()
    assert "napari-brainseg export-onnx" in out.getvalue()
    assert load_model(tmp_path / "both.pt")[1].version == "3.0.0"


def test_the_ensemble_records_the_thresholds_it_is_given_else_0_5_each(members, tmp_path):
    assert load_model(ensemble_checkpoints(members, tmp_path / "plain.pt")[0])[1].thresholds == [0.5, 0.5, 0.5]
    path, _ = ensemble_checkpoints(members, tmp_path / "set.pt", thresholds=[0.4, 0.5, 0.5])
    info = load_model(path)[1]
    assert info.thresholds == [0.4, 0.5, 0.5] and "each over its `thresholds` value" in info.output


def test_the_ensemble_records_the_whole_tumour_growth_it_is_given_else_none(members, tmp_path):
    assert load_model(ensemble_checkpoints(members, tmp_path / "plain.pt")[0])[1].wt_growth is None
    path, _ = ensemble_checkpoints(members, tmp_path / "grown.pt", wt_growth=[0.1, 5])
    assert load_model(path)[1].segment_options()["wt_growth"] == [0.1, 5]


def test_a_gated_ensemble_writes_its_gate_member_s_own_whole_tumour_as_a_fourth_channel(members, tmp_path):
    path, _ = ensemble_checkpoints(members, tmp_path / "gated.pt", weights=[[1, 0, 0], [0, 1, 1]], core_gate=1)
    ensemble, info = load_model(path)
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.inference_mode():
        got = torch.sigmoid(ensemble(x))
        narrow, wide = (torch.sigmoid(load_model(m)[0](x)) for m in members)
    assert info.arch_kwargs["core_gate"] == 1 and got.shape[1] == 4
    assert torch.allclose(got[:, 0], narrow[:, 0], atol=1e-5) and torch.allclose(got[:, 1:3], wide[:, 1:], atol=1e-5)
    assert torch.allclose(got[:, 3], wide[:, 0], atol=1e-5), "the gate's own whole tumour"


def test_gating_drops_the_core_that_the_gate_member_s_own_clean_up_drops():
    brain = np.ones((4, 24, 24), bool)
    probabilities = np.zeros((4, *brain.shape), np.float32)
    probabilities[0, :, 2:8, 2:8] = 0.9  # the whole tumour of the WT member: small
    probabilities[3, :, 2:20, 2:20] = 0.9  # the gate member's own: large, around it
    probabilities[1, :, 4:6, 4:6] = 0.9  # core inside the gate's tumour: kept
    probabilities[1:3, :, 22:24, 22:24] = 0.9  # a speck of core far off, a minor component for the gate: dropped
    gated = gate_core(probabilities, brain, min_component_fraction=0.3)
    assert gated.shape == (3, *brain.shape)
    assert np.array_equal(gated[0], probabilities[0]) and (gated[1, :, 4:6, 4:6] == 0.9).all()
    assert not gated[1:, :, 22:24, 22:24].any()
    with pytest.raises(ValueError, match="4 channels; got 3"):
        gate_core(probabilities[:3], brain)


def test_a_gated_ensemble_segments_into_three_regions_and_exports_to_onnx(members, tmp_path):
    write_synthetic_case(tmp_path / "Case_000", "Case_000", shape=(40, 48, 32), seed=3)
    case = load_case(tmp_path / "Case_000")
    path, _ = ensemble_checkpoints(members, tmp_path / "gated.pt", weights=[[1, 0, 0], [0, 1, 1]], core_gate=1)
    model, info = load_model(path)
    by_torch = segment(case.image, model, device="cpu", **info.segment_options())
    assert by_torch.probabilities.shape == (3, *case.image.shape[1:])
    export_onnx(path)
    onnx_model = load_onnx_model(path)
    by_onnx = segment(case.image, onnx_model, **onnx_model.info.segment_options())
    assert (by_onnx.labels == by_torch.labels).mean() > 0.999


def test_a_gated_ensemble_is_fine_tuned_and_starts_a_click_network_of_three_regions(members, tmp_path):
    data = tmp_path / "data"
    write_synthetic_case(data / "Case_0", "Case_0", shape=(40, 48, 32), seed=0)
    base, _ = ensemble_checkpoints(members, tmp_path / "gated.pt", core_gate=0)
    cfg = finetune_config(base=str(base), data=[str(data)], out=str(tmp_path / "ft"), epochs=1, steps_per_epoch=1,
                          patch_size=(32, 32, 32), device="cpu")
    drive(finetune(cfg))
    assert load_model(tmp_path / "ft" / MODEL_FILE)[1].arch_kwargs["core_gate"] == 0
    network, info = refinement_network(base)
    x = torch.randn(1, 4, 32, 32, 32)
    guided = torch.cat([x, torch.zeros(1, info.arch_kwargs["in_channels"] - 4, 32, 32, 32)], 1)
    with torch.inference_mode():
        assert torch.allclose(network(guided), load_model(base)[0](x)[:, :3], atol=1e-5)
    assert "core_gate" not in info.arch_kwargs


def test_the_command_gates_the_core_by_a_checkpoint_counted_from_one(members, tmp_path, capsys):
    assert main(["ensemble", *map(str, members), "--core-gate", "2", "--out", str(tmp_path / "g.pt")]) == 0
    assert load_model(tmp_path / "g.pt")[1].arch_kwargs["core_gate"] == 1
    assert main(["ensemble", *map(str, members), "--core-gate", "3", "--out", str(tmp_path / "h.pt")]) == 1
    assert "The core gate must be one of the 2 checkpoints; got number 3." in capsys.readouterr().err
    assert not (tmp_path / "h.pt").exists()


class BrightChannelZero(torch.nn.Module):
    """Every region where the normalised first channel is over 1.5: a network whose tumour is known."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 8 * (x[:, :1].repeat(1, 3, 1, 1, 1) - 1.5)


def test_a_gated_ensemble_segments_in_two_passes():
    image = np.zeros((4, 24, 24, 24), np.float32)
    image[:, 2:22, 2:22, 2:22] = 9 + 2 * (np.indices((20, 20, 20)).sum(0) % 2)  # brain 9 or 11: never over 1.5 sd
    image[0, 8:14, 8:14, 8:14] += 6  # a bright lesion, far smaller than half the brain
    gated = Ensemble([BrightChannelZero(), BrightChannelZero()], core_gate=1)
    stages = []
    result = segment(image, gated, device="cpu", roi_size=None, second_pass=True, min_component_fraction=0,
                     progress=lambda p: stages.append(p.stage))
    assert stages[0] == SEGMENT_STAGE and stages[-1] == SECOND_PASS_STAGE
    assert result.probabilities.shape == (3, 24, 24, 24)
    assert (result.labels[8:14, 8:14, 8:14] == 4).all() and (result.labels != 0).sum() == 6 ** 3


def test_click_training_simulates_sessions_on_a_gated_ensemble_s_three_regions(members, tmp_path):
    base, _ = ensemble_checkpoints(members, tmp_path / "gated.pt", core_gate=1)
    segmenter, _ = load_model(base)
    network, _ = refinement_network(base)
    image = np.random.default_rng(0).normal(size=(4, 32, 32, 32)).astype(np.float32)
    truth = np.zeros((32, 32, 32), np.uint8)
    truth[10:20, 10:20, 10:20] = 2
    clicks, first = simulate_session(network, segmenter, image, truth, n_clicks=1, device=torch.device("cpu"))
    with torch.inference_mode():
        regions = torch.sigmoid(segmenter(torch.from_numpy(image)[None]))[0, :3].numpy() > 0.5
    assert len(clicks) == 1 and np.array_equal(first, labels_from_regions(regions)), "the segmenter's own labels"
