"""Refine with clicks widget: Shift+clicks become display voxels, refine in the background, undo, clear, refuse."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from napari_brainseg._widgets import refine as refine_widget
from napari_brainseg._widgets import add_layers
from napari_brainseg._widgets.refine import RefineWidget
from napari_brainseg.clicks import next_click
from napari_brainseg.io import load_case
from napari_brainseg.labels import BACKGROUND, ED, ET
from napari_brainseg.layers import case_layers

ROTATION = np.array([[0.8, -0.6, 0.0, 5.0], [0.6, 0.8, 0.0, -3.0], [0.0, 0.0, 1.0, 2.0], [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture
def widget(viewer) -> RefineWidget:
    widget = RefineWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


@pytest.fixture
def case(make_case):
    return load_case(make_case(spacing=(1.0, 1.2, 1.5)))


@pytest.fixture
def labels(viewer, case):
    """The case's four modalities, and its expert labels with the oedema missed, as the layer to refine."""
    add_layers(viewer, case_layers(case, show_labels=False))
    missed = np.where(case.seg == ED, BACKGROUND, case.seg).astype(np.uint8)
    return viewer.add_labels(missed, name="case segmentation", scale=case.spacing)


def shift_click(widget, world, view_direction=None, dims_displayed=(1, 2)):
    event = SimpleNamespace(type="mouse_press", modifiers=("Shift",), position=tuple(world),
                            view_direction=view_direction, dims_displayed=tuple(dims_displayed))
    widget._on_mouse(widget._viewer, event)


def click_and_wait(widget, qtbot, world, **kwargs) -> None:
    shift_click(widget, world, **kwargs)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)


def brain(case) -> np.ndarray:
    return np.any(case.image != 0, axis=0)


@pytest.mark.parametrize("affine", [None, ROTATION], ids=["scaled", "rotated"])
def test_a_shift_click_becomes_the_display_voxel_under_the_mouse(widget, viewer, case, labels, qtbot, affine):
    if affine is not None:
        for layer in viewer.layers:
            layer.affine = affine
    voxel = tuple(int(v) for v in np.argwhere(case.seg == ED)[0])
    world = labels.data_to_world(np.array(voxel) + [0.0, 0.3, -0.4])  # off the voxel's centre
    widget.click_class.value = ED
    click_and_wait(widget, qtbot, world)
    assert widget.clicks(labels) == [(*voxel, ED)]
    points = widget.clicks_layer(labels)
    assert np.allclose(points.data[0], labels.data_to_world(voxel)), "the point sits on the voxel, in world space"
    assert not widget.status.is_error


def test_a_click_changes_the_labels_toward_its_class_and_ctrl_z_undoes_it(widget, case, labels, qtbot):
    before = labels.data.copy()
    click = next_click(before, case.seg, brain(case))
    assert click[3] == ED
    widget.click_class.value = ED
    click_and_wait(widget, qtbot, labels.data_to_world(click[:3]))
    gained = np.count_nonzero((labels.data == ED) & (case.seg == ED))
    assert gained > 0 and labels.data[click[:3]] == ED
    assert np.count_nonzero(labels.data != case.seg) < np.count_nonzero(before != case.seg)
    assert "voxels changed" in widget.status.value
    labels.undo()  # what Ctrl+Z does on a Labels layer
    assert np.array_equal(labels.data, before)


def test_all_clicks_are_used_and_hand_painting_is_kept(widget, case, labels, qtbot):
    widget.click_class.value = ED
    first = next_click(labels.data, case.seg, brain(case))
    click_and_wait(widget, qtbot, labels.data_to_world(first[:3]))
    second = next_click(labels.data, case.seg, brain(case))
    painted = (second[0], second[1], second[2] + 2)  # beside the next click, painted with the user's brush
    labels.data_setitem(tuple(np.array([[v] for v in painted])), ET)
    widget.click_class.value = second[3]
    click_and_wait(widget, qtbot, labels.data_to_world(second[:3]))
    assert widget.clicks(labels) == [first, second]
    assert labels.data[painted] == ET
    assert labels.data[first[:3]] == first[3] and labels.data[second[:3]] == second[3]


def test_in_3d_a_click_lands_on_the_first_tumour_voxel_along_the_ray(widget, viewer, case, labels, qtbot):
    viewer.dims.ndisplay = 3
    z, y, x = (int(v) for v in np.argwhere(labels.data > 0)[0])
    first = int(np.argmax(labels.data[:, y, x] > 0))
    outside = labels.data_to_world((-5.0, y, x))
    widget.click_class.value = ET
    click_and_wait(widget, qtbot, outside, view_direction=(1.0, 0.0, 0.0), dims_displayed=(0, 1, 2))
    assert widget.clicks(labels) == [(first, y, x, ET)]


def test_clear_clicks_removes_the_points_and_keeps_the_labels(widget, viewer, case, labels, qtbot):
    click = next_click(labels.data, case.seg, brain(case))
    widget.click_class.value = click[3]
    click_and_wait(widget, qtbot, labels.data_to_world(click[:3]))
    refined = labels.data.copy()
    widget.clear_button.clicked()
    assert widget.clicks_layer(labels) is None and widget.clicks(labels) == []
    assert np.array_equal(labels.data, refined)


def test_refining_runs_off_the_gui_thread_with_the_widget_busy(widget, case, labels, qtbot, monkeypatch):
    release, ran_on = threading.Event(), []

    def slow_refine(image, labels, clicks, model=None):
        ran_on.append(threading.current_thread())
        release.wait(30)
        return labels

    monkeypatch.setattr(refine_widget, "refine", slow_refine)
    click = next_click(labels.data, case.seg, brain(case))
    shift_click(widget, labels.data_to_world(click[:3]))
    qtbot.waitUntil(lambda: bool(ran_on), timeout=30_000)
    assert not widget.progress.native.isHidden() and widget.worker is not None, "busy shown"
    assert ran_on[0] is not threading.main_thread()
    assert not widget.add_click(labels.data_to_world(click[:3])), "one click at a time"
    assert "Still refining" in widget.status.value
    release.set()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert widget.progress.native.isHidden()


def test_bad_clicks_are_refused_with_a_message_and_change_nothing(widget, viewer, case, labels, qtbot):
    before = labels.data.copy()
    outside_brain = tuple(int(v) for v in np.argwhere(~brain(case))[0])
    attempts = {
        "outside the volume": dict(position=labels.data_to_world((2, 500, 3))),
        "outside the brain": dict(position=labels.data_to_world(outside_brain)),
        "label 3": dict(position=labels.data_to_world(np.argwhere(case.seg == ED)[0]), label=3),
    }
    for message, kwargs in attempts.items():
        assert not widget.add_click(**kwargs)
        assert message in widget.status.value and widget.status.is_error
    assert widget.clicks_layer(labels) is None
    assert np.array_equal(labels.data, before)


def test_clicks_with_no_case_open_are_refused(widget, viewer):
    assert not widget.add_click((1.0, 2.0, 3.0))
    assert "No image layer for FLAIR" in widget.status.value
    assert len(viewer.layers) == 0


def test_a_checkpoint_of_the_wrong_kind_is_refused(widget, tiny_checkpoint):
    widget.checkpoint.value = tiny_checkpoint
    assert "is a segmentation model" in widget.status.value and widget.status.is_error
    assert widget.refinement_model is None, "region growing stays chosen"
    assert len(widget.model.choices) == 1
