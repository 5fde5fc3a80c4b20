"""Long work in the widgets: Cancel starts nothing new, and closing the dock or the viewer stops the run.

A stand-in network with small windows (so that a case takes about 100 batches) holds its first batch
until the test lets it go: the test acts while the run is certainly going, and then counts the batches
that still ran.
"""

from __future__ import annotations

import threading

import monai.inferers  # noqa: F401 -- imported before the runs, which would otherwise import it first
import monai.transforms  # noqa: F401
import pytest
import torch
from napari.layers import Labels

from napari_brainseg import inference, registry
from napari_brainseg._widgets import segment as segment_module
from napari_brainseg._widgets.segment import SegmentWidget
from napari_brainseg.backend import TORCH, LoadedModel
from napari_brainseg.model import ModelInfo

PLUGIN = "napari-brainseg"
WAIT_MS = 300_000
"""An upper bound only (a slow, busy machine): every wait ends as soon as its condition holds."""


class HeldNetwork(torch.nn.Module):
    """Predicts no tumour; each call waits until ``release`` is set. Counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.running = threading.Event()
        self.release = threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.running.set()
        self.release.wait(WAIT_MS / 1000)
        return torch.full((x.shape[0], 3, *x.shape[2:]), -10.0)


@pytest.fixture(autouse=True)
def private_models_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.ENV_VAR, str(tmp_path / "models"))


def held_model(network: HeldNetwork) -> LoadedModel:
    """What loading any model file gives in these tests: the held network, on the CPU with torch."""
    return LoadedModel(network, ModelInfo(model_id="held"), TORCH, "cpu")


@pytest.fixture
def network(monkeypatch) -> HeldNetwork:
    """The network every model file loads as; small windows make a case take about 100 batches."""
    network = HeldNetwork()
    monkeypatch.setattr(inference, "WINDOW", (8, 8, 8))
    monkeypatch.setattr(segment_module, "load_for_inference", lambda *_, **__: held_model(network))
    yield network
    network.release.set()


@pytest.fixture
def viewer(make_napari_viewer_proxy, make_case):
    viewer = make_napari_viewer_proxy()
    viewer.open(str(make_case().folder), plugin=PLUGIN)
    return viewer


@pytest.fixture
def widget(viewer) -> SegmentWidget:
    """Offers the bundled model (listed first); whichever model is chosen loads as the network above."""
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def _segmentations(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers if isinstance(layer, Labels) and "segmentation" in layer.name]


def _start_and_hold_the_first_batch(widget: SegmentWidget, network: HeldNetwork):
    widget.run_button.clicked()
    worker = widget.worker
    assert network.running.wait(WAIT_MS / 1000), "the run started"
    return worker


def test_closing_the_viewer_mid_run_stops_the_run_at_once_without_an_error(viewer, widget, network, qtbot):
    worker = _start_and_hold_the_first_batch(widget, network)
    with qtbot.waitSignal(widget.native.destroyed, timeout=WAIT_MS):
        viewer.close()
    network.release.set()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=WAIT_MS)
    assert network.calls == 1, "no batch of windows starts after the viewer closed"


def test_closing_the_dock_mid_run_stops_the_run_and_adds_nothing(viewer, widget, network, qtbot):
    worker = _start_and_hold_the_first_batch(widget, network)
    with qtbot.waitSignal(widget.native.destroyed, timeout=WAIT_MS):
        viewer.window.remove_dock_widget(widget.native)
        widget.native.deleteLater()
    network.release.set()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=WAIT_MS)
    qtbot.wait(100)  # a result would be delivered by now
    assert network.calls == 1 and _segmentations(viewer) == []


def test_cancel_while_the_model_loads_starts_no_inference(viewer, widget, network, qtbot, monkeypatch):
    loading, loaded = threading.Event(), threading.Event()
    segment_calls: list[object] = []

    def slow_load(*_, **__):
        loading.set()
        loaded.wait(WAIT_MS / 1000)
        return held_model(network)

    monkeypatch.setattr(segment_module, "load_for_inference", slow_load)
    monkeypatch.setattr(segment_module, "segment", lambda *args, **kwargs: segment_calls.append(args))
    widget.run_button.clicked()
    assert loading.wait(WAIT_MS / 1000)
    widget.cancel_button.clicked()
    loaded.set()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    assert segment_calls == [] and network.calls == 0, "nothing starts once Cancel is pressed"
    assert "Cancelled" in widget.status.value and _segmentations(viewer) == []
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_cancel_mid_run_stops_at_the_next_batch_and_adds_nothing(viewer, widget, network, qtbot):
    worker = _start_and_hold_the_first_batch(widget, network)
    widget.cancel_button.clicked()
    assert not widget.cancel_button.enabled and "Cancelling" in widget.status.value
    network.release.set()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    assert not worker.is_running and network.calls == 1
    assert "Cancelled; nothing was added" in widget.status.value and _segmentations(viewer) == []
