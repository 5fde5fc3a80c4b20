"""Corrections: overlay what the user changed in a model's segmentation, and fill between painted slices.

The overlay (:func:`napari_brainseg.diff.diff_map`) is a read-only Labels layer over the chosen label
map, recomputed as it is edited, with the voxels and mL added and removed per label.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, Container, Label, PushButton
from superqt.utils import qdebounced

from ..diff import DIFF_COLORS, diff_counts, diff_map
from ..interpolation import drawn_slices, fill_between_slices
from ..labels import LABEL_NAMES
from ..layers import CORRECTIONS_ROLE, METADATA_KEY, brainseg_metadata
from . import LabelsLayerPicker, Status, connect_while_alive, edit_events, set_masked_voxels, slicing_axis

if TYPE_CHECKING:
    import napari
    import napari.layers

DIFF_REFRESH_MS = 250


def model_prediction(layer: napari.layers.Labels) -> np.ndarray | None:
    """The model's own prediction that ``layer`` started from, when it still fits the layer."""
    prediction = brainseg_metadata(layer).get("prediction")
    return prediction if prediction is not None and prediction.shape == layer.data.shape else None


class CorrectionsTools(Container):
    """Show corrections (added / removed vs the prediction) over the chosen layer; fill between slices."""

    def __init__(self, viewer: napari.viewer.Viewer, layer: LabelsLayerPicker, status: Status) -> None:
        super().__init__(labels=False)
        self._viewer = viewer
        self._tracked: napari.layers.Labels | None = None
        self.diff_layer: napari.layers.Labels | None = None
        self.layer, self.status = layer, status
        self.show_corrections = CheckBox(text="Show corrections (added / removed vs the prediction)")
        self.counts = Label(value="", visible=False)
        self.fill_button = PushButton(text="Fill between slices (selected label)")

        connect_while_alive(self, viewer.layers.events.removed, self._on_layer_removed)
        self.show_corrections.changed.connect(self._toggle)
        self.layer.changed.connect(self._follow_labels_layer)
        self.fill_button.clicked.connect(self.fill_between)
        self._refresh_later = qdebounced(self.refresh, timeout=DIFF_REFRESH_MS, parent=self.native)
        self.native.destroyed.connect(lambda *_: self._refresh_later.cancel())
        self.extend([self.show_corrections, self.counts, self.fill_button])

    # --- overlay ------------------------------------------------------------------------------------
    def _toggle(self, show: bool) -> None:
        if show:
            self._show(self.layer.value)
        else:
            self._hide()

    def _show(self, layer: napari.layers.Labels | None) -> None:
        from napari.layers import Labels
        from napari.utils.colormaps import DirectLabelColormap

        if layer is None or model_prediction(layer) is None:
            what = f"'{layer.name}' holds no model prediction" if layer is not None else "There is no Labels layer"
            self.status.error(f"{what} to compare with; choose a segmentation made by the Segment widget.")
            self.show_corrections.value = False
            return
        self._hide()
        self.diff_layer = Labels(
            diff_map(model_prediction(layer), np.asarray(layer.data)),
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
        for emitter in edit_events(layer):
            emitter.connect(self._refresh_later)
        self.refresh()

    def _hide(self) -> None:
        if self._tracked is not None:
            for emitter in edit_events(self._tracked):
                emitter.disconnect(self._refresh_later)
        self._tracked = None
        diff_layer, self.diff_layer = self.diff_layer, None
        if diff_layer is not None and diff_layer in self._viewer.layers:
            self._viewer.layers.remove(diff_layer)
        self.counts.visible = False

    def _follow_labels_layer(self, layer) -> None:
        if self.show_corrections.value and layer is not self._tracked:
            self._show(layer)

    def refresh(self) -> dict | None:
        """Recompute the overlay and the added/removed table from the tracked layer; returns the counts."""
        layer = self._tracked
        if layer is None or self.diff_layer is None:
            return None
        labels, prediction = np.asarray(layer.data), model_prediction(layer)
        self.diff_layer.data = diff_map(prediction, labels)
        counts = diff_counts(prediction, labels, layer.scale[-3:])
        self.counts.value = self._counts_text(counts)
        self.counts.visible = True
        self.status.info(
            f"{counts['changed_voxels']} voxels ({counts['changed_ml']:.2f} mL) differ from the prediction: "
            "cyan added, magenta removed, white relabelled."
        )
        return counts

    @staticmethod
    def _counts_text(counts: dict) -> str:
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
            self._hide()
            self.show_corrections.value = False

    # --- fill between slices ------------------------------------------------------------------------
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
        axis = slicing_axis(self._viewer, layer)
        data = np.asarray(layer.data)
        mask = fill_between_slices(data, label, axis, layer.scale[-3:], reference=model_prediction(layer))
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
