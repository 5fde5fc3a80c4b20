"""Review: one dock of three parts that share the chosen label map and a status line.

* :class:`~.navigation.SliceNavigation` - walk the most uncertain slices first;
* :class:`~.corrections.CorrectionsTools` - overlay the corrections, fill between painted slices;
* :class:`~.case_report.CaseReport` - write the case report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import Container

from . import LabelsLayerPicker, Status
from .case_report import CaseReport
from .corrections import CorrectionsTools
from .navigation import SliceNavigation

if TYPE_CHECKING:
    import napari


class ReviewWidget(Container):
    """Jump to uncertain slices; overlay the corrections; fill between drawn slices; write a case report."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.layer = LabelsLayerPicker(viewer)
        self.status = Status()
        self.navigation = SliceNavigation(viewer, self.status)
        self.corrections = CorrectionsTools(viewer, self.layer, self.status)
        self.report = CaseReport(viewer, self.layer, self.status)
        self.extend([self.layer, self.navigation, self.corrections, self.report, self.status])
