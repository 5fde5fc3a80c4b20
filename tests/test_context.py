"""A context network: a model may read cases coarser (``train --scale 2``), and a segmentation model may carry such
a network (``napari-brainseg add-context``) whose whole tumour counts where its rule says, with torch and ONNX."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from napari_brainseg.__main__ import main
from napari_brainseg.context import ContextRule, context_info, context_rule
from napari_brainseg.context_network import WithContext
from napari_brainseg.inference import labels_from_probabilities, segment
from napari_brainseg.io import MODALITIES, find_case
from napari_brainseg.labels import BACKGROUND, ED
from napari_brainseg.model import DEFAULT_ARCH_KWARGS, ModelInfo, build_network, load_model, save_checkpoint
from napari_brainseg.onnx_export import export_onnx
from napari_brainseg.onnx_model import OnnxModelError, context_onnx_path, load_onnx_model
from napari_brainseg.preprocess import brain_box, normalise
from napari_brainseg.refine import GUIDANCE_CHANNELS, refinement_network
from napari_brainseg.resample import downsample, downsample_labels, upsample
from napari_brainseg.synthetic import synthetic_case, write_synthetic_case
from napari_brainseg.training.context import add_context
from napari_brainseg.training.data import load_training_case
from napari_brainseg.training.finetune import finetune, finetune_config
from napari_brainseg.training.train import MODEL_FILE, TrainConfig, Trainer, drive

TINY = {**DEFAULT_ARCH_KWARGS, "channels": [4, 8], "strides": [2], "num_res_units": 1}


def case_image(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    images, truth = synthetic_case(shape=(40, 48, 36), seed=seed)
    return np.stack([images[m] for m in MODALITIES]).astype(np.float32), truth


def flair_network(bias: float) -> nn.Module:
    """Every region's logit is the normalised FLAIR plus ``bias``: a larger bias finds a larger tumour."""
    conv = nn.Conv3d(4, 3, kernel_size=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0] = 4.0
        conv.bias.fill_(bias)
    return conv.eval()


def saved(folder: Path, name: str, seed: int, **info) -> Path:
    torch.manual_seed(seed)
    model_info = ModelInfo(model_id=name, version="1.0.0", arch_kwargs=dict(TINY), **info)
    return save_checkpoint(folder / f"{name}.pt", build_network(model_info), model_info)


def test_downsampling_takes_block_means_and_pads_the_far_end_with_zeros():
    volume = np.arange(27, dtype=np.float32).reshape(1, 3, 3, 3)
    coarse = downsample(volume, 2)
    assert coarse.shape == (1, 2, 2, 2)
    assert coarse[0, 0, 0, 0] == pytest.approx(volume[0, :2, :2, :2].mean())
    assert coarse[0, 1, 1, 1] == pytest.approx(26 / 8)  # one voxel of the case, seven of padding


def test_labels_go_down_region_by_region():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[:2, :2, :2] = ED
    labels[0, 0, :2] = 4  # a quarter of the block is enhancing: not enough for ET, but all of it is tumour
    labels[2:, 2:, 2:] = 1
    labels[2, 2, 2] = BACKGROUND
    assert downsample_labels(labels, 2).tolist() == [[[2, 0], [0, 0]], [[0, 0], [0, 1]]]


def test_upsampling_is_pytorch_s_trilinear_interpolation_cropped_to_the_fine_grid():
    coarse = np.random.default_rng(0).random((3, 5, 6, 4)).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None], scale_factor=2, mode="trilinear",
                                               align_corners=False)[0].numpy()
    np.testing.assert_allclose(upsample(coarse, 2, (9, 12, 8)), expected[:, :9, :12, :8], atol=1e-6)


@pytest.mark.parametrize("factor", [0, 1.5, -2])
def test_a_factor_that_is_not_a_whole_number_of_at_least_1_is_refused(factor):
    with pytest.raises(ValueError, match="whole number of at least 1"):
        downsample(np.zeros((1, 4, 4, 4)), factor)


def test_a_fine_grid_that_the_coarse_one_cannot_come_from_is_refused():
    with pytest.raises(ValueError, match="cannot come from a fine one of 9 voxels at factor 2"):
        upsample(np.zeros((1, 4, 4, 4)), 2, (9, 8, 8))


def test_a_coarse_model_reads_the_brain_box_block_averaged_and_its_probabilities_come_back_to_the_case_grid():
    image, _ = case_image()
    network = flair_network(bias=0.0)
    result = segment(image, network, device="cpu", scale=2)
    box = brain_box(image)
    seen = normalise(downsample(image[(slice(None), *box)], 2))
    coarse = 1 / (1 + np.exp(-(4.0 * seen[:1])))
    expected = upsample(np.repeat(coarse, 3, axis=0), 2, image[0][box].shape)
    assert result.probabilities.shape == (3, *image.shape[1:])
    np.testing.assert_allclose(result.probabilities[(slice(None), *box)], expected, atol=1e-5)


def with_context(rule: ContextRule) -> WithContext:
    """A segmentation network that finds a small tumour, and a context network that finds a larger one."""
    info = ModelInfo(model_id="context", arch_kwargs=dict(TINY), scale=2)
    return WithContext(flair_network(bias=-8.0), flair_network(bias=-3.0), info, rule).eval()


def test_the_context_s_whole_tumour_counts_when_it_is_large_and_much_larger_than_the_segmentation_s():
    image, _ = case_image()
    alone = segment(image, flair_network(bias=-8.0), device="cpu")
    seen = segment(image, flair_network(bias=-3.0), device="cpu", scale=2)
    rule = ContextRule(min_voxels=10, min_ratio=1.25, weight=0.5)
    assert np.count_nonzero(seen.labels) >= 1.25 * np.count_nonzero(alone.labels) > 0
    result = segment(image, with_context(rule), device="cpu")
    mixed = alone.probabilities.copy()
    mixed[0] = 0.5 * (alone.probabilities[0] + seen.probabilities[0])
    np.testing.assert_allclose(result.probabilities, mixed, atol=1e-6)
    np.testing.assert_array_equal(result.labels, labels_from_probabilities(mixed, np.any(image != 0, axis=0)))
    assert np.count_nonzero(result.labels) > np.count_nonzero(alone.labels)
    np.testing.assert_array_equal(result.labels == 4, alone.labels == 4)  # the enhancing tumour stays the network's


@pytest.mark.parametrize("rule", [ContextRule(min_voxels=10**9), ContextRule(min_voxels=0, min_ratio=100.0)])
def test_a_context_that_is_small_or_not_much_larger_changes_nothing(rule):
    image, _ = case_image()
    alone = segment(image, flair_network(bias=-8.0), device="cpu")
    result = segment(image, with_context(rule), device="cpu")
    np.testing.assert_array_equal(result.labels, alone.labels)
    np.testing.assert_array_equal(result.probabilities, alone.probabilities)


@pytest.fixture
def joined(tmp_path) -> Path:
    """A tiny segmentation checkpoint given a tiny context network whose rule always counts it."""
    segmenter = saved(tmp_path, "seg", 0, train_cases=["A"], val_cases=["B"])
    context = saved(tmp_path, "ctx", 1, scale=2, patch_size=[32, 32, 32])
    return add_context(segmenter, context, tmp_path / "joined.pt", ContextRule(min_voxels=0, min_ratio=0.0),
                       version="2.0.0")


def test_add_context_keeps_both_networks_their_descriptions_and_the_rule(joined, tmp_path):
    model, info = load_model(joined)
    assert (info.model_id, info.version, info.arch, info.train_cases) == ("seg", "2.0.0", "with-context", ["A"])
    assert (context_info(info).model_id, context_info(info).scale) == ("ctx", 2)
    assert context_rule(info) == ContextRule(min_voxels=0, min_ratio=0.0)
    for part, name in ((model.network, "seg"), (model.context_network, "ctx")):
        for key, value in load_model(tmp_path / f"{name}.pt")[0].state_dict().items():
            assert torch.equal(part.state_dict()[key], value)


def test_the_onnx_export_of_a_model_with_context_segments_as_torch_does(joined):
    path, _ = export_onnx(joined)
    assert context_onnx_path(path).is_file()
    image, _ = case_image()
    model, info = load_model(joined)
    expected = segment(image, model, device="cpu", **info.segment_options())
    exported = load_onnx_model(joined)
    got = segment(image, exported, **exported.info.segment_options())
    # the numpy sliding window blends as MONAI's does, to ~1e-3 on these untrained networks
    np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=2e-3)
    assert exported.context_network.info.scale == 2


def test_an_export_whose_context_network_is_missing_is_refused_with_what_to_do(joined):
    path, _ = export_onnx(joined)
    context_onnx_path(path).unlink()
    with pytest.raises(OnnxModelError, match="joined.context.onnx is missing beside it. Export it again"):
        load_onnx_model(joined)


def test_add_context_refuses_a_context_on_the_case_grid_and_never_overwrites(tmp_path, joined):
    segmenter, fine = saved(tmp_path, "seg2", 0), saved(tmp_path, "fine", 1)
    with pytest.raises(ValueError, match="own grid .* train it with `napari-brainseg train --scale 2`"):
        add_context(segmenter, fine, tmp_path / "new.pt")
    with pytest.raises(FileExistsError, match="never overwritten"):
        add_context(segmenter, tmp_path / "ctx.pt", joined)
    assert not (tmp_path / "new.pt").exists()


def test_add_context_refuses_a_second_context_and_a_context_that_reads_other_channels(tmp_path, joined):
    context = tmp_path / "ctx.pt"
    with pytest.raises(ValueError, match="seg already has a context network"):
        add_context(joined, context, tmp_path / "twice.pt")
    other = saved(tmp_path, "flair-only", 2, scale=2, channels=["flair"])
    with pytest.raises(ValueError, match="flair-only reads \\['flair'\\], seg2 reads .* the same channels"):
        add_context(saved(tmp_path, "seg2", 0), other, tmp_path / "mixed.pt")
    assert not (tmp_path / "twice.pt").exists() and not (tmp_path / "mixed.pt").exists()


def test_add_context_takes_the_context_network_of_a_model_that_has_one(joined, tmp_path):
    again = add_context(saved(tmp_path, "seg2", 2), joined, tmp_path / "again.pt")
    model, info = load_model(again)
    assert (info.model_id, context_info(info).model_id, context_rule(info)) == ("seg2", "ctx", ContextRule())
    for key, value in load_model(tmp_path / "ctx.pt")[0].state_dict().items():
        assert torch.equal(model.context_network.state_dict()[key], value)


def test_add_context_on_the_command_line_records_the_rule(tmp_path, capsys):
    segmenter, context = saved(tmp_path, "seg", 0), saved(tmp_path, "ctx", 1, scale=2)
    assert main(["add-context", str(segmenter), str(context), "--out", str(tmp_path / "out.pt"), "--min-voxels", "5",
                 "--min-ratio", "2", "--weight", "0.25", "--half"]) == 0
    assert context_rule(load_model(tmp_path / "out.pt")[1]) == ContextRule(min_voxels=5, min_ratio=2.0, weight=0.25)
    assert "napari-brainseg export-onnx" in capsys.readouterr().out


def test_a_rule_with_a_weight_outside_0_to_1_is_refused():
    with pytest.raises(ValueError, match="a weight in \\(0, 1\\]"):
        ContextRule(weight=1.5)


def test_the_click_network_starts_from_the_segmentation_network_alone(joined):
    network, info = refinement_network(joined)
    assert info.arch == "monai.UNet" and info.arch_kwargs["channels"] == [4, 8]
    assert info.arch_kwargs["in_channels"] == 4 + GUIDANCE_CHANNELS and info.parent == "seg"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for seed in range(3):
        write_synthetic_case(root / f"Case_{seed}", f"Case_{seed}", shape=(40, 48, 32), seed=seed)
    return root


def coarse_config(data_dir: Path, out: Path, **changes) -> TrainConfig:
    settings = {"data": [str(data_dir)], "out": str(out), "epochs": 1, "steps_per_epoch": 2, "device": "cpu",
                "seed": 3, "patch_size": [16, 16, 16], "arch_kwargs": {"channels": [4, 8], "strides": [2]},
                "warmup_steps": 1, "scale": 2}
    return TrainConfig(**{**settings, **changes})


def test_a_coarse_run_trains_on_block_averaged_cases_and_records_its_scale(data_dir, tmp_path):
    case = load_training_case(find_case(data_dir / "Case_0"), scale=2)
    fine = load_training_case(find_case(data_dir / "Case_0"))
    assert case["image"].shape[1:] == tuple(-(-s // 2) for s in fine["image"].shape[1:])
    assert case["label"].shape[1:] == case["image"].shape[1:]
    Trainer(coarse_config(data_dir, tmp_path / "run")).fit()
    model, info = load_model(tmp_path / "run" / MODEL_FILE)
    assert info.scale == 2 and info.segment_options()["scale"] == 2
    with pytest.raises(ValueError, match="read 2 times coarser, not 1; resume it with --scale 2"):
        Trainer(coarse_config(data_dir, tmp_path / "run", epochs=2, scale=1))


def test_train_takes_scale_on_the_command_line(data_dir, tmp_path):
    run = tmp_path / "cli"
    assert main(["train", "--data", str(data_dir), "--out", str(run), "--epochs", "1", "--steps-per-epoch", "1",
                 "--scale", "2", "--patch-size", "16", "16", "16", "--device", "cpu",
                 "--arch-kwargs", json.dumps({"channels": [4, 8], "strides": [2]})]) == 0
    assert load_model(run / MODEL_FILE)[1].scale == 2


def test_fine_tuning_a_model_with_context_trains_its_segmentation_network_and_keeps_its_context(joined, data_dir,
                                                                                                 tmp_path):
    cfg = finetune_config(base=str(joined), data=[str(data_dir)], out=str(tmp_path / "ft"), epochs=1,
                          steps_per_epoch=1, patch_size=(32, 32, 32), device="cpu")
    drive(finetune(cfg))
    base, _ = load_model(joined)
    tuned, info = load_model(tmp_path / "ft" / MODEL_FILE)
    assert info.arch == "with-context" and info.scale == 1
    for key, value in base.context_network.state_dict().items():
        assert torch.equal(tuned.context_network.state_dict()[key], value)
    assert any(not torch.equal(tuned.network.state_dict()[k], v) for k, v in base.network.state_dict().items())
