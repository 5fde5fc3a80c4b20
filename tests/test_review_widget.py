"""The Review widget in a real viewer: uncertainty-guided navigation, corrections overlay, fill between
slices (undoable) and the case report."""

import numpy as np
import pytest

from napari_brainseg._widgets import add_layers
from napari_brainseg._widgets.case_report import CaseReport
from napari_brainseg._widgets.edit import EditWidget
from napari_brainseg._widgets.review import ReviewWidget
from napari_brainseg.diff import ADDED, REMOVED
from napari_brainseg.io import load_case
from napari_brainseg.labels import ED, ET, NCR
from napari_brainseg.layers import CaseContext, case_layers, prediction_layer_data, uncertainty_layer_data

UNCERTAIN_SLICES = (20, 7, 25)
"""Axial slices given injected uncertainty, most uncertain first."""


@pytest.fixture
def case(make_case):
    return load_case(make_case().folder)


@pytest.fixture
def viewer(make_napari_viewer_proxy, case):
    """A viewer with the case's four images, its model segmentation and an uncertainty map."""
    viewer = make_napari_viewer_proxy()
    add_layers(viewer, case_layers(case, show_labels=False))
    uncertainty = np.zeros(case.image.shape[1:], dtype=np.float32)
    for size, z in zip((12, 9, 6), UNCERTAIN_SLICES):
        uncertainty[z, 10 : 10 + size, 10 : 10 + size] = 0.4
    context = CaseContext.of(case)
    add_layers(
        viewer,
        [uncertainty_layer_data(uncertainty, context), prediction_layer_data(case.seg, context, "tiny", "0.0.1")],
    )
    return viewer


@pytest.fixture
def widget(viewer, qtbot):
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def axial_slice(viewer) -> int:
    return int(viewer.dims.current_step[0])


def test_next_jumps_to_the_most_uncertain_slices_and_previous_goes_back(viewer, widget):
    viewer.dims.set_current_step(0, 0)
    assert widget.navigation.uncertainty.value.name.endswith("uncertainty")
    widget.navigation.next_button.native.click()
    assert axial_slice(viewer) == 20
    widget.navigation.next_button.native.click()
    assert axial_slice(viewer) == 7
    widget.navigation.previous_button.native.click()
    assert axial_slice(viewer) == 20
    assert "To review along axis 0 (1): 25" in widget.navigation.queue_list.value
    assert "Reviewed (2 of 3): 20, 7" in widget.navigation.queue_list.value


def test_slices_reached_by_scrolling_count_as_reviewed_and_are_not_proposed_again(viewer, widget):
    viewer.dims.set_current_step(0, 0)
    viewer.dims.set_current_step(0, 20)  # the user scrolls to the most uncertain slice
    assert "Reviewed (1 of 3): 20" in widget.navigation.queue_list.value
    widget.navigation.next_button.native.click()
    assert axial_slice(viewer) == 7
    widget.navigation.next_button.native.click()
    assert axial_slice(viewer) == 25
    widget.navigation.next_button.native.click()
    assert axial_slice(viewer) == 25 and "have been reviewed" in widget.status.value


def test_next_follows_the_current_slicing_axis(viewer, widget, case):
    uncertainty = widget.navigation.uncertainty.value
    uncertainty.data[:] = 0
    uncertainty.data[5:9, 33, 4:30] = 0.3  # one coronal slice (axis 1) stands out
    viewer.dims.order = (1, 0, 2)  # slice along axis 1
    widget.navigation.next_button.native.click()
    assert int(viewer.dims.current_step[1]) == 33
    assert "along axis 1" in widget.navigation.queue_list.value


def test_corrections_toggle_adds_and_removes_the_diff_layer_with_counts(viewer, widget, qtbot):
    labels = widget.layer.value
    assert labels.name.endswith("segmentation")
    background = np.argwhere(labels.data == 0)[:5]
    labels.data_setitem(tuple(background.T), ET)
    widget.corrections.show_corrections.value = True
    diff = viewer.layers[f"{labels.name} corrections"]
    assert np.count_nonzero(diff.data == ADDED) == 5 and np.count_nonzero(diff.data == REMOVED) == 0
    assert "enhancing: +5 / \u22120 voxels" in widget.corrections.counts.value
    assert viewer.layers.selection.active.name == labels.name  # painting goes on in the labels, not the overlay

    tumour = np.argwhere(labels.data == ED)[:3]
    labels.data_setitem(tuple(tumour.T), 0)  # an edit while the overlay is shown updates it
    qtbot.waitUntil(lambda: np.count_nonzero(diff.data == REMOVED) == 3, timeout=3000)
    assert "oedema: +0 / \u22123 voxels" in widget.corrections.counts.value

    widget.corrections.show_corrections.value = False
    assert f"{labels.name} corrections" not in viewer.layers


def test_the_corrections_overlay_is_never_offered_as_a_labels_layer_to_edit(viewer, widget):
    labels = widget.layer.value
    widget.corrections.show_corrections.value = True
    overlay = viewer.layers[f"{labels.name} corrections"]
    edit = EditWidget(viewer)
    viewer.layers.selection.active = overlay  # even when the user selects it in the layer list
    for picker in (widget.layer, edit.layer):
        assert overlay not in picker.choices and labels in picker.choices
        assert picker.value is labels


def test_corrections_need_a_layer_with_a_prediction(viewer, widget):
    viewer.add_labels(np.zeros(widget.layer.value.data.shape, dtype=np.uint8), name="hand drawn")
    widget.layer.value = viewer.layers["hand drawn"]
    widget.corrections.show_corrections.value = True
    assert widget.corrections.show_corrections.value is False
    assert "no model prediction" in widget.status.value and widget.status.is_error
    assert len([layer for layer in viewer.layers if layer.name.endswith("corrections")]) == 0


def test_fill_between_slices_fills_the_gap_in_one_undoable_step(viewer, widget):
    manual = viewer.add_labels(np.zeros(widget.layer.value.data.shape, dtype=np.uint8), name="hand drawn")
    manual.data[4, 10:20, 10:20] = NCR
    manual.data[10, 12:18, 12:18] = NCR
    manual.data[7, 0:3, 0:3] = ED  # another label in the gap stays
    before = manual.data.copy()
    widget.layer.value = manual
    manual.selected_label = NCR
    widget.corrections.fill_button.native.click()
    filled = (manual.data == NCR).any(axis=(1, 2))
    assert np.flatnonzero(filled).tolist() == list(range(4, 11))
    assert (manual.data[7, 0:3, 0:3] == ED).all()
    assert "Ctrl+Z undoes" in widget.status.value
    manual.undo()
    np.testing.assert_array_equal(manual.data, before)


def test_fill_between_slices_refuses_background_as_the_label(viewer, widget):
    labels = widget.layer.value
    before = labels.data.copy()
    labels.selected_label = 0
    widget.corrections.fill_button.native.click()
    assert widget.status.is_error and "pick NCR/NET" in widget.status.value
    np.testing.assert_array_equal(labels.data, before)


def test_report_button_writes_the_report_where_the_user_chose(viewer, widget, tmp_path, monkeypatch):
    target = tmp_path / "case report.pdf"
    monkeypatch.setattr(CaseReport, "_ask_path", lambda self, suggestion: target)
    widget.report.button.native.click()
    assert target.read_bytes().startswith(b"%PDF")
    assert str(target) in widget.status.value

    summary = widget.report.write()
    assert summary["model_id"] == "tiny (0.0.1)" and summary["corrected"] is False
    assert summary["case_id"] == "Synthetic_001"


def test_report_cancelled_in_the_dialog_writes_nothing(viewer, widget, tmp_path, monkeypatch):
    monkeypatch.setattr(CaseReport, "_ask_path", lambda self, suggestion: None)
    assert widget.report.write() is None
    assert not list(tmp_path.rglob("*.pdf")) and not list(tmp_path.rglob("*.png"))
    assert not widget.status.is_error
