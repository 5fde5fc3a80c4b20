"""The demo opens the sample case with every widget docked, and segments it."""

from __future__ import annotations

import numpy as np
import pytest

from napari_brainseg import _sample_data, registry
from napari_brainseg.demo import WIDGETS, main, open_demo


@pytest.fixture(autouse=True)
def small_sample_and_private_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(registry.ENV_VAR, str(tmp_path / "models"))
    monkeypatch.setattr(_sample_data, "SAMPLE_SHAPE", (48, 56, 40))


def test_the_demo_docks_the_widgets_and_segments_the_sample(make_napari_viewer_proxy, qtbot, oedema_checkpoint):
    viewer = make_napari_viewer_proxy()
    widget = open_demo(viewer, oedema_checkpoint)
    viewer.dims.set_current_step(0, 0)  # away from the middle, before the result arrives
    assert all(any(name in title for title in viewer.window.dock_widgets) for name in WIDGETS)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    layer = widget.result_layer
    assert layer is not None and layer.name == "Synthetic_glioma_001 segmentation"
    per_slice = np.count_nonzero(layer.data, axis=(1, 2))
    assert set(np.unique(layer.data).tolist()) == {0, 2}, "the stub model calls the whole brain oedema"
    assert per_slice.argmax() > 0
    assert viewer.dims.current_step[0] == per_slice.argmax(), "the demo shows the largest tumour slice"


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
