"""The plugin's dock widgets, one per module, and the small pieces they share.

* :mod:`.load` - ``LoadWidget``: open a case folder, or its four files one by one.
* :mod:`.segment` - ``SegmentWidget``: run a model on the open case; region volumes in mL.
* :mod:`.edit` - ``EditWidget``: paint classes; undoable clean-ups (fill holes, remove islands).
* :mod:`.refine` - ``RefineWidget``: Shift+click a class (or "not tumour") onto the case; refine around it.
* :mod:`.export` - ``ExportWidget``: save a corrected segmentation to a corrections dataset.
* :mod:`.review` - ``ReviewWidget``: uncertain slices first, corrections overlay, fill between slices, report.

Each widget is a thin magicgui ``Container`` taking the viewer: it gathers input, calls the core and
shows the result. A problem is shown in the widget's status line and as a napari notification.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Label
from magicgui.widgets.bases import Widget

from ..layers import LayerDataTuple, is_overlay

if TYPE_CHECKING:
    import napari
    import napari.layers
    from magicgui.widgets import ProgressBar, PushButton
    from napari.qt.threading import WorkerBase

ERROR_STYLE = "color: #ff6060;"


class Status(Label):
    """A widget's status line: what just happened, or what went wrong and what to do."""

    def __init__(self) -> None:
        super().__init__(value="")
        self.native.setWordWrap(True)

    def info(self, text: str) -> None:
        self.native.setStyleSheet("")
        self.value = text

    def error(self, problem: Exception | str, notify: bool = True) -> None:
        """Show ``problem`` here and (unless napari already did) as a napari error notification."""
        from napari.utils.notifications import show_error

        text = str(problem)
        self.native.setStyleSheet(ERROR_STYLE)
        self.value = text
        if notify:
            show_error(text)

    @property
    def is_error(self) -> bool:
        return self.native.styleSheet() == ERROR_STYLE


class RunsInBackground:
    """Mixed into a widget that runs one napari worker at a time, shown by its Run/Cancel buttons and progress bar."""

    FAILED = "It failed"
    """How the status line starts when the worker raises, e.g. ``"Segmentation failed"``."""
    worker: WorkerBase | None = None
    run_button: PushButton
    cancel_button: PushButton
    progress: ProgressBar
    status: Status

    def _run_worker(self, worker: WorkerBase) -> None:
        """Start ``worker`` (its other signals already connected); the widget shows it busy until it finishes."""
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.progress.value, self.progress.max, self.progress.visible = 0, 1, True
        worker.start()

    def _on_error(self, err: Exception) -> None:
        # napari's worker has already raised a notification for it (with the traceback).
        self.status.error(f"{self.FAILED}: {err}", notify=False)

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.enabled, self.cancel_button.enabled = True, False
        self.progress.visible = False


def add_layers(viewer: napari.viewer.Viewer, layer_data: Iterable[LayerDataTuple]) -> list[napari.layers.Layer]:
    """Add napari LayerData tuples to the viewer; returns the new layers."""
    from napari.layers import Layer

    return [viewer.add_layer(Layer.create(data, kwargs, kind)) for data, kwargs, kind in layer_data]


def set_masked_voxels(layer: napari.layers.Labels, mask: np.ndarray, value: int) -> int:
    """Set ``layer``'s voxels under ``mask`` to ``value`` as one edit that Ctrl+Z undoes; returns how many."""
    indices = np.nonzero(mask)
    if indices[0].size:
        layer.data_setitem(indices, value)
    return int(indices[0].size)


def connect_while_alive(widget: Widget, emitter, callback) -> None:
    """Connect ``callback`` to a napari or psygnal ``emitter`` until ``widget``'s Qt object is deleted.

    The viewer, its layers and the model registry outlive a closed dock widget; their events must not
    reach its deleted Qt controls.
    """
    emitter.connect(callback)
    widget.native.destroyed.connect(lambda *_: emitter.disconnect(callback))


class LabelsLayerPicker(ComboBox):
    """A choice of the viewer's Labels layers that follows the layer selected in the layer list.

    Overlays drawn over a label map (such as the Review widget's corrections) are not offered.
    """

    def __init__(self, viewer: napari.viewer.Viewer, label: str = "Labels layer") -> None:
        self._viewer = viewer
        super().__init__(label=label, choices=self._labels_layers)
        events = viewer.layers.events
        for emitter in (events.inserted, events.removed, events.renamed):
            connect_while_alive(self, emitter, self.reset_choices)
        connect_while_alive(self, viewer.layers.selection.events.active, self.follow_selection)
        self.follow_selection()

    def _labels_layers(self, _=None) -> list[tuple[str, napari.layers.Labels]]:
        from napari.layers import Labels

        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Labels) and not is_overlay(layer)
        ]

    def follow_selection(self, event=None) -> None:
        """Pick the layer selected in the layer list when it is one of the choices."""
        self.reset_choices()
        active = self._viewer.layers.selection.active
        if active in self.choices:
            self.value = active
