"""What a new user sees in napari: every widget in the demo, expert labels that read as the reference under a
prediction, the device Segment actually runs on, an activity indicator that stops, sliders named by anatomy."""

from __future__ import annotations

import threading

import pytest
from napari.layers import Labels
from npe2 import PluginManager

from napari_brainseg import _sample_data, registry
from napari_brainseg._widgets import segment as segment_module
from napari_brainseg.demo import WIDGETS, open_demo
from napari_brainseg.devices import available_devices
from napari_brainseg.jobs import Cancelled, Progress
from napari_brainseg.layers import AXIS_LABELS, REFERENCE_CONTOUR

PLUGIN = "napari-brainseg"
TIMEOUT_MS = 120_000


@pytest.fixture(autouse=True)
def private_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(registry.ENV_VAR, str(tmp_path / "models"))
    monkeypatch.setattr(_sample_data, "SAMPLE_SHAPE", (48, 56, 40))


@pytest.fixture
def case_id(viewer, make_case) -> str:
    """A case with a label file, opened by the plugin's reader."""
    files = make_case()
    viewer.open(str(files.folder), plugin=PLUGIN)
    return files.case_id


def activity_indicator(viewer):
    return viewer.window._qt_window._activity_dialog._toggleButton._inProgressIndicator


def test_the_demo_docks_every_widget_of_the_plugin(viewer, qtbot, tiny_checkpoint):
    manager = PluginManager.instance()
    manager.discover()
    manifest_widgets = [w.display_name for w in manager.get_manifest(PLUGIN).contributions.widgets]
    assert list(WIDGETS) == manifest_widgets and len(WIDGETS) == 8
    widget = open_demo(viewer, tiny_checkpoint)
    for name in WIDGETS:
        assert [title for title in viewer.window.dock_widgets if name in title], f"{name} is not docked"
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)


def test_labels_from_file_read_as_the_reference_once_a_segmentation_lies_over_them(viewer, widget, case_id, qtbot):
    [reference] = [layer for layer in viewer.layers if isinstance(layer, Labels)]
    assert reference.name == f"{case_id} reference labels" and reference.contour == 0
    widget.run_button.clicked()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    labels = [layer for layer in viewer.layers if isinstance(layer, Labels)]
    assert [layer.name for layer in labels] == [f"{case_id} reference labels", f"{case_id} segmentation"]
    assert labels[0].contour == REFERENCE_CONTOUR, "the reference is drawn as outlines"
    assert labels[1].contour == 0, "the prediction is filled, on top"


def test_segment_names_the_device_it_chose_while_running(viewer, widget, case_id, qtbot, monkeypatch):
    started = threading.Event()

    def waiting_segment(*args, should_stop, progress, **kwargs):
        started.set()
        progress(Progress("segment", 0, 1))
        while not should_stop():
            threading.Event().wait(0.01)
        raise Cancelled("Segmentation cancelled.")

    monkeypatch.setattr(segment_module, "segment", waiting_segment)
    widget.device.value = "Auto"
    widget.run_button.clicked()
    qtbot.waitUntil(started.is_set, timeout=TIMEOUT_MS)
    chosen = available_devices()[0].upper()
    assert widget.status.value == f"Segmenting {case_id} on {chosen}\u2026"
    assert "auto" not in widget.status.value.lower()
    widget.cancel_button.clicked()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)


def test_the_activity_indicator_stops_once_the_case_is_open_and_segmented(viewer, widget, make_case, qtbot):
    indicator = activity_indicator(viewer)
    movie = indicator.movie()
    states = []
    movie.stateChanged.connect(states.append)
    viewer.open(str(make_case().folder), plugin=PLUGIN)  # napari shows its "Opening Files" activity
    widget.run_button.clicked()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert movie.MovieState.Running in states, "the indicator ran while the case opened"
    qtbot.waitUntil(lambda: indicator.isHidden() and movie.state() == movie.MovieState.NotRunning, timeout=10_000)


def test_the_sliders_of_a_case_are_named_by_anatomy(viewer, widget, case_id, qtbot):
    assert AXIS_LABELS == ("I-S", "A-P", "R-L")
    assert tuple(viewer.dims.axis_labels) == AXIS_LABELS
    widget.run_button.clicked()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert tuple(viewer.dims.axis_labels) == AXIS_LABELS
    assert all(tuple(layer.axis_labels) == AXIS_LABELS for layer in viewer.layers)


def test_a_screenshot_is_a_picture_of_the_whole_window_saved_in_a_new_folder(viewer, tmp_path, capsys):
    import imageio.v3 as iio

    from napari_brainseg.demo import save_screenshot

    viewer.window.resize(900, 600)
    canvas = viewer.screenshot(canvas_only=True)
    target = tmp_path / "new" / "shot.png"
    save_screenshot(viewer, target, "segmented")
    picture = iio.imread(target)
    assert picture.shape[1] > canvas.shape[1] and picture.shape[0] >= canvas.shape[0]  # docks and menus too
    assert capsys.readouterr().out == f"segmented\nScreenshot saved to {target}\n"
