"""Running a model on a case: labels, progress, cancelling, device choice and the fallback to the CPU."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_brainseg import devices, inference
from napari_brainseg.devices import DeviceError, available_devices, select_device
from napari_brainseg.inference import (
    WINDOW_BATCH,
    _run_with_cpu_fallback,
    brain_box,
    count_windows,
    default_window,
    normalise,
    segment,
)
from napari_brainseg.jobs import Cancelled
from napari_brainseg.io import load_case
from napari_brainseg.model import SLICE_ARCH, ModelInfo, build_network, load_model, slice_arch_kwargs
from napari_brainseg.preprocess import OUTSIDE_TUMOUR, ROBUST, Z_SCORE

MPS_PRESENT = devices._mps_available()


@pytest.fixture
def image(make_case) -> np.ndarray:
    return load_case(make_case()).image


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_model(tiny_checkpoint)[0]


def test_segment_gives_brats_labels_only_inside_the_brain(image, model):
    result = segment(image, model, device="cpu")
    brain = np.any(image != 0, axis=0)
    assert result.labels.dtype == np.uint8
    assert result.labels.shape == image.shape[1:]
    assert set(np.unique(result.labels).tolist()) <= {0, 1, 2, 4}
    assert result.labels.any(), "the tiny model should label something, or this test proves little"
    assert not result.labels[~brain].any()
    assert result.probabilities.shape == (3, *image.shape[1:])
    assert 0 <= result.probabilities.min() and result.probabilities.max() <= 1
    assert result.uncertainty is None
    assert result.device == "cpu" and not result.fell_back_to_cpu


def test_sliding_window_inference_also_gives_brats_labels_only_inside_the_brain(image, model):
    result = segment(image, model, device="cpu", roi_size=(16, 16, 16), overlap=0.25)
    assert set(np.unique(result.labels).tolist()) <= {0, 1, 2, 4}
    assert not result.labels[~np.any(image != 0, axis=0)].any()


def test_a_3d_model_runs_by_sliding_window_and_a_2_5d_model_in_one_pass(image, model):
    slices = build_network(ModelInfo(model_id="s", arch=SLICE_ARCH, arch_kwargs={
        **slice_arch_kwargs(), "channels": [4, 8], "strides": [2]})).eval()
    assert default_window(model) == inference.WINDOW
    assert default_window(slices) is None
    steps: list[tuple[int, int]] = []
    result = segment(image, slices, device="cpu", progress=lambda p: steps.append((p.done, p.total)))
    assert steps == [(1, 1)], "one pass over the brain box"
    assert result.labels.shape == image.shape[1:]
    assert set(np.unique(result.labels).tolist()) <= {0, 1, 2, 4}


def test_test_time_flips_give_an_uncertainty_map(image, model):
    result = segment(image, model, device="cpu", tta=True)
    assert result.uncertainty is not None
    assert result.uncertainty.shape == image.shape[1:]
    assert result.uncertainty.min() >= 0 and result.uncertainty.max() > 0


@pytest.mark.parametrize("tta", [False, True])
def test_progress_counts_windows_batch_by_batch_and_reaches_the_total(image, model, tta):
    calls = []
    segment(image, model, device="cpu", roi_size=(16, 16, 16), overlap=0.25, tta=tta,
            progress=lambda p: calls.append((p.done, p.total)))
    crop_shape = image[(slice(None), *brain_box(image))].shape[1:]
    per_pass = count_windows(crop_shape, (16, 16, 16), 0.25)
    passes = 4 if tta else 1
    assert per_pass > WINDOW_BATCH
    assert {total for _, total in calls} == {per_pass * passes}
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == per_pass * passes
    assert len(calls) == passes * -(-per_pass // WINDOW_BATCH), "one report per batch of windows"


def test_asking_to_stop_raises_cancelled(image, model):
    calls = []
    with pytest.raises(Cancelled):
        segment(image, model, device="cpu", roi_size=(16, 16, 16),
                progress=lambda p: calls.append(p.done), should_stop=lambda: len(calls) >= 2)
    assert calls == [WINDOW_BATCH, 2 * WINDOW_BATCH], "no batch runs after the request to stop"


def test_auto_picks_the_first_available_device_and_cpu_is_always_there():
    assert available_devices()[-1] == "cpu"
    assert select_device("auto").type == available_devices()[0]
    assert select_device("cpu") == torch.device("cpu")


def test_auto_falls_back_to_the_cpu_when_nothing_else_is_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "mps"])
def test_asking_for_an_absent_accelerator_is_an_error_that_says_what_to_choose(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    with pytest.raises(DeviceError, match=f"{name.upper()} was asked for but is not available.*'cpu'"):
        select_device(name)


def test_an_unknown_device_name_is_an_error():
    with pytest.raises(DeviceError, match="Unknown device 'tpu'"):
        select_device("tpu")


@pytest.mark.parametrize(("setting", "expected"), [("3", 3), ("0", 1), ("many", None), (None, None)])
def test_cpu_threads_follow_omp_num_threads_else_every_usable_cpu(monkeypatch, setting, expected):
    if setting is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", setting)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert devices.cpu_threads() == (usable if expected is None else expected)


def _accelerator_run(failure: Exception | None = None, nan: bool = False):
    """A fake inference run that misbehaves on any device but the CPU, and records where it ran."""
    devices = []

    def run(device: torch.device):
        devices.append(device.type)
        if device.type != "cpu" and failure is not None:
            raise failure
        value = np.nan if device.type != "cpu" and nan else 0.5
        return np.full((3, 2, 2, 2), value, dtype=np.float32), None

    return run, devices


@pytest.mark.parametrize("failure", [RuntimeError("conv3d not supported on MPS"), NotImplementedError("aten::x")])
def test_an_accelerator_failure_runs_again_on_the_cpu_with_a_warning(failure):
    run, devices = _accelerator_run(failure=failure)
    with pytest.warns(UserWarning, match="MPS failed .* running on CPU instead"):
        (probs, _), fell_back = _run_with_cpu_fallback(run, torch.device("mps"))
    assert fell_back and devices == ["mps", "cpu"]
    assert np.all(probs == 0.5)


def test_nan_output_from_an_accelerator_runs_again_on_the_cpu_with_a_warning():
    run, devices = _accelerator_run(nan=True)
    with pytest.warns(UserWarning, match="CUDA returned NaN probabilities"):
        (probs, _), fell_back = _run_with_cpu_fallback(run, torch.device("cuda"))
    assert fell_back and devices == ["cuda", "cpu"]
    assert not np.isnan(probs).any()


def test_cancelling_on_an_accelerator_is_not_retried_on_the_cpu():
    run, devices = _accelerator_run(failure=Cancelled("stop"))
    with pytest.raises(Cancelled):
        _run_with_cpu_fallback(run, torch.device("mps"))
    assert devices == ["mps"]


def test_the_cpu_runs_once_without_fallback():
    run, devices = _accelerator_run()
    _, fell_back = _run_with_cpu_fallback(run, torch.device("cpu"))
    assert not fell_back and devices == ["cpu"]


@pytest.mark.skipif(MPS_PRESENT, reason="this machine has a working MPS device")
def test_a_model_that_cannot_move_to_mps_is_segmented_on_the_cpu(image, model):
    with pytest.warns(UserWarning, match="MPS failed"):
        result = segment(image, model, device=torch.device("mps"))
    assert result.fell_back_to_cpu and result.device == "cpu"
    assert set(np.unique(result.labels).tolist()) <= {0, 1, 2, 4}


def test_brain_box_bounds_the_nonzero_voxels_with_a_margin_inside_the_volume():
    image = np.zeros((2, 20, 30, 40), dtype=np.float32)
    image[1, 5:8, 0:3, 30:40] = 1
    assert brain_box(image, margin=2) == (slice(3, 10), slice(0, 5), slice(28, 40))


def test_brain_box_of_an_empty_image_is_an_error():
    with pytest.raises(ValueError, match="no brain voxels"):
        brain_box(np.zeros((4, 3, 3, 3), dtype=np.float32))


def test_normalise_z_scores_each_channel_over_the_brain_and_keeps_background_zero(image):
    out = normalise(image)
    for channel, raw in zip(out, image):
        brain = raw != 0
        assert not channel[~brain].any()
        assert channel[brain].mean() == pytest.approx(0, abs=1e-4)
        assert channel[brain].std() == pytest.approx(1, abs=1e-3)


def test_robust_normalisation_centres_each_channel_on_its_brain_median_in_iqr_units(image):
    out = normalise(image, ROBUST)
    for channel, raw in zip(out, image):
        brain = raw != 0
        assert not channel[~brain].any()
        q25, q50, q75 = np.percentile(channel[brain], [25, 50, 75])
        assert q50 == pytest.approx(0, abs=1e-4)
        assert q75 - q25 == pytest.approx(1.349, abs=1e-3)


def test_a_constant_channel_is_only_shifted_by_either_normalisation():
    image = np.zeros((4, 6, 6, 6), dtype=np.float32)
    image[:, 1:5, 1:5, 1:5] = 7.0
    for normalisation in (Z_SCORE, ROBUST):
        out = normalise(image, normalisation)
        assert not out.any(), normalisation


def test_an_unknown_normalisation_is_refused_with_the_known_ones_named(image):
    with pytest.raises(ValueError, match="Unknown normalisation 'min-max'.*'z-score per channel"):
        normalise(image, "min-max")


class ChannelsAsLogits(torch.nn.Module):
    """Returns the first three input channels as logits: the probabilities show what the network was given."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :3] * 1.0


@pytest.mark.parametrize("normalisation", [Z_SCORE, ROBUST], ids=["z-score", "robust"])
def test_segment_gives_the_network_the_image_normalised_as_asked(image, normalisation):
    box = brain_box(image)
    raw = image[(slice(None), *box)].astype(np.float64)
    expected = np.zeros_like(raw[:3])
    for c in range(3):
        brain = raw[c] != 0
        values = raw[c][brain]
        if normalisation == ROBUST:
            q25, q50, q75 = np.percentile(values, [25, 50, 75])
            centre, spread = q50, (q75 - q25) / 1.349
        else:
            centre, spread = values.mean(), values.std()
        expected[c][brain] = (values - centre) / spread
    result = segment(image, ChannelsAsLogits(), device="cpu", roi_size=None, normalisation=normalisation)
    probabilities = result.probabilities[(slice(None), *box)]
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-expected)), atol=1e-5)


def _one_channel_case(seed: int = 0) -> tuple[np.ndarray, tuple[slice, ...]]:
    """A (4, 20, 24, 28) stack whose brain is a block: channel 0 varies, the others are constant (their
    normalised value, and so their probability under :class:`ChannelsAsLogits`, is 0 and 0.5: no TC, no ET)."""
    image = np.zeros((4, 20, 24, 28), dtype=np.float32)
    brain = (slice(3, 17), slice(4, 20), slice(5, 23))
    image[(slice(1, 4), *brain)] = 5.0
    image[(0, *brain)] = np.random.default_rng(seed).gamma(2.0, 10.0, size=(14, 16, 18)) + 1
    return image, brain


def _segment_on(backend: str, tmp_path):
    """``segment`` with :class:`ChannelsAsLogits` on ``backend`` (torch, or its ONNX export)."""
    if backend == "torch":
        return lambda image, **options: segment(image, ChannelsAsLogits(), device="cpu", **options)
    from napari_brainseg.onnx_export import export_network
    from napari_brainseg.onnx_model import open_onnx

    path, _ = export_network(ChannelsAsLogits(), ModelInfo(model_id="channels"), tmp_path / "c.onnx", fingerprint="c")
    return lambda image, **options: segment(image, open_onnx(path), device="cpu", **options)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_second_pass_finds_the_whole_tumour_on_input_normalised_outside_the_first_pass_tumour(backend, tmp_path):
    image, brain = _one_channel_case()
    raw = image[(0, *brain)].astype(np.float64)
    first_tumour = raw > raw.mean()  # WT probability sigmoid(z-score) over 0.5
    outside = raw[~first_tumour]
    expected_wt = 1 / (1 + np.exp(-(raw - outside.mean()) / outside.std()))
    stages = []
    result = _segment_on(backend, tmp_path)(image, roi_size=None, min_component_fraction=0, second_pass=True,
                                            progress=lambda p: stages.append(p.stage))
    np.testing.assert_allclose(result.probabilities[(0, *brain)], expected_wt, atol=1e-5)
    np.testing.assert_allclose(result.probabilities[(slice(1, 3), *brain)], 0.5, atol=1e-6,
                               err_msg="TC and ET are the first pass's")
    assert stages[0] == inference.SEGMENT_STAGE and stages[-1] == inference.SECOND_PASS_STAGE
    single = _segment_on(backend, tmp_path)(image, roi_size=None, min_component_fraction=0)
    assert np.count_nonzero(result.labels) > np.count_nonzero(single.labels), "outside the tumour, the spread is less"


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_model_trained_outside_the_tumour_takes_every_region_from_the_second_pass(backend, tmp_path):
    image, brain = _one_channel_case()
    image[(slice(1, 3), *brain)] = image[(0, *brain)] ** 2, image[(0, *brain)] ** 3  # TC and ET vary too, over
    raw = image[(slice(0, 3), *brain)].astype(np.float64)  # their means only where channel 0 is over its own
    first_tumour = raw[0] > raw[0].mean()  # z-score over the whole brain: WT over 0.5
    expected = np.stack([1 / (1 + np.exp(-(c - c[~first_tumour].mean()) / c[~first_tumour].std())) for c in raw])
    stages = []
    result = _segment_on(backend, tmp_path)(image, roi_size=None, min_component_fraction=0,
                                            normalisation=OUTSIDE_TUMOUR, progress=lambda p: stages.append(p.stage))
    np.testing.assert_allclose(result.probabilities[(slice(None), *brain)], expected, atol=1e-5)
    assert stages[0] == inference.SEGMENT_STAGE and stages[-1] == inference.SECOND_PASS_STAGE


class ChannelsPlusRamp(torch.nn.Module):
    """:class:`ChannelsAsLogits` plus a ramp along the first axis: flips disagree, by how much depends on the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :3] + torch.linspace(-2, 2, x.shape[2])[:, None, None]


def test_the_uncertainty_of_a_model_trained_outside_the_tumour_is_its_second_pass_spread_over_flips():
    image, brain = _one_channel_case()
    image[(slice(1, 3), *brain)] = image[(0, *brain)] ** 2, image[(0, *brain)] ** 3  # every region's spread varies
    network, box = ChannelsPlusRamp(), brain_box(image)
    raw, inside = image[(slice(None), *box)], np.any(image[(slice(None), *box)] != 0, axis=0)
    cpu = torch.device("cpu")
    first, first_spread = inference.predict_regions(network, normalise(raw, OUTSIDE_TUMOUR), cpu, tta=True)
    tumour = inference.labels_from_probabilities(first, inside, 0.5, 0) != 0
    _, second_spread = inference.predict_regions(network, normalise(raw, OUTSIDE_TUMOUR, exclude=tumour), cpu, tta=True)
    result = segment(image, network, device="cpu", roi_size=None, tta=True, min_component_fraction=0,
                     normalisation=OUTSIDE_TUMOUR)
    np.testing.assert_allclose(result.uncertainty[box], second_spread, atol=1e-6)
    assert (first_spread > second_spread + 1e-3).any(), "the first pass's spread would show where it is larger"


def test_outside_tumour_normalisation_is_the_z_score_of_the_brain_outside_the_excluded_voxels(image):
    tumour = np.zeros(image.shape[1:], dtype=bool)
    tumour[(slice(None), *(slice(s // 3, s // 2) for s in image.shape[2:]))] = True
    np.testing.assert_array_equal(normalise(image, OUTSIDE_TUMOUR), normalise(image, Z_SCORE))
    out = normalise(image, OUTSIDE_TUMOUR, exclude=tumour)
    for channel, raw in zip(out, image):
        healthy = (raw != 0) & ~tumour
        assert channel[healthy].mean() == pytest.approx(0, abs=1e-4)
        assert channel[healthy].std() == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_no_second_pass_runs_when_the_first_finds_no_tumour_or_over_half_the_brain(backend, tmp_path):
    run = _segment_on(backend, tmp_path)
    image, brain = _one_channel_case()
    image[(0, *brain)] = 7.0  # all brain alike: WT probability 0.5, no tumour
    skewed, _ = _one_channel_case()
    skewed[(0, *brain)] = np.where(skewed[(0, *brain)] > np.percentile(skewed[(0, *brain)], 20), 100.0, 1.0)
    for case in (image, skewed):  # the second: 80% of the brain is over the mean
        stages = []
        twice = run(case, roi_size=None, min_component_fraction=0, second_pass=True,
                    progress=lambda p: stages.append(p.stage))
        once = run(case, roi_size=None, min_component_fraction=0)
        assert inference.SECOND_PASS_STAGE not in stages
        np.testing.assert_array_equal(twice.probabilities, once.probabilities)


@pytest.mark.parametrize("threshold", [(0.5, 0.5), (0.3, 0.5, 1.0), 0.0, (0.5, 0.5, 0.5, 0.5)],
                         ids=["two", "one at 1", "zero", "four"])
def test_thresholds_that_are_not_one_probability_or_one_per_region_are_refused(threshold):
    probabilities = np.full((3, 4, 4, 4), 0.6, dtype=np.float32)
    with pytest.raises(ValueError, match="one each for WT, TC and ET, each between 0 and 1"):
        inference.labels_from_probabilities(probabilities, np.ones((4, 4, 4), dtype=bool), threshold)


def test_labels_from_probabilities_relabels_a_small_enhancing_tumour_as_core_only_when_asked():
    probabilities = np.zeros((3, 6, 6, 6), dtype=np.float32)
    probabilities[0, 1:5, 1:5, 1:5] = 0.9  # WT: 64 voxels
    probabilities[1, 2:4, 2:4, 2:4] = 0.9  # TC: 8 voxels
    probabilities[2, 2, 2, 2:4] = 0.9  # ET: 2 voxels
    brain = np.ones((6, 6, 6), dtype=bool)
    kept = inference.labels_from_probabilities(probabilities, brain, min_enhancing_voxels=0)
    assert (kept == 4).sum() == 2 and (kept == 1).sum() == 6
    relabelled = inference.labels_from_probabilities(probabilities, brain, min_enhancing_voxels=3)
    assert (relabelled == 4).sum() == 0 and (relabelled == 1).sum() == 8 and (relabelled == 2).sum() == 56


def _cube_probabilities() -> tuple[np.ndarray, np.ndarray]:
    """WT probability 0.9 in a 4^3 cube, 0.3 in a 1-voxel shell round it and in a far island; brain everywhere."""
    probabilities = np.zeros((3, 16, 16, 16), dtype=np.float32)
    probabilities[0, 3:9, 3:9, 3:9] = 0.3
    probabilities[0, 4:8, 4:8, 4:8] = 0.9
    probabilities[0, 12:15, 12:15, 12:15] = 0.3  # a faint island, joined to nothing
    return probabilities, np.ones((16, 16, 16), dtype=bool)


def test_whole_tumour_growth_adds_the_faint_border_joined_to_the_tumour_as_oedema_and_no_island():
    probabilities, brain = _cube_probabilities()
    plain = inference.labels_from_probabilities(probabilities, brain, 0.5)
    grown = inference.labels_from_probabilities(probabilities, brain, 0.5, wt_growth=(0.2, 5))
    assert (plain == 2).sum() == 64 and (grown == 2).sum() == 6**3
    assert not grown[12:15, 12:15, 12:15].any()
    np.testing.assert_array_equal(grown[plain != 0], plain[plain != 0])


def test_whole_tumour_growth_reaches_no_further_than_its_voxels():
    probabilities, brain = _cube_probabilities()
    probabilities[0][probabilities[0] == 0] = 0.3  # faint everywhere: only the reach stops it
    grown = inference.labels_from_probabilities(probabilities, brain, 0.5, min_component_fraction=0,
                                                wt_growth=(0.2, 2))
    from_tumour = ndimage.distance_transform_cdt(probabilities[0] <= 0.5, metric="taxicab")
    np.testing.assert_array_equal(grown != 0, from_tumour <= 2)


def test_whole_tumour_growth_leaves_voxels_outside_the_brain_or_under_its_threshold():
    probabilities, brain = _cube_probabilities()
    brain[:, :, :4] = False
    grown = inference.labels_from_probabilities(probabilities, brain, 0.5, wt_growth=(0.35, 5))
    assert (grown != 0).sum() == 64  # the shell's 0.3 is under 0.35
    grown = inference.labels_from_probabilities(probabilities, brain, 0.5, wt_growth=(0.2, 5))
    assert not grown[:, :, :4].any() and (grown != 0).sum() == 6 * 6 * 5


@pytest.mark.parametrize("growth", [(0.0, 5), (1.0, 5), (0.2, 0), (0.2, 2.5), (0.2,)],
                         ids=["zero", "one", "no voxels", "half a voxel", "no voxels given"])
def test_whole_tumour_growth_that_is_not_a_probability_and_a_whole_number_of_voxels_is_refused(growth):
    probabilities, brain = _cube_probabilities()
    with pytest.raises(ValueError, match="a probability between 0 and 1 .* whole number of voxels"):
        inference.labels_from_probabilities(probabilities, brain, 0.5, wt_growth=growth)


def test_segment_grows_the_whole_tumour_as_the_model_says(image, model):
    plain = inference.segment(image, model, device="cpu", roi_size=None, threshold=0.5)
    grown = inference.segment(image, model, device="cpu", roi_size=None, threshold=0.5, wt_growth=(0.05, 3))
    brain = np.any(image != 0, axis=0)
    expected = inference.grow_whole_tumour(plain.labels, plain.probabilities[0], brain, (0.05, 3))
    np.testing.assert_array_equal(grown.labels, expected)
    assert (grown.labels != 0).sum() > (plain.labels != 0).sum()
