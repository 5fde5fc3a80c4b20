"""The plugin's dock widgets, one per module, and the small pieces they share.

* :mod:`.load` - ``LoadWidget``: open a case folder, or its four files one by one.
* :mod:`.segment` - ``SegmentWidget``: run a model on the open case; region volumes in mL.
* :mod:`.edit` - ``EditWidget``: paint classes; undoable clean-ups (fill holes, remove islands).
* :mod:`.refine` - ``RefineWidget``: Shift+click a class (or "not tumour") onto the case; refine around it.
* :mod:`.export` - ``ExportWidget``: save a corrected segmentation to a corrections dataset.
* :mod:`.review` - ``ReviewWidget``: one dock of three parts: :mod:`.navigation` (uncertain slices
  first), :mod:`.corrections` (corrections overlay, fill between slices) and :mod:`.case_report`.
* :mod:`.retrain` - ``RetrainWidget``: fine-tune a model on the exported corrections.

Each widget is a thin magicgui ``Container`` taking the viewer: it gathers input, calls the core and
shows the result. A problem is shown in the widget's status line and as a napari notification.
Long work (segmenting, fine-tuning) runs in the background the one way :mod:`._worker` describes:
a progress bar, *Cancel*, and a job that stops when its widget or the viewer closes.
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


def edit_events(layer: napari.layers.Labels) -> list:
    """The events of every change to a Labels layer's voxels.

    ``paint``: brush, fill and ``data_setitem``; ``data``: a new array; ``set_data``: refresh after undo/redo.
    """
    return [layer.events.paint, layer.events.data, layer.events.set_data]


def slicing_axis(viewer: napari.viewer.Viewer, layer: napari.layers.Layer) -> int | None:
    """The layer's data axis that the viewer slices along now (None in the 3-D view)."""
    dims = viewer.dims
    if dims.ndisplay != 2:
        return None
    return dims.not_displayed[-1] - (dims.ndim - layer.ndim)


def current_index(viewer: napari.viewer.Viewer, layer: napari.layers.Layer, axis: int) -> int:
    """The index along ``axis`` of the layer's slice that the viewer shows now."""
    position = layer.world_to_data(viewer.dims.point)
    return int(np.clip(np.rint(position[axis]), 0, layer.data.shape[axis] - 1))


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
