"""Edit labels: paint a tumour class, and clean up a label map with undoable fill-holes / remove-islands."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import Container, PushButton, RadioButtons, SpinBox

from ..labels import BACKGROUND, LABEL_NAMES, fill_holes, small_islands
from . import LabelsLayerPicker, Status, set_masked_voxels

if TYPE_CHECKING:
    import napari
    import napari.layers

ERASER = BACKGROUND
CLASS_CHOICES = [*((f"{name} ({label})", label) for label, name in LABEL_NAMES.items()), ("eraser", ERASER)]
DEFAULT_MIN_ISLAND = 50


class EditWidget(Container):
    """Choose the class the brush paints; fill holes in a class; remove small islands. Ctrl+Z undoes."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.layer = LabelsLayerPicker(viewer)
        self.tumour_class = RadioButtons(label="Paint", choices=CLASS_CHOICES, value=CLASS_CHOICES[0][1])
        self.fill_button = PushButton(text="Fill holes in this class")
        self.min_voxels = SpinBox(label="Smallest island (voxels)", min=1, max=10_000_000, value=DEFAULT_MIN_ISLAND)
        self.islands_button = PushButton(text="Remove smaller islands")
        self.status = Status()
        self.tumour_class.changed.connect(self.use_class)
        self.fill_button.clicked.connect(self.fill_holes)
        self.islands_button.clicked.connect(self.remove_islands)
        self.extend([
            self.layer, self.tumour_class, self.fill_button, self.min_voxels, self.islands_button, self.status,
        ])  # fmt: skip

    def _target(self) -> napari.layers.Labels | None:
        if self.layer.value is None:
            self.status.error("No Labels layer to edit: segment the case first, or open a label map.")
        return self.layer.value

    def use_class(self) -> None:
        """Make the target layer's brush paint the chosen class (or erase)."""
        layer = self.layer.value
        if layer is None:  # nothing to paint on yet; the choice applies once there is
            return
        if self.tumour_class.value == ERASER:
            layer.mode = "erase"
            self.status.info("Erasing: painting sets voxels back to background.")
        else:
            layer.selected_label = self.tumour_class.value
            layer.mode = "paint"
            self.status.info(f"Painting {LABEL_NAMES[self.tumour_class.value]} ({self.tumour_class.value}).")

    def fill_holes(self) -> None:
        """Fill the background holes enclosed by the chosen class (one undo step)."""
        layer = self._target()
        if layer is None:
            return
        label = self.tumour_class.value
        if label == ERASER:
            self.status.error("Choose NCR/NET, oedema or enhancing: holes are filled with that class.")
            return
        changed = set_masked_voxels(layer, fill_holes(np.asarray(layer.data), label), label)
        self.status.info(f"Filled {changed} voxels with {LABEL_NAMES[label]}." + (" Ctrl+Z undoes." if changed else ""))

    def remove_islands(self) -> None:
        """Erase tumour components smaller than the chosen size (one undo step)."""
        layer = self._target()
        if layer is None:
            return
        changed = set_masked_voxels(layer, small_islands(np.asarray(layer.data), self.min_voxels.value), BACKGROUND)
        self.status.info(
            f"Removed {changed} voxels in islands under {self.min_voxels.value} voxels."
            + (" Ctrl+Z undoes." if changed else "")
        )
