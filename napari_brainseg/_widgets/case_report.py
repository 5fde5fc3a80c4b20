"""Case report: write the chosen label map's one-page report (PDF or PNG) where the user chooses."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import Container, PushButton

from ..io import MODALITY_TITLES
from ..labels import LabelError
from ..layers import brainseg_metadata, find_modality_layers
from ..report import REPORT_FORMATS, REPORT_MODALITIES, write_case_report
from . import LabelsLayerPicker, Status
from .corrections import model_prediction

if TYPE_CHECKING:
    import napari

REPORT_FILTERS = "PDF document (*.pdf);;PNG image (*.png)"


class CaseReport(Container):
    """A button that asks where, then writes the chosen layer's case report."""

    def __init__(self, viewer: napari.viewer.Viewer, layer: LabelsLayerPicker, status: Status) -> None:
        super().__init__(labels=False)
        self._viewer = viewer
        self.layer, self.status = layer, status
        self.button = PushButton(text="Write case report\u2026")
        self.button.clicked.connect(self.write)
        self.append(self.button)

    def _ask_path(self, suggestion: Path) -> Path | None:
        from qtpy.QtWidgets import QFileDialog

        path, chosen = QFileDialog.getSaveFileName(self.native, "Write case report", str(suggestion), REPORT_FILTERS)
        if not path:
            return None
        path = Path(path)
        if path.suffix.lower() in REPORT_FORMATS:
            return path
        return path.with_suffix(".png" if "PNG" in chosen else ".pdf")

    def write(self) -> dict | None:
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
        target = self._ask_path(Path.home() / f"{case_id}_report.pdf")
        if target is None:
            return None
        model = meta.get("model_id")
        if model and meta.get("model_version"):
            model = f"{model} ({meta['model_version']})"
        try:
            summary = write_case_report(
                target, {m: np.asarray(found[m].data) for m in REPORT_MODALITIES}, np.asarray(layer.data),
                tuple(float(s) for s in layer.scale[-3:]), case_id, model, model_prediction(layer), overwrite=True,
            )  # fmt: skip
        except (ValueError, LabelError, OSError) as err:
            self.status.error(f"The report was not written: {err}")
            return None
        self.status.info(f"Case report written to {target}.")
        return summary
