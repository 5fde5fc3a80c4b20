"""Segment widget: runs a model in the background on whatever four modality layers are open."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from napari.layers import Image, Labels

from napari_brainseg import registry
from napari_brainseg._widgets import segment as segment_module
from napari_brainseg._widgets.segment import SegmentWidget
from napari_brainseg.devices import available_devices
from napari_brainseg.jobs import Cancelled, Progress
from napari_brainseg.io import MODALITIES, load_case
from napari_brainseg.labels import LABEL_COLORS, region_volumes_ml
from napari_brainseg.layers import METADATA_KEY

PLUGIN = "napari-brainseg"


@pytest.fixture(autouse=True)
def private_models_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.ENV_VAR, str(tmp_path / "models"))


@pytest.fixture
def case(viewer, make_case):
    files = make_case(spacing=(1.0, 1.0, 2.0))
    viewer.open(str(files.folder), plugin=PLUGIN)
    return load_case(files)


def _run_and_wait(widget: SegmentWidget, qtbot) -> None:
    widget.run_button.clicked()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)


def _segmentation(viewer) -> Labels:
    [layer] = [lyr for lyr in viewer.layers if lyr.name.endswith(" segmentation")]
    return layer


def test_choosing_a_checkpoint_file_offers_it_as_the_model(widget, tiny_checkpoint):
    assert widget.model.value == tiny_checkpoint
    assert "tiny" in widget.status.value


def test_segmenting_adds_a_uint8_labels_layer_in_brats_colours_on_the_case_grid(widget, viewer, case, qtbot):
    _run_and_wait(widget, qtbot)
    layer = _segmentation(viewer)
    assert layer.name == f"{case.case_id} segmentation"
    assert layer.data.dtype == np.uint8 and layer.data.shape == case.image.shape[1:]
    assert set(np.unique(layer.data)) <= {0, 1, 2, 4}
    assert tuple(layer.scale) == case.spacing == (2.0, 1.0, 1.0)
    for label in (1, 2, 4):
        expected = [int(LABEL_COLORS[label][i : i + 2], 16) / 255 for i in (1, 3, 5)]
        assert np.allclose(layer.colormap.map(label)[:3], expected)
    meta = layer.metadata[METADATA_KEY]
    assert meta["model_id"] == "tiny" and meta["model_version"] == "0.0.1"
    assert meta["geometry"] is not None and meta["files"] == case.files
    assert np.array_equal(meta["prediction"], layer.data)
    assert "Segmented" in widget.status.value and not widget.status.is_error
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_the_result_matches_the_core_segment_function(widget, viewer, case, qtbot, tiny_checkpoint):
    from napari_brainseg.backend import load_for_inference
    from napari_brainseg.inference import segment

    _run_and_wait(widget, qtbot)
    loaded = load_for_inference(tiny_checkpoint, device="cpu")
    assert loaded.backend == "onnx", "on the CPU without flips the widget runs ONNX Runtime, like the core"
    expected = segment(case.image, loaded.model, "cpu").labels
    assert np.array_equal(_segmentation(viewer).data, expected)


def test_volumes_table_shows_regions_and_labels_and_follows_edits(widget, viewer, case, qtbot):
    _run_and_wait(widget, qtbot)
    layer = _segmentation(viewer)
    table = _volumes(widget)
    assert list(table) == ["WT", "TC", "ET", "NCR/NET", "oedema", "enhancing"]
    assert table["WT"] == pytest.approx(region_volumes_ml(layer.data, case.spacing)["WT"], abs=0.005)

    layer.data_setitem(np.nonzero(np.ones((4, 5, 5), bool)), 4)  # paint 100 voxels of 2 mm^3 as enhancing
    expected = region_volumes_ml(layer.data, case.spacing)["enhancing"]
    assert expected >= 0.2
    qtbot.waitUntil(lambda: _volumes(widget)["enhancing"] == pytest.approx(expected, abs=0.005), timeout=5000)
    layer.undo()
    before = region_volumes_ml(layer.data, case.spacing)["enhancing"]
    assert before < expected
    qtbot.waitUntil(lambda: _volumes(widget)["enhancing"] == pytest.approx(before, abs=0.005), timeout=5000)


def _volumes(widget: SegmentWidget) -> dict[str, float]:
    return {name: float(value) for name, value in widget.volumes.to_dict("dict")["mL"].items()}


def test_segmenting_layers_opened_without_the_plugin_works_by_their_names(widget, viewer, make_case, qtbot):
    files = make_case()
    case = load_case(files)
    for channel, modality in enumerate(MODALITIES):
        viewer.add_image(case.image[channel], name=f"{files.case_id}_{modality}")
    _run_and_wait(widget, qtbot)
    layer = _segmentation(viewer)
    assert layer.name == f"{files.case_id} segmentation" and layer.data.shape == case.image.shape[1:]
    assert layer.metadata[METADATA_KEY]["geometry"] is None, "no geometry is invented"


def test_test_time_flips_add_an_uncertainty_map(widget, viewer, case, qtbot):
    widget.tta.value = True
    assert "4\u00d7" in widget.tta.text
    _run_and_wait(widget, qtbot)
    uncertainty = viewer.layers[f"{case.case_id} uncertainty"]
    assert isinstance(uncertainty, Image) and uncertainty.data.shape == case.image.shape[1:]
    assert viewer.layers.index(uncertainty) < viewer.layers.index(_segmentation(viewer)), "labels stay on top"


def test_cancel_stops_the_run_and_adds_nothing(widget, viewer, case, qtbot, monkeypatch):
    def endless_segment(*args, should_stop, progress, **kwargs):  # inference slower than any test
        progress(Progress("segment", 0, 1))
        while not should_stop():
            time.sleep(0.01)
        raise Cancelled("Segmentation cancelled.")

    monkeypatch.setattr(segment_module, "segment", endless_segment)
    widget.run_button.clicked()
    assert widget.cancel_button.enabled and not widget.run_button.enabled
    widget.cancel_button.clicked()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    assert "Cancelled" in widget.status.value
    assert [layer.name for layer in viewer.layers if isinstance(layer, Labels)] == [f"{case.case_id} reference labels"]
    assert widget.run_button.enabled


def test_without_modality_layers_it_says_what_is_missing(widget, viewer):
    viewer.add_image(np.ones((4, 5, 6)), name="FLAIR")
    widget.run_button.clicked()
    assert widget.status.is_error and "No image layer for T1, T1ce, T2" in widget.status.value
    assert widget.worker is None


def test_a_foreign_checkpoint_is_refused_when_chosen(widget, tmp_path, tiny_checkpoint):
    foreign = tmp_path / "other_tool.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    widget.checkpoint.value = foreign
    assert widget.status.is_error and "not a napari-brainseg checkpoint" in widget.status.value
    assert widget.model.value == tiny_checkpoint, "the previous model stays chosen"


def test_absent_devices_cannot_be_chosen_and_are_refused(widget, viewer, case):
    absent = [d for d in ("cuda", "mps") if d not in available_devices()]
    if not absent:
        pytest.skip("every device is present on this machine")
    items = widget.device.native.model()
    names = [widget.device.native.itemText(i).lower() for i in range(widget.device.native.count())]
    assert all(not items.item(names.index(d)).isEnabled() for d in absent)
    assert items.item(names.index("cpu")).isEnabled() and items.item(names.index("auto")).isEnabled()
    widget.device.value = absent[0].upper()
    widget.run_button.clicked()
    assert widget.status.is_error and "not available" in widget.status.value


def test_a_newly_registered_model_appears_in_the_choices(widget, tiny_checkpoint):
    entry = registry.register_model(tiny_checkpoint, name="my-site")
    assert entry.path in [value for value in widget.model.choices]


def test_a_model_that_segments_twice_says_so_and_gives_what_the_core_gives(widget, viewer, case, qtbot, tmp_path):
    from napari_brainseg.backend import load_for_inference
    from napari_brainseg.inference import SECOND_PASS_STAGE, segment
    from napari_brainseg.model import load_model, save_checkpoint

    network, info = load_model(widget.checkpoint.value)
    wt = segment(case.image, network, "cpu").probabilities[0]
    info.set_thresholds([float(np.percentile(wt[np.any(case.image != 0, axis=0)], 80))] * 3)  # a fifth is tumour
    info.second_pass = True
    widget.checkpoint.value = save_checkpoint(tmp_path / "twice.pt", network, info)
    seen, shown = [], widget.on_progress

    def spy(progress: Progress) -> None:
        shown(progress)
        seen.append((progress.stage, widget.status.value))

    widget.on_progress = spy
    _run_and_wait(widget, qtbot)
    assert any(stage == SECOND_PASS_STAGE and "Segmenting again" in status for stage, status in seen)
    loaded = load_for_inference(widget.checkpoint.value, device="cpu")  # ONNX Runtime, as the widget runs it
    expected = segment(case.image, loaded.model, "cpu", **info.segment_options()).labels
    assert np.array_equal(_segmentation(viewer).data, expected)
