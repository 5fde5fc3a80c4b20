"""Review navigation: jump to the slices where the model is least sure, most uncertain first.

The queue (:class:`napari_brainseg.review.ReviewQueue`) runs along the axis the viewer slices now; a
slice counts as reviewed once the user has been on it, by the buttons or by scrolling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton

from ..layers import brainseg_metadata, find_modality_layers
from ..review import ReviewQueue, slice_scores
from . import Status, connect_while_alive, current_index, slicing_axis

if TYPE_CHECKING:
    import napari
    import napari.layers

LISTED_SLICES = 12


def _slice_list(slices: list[int]) -> str:
    shown = ", ".join(str(i) for i in slices[:LISTED_SLICES])
    return shown + (f", \u2026 ({len(slices) - LISTED_SLICES} more)" if len(slices) > LISTED_SLICES else "")


class SliceNavigation(Container):
    """An uncertainty map to follow, Previous / Next slice to review, and the queue along the current axis."""

    def __init__(self, viewer: napari.viewer.Viewer, status: Status) -> None:
        super().__init__(labels=False)
        self._viewer = viewer
        self._queues: dict[tuple[int, int], ReviewQueue] = {}
        self.status = status
        self.uncertainty = ComboBox(label="Uncertainty map", choices=self._uncertainty_layers, nullable=True)
        self.previous_button = PushButton(text="Previous")
        self.next_button = PushButton(text="Next slice to review")
        self.queue_list = Label(value="")
        self.queue_list.native.setWordWrap(True)

        events = viewer.layers.events
        for emitter in (events.inserted, events.removed, events.renamed):
            connect_while_alive(self, emitter, self.uncertainty.reset_choices)
        connect_while_alive(self, events.inserted, self._pick_uncertainty)
        connect_while_alive(self, events.removed, self._forget_layer)
        connect_while_alive(self, viewer.dims.events.current_step, self._on_step)
        self.uncertainty.changed.connect(self.refresh_queue)
        self.next_button.clicked.connect(self.next_slice)
        self.previous_button.clicked.connect(self.previous_slice)
        buttons = Container(widgets=[self.previous_button, self.next_button], layout="horizontal", labels=False)
        self.extend([self.uncertainty, buttons, self.queue_list])
        self._pick_uncertainty()

    def _uncertainty_layers(self, _=None) -> list[tuple[str, napari.layers.Image]]:
        from napari.layers import Image

        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image)
            and layer.ndim == 3
            and (brainseg_metadata(layer).get("role") == "uncertainty" or "uncertainty" in layer.name.lower())
        ]

    def _pick_uncertainty(self, event=None) -> None:
        """Choose an uncertainty map just added, or the newest one when none is chosen yet."""
        layers = [layer for _, layer in self._uncertainty_layers()]
        if event is not None and event.value in layers:
            self.uncertainty.value = event.value
        elif self.uncertainty.value is None and layers:
            self.uncertainty.value = layers[-1]
        self.refresh_queue()

    def _jump(self, layer: napari.layers.Layer, axis: int, index: int) -> None:
        position = np.asarray(layer.world_to_data(self._viewer.dims.point), dtype=float)
        position[axis] = index
        world_axis = axis + self._viewer.dims.ndim - layer.ndim
        self._viewer.dims.set_point(world_axis, float(layer.data_to_world(position)[axis]))

    def _brain(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """Voxels where any modality is non-zero, when the case's images are open on the same grid."""
        volumes = [layer.data for layer in find_modality_layers(self._viewer.layers).values()]
        volumes = [v for v in volumes if v.shape == shape]
        if not volumes:
            return None
        brain = np.zeros(shape, dtype=bool)
        for volume in volumes:
            brain |= np.asarray(volume) != 0
        return brain

    def _queue(self, layer: napari.layers.Image, axis: int) -> ReviewQueue:
        key = (id(layer), axis)
        if key not in self._queues:
            data = np.asarray(layer.data)
            self._queues[key] = ReviewQueue(slice_scores(data, axis, self._brain(data.shape)))
        return self._queues[key]

    def _navigation(self) -> tuple[napari.layers.Image, int, ReviewQueue] | None:
        layer = self.uncertainty.value
        if layer is None:
            self.status.error("No uncertainty map: segment with 'Test-time flips + uncertainty map' ticked first.")
            return None
        if self._viewer.dims.ndisplay != 2:
            self._viewer.dims.ndisplay = 2
        axis = slicing_axis(self._viewer, layer)
        return layer, axis, self._queue(layer, axis)

    def next_slice(self) -> int | None:
        """Go to the most uncertain slice not reviewed yet along the current slicing axis."""
        found = self._navigation()
        if found is None:
            return None
        layer, axis, queue = found
        index = queue.next(current=current_index(self._viewer, layer, axis))
        if index is None:
            self.status.info("All uncertain slices along this axis have been reviewed.")
        else:
            self._jump(layer, axis, index)
            self.status.info(f"Slice {index}: uncertainty {queue.scores[index]:.1f} (sum over the brain).")
        self.refresh_queue()
        return index

    def previous_slice(self) -> int | None:
        """Go back to the slice that 'Next' showed before this one."""
        found = self._navigation()
        if found is None:
            return None
        layer, axis, queue = found
        index = queue.previous()
        if index is None:
            self.status.info("No earlier slice: this is the first one 'Next' showed.")
        else:
            self._jump(layer, axis, index)
        self.refresh_queue()
        return index

    def _on_step(self, event=None) -> None:
        """A slice the user lands on (by scrolling or by the buttons) counts as reviewed."""
        layer = self.uncertainty.value
        if layer is None or layer not in self._viewer.layers:
            return
        axis = slicing_axis(self._viewer, layer)
        if axis is None or axis < 0:
            return
        self._queue(layer, axis).mark_visited(current_index(self._viewer, layer, axis))
        self.refresh_queue()

    def refresh_queue(self, _=None) -> None:
        """Show the slices still to review and those reviewed, along the current slicing axis."""
        layer = self.uncertainty.value
        axis = slicing_axis(self._viewer, layer) if layer is not None else None
        if axis is None or axis < 0:
            no_queue = "Segment with the uncertainty map to get a review queue."
            self.queue_list.value = no_queue if layer is None else "Switch to the 2-D view to review slice by slice."
            return
        queue = self._queue(layer, axis)
        self.queue_list.value = (
            f"To review along axis {axis} ({len(queue.queued)}): {_slice_list(queue.queued) or 'none'}\n"
            f"Reviewed ({len(queue.reviewed)} of {len(queue.order)}): {_slice_list(queue.reviewed) or 'none'}"
        )

    def _forget_layer(self, event) -> None:
        self._queues = {key: queue for key, queue in self._queues.items() if key[0] != id(event.value)}
