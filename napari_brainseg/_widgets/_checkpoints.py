"""The "choose a checkpoint file" step shared by the widgets that run a model: check the file, then offer it."""

from __future__ import annotations

from pathlib import Path

from ..model import CheckpointError, ModelInfo


class OffersCheckpointFiles:
    """Mixin for a widget with ``checkpoint`` (a FileEdit), ``model`` (a ComboBox listing ``_checkpoints``) and
    ``status``: a chosen file is checked by :meth:`read_checkpoint_info`, then offered and selected."""

    _checkpoints: list[Path]

    def read_checkpoint_info(self, path: Path) -> ModelInfo:
        """The checkpoint's description; raises :class:`CheckpointError` when the file is not of the right kind."""
        raise NotImplementedError

    def offered_message(self, info: ModelInfo, path: Path) -> str:
        """What the status line says once the checkpoint is offered."""
        raise NotImplementedError

    def add_checkpoint(self) -> None:
        """Offer the chosen checkpoint file, after checking that it is one of the right kind."""
        path = self.checkpoint.value
        if path is None:
            return
        try:
            info = self.read_checkpoint_info(path)
        except CheckpointError as err:
            self.status.error(err)
            return
        if path not in self._checkpoints:
            self._checkpoints.append(path)
        self.model.reset_choices()
        self.model.value = path
        self.status.info(self.offered_message(info, path))
