"""Export corrections: save an edited segmentation as the next version of its case in a corrections dataset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import Container, FileEdit, PushButton
from platformdirs import user_data_dir

from ..export import ExportError, ExportResult, export_correction
from ..layers import brainseg_metadata
from . import LabelsLayerPicker, Status

if TYPE_CHECKING:
    import napari


def default_dataset() -> Path:
    """Where corrections go unless the user picks another folder."""
    return Path(user_data_dir("napari-brainseg")) / "corrections"


class ExportWidget(Container):
    """Pick a Labels layer and a corrections folder; each export is a new version, never an overwrite."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.layer = LabelsLayerPicker(viewer)
        self.dataset = FileEdit(label="Corrections folder", mode="d", value=default_dataset())
        self.export_button = PushButton(text="Export correction")
        self.status = Status()
        self.export_button.clicked.connect(self.export)
        self.extend([self.layer, self.dataset, self.export_button, self.status])

    def export(self) -> ExportResult | None:
        """Write the chosen layer's labels (with its case's images and provenance) as a new version."""
        layer = self.layer.value
        if layer is None:
            self.status.error("No Labels layer to export: segment the case first.")
            return None
        meta = brainseg_metadata(layer)
        if meta.get("files") is None or meta.get("geometry") is None:
            self.status.error(
                f"'{layer.name}' does not know which case files it belongs to. Export a segmentation made "
                "by the Segment widget, or labels opened with the case (Load case or File > Open)."
            )
            return None
        try:
            result = export_correction(
                self.dataset.value,
                meta["files"],
                meta["geometry"],
                np.asarray(layer.data),
                meta.get("prediction"),
                meta.get("model_id"),
                meta.get("model_version"),
            )
        except ExportError as err:
            self.status.error(err)
            return None
        self.status.info(f"Saved {meta['files'].case_id} version {result.version} to {result.folder}")
        return result
