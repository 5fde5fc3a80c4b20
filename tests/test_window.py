"""The numpy preprocessing and sliding window give what MONAI's transforms and inferer give, to 1e-5."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from monai.transforms import NormalizeIntensity

from napari_brainseg.preprocess import normalise
from napari_brainseg.window import count_windows, gaussian_weights, sliding_window, window_slices


def brain_like(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random positive intensities inside a random blob, zero outside; one channel left all zero."""
    image = rng.gamma(2.0, 100.0, size=shape).astype(np.float32)
    image[:, rng.random(shape[1:]) < 0.3] = 0
    image[-1] = 0
    return image


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normalise_matches_monai_nonzero_channel_wise(seed):
    rng = np.random.default_rng(seed)
    image = brain_like(rng, (4, 30, 41, 27))
    image[2][image[2] != 0] = 7.0  # a constant channel: shifted to 0, not divided by 0
    expected = np.asarray(NormalizeIntensity(nonzero=True, channel_wise=True)(image.copy()))
    got = normalise(image)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert not got[image == 0].any(), "background stays 0"


def test_normalise_leaves_its_input_alone():
    image = brain_like(np.random.default_rng(0), (4, 8, 8, 8))
    before = image.copy()
    normalise(image)
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("roi", [(16, 16, 16), (96, 96, 96), (8, 12, 20)])
def test_gaussian_weights_match_monai(roi):
    from monai.data.utils import compute_importance_map

    expected = compute_importance_map(roi, mode="gaussian", sigma_scale=0.125).numpy()
    np.testing.assert_allclose(gaussian_weights(roi), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("shape", "roi", "overlap"),
    [
        ((37, 50, 29), (16, 16, 16), 0.25),  # many windows, the last flush with the edge
        ((37, 50, 29), (16, 24, 32), 0.5),  # a window larger than the image on one axis: padded
        ((10, 12, 9), (16, 16, 16), 0.25),  # one window, padded on every axis
        ((32, 32, 32), (32, 32, 32), 0.25),  # exactly one window
    ],
)
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_sliding_window_matches_monai(shape, roi, overlap, batch):
    rng = np.random.default_rng(len(shape) + batch)
    image = rng.normal(size=(4, *shape)).astype(np.float32)
    mix = rng.normal(size=(3, 4)).astype(np.float32)

    def network(windows: np.ndarray) -> np.ndarray:
        """Not translation-invariant (depends on the window's own mean), so placement errors show."""
        mixed = np.einsum("kc,bc...->bk...", mix, windows)
        return mixed + windows.mean(axis=(1, 2, 3, 4), keepdims=True) ** 2

    expected = sliding_window_inference(
        torch.from_numpy(image[None]), roi, batch, lambda x: torch.from_numpy(network(x.numpy())),
        overlap=overlap, mode="gaussian", sigma_scale=0.125,
    )[0].numpy()
    got = sliding_window(image, roi, network, overlap=overlap, batch=batch)
    assert got.shape == (3, *shape) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_windows_are_placed_and_counted_like_monai():
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    for shape, roi in [((37, 50, 29), (16, 16, 16)), ((144, 176, 140), (96, 96, 96)), ((96, 97, 200), (96, 96, 96))]:
        interval = _get_scan_interval(shape, roi, 3, (0.25,) * 3)
        assert window_slices(shape, roi, 0.25) == dense_patch_slices(shape, roi, interval)
        assert count_windows(shape, roi, 0.25) == len(dense_patch_slices(shape, roi, interval))


def test_each_batch_of_windows_goes_to_the_network_at_once():
    sizes = []

    def network(windows: np.ndarray) -> np.ndarray:
        sizes.append(len(windows))
        return windows[:, :1]

    sliding_window(np.zeros((2, 40, 40, 20), dtype=np.float32), (16, 16, 16), network, batch=4)
    assert sizes == [4, 4, 4, 4, 2]  # 3 x 3 x 2 windows
