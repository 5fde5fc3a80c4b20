"""The demo opens the sample case with every widget docked, and segments it."""

from __future__ import annotations

import numpy as np
import pytest

from napari_brainseg import _sample_data, registry
from napari_brainseg._widgets import segment as segment_module
from napari_brainseg.demo import WIDGETS, main, open_demo
from napari_brainseg.inference import Segmentation
from napari_brainseg.labels import ET


@pytest.fixture(autouse=True)
def small_sample_and_private_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(registry.ENV_VAR, str(tmp_path / "models"))
    monkeypatch.setattr(_sample_data, "SAMPLE_SHAPE", (48, 56, 40))


LARGEST_TUMOUR_SLICE = 3
"""Far from the middle slice, where napari's slider starts."""


def tumour_on_two_slices(image: np.ndarray, *args, **kwargs) -> Segmentation:
    """Stands in for the model: a small tumour on slice 30 and a larger one on LARGEST_TUMOUR_SLICE."""
    labels = np.zeros(image.shape[1:], dtype=np.uint8)
    labels[30, 20:22, 20:22] = ET
    labels[LARGEST_TUMOUR_SLICE, 20:26, 20:26] = ET
    probabilities = np.zeros((3, *labels.shape), dtype=np.float32)
    return Segmentation(labels, probabilities, uncertainty=None, device="cpu", seconds=0.0)


def test_the_demo_docks_the_widgets_and_segments_the_sample(make_napari_viewer_proxy, qtbot, tiny_checkpoint):
    viewer = make_napari_viewer_proxy()
    widget = open_demo(viewer, tiny_checkpoint)
    assert all(any(name in title for title in viewer.window.dock_widgets) for name in WIDGETS)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    layer = widget.result_layer
    assert layer is not None and layer.name == "Synthetic_glioma_001 segmentation"
    assert layer.data.shape == viewer.layers["FLAIR"].data.shape


def test_the_demo_shows_the_largest_tumour_slice(make_napari_viewer_proxy, qtbot, tiny_checkpoint, monkeypatch):
    monkeypatch.setattr(segment_module, "segment", tumour_on_two_slices)
    viewer = make_napari_viewer_proxy()
    widget = open_demo(viewer, tiny_checkpoint)
    assert viewer.dims.current_step[0] != LARGEST_TUMOUR_SLICE
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert np.count_nonzero(widget.result_layer.data) == 40
    assert viewer.dims.current_step[0] == LARGEST_TUMOUR_SLICE


def test_the_demo_can_open_and_segment_a_case_folder_instead(make_napari_viewer_proxy, qtbot, tiny_checkpoint,
                                                              synthetic_case_dir):
    viewer = make_napari_viewer_proxy()
    widget = open_demo(viewer, tiny_checkpoint, case=synthetic_case_dir)
    assert {"FLAIR", "T1", "T1ce", "T2"} <= {layer.name for layer in viewer.layers}
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert widget.result_layer is not None and widget.result_layer.name == "Synthetic_001 segmentation"


def test_the_demo_explains_why_it_cannot_start_without_a_model(make_napari_viewer_proxy, monkeypatch, capsys):
    monkeypatch.setattr(registry, "list_models", list)  # no bundled weights, nothing registered
    monkeypatch.setattr("napari.Viewer", lambda **_: make_napari_viewer_proxy())
    assert main([]) == 1
    assert "No model to run" in capsys.readouterr().err
