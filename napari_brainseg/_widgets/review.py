"""Review: walk the most uncertain slices first, see what was corrected, fill between slices, write a report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton
from superqt.utils import qdebounced

from ..diff import DIFF_COLORS, diff_counts, diff_map
from ..interpolation import drawn_slices, fill_between_slices
from ..io import MODALITY_TITLES
from ..labels import LABEL_NAMES, LabelError
from ..layers import CORRECTIONS_ROLE, METADATA_KEY, brainseg_metadata, find_modality_layers
from ..report import REPORT_FORMATS, REPORT_MODALITIES, write_case_report
from ..review import ReviewQueue, slice_scores
from . import LabelsLayerPicker, Status, set_masked_voxels

if TYPE_CHECKING:
    import napari
    import napari.layers

DIFF_REFRESH_MS = 250
LISTED_SLICES = 12
REPORT_FILTERS = "PDF document (*.pdf);;PNG image (*.png)"


def _slice_list(slices: list[int]) -> str:
    shown = ", ".join(str(i) for i in slices[:LISTED_SLICES])
    return shown + (f", \u2026 ({len(slices) - LISTED_SLICES} more)" if len(slices) > LISTED_SLICES else "")


class ReviewWidget(Container):
    """Jump to uncertain slices; overlay the corrections; fill between drawn slices; write a case report."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self._queues: dict[tuple[int, int], ReviewQueue] = {}
        self._tracked: napari.layers.Labels | None = None
        self.diff_layer: napari.layers.Labels | None = None

        self.layer = LabelsLayerPicker(viewer)
        self.uncertainty = ComboBox(label="Uncertainty map", choices=self._uncertainty_layers, nullable=True)
        self.previous_button = PushButton(text="Previous")
        self.next_button = PushButton(text="Next slice to review")
        self.queue_list = Label(value="")
        self.queue_list.native.setWordWrap(True)
        self.show_corrections = CheckBox(text="Show corrections (added / removed vs the prediction)")
        self.corrections = Label(value="", visible=False)
        self.fill_button = PushButton(text="Fill between slices (selected label)")
        self.report_button = PushButton(text="Write case report\u2026")
        self.status = Status()

        events = viewer.layers.events
        for emitter in (events.inserted, events.removed, events.renamed):
            emitter.connect(self.uncertainty.reset_choices)
        events.inserted.connect(self._pick_uncertainty)
        events.removed.connect(self._on_layer_removed)
        viewer.dims.events.current_step.connect(self._on_step)
        self.uncertainty.changed.connect(self.refresh_queue)
        self.next_button.clicked.connect(self.next_slice)
        self.previous_button.clicked.connect(self.previous_slice)
        self.show_corrections.changed.connect(self._toggle_corrections)
        self.layer.changed.connect(self._follow_labels_layer)
        self.fill_button.clicked.connect(self.fill_between)
        self.report_button.clicked.connect(self.write_report)
        self._refresh_diff_later = qdebounced(self.refresh_diff, timeout=DIFF_REFRESH_MS)
        navigation = Container(widgets=[self.previous_button, self.next_button], layout="horizontal", labels=False)
        self.extend([
            self.layer, self.uncertainty, navigation, self.queue_list, self.show_corrections, self.corrections,
            self.fill_button, self.report_button, self.status,
        ])  # fmt: skip
        self._pick_uncertainty()

    # --- uncertainty-guided navigation ----------------------------------------------------------------
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

    def _slicing_axis(self, layer: napari.layers.Layer) -> int | None:
        """The layer's data axis that the viewer slices along now (None in the 3-D view)."""
        dims = self._viewer.dims
        if dims.ndisplay != 2:
            return None
        return dims.not_displayed[-1] - (dims.ndim - layer.ndim)

    def _current_index(self, layer: napari.layers.Layer, axis: int) -> int:
        position = layer.world_to_data(self._viewer.dims.point)
        return int(np.clip(np.rint(position[axis]), 0, layer.data.shape[axis] - 1))

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
        axis = self._slicing_axis(layer)
        return layer, axis, self._queue(layer, axis)

    def next_slice(self) -> int | None:
        """Go to the most uncertain slice not reviewed yet along the current slicing axis."""
        found = self._navigation()
        if found is None:
            return None
        layer, axis, queue = found
        index = queue.next(current=self._current_index(layer, axis))
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
        axis = self._slicing_axis(layer)
        if axis is None or axis < 0:
            return
        self._queue(layer, axis).mark_visited(self._current_index(layer, axis))
        self.refresh_queue()

    def refresh_queue(self, _=None) -> None:
        """Show the slices still to review and those reviewed, along the current slicing axis."""
        layer = self.uncertainty.value
        axis = self._slicing_axis(layer) if layer is not None else None
        if axis is None or axis < 0:
            no_queue = "Segment with the uncertainty map to get a review queue."
            self.queue_list.value = no_queue if layer is None else "Switch to the 2-D view to review slice by slice."
            return
        queue = self._queue(layer, axis)
        self.queue_list.value = (
            f"To review along axis {axis} ({len(queue.queued)}): {_slice_list(queue.queued) or 'none'}\n"
            f"Reviewed ({len(queue.reviewed)} of {len(queue.order)}): {_slice_list(queue.reviewed) or 'none'}"
        )

    # --- corrections overlay --------------------------------------------------------------------------
    def _prediction(self, layer: napari.layers.Labels) -> np.ndarray | None:
        prediction = brainseg_metadata(layer).get("prediction")
        return prediction if prediction is not None and prediction.shape == layer.data.shape else None

    def _toggle_corrections(self, show: bool) -> None:
        if show:
            self._show_diff(self.layer.value)
        else:
            self._hide_diff()

    def _show_diff(self, layer: napari.layers.Labels | None) -> None:
        from napari.layers import Labels
        from napari.utils.colormaps import DirectLabelColormap

        if layer is None or self._prediction(layer) is None:
            what = f"'{layer.name}' holds no model prediction" if layer is not None else "There is no Labels layer"
            self.status.error(f"{what} to compare with; choose a segmentation made by the Segment widget.")
            self.show_corrections.value = False
            return
        self._hide_diff()
        self.diff_layer = Labels(
            diff_map(self._prediction(layer), np.asarray(layer.data)),
            name=f"{layer.name} corrections",
            scale=layer.scale,
            translate=layer.translate,
            colormap=DirectLabelColormap(color_dict=DIFF_COLORS),
            opacity=0.8,
            metadata={METADATA_KEY: {"role": CORRECTIONS_ROLE}},
        )
        self.diff_layer.editable = False
        self._tracked = layer
        self._viewer.add_layer(self.diff_layer)
        self._viewer.layers.selection.active = layer  # keep painting on the labels, not on the overlay
        for emitter in (layer.events.paint, layer.events.data, layer.events.set_data):
            emitter.connect(self._refresh_diff_later)
        self.refresh_diff()

    def _hide_diff(self) -> None:
        if self._tracked is not None:
            for emitter in (self._tracked.events.paint, self._tracked.events.data, self._tracked.events.set_data):
                emitter.disconnect(self._refresh_diff_later)
        self._tracked = None
        diff_layer, self.diff_layer = self.diff_layer, None
        if diff_layer is not None and diff_layer in self._viewer.layers:
            self._viewer.layers.remove(diff_layer)
        self.corrections.visible = False

    def _follow_labels_layer(self, layer) -> None:
        if self.show_corrections.value and layer is not self._tracked:
            self._show_diff(layer)

    def refresh_diff(self) -> dict | None:
        """Recompute the overlay and the added/removed table from the tracked layer; returns the counts."""
        layer = self._tracked
        if layer is None or self.diff_layer is None:
            return None
        labels, prediction = np.asarray(layer.data), self._prediction(layer)
        self.diff_layer.data = diff_map(prediction, labels)
        counts = diff_counts(prediction, labels, layer.scale[-3:])
        self.corrections.value = self._diff_text(counts)
        self.corrections.visible = True
        self.status.info(
            f"{counts['changed_voxels']} voxels ({counts['changed_ml']:.2f} mL) differ from the prediction: "
            "cyan added, magenta removed, white relabelled."
        )
        return counts

    @staticmethod
    def _diff_text(counts: dict) -> str:
        """One line per label: voxels and mL added and removed."""
        lines = []
        for name in LABEL_NAMES.values():
            c = counts[name]
            lines.append(
                f"{name}: +{c['added_voxels']} / \u2212{c['removed_voxels']} voxels "
                f"(+{c['added_ml']:.2f} / \u2212{c['removed_ml']:.2f} mL)"
            )
        return "\n".join(lines)

    def _on_layer_removed(self, event) -> None:
        removed = event.value
        if removed is self.diff_layer or removed is self._tracked:
            if removed is self.diff_layer:
                self.diff_layer = None
            self._hide_diff()
            self.show_corrections.value = False
        self._queues = {key: queue for key, queue in self._queues.items() if key[0] != id(removed)}

    # --- fill between slices --------------------------------------------------------------------------
    def fill_between(self) -> int:
        """Interpolate the layer's selected label across the gaps between drawn slices (one undo step)."""
        layer = self.layer.value
        if layer is None:
            self.status.error("No Labels layer: segment the case first, or open a label map.")
            return 0
        label = int(layer.selected_label)
        if label not in LABEL_NAMES:
            self.status.error(
                f"The selected label is {label}; pick NCR/NET (1), oedema (2) or enhancing (4) "
                "in the layer controls or the Edit labels widget."
            )
            return 0
        if self._viewer.dims.ndisplay != 2:
            self._viewer.dims.ndisplay = 2
        axis = self._slicing_axis(layer)
        data = np.asarray(layer.data)
        mask = fill_between_slices(data, label, axis, layer.scale[-3:], reference=self._prediction(layer))
        changed = set_masked_voxels(layer, mask, label)
        if changed == 0:
            self.status.info(
                f"Nothing to fill: paint {LABEL_NAMES[label]} on two slices with unpainted slices "
                "between them, then press again."
            )
            return 0
        filled = drawn_slices(mask, axis)
        self.status.info(
            f"Filled {changed} voxels of {LABEL_NAMES[label]} on {filled.size} slices "
            f"({filled[0]}\u2013{filled[-1]}) along axis {axis}. Ctrl+Z undoes."
        )
        return changed

    # --- case report ----------------------------------------------------------------------------------
    def _ask_report_path(self, suggestion: Path) -> Path | None:
        from qtpy.QtWidgets import QFileDialog

        path, chosen = QFileDialog.getSaveFileName(self.native, "Write case report", str(suggestion), REPORT_FILTERS)
        if not path:
            return None
        path = Path(path)
        if path.suffix.lower() in REPORT_FORMATS:
            return path
        return path.with_suffix(".png" if "PNG" in chosen else ".pdf")

    def write_report(self) -> dict | None:
        """Ask where, then write the chosen layer's case report (PDF or PNG); returns what it says."""
        layer = self.layer.value
        if layer is None:
            self.status.error("No Labels layer to report on: segment the case first.")
            return None
        found = find_modality_layers(self._viewer.layers)
        missing = [m for m in REPORT_MODALITIES if m not in found]
        if missing:
            self.status.error(
                f"The report shows the labels over FLAIR and T1ce; open the case's images "
                f"({', '.join(MODALITY_TITLES[m] for m in missing)} missing)."
            )
            return None
        meta = brainseg_metadata(layer)
        case_id = meta.get("case_id") or layer.name
        target = self._ask_report_path(Path.home() / f"{case_id}_report.pdf")
        if target is None:
            return None
        model = meta.get("model_id")
        if model and meta.get("model_version"):
            model = f"{model} ({meta['model_version']})"
        try:
            summary = write_case_report(
                target, {m: np.asarray(found[m].data) for m in REPORT_MODALITIES}, np.asarray(layer.data),
                tuple(float(s) for s in layer.scale[-3:]), case_id, model, self._prediction(layer), overwrite=True,
            )  # fmt: skip
        except (ValueError, LabelError, OSError) as err:
            self.status.error(f"The report was not written: {err}")
            return None
        self.status.info(f"Case report written to {target}.")
        return summary
