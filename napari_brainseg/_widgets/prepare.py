"""Prepare study: a scanner study (DICOM or NIfTI, skull on) to a BraTS-like case; its labels over the native T1ce.

Each sequence is a NIfTI file or any one slice of its DICOM series. Preparing (co-registration, 1 mm,
brain extraction; see :mod:`napari_brainseg.cases.prepare`) runs in the background with progress and
Cancel, then opens the case like Load does, ready for Segment. *Show on the native T1ce* maps the chosen
label map back onto the T1ce as the scanner wrote it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, Container, FileEdit, ProgressBar, PushButton

from ..cases.prepare import PreparedCase, check_complete, labels_to_native, prepare_study, source_for_file
from ..io import MODALITY_TITLES, BratsInputError, load_case, load_volume
from ..jobs import Progress
from ..layers import CaseContext, brainseg_metadata, case_layers, image_layer_data, labels_layer_data
from . import LabelsLayerPicker, Status, add_layers
from ._worker import RunsInBackground

if TYPE_CHECKING:
    import napari

STUDY_FILTER = "NIfTI or DICOM (*.nii *.nii.gz *.dcm *.IMA *)"
ORDER = ("t1ce", "t1", "t2", "flair")


class PrepareWidget(RunsInBackground, Container):
    """Choose the four sequences and a case folder; prepare; then show a label map on the native T1ce."""

    FAILED = "Preparation failed"
    CANCELLED = "Cancelled; no case folder was written."

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self.prepared: PreparedCase | None = None
        self.files = {
            m: FileEdit(label=MODALITY_TITLES[m], mode="r", filter=STUDY_FILTER, nullable=True) for m in ORDER
        }
        for edit in self.files.values():
            edit.tooltip = "A NIfTI file, or any one file of the DICOM series"
        self.out = FileEdit(label="Case folder to write", mode="d", nullable=True)
        self.template = FileEdit(label="Template BraTS case (optional)", mode="d", nullable=True)
        self.skull_stripped = CheckBox(text="Already skull-stripped (no brain extraction)", value=False)
        self.run_button = PushButton(text="Prepare study")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(min=0, max=1, value=0, visible=False)
        self.status = Status()
        self.labels = LabelsLayerPicker(viewer, label="Labels")
        self.native_button = PushButton(text="Show on the native T1ce")
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.native_button.clicked.connect(self.show_native)
        self.extend([
            *self.files.values(), self.out, self.template, self.skull_stripped, self.run_button,
            self.cancel_button, self.progress, self.status, self.labels, self.native_button,
        ])  # fmt: skip

    def run(self) -> None:
        """Prepare the chosen study in the background; the case opens in the viewer when it is ready."""
        if self.job is not None:
            return
        try:
            inputs = {m: source_for_file(edit.value) for m, edit in self.files.items() if edit.value is not None}
            check_complete(inputs)
            if self.out.value is None:
                raise BratsInputError("Choose the case folder to write.")
        except BratsInputError as err:
            self.status.error(err)
            return
        out, template, stripped = Path(self.out.value), self.template.value, self.skull_stripped.value

        def work(progress, should_stop) -> PreparedCase:
            return prepare_study(inputs, out, progress, should_stop, template=template, skull_stripped=stripped)

        self.run_job(work, self._on_prepared, f"Preparing {out.name}\u2026")

    def on_progress(self, progress: Progress) -> None:
        super().on_progress(progress)
        self.status.info(progress.note)

    def _on_prepared(self, case: PreparedCase) -> None:
        self.prepared = case
        add_layers(self._viewer, case_layers(load_case(case.files, with_seg=False)))
        self.status.info(
            f"Prepared {case.files.case_id} in {case.folder}. Segment it, then press Show on the native T1ce."
        )

    def show_native(self) -> None:
        """Add the native T1ce and the chosen label map mapped onto it (nearest neighbour)."""
        layer = self.labels.value
        if self.prepared is None or layer is None:
            self.status.error("Prepare a study and segment it first.")
            return
        case = self.prepared
        geometry = brainseg_metadata(layer).get("geometry")
        try:
            if geometry is None:
                raise BratsInputError(f"{layer.name} does not belong to the prepared case; choose its segmentation.")
            native_labels = labels_to_native(geometry.to_nifti(np.asarray(layer.data)), case.record)
        except BratsInputError as err:
            self.status.error(err)
            return
        t1ce, native = load_volume(case.native_t1ce)
        context = CaseContext(f"{case.files.case_id} native", native.spacing, geometry=native)
        image, kwargs, kind = image_layer_data(t1ce, "t1ce", context)
        kwargs |= {"name": f"{case.files.case_id} T1ce (native)", "visible": True,
                   "metadata": context.metadata(role="native", path=case.native_t1ce)}
        labels = labels_layer_data(native.to_display(np.asarray(native_labels.dataobj)),
                                   f"{layer.name} (native T1ce)", context, role="native")
        for other in self._viewer.layers:
            other.visible = False
        add_layers(self._viewer, [(image, kwargs, kind), labels])
        self.status.info(f"{layer.name} on the native T1ce ({' x '.join(map(str, native.shape))} voxels of "
                         f"{' x '.join(f'{s:.2f}' for s in native.spacing)} mm).")
