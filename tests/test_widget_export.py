"""Export corrections widget: each export is a new version in the corrections folder; problems never lose data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_brainseg._widgets.export import ExportWidget, default_dataset
from napari_brainseg.io import load_case, load_seg
from napari_brainseg.labels import ET
from napari_brainseg.layers import CaseContext, prediction_layer_data

PLUGIN = "napari-brainseg"


@pytest.fixture
def widget(viewer, tmp_path) -> ExportWidget:
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.dataset.value = tmp_path / "corrections"
    return widget


@pytest.fixture
def case(make_case):
    return load_case(make_case(orientation="RAS"))


@pytest.fixture
def segmentation(viewer, case):
    """A model's segmentation of the case, as the Segment widget adds it."""
    viewer.open(str(case.files.folder), plugin=PLUGIN)
    data, kwargs, _ = prediction_layer_data(case.seg, CaseContext.of(case), "tiny", "0.0.1")
    return viewer.add_labels(data, **kwargs)


def test_the_default_corrections_folder_is_in_the_users_data_folder():
    assert default_dataset().name == "corrections" and "napari-brainseg" in str(default_dataset())


def test_exporting_a_corrected_segmentation_writes_it_on_the_source_grid(widget, segmentation, case):
    segmentation.data_setitem(np.nonzero(np.ones((2, 2, 2), bool)), ET)  # the user's correction
    result = widget.export()
    assert result.version == 1 and result.folder.is_dir()
    assert np.array_equal(load_seg(result.seg_path, case.geometry), segmentation.data)
    sidecar = json.loads(result.sidecar_path.read_text())
    assert sidecar["model"] == {"id": "tiny", "version": "0.0.1"}
    assert sidecar["changed_by_hand"] is True
    assert "version 1" in widget.status.value and str(result.folder) in widget.status.value


def test_exporting_again_adds_a_version_and_keeps_the_first(widget, segmentation):
    first = widget.export()
    first_bytes = first.seg_path.read_bytes()
    segmentation.data_setitem(np.nonzero(np.ones((2, 2, 2), bool)), ET)
    widget.export_button.clicked()
    assert "version 2" in widget.status.value
    assert sorted(p.name for p in first.folder.parent.iterdir()) == ["v001", "v002"]
    assert first.seg_path.read_bytes() == first_bytes


def test_labels_that_do_not_know_their_case_are_refused(widget, viewer, tmp_path):
    viewer.add_labels(np.zeros((4, 5, 6), dtype=np.uint8), name="hand drawn")
    assert widget.export() is None
    assert widget.status.is_error and "does not know which case files" in widget.status.value
    assert not (tmp_path / "corrections").exists()


def test_a_failed_export_is_reported_and_writes_nothing(widget, segmentation, tmp_path):
    blocker = tmp_path / "a file, not a folder"
    blocker.write_text("keep me")
    widget.dataset.value = blocker
    assert widget.export() is None
    assert widget.status.is_error and "Export failed" in widget.status.value
    assert blocker.read_text() == "keep me"


def test_without_a_labels_layer_it_says_so(widget):
    assert widget.export() is None
    assert widget.status.is_error and "No Labels layer" in widget.status.value
