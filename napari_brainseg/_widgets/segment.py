"""Segment: run a model on the case open in the viewer, in the background, and show the tumour's volumes."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, Table
from qtpy.QtWidgets import QStyledItemDelegate
from superqt.utils import qdebounced

from .. import registry
from ..backend import load_for_inference
from ..devices import DEVICES, DeviceError, available_devices, select_device
from ..inference import SECOND_PASS_STAGE, Segmentation, segment
from ..io import BratsInputError
from ..jobs import Cancelled, Progress, ProgressCallback, ShouldStop
from ..labels import region_volumes_ml
from ..layers import (
    CaseContext,
    case_context,
    find_modality_layers,
    prediction_layer_data,
    show_as_reference,
    stack_modalities,
    uncertainty_layer_data,
)
from ..model import CheckpointError, ModelInfo, info_from_dict, read_checkpoint
from . import Status, add_layers, connect_while_alive, edit_events
from ._checkpoints import OffersCheckpointFiles
from ._worker import RunsInBackground

if TYPE_CHECKING:
    import napari
    import napari.layers

TTA_TEXT = "Test-time flips + uncertainty map (about 4\u00d7 slower)"
VOLUME_REFRESH_MS = 250


def load_and_segment(
    image: np.ndarray, checkpoint: Path, device: str, tta: bool, progress: ProgressCallback, should_stop: ShouldStop
) -> tuple[Segmentation, ModelInfo]:
    """The Segment widget's job: load the model, then segment ``image`` with it.

    On the CPU without flips the model runs with ONNX Runtime, otherwise with torch (:mod:`~napari_brainseg.backend`).
    A request to stop while the model loads is honoured as soon as it has loaded: inference never starts.
    """
    loaded = load_for_inference(checkpoint, device=device, tta=tta)
    if should_stop():
        raise Cancelled("Segmentation cancelled while the model loaded.")
    result = segment(image, loaded.model, loaded.device, tta=tta, progress=progress, should_stop=should_stop,
                     **loaded.info.segment_options())
    return result, loaded.info


class SegmentWidget(OffersCheckpointFiles, RunsInBackground, Container):
    """Choose device, model and test-time flips; segment the open case; read WT/TC/ET volumes in mL."""

    FAILED = "Segmentation failed"
    CANCELLED = "Cancelled; nothing was added."

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self._checkpoints: list[Path] = []
        self._models = registry.list_models()
        self.result_layer: napari.layers.Labels | None = None

        self.device = ComboBox(label="Device", choices=[d.upper() if d != "auto" else "Auto" for d in DEVICES])
        self._disable_absent_devices()
        self.model = ComboBox(label="Model", choices=self._model_choices)
        self.checkpoint = FileEdit(label="Choose checkpoint file\u2026", mode="r", filter="*.pt", nullable=True)
        self.tta = CheckBox(text=TTA_TEXT, value=False)
        self.run_button = PushButton(text="Segment")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(min=0, max=1, value=0, visible=False)
        self.status = Status()
        self.volumes_title = Label(value="Volumes (mL)")
        self.volumes = Table(value=self._volume_table(None))
        self.volumes.native.horizontalHeader().setStretchLastSection(True)
        self.volumes.native.setItemDelegate(QStyledItemDelegate(self.volumes.native))  # "0.05", not "5.000e-02"

        self.checkpoint.changed.connect(self.add_checkpoint)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self._refresh_volumes_later = qdebounced(self.refresh_volumes, timeout=VOLUME_REFRESH_MS, parent=self.native)
        connect_while_alive(self, registry.events.changed, self.refresh_models)
        connect_while_alive(self, viewer.layers.events.removed, self._on_layer_removed)
        self.native.destroyed.connect(self._on_destroyed)
        self.extend([
            self.device, self.model, self.checkpoint, self.tta, self.run_button, self.cancel_button,
            self.progress, self.status, self.volumes_title, self.volumes,
        ])  # fmt: skip

    # --- choices -------------------------------------------------------------------------------------
    def _disable_absent_devices(self) -> None:
        present = {"auto", *available_devices()}
        items = self.device.native.model()
        for row, name in enumerate(DEVICES):
            if name not in present:
                items.item(row).setEnabled(False)
                items.item(row).setToolTip(f"{name.upper()} is not available on this machine.")

    def refresh_models(self) -> None:
        """Read the registry again (after a model was registered) and update the model choices."""
        self._models = registry.list_models()
        self.model.reset_choices()

    def _model_choices(self, _=None) -> list[tuple[str, Path]]:
        entries = [(f"{e.name} ({e.version})", Path(e.path)) for e in self._models]
        known = {path for _, path in entries}
        return entries + [(f"{p.name} (file)", p) for p in self._checkpoints if p not in known]

    def read_checkpoint_info(self, path: Path) -> ModelInfo:
        return info_from_dict(read_checkpoint(path)["info"])

    def offered_message(self, info: ModelInfo, path: Path) -> str:
        return f"Model {info.model_id} ({info.version}) from {path.name}."

    # --- running -------------------------------------------------------------------------------------
    def run(self) -> None:
        """Segment the viewer's four modality layers in a background thread."""
        if self.worker is not None:
            return
        try:
            found = find_modality_layers(self._viewer.layers, prefer=self._viewer.layers.selection.active)
            image = stack_modalities(found)
            if self.model.value is None:
                raise CheckpointError("No model to run: choose a checkpoint file (.pt) first.")
            device = select_device(self.device.value.lower()).type  # "auto" resolved: the status names the device
        except (BratsInputError, CheckpointError, DeviceError) as err:
            self.status.error(err)
            return
        self._start(image, case_context(found), self.model.value, device, self.tta.value)

    def _start(self, image: np.ndarray, context: CaseContext, checkpoint: Path, device: str, tta: bool) -> None:
        self.run_job(
            partial(load_and_segment, image, checkpoint, device, tta),
            lambda outcome: self._on_result(context, outcome),
            busy=f"Segmenting {context.case_id} on {device.upper()}\u2026",
        )

    def on_progress(self, progress: Progress) -> None:
        """The progress bar, which starts again for a model's second pass: the status line says why."""
        super().on_progress(progress)
        if progress.stage == SECOND_PASS_STAGE:
            self.status.info("Segmenting again, on the case normalised over the brain outside the tumour the first "
                             "pass found\u2026")

    def _on_result(self, context: CaseContext, outcome: tuple[Segmentation, ModelInfo]) -> None:
        result, info = outcome
        layer_data = [prediction_layer_data(result.labels, context, info.model_id, info.version)]
        if result.uncertainty is not None:
            layer_data.insert(0, uncertainty_layer_data(result.uncertainty, context))
        self.track(add_layers(self._viewer, layer_data)[-1])
        show_as_reference(self._viewer.layers, context.case_id)
        note = " (the accelerator failed, so it ran on the CPU)" if result.fell_back_to_cpu else ""
        self.status.info(
            f"Segmented {context.case_id} with {info.model_id} ({info.version}) on {result.device.upper()} "
            f"in {result.seconds:.1f} s{note}. Edit it with Edit labels; Ctrl+Z undoes."
        )

    # --- volumes -------------------------------------------------------------------------------------
    def track(self, layer: napari.layers.Labels | None) -> None:
        """Show ``layer``'s volumes, and keep them up to date as it is edited."""
        self._watch(layer)
        self.refresh_volumes()

    def _watch(self, layer: napari.layers.Labels | None) -> None:
        if self.result_layer is not None:
            for emitter in edit_events(self.result_layer):
                emitter.disconnect(self._refresh_volumes_later)
        self.result_layer = layer
        if layer is not None:
            for emitter in edit_events(layer):
                emitter.connect(self._refresh_volumes_later)

    def refresh_volumes(self) -> None:
        """Recompute the volumes table from the tracked layer."""
        layer = self.result_layer
        self.volumes_title.value = f"Volumes of {layer.name} (mL)" if layer is not None else "Volumes (mL)"
        self.volumes.value = self._volume_table(layer)
        table = self.volumes.native
        table.setMinimumHeight(
            table.verticalHeader().length() + table.horizontalHeader().height() + 2 * table.frameWidth()
        )

    @staticmethod
    def _volume_table(layer: napari.layers.Labels | None) -> dict:
        volumes = region_volumes_ml(np.asarray(layer.data), layer.scale[-3:]) if layer is not None else {}
        return {"data": [[f"{v:.2f}"] for v in volumes.values()], "index": list(volumes), "columns": ["mL"]}

    def _on_destroyed(self, *_) -> None:
        self._refresh_volumes_later.cancel()
        self._watch(None)

    def _on_layer_removed(self, event) -> None:
        if event.value is self.result_layer:
            self.track(None)
