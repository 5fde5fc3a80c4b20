"""Edit labels widget: class picker drives the brush; clean-ups are single undoable edits."""

from __future__ import annotations

import numpy as np
import pytest

from napari_brainseg._widgets.edit import EditWidget
from napari_brainseg.labels import ED, ET, NCR


@pytest.fixture
def widget(viewer) -> EditWidget:
    widget = EditWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


@pytest.fixture
def seg_layer(viewer):
    """A tumour with a hole in its core, and a 2-voxel island of oedema far from it."""
    seg = np.zeros((12, 16, 16), dtype=np.uint8)
    seg[2:10, 3:13, 3:13] = ED
    seg[3:9, 5:11, 5:11] = NCR
    seg[5:7, 7:9, 7:9] = 0  # the hole
    seg[11, 0, 0:2] = ED  # the island
    return viewer.add_labels(seg, name="case segmentation")


def test_the_picker_targets_the_selected_labels_layer(widget, viewer, seg_layer):
    assert widget.layer.value.name == seg_layer.name
    viewer.add_labels(np.zeros((2, 2, 2), dtype=np.uint8), name="other")
    assert widget.layer.value.name == "other", "a new labels layer becomes the target"
    viewer.layers.selection.active = viewer.layers[seg_layer.name]
    assert widget.layer.value.name == seg_layer.name


@pytest.mark.parametrize(("label", "mode"), [(NCR, "paint"), (ED, "paint"), (ET, "paint"), (0, "erase")])
def test_choosing_a_class_sets_the_brush(widget, seg_layer, label, mode):
    widget.tumour_class.value = label
    assert seg_layer.mode == mode
    if mode == "paint":
        assert seg_layer.selected_label == label


def test_the_class_picker_offers_the_three_brats_classes_and_an_eraser(widget):
    from qtpy.QtWidgets import QRadioButton

    assert list(widget.tumour_class.choices) == [NCR, ED, ET, 0]
    texts = [button.text() for button in widget.tumour_class.native.findChildren(QRadioButton)]
    assert texts == ["NCR/NET (1)", "oedema (2)", "enhancing (4)", "eraser"]


def test_fill_holes_fills_the_enclosed_hole_and_undo_restores_it(widget, seg_layer):
    before = seg_layer.data.copy()
    widget.tumour_class.value = NCR
    widget.fill_button.clicked()
    assert (seg_layer.data[5:7, 7:9, 7:9] == NCR).all()
    assert np.count_nonzero(seg_layer.data != before) == 8
    assert "Filled 8 voxels" in widget.status.value
    seg_layer.undo()
    assert np.array_equal(seg_layer.data, before)


def test_remove_islands_erases_only_small_components_and_undo_restores_them(widget, seg_layer):
    before = seg_layer.data.copy()
    widget.min_voxels.value = 10
    widget.islands_button.clicked()
    assert not seg_layer.data[11, 0, 0:2].any()
    assert np.count_nonzero(seg_layer.data != before) == 2, "the tumour itself is untouched"
    seg_layer.undo()
    assert np.array_equal(seg_layer.data, before)


def test_filling_with_the_eraser_chosen_asks_for_a_class(widget, seg_layer):
    before = seg_layer.data.copy()
    widget.tumour_class.value = 0
    widget.fill_button.clicked()
    assert widget.status.is_error and "Choose NCR/NET" in widget.status.value
    assert np.array_equal(seg_layer.data, before)


def test_without_a_labels_layer_it_says_so(widget):
    widget.fill_button.clicked()
    assert widget.status.is_error and "No Labels layer" in widget.status.value
