"""Retrain: fine-tune a model on the exported corrections in the background, then offer it for segmenting.

The work is :func:`napari_brainseg.training.finetune.finetune`; this widget gathers its input, shows its progress and
loss, cancels it, and on success registers the new model (it then appears in the Segment widget's
list) and shows how it scores against its base on cases it did not train on.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, ProgressBar, PushButton, SpinBox

from .. import registry
from ..devices import AUTO_DEVICE, available_devices
from ..jobs import Progress, drive
from ..model import CheckpointError
from . import Status, connect_while_alive
from ._worker import RunsInBackground
from .export import default_dataset

if TYPE_CHECKING:
    import napari

    from ..training.finetune import FinetuneResult

RUNS_FOLDER = "runs"


def _default_name() -> str:
    return f"finetuned-{_dt.datetime.now():%Y%m%d-%H%M%S}"


class RetrainWidget(RunsInBackground, Container):
    """Corrections (and optional original and validation cases), base model, length, device; run or cancel."""

    FAILED = "Fine-tuning failed"

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from ..training.finetune import FINETUNE_EPOCHS, FINETUNE_STEPS_PER_EPOCH

        super().__init__()
        self._viewer = viewer
        self._log: list[str] = []

        self.corrections = FileEdit(label="Corrections folder", mode="d", value=default_dataset())
        self.original = FileEdit(label="Original cases (optional)", mode="d", nullable=True, value=None)
        self.validation = FileEdit(label="Validation cases (optional)", mode="d", nullable=True, value=None)
        self.base = ComboBox(label="Base model", choices=self._base_choices)
        self.name = LineEdit(label="New model name", value=_default_name())
        self.epochs = SpinBox(label="Epochs", min=1, max=1000, value=FINETUNE_EPOCHS)
        self.steps = SpinBox(label="Steps per epoch", min=1, max=10000, value=FINETUNE_STEPS_PER_EPOCH)
        self.device = ComboBox(label="Device", choices=[AUTO_DEVICE, *available_devices()])
        self.run_button = PushButton(text="Fine-tune")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(min=0, max=1, value=0, visible=False)
        self.loss = Label(value="")
        self.status = Status()
        self.result = Label(value="")
        self.result.native.setWordWrap(False)
        self.result.native.setStyleSheet("font-family: monospace;")

        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        connect_while_alive(self, registry.events.changed, self.base.reset_choices)
        self.extend([
            self.corrections, self.original, self.validation, self.base, self.name, self.epochs, self.steps,
            self.device, self.run_button, self.cancel_button, self.progress, self.loss, self.status, self.result,
        ])  # fmt: skip

    @staticmethod
    def _base_choices(_=None) -> list[tuple[str, Path]]:
        return [(f"{e.name} ({e.version})", Path(e.path)) for e in registry.list_models()]

    def run_folder(self) -> Path:
        """Where the run's checkpoints go; the same name resumes a cancelled run."""
        return registry.models_dir() / RUNS_FOLDER / self.name.value.strip()

    def run(self) -> None:
        """Start fine-tuning in a background thread."""
        from ..training.data import discover_cases
        from ..training.finetune import finetune, finetune_config

        if self.worker is not None:
            return
        name = self.name.value.strip()
        data = [self.corrections.value, self.original.value]
        try:
            if self.base.value is None:
                raise CheckpointError("No base model: register one, or install the bundled weights.")
            if not name:
                raise ValueError("Type a name for the new model.")
            if name.lower() in {m.name.lower() for m in registry.list_models()}:
                raise ValueError(f"A model named {name!r} already exists; choose another name.")
            if self.corrections.value is None:
                raise ValueError("Choose the corrections folder (where Export corrections saves).")
            discover_cases([self.corrections.value])  # says at once when there is nothing to learn from
            cfg = finetune_config(
                self.base.value, [d for d in data if d is not None], self.run_folder(), self.epochs.value,
                self.steps.value, device=self.device.value, model_id=name,
                val_data=[str(self.validation.value)] if self.validation.value is not None else None,
            )
        except ValueError as err:  # includes BratsInputError and CheckpointError
            self.status.error(err)
            return
        self._start(cfg, name, finetune)

    def _start(self, cfg, name: str, finetune) -> None:
        self._log = []
        log = self._log.append
        self.loss.value, self.result.value = "", ""
        self.run_job(lambda progress, should_stop: drive(finetune(cfg, log), progress, should_stop),
                     lambda result: self._on_result(result, name), busy=f"Preparing the cases for {name}\u2026")

    def on_progress(self, p: Progress) -> None:
        """Show the step, the loss and the last line of the training log."""
        super().on_progress(p)
        if p.stage == "train":
            self.loss.value = f"Step {p.done}/{p.total}, loss {p.loss:.4f}"
            self.status.info(self._log[-1] if self._log else "Training\u2026")
        else:
            self.status.info(f"Scoring on validation cases ({p.stage}): {p.done}/{p.total}")

    def _on_result(self, result: FinetuneResult, name: str) -> None:
        try:
            entry = registry.register_model(result.checkpoint, name=name)
        except ValueError as err:
            self.status.error(f"The model was trained ({result.checkpoint}) but could not be registered: {err}")
            return
        self.result.value = result.report
        worse = ', '.join(result.worse)
        verdict = f" It is WORSE than its base on {worse}: keep using the base." if result.worse else ""
        self.status.info(f"New model {entry.name!r} is in the Segment widget's model list.{verdict}")
        self.name.value = _default_name()

    def on_cancelled(self) -> None:
        """Cancel stops after the current step: the run folder keeps the last completed epoch, nothing is registered."""
        self.status.info(
            f"Cancelled; no model was registered. {self.run_folder()} keeps the last completed epoch: "
            "fine-tune again with the same name to resume."
        )
