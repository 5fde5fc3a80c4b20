"""Refine with clicks: Shift+click on the case says "this voxel is this class" (or "not tumour"), and the
labels around the click are corrected at once, in the background (:func:`napari_brainseg.refine.refine`)."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, RadioButtons

from ..clicks import CLICK_LABELS, CLICK_NAMES, BrainVoxels, Click, ClickError, check_clicks
from ..io import BratsInputError
from ..labels import LABEL_COLORS, LabelError
from ..layers import METADATA_KEY, brainseg_metadata, find_modality_layers, stack_modalities
from ..model import ModelInfo
from ..refine import merge_hand_edits, refine
from . import LabelsLayerPicker, Status, connect_while_alive
from ._checkpoints import OffersCheckpointFiles
from ._worker import RunsInBackground

if TYPE_CHECKING:
    import napari
    import napari.layers

CLICKS_ROLE = "clicks"
MODIFIER = "Shift"
NEGATIVE_COLOR = "#00bfff"
GROWING = "Region growing + border fit (no training needed)"
HELP = (
    f"<b>{MODIFIER}+click</b> on the case adds a click of the class chosen below: in 2-D on the slice shown, "
    "in 3-D on the first tumour (else brain) voxel under the mouse. Each click corrects the labels around it at "
    "once, using every click so far. <b>Ctrl+Z</b> on the labels layer undoes one click's change; voxels you "
    "paint by hand are kept unless a click lands on them."
)


def click_color(label: int) -> str:
    """A click's colour: its class's colour, or light blue for "not tumour"."""
    return NEGATIVE_COLOR if label == 0 else LABEL_COLORS[label]


def _refine_case(found: dict, labels: np.ndarray, clicks: list[Click], model: Path | None) -> np.ndarray:
    return refine(stack_modalities(found), labels, clicks, model=model)


class RefineWidget(OffersCheckpointFiles, RunsInBackground, Container):
    """Shift+click a class onto the case; the labels around the click are refined in the background."""

    FAILED = "Refinement failed, nothing changed"
    CANCELLED = "Cancelled; the click was taken back and nothing changed."

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self._viewer = viewer
        self._last_result: dict[Hashable, np.ndarray] = {}
        self._checkpoints: list[Path] = []
        self._refining: napari.layers.Labels | None = None

        self.help = Label(value=HELP)
        self.help.native.setWordWrap(True)
        self.layer = LabelsLayerPicker(viewer)
        choices = [(f"{CLICK_NAMES[label]} ({label})", label) for label in CLICK_LABELS]
        self.click_class = RadioButtons(label="Click means", choices=choices, value=CLICK_LABELS[0])
        self.model = ComboBox(label="Refinement", choices=self._model_choices)
        self.checkpoint = FileEdit(label="Click network\u2026", mode="r", filter="*.pt", nullable=True)
        self.clear_button = self.run_button = PushButton(text="Clear clicks")  # disabled while a click is refined
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(min=0, max=0, visible=False)
        self.status = Status()
        self.checkpoint.changed.connect(self.add_checkpoint)
        self.clear_button.clicked.connect(self.clear_clicks)
        self.cancel_button.clicked.connect(self.cancel)
        viewer.mouse_drag_callbacks.append(self._on_mouse)
        self.native.destroyed.connect(lambda *_: self._viewer.mouse_drag_callbacks.remove(self._on_mouse))
        connect_while_alive(self, viewer.layers.events.removed, self._on_layer_removed)
        self.extend([self.help, self.layer, self.click_class, self.model, self.checkpoint, self.clear_button,
                     self.cancel_button, self.progress, self.status])

    # --- the refinement model ------------------------------------------------------------------------
    def _model_choices(self, _=None) -> list[tuple[str, Path | str]]:
        return [(GROWING, GROWING), *((f"{p.name} (click network)", p) for p in self._checkpoints)]

    @property
    def refinement_model(self) -> Path | None:
        """The chosen click-network checkpoint, or None for region growing."""
        return None if self.model.value == GROWING else self.model.value

    def read_checkpoint_info(self, path: Path) -> ModelInfo:
        from ..refine import load_refinement_model

        return load_refinement_model(path)[1]

    def offered_message(self, info: ModelInfo, path: Path) -> str:
        return f"Refining with the click network {info.model_id} ({info.version})."

    # --- clicks ----------------------------------------------------------------------------------------
    def clicks_layer(self, labels: napari.layers.Labels, create: bool = False) -> napari.layers.Points | None:
        """The Points layer holding the clicks on ``labels`` (world coordinates), made when ``create``."""
        for layer in self._viewer.layers:
            meta = brainseg_metadata(layer)
            if meta.get("role") == CLICKS_ROLE and meta.get("target") == labels.unique_id:
                return layer
        if not create:
            return None
        points = self._viewer.add_points(
            np.empty((0, 3)), name=f"{labels.name} clicks", ndim=3, size=3 * float(max(labels.scale[-3:])),
            features={"label": np.empty(0, dtype=int)}, border_color="white", out_of_slice_display=False,
            metadata={METADATA_KEY: {"role": CLICKS_ROLE, "target": labels.unique_id}},
        )
        self._viewer.layers.selection.active = labels
        return points

    def clicks(self, labels: napari.layers.Labels) -> list[Click]:
        """The clicks on ``labels`` so far, oldest first, as display voxels of the labels layer."""
        points = self.clicks_layer(labels)
        if points is None or len(points.data) == 0:
            return []
        voxels = [np.round(labels.world_to_data(p)).astype(int) for p in points.data]
        return [(*map(int, v[-3:]), int(label)) for v, label in zip(voxels, points.features["label"])]

    def _on_mouse(self, viewer, event) -> None:
        if event.type != "mouse_press" or MODIFIER not in event.modifiers:
            return
        self.add_click(event.position, view_direction=event.view_direction, dims_displayed=list(event.dims_displayed))

    def voxel_at(self, labels: napari.layers.Labels, position, view_direction=None,
                 dims_displayed: list[int] | None = None) -> tuple[int, int, int] | None:
        """The labels layer's voxel under a world ``position``: in 3-D the first tumour, else brain, voxel on the
        ray; None when the mouse is off the volume."""
        if dims_displayed is None or len(dims_displayed) < 3:
            return tuple(int(v) for v in np.round(labels.world_to_data(position))[-3:])
        start, end = labels.get_ray_intersections(position, view_direction, dims_displayed, world=True)
        if start is None:
            return None
        steps = int(np.ceil(np.linalg.norm(np.asarray(end) - start) * 2)) + 1
        ray = np.unique(np.round(np.linspace(start, end, steps)).astype(int), axis=0, return_index=True)
        ray = ray[0][np.argsort(ray[1])]  # in order from the camera
        ray = ray[np.all((ray >= 0) & (ray < labels.data.shape), axis=1)]
        found = find_modality_layers(self._viewer.layers)
        brain = np.zeros(len(ray), dtype=bool)
        for layer in found.values():
            brain |= np.asarray(layer.data)[tuple(ray.T)] != 0
        for hits in (np.asarray(labels.data)[tuple(ray.T)] != 0, brain):
            if hits.any():
                return tuple(int(v) for v in ray[int(np.argmax(hits))])
        return None

    def add_click(self, position, label: int | None = None, view_direction=None,
                  dims_displayed: list[int] | None = None) -> bool:
        """Click at a world ``position`` with ``label`` (default: the chosen class) and refine; False if refused."""
        if self.worker is not None:
            self.status.error("Still refining the last click; click again when it is done.", notify=False)
            return False
        labels = self.layer.value
        label = self.click_class.value if label is None else label
        try:
            found = find_modality_layers(self._viewer.layers)
            if len(found) < 4:
                stack_modalities(found)  # raises with what is missing
            if labels is None:
                raise LabelError("No labels to refine: segment the case first (Segment), or open a label map.")
            shape = np.asarray(next(iter(found.values())).data).shape
            if labels.data.shape != shape:
                raise LabelError(f"The labels layer '{labels.name}' {labels.data.shape} is not on the case's grid "
                                 f"{shape}; pick the case's own labels layer.")
            voxel = self.voxel_at(labels, position, view_direction, dims_displayed)
            if voxel is None:
                raise ClickError("The click missed the volume; click on the case.")
            check_clicks([(*voxel, label)], shape, brain=BrainVoxels([layer.data for layer in found.values()]))
        except (BratsInputError, ClickError, LabelError) as err:
            self.status.error(err)
            return False
        self._append_point(labels, voxel, label)
        self._start(found, labels)
        return True

    def _append_point(self, labels: napari.layers.Labels, voxel: tuple[int, int, int], label: int) -> None:
        points = self.clicks_layer(labels, create=True)
        values = [*points.features["label"], label]
        points.data = np.vstack([points.data, labels.data_to_world(voxel)[-3:]])
        points.features = {"label": values}
        points.face_color = [click_color(v) for v in values]

    def _drop_last_point(self, labels: napari.layers.Labels | None) -> None:
        points = None if labels is None else self.clicks_layer(labels)
        if points is not None and len(points.data):
            points.selected_data = {len(points.data) - 1}
            points.remove_selected()

    def clear_clicks(self) -> None:
        """Forget the clicks on the chosen labels layer (the labels stay as they are)."""
        labels = self.layer.value
        points = None if labels is None else self.clicks_layer(labels)
        if points is not None:
            self._viewer.layers.remove(points)
        if labels is not None:
            self._last_result.pop(labels.unique_id, None)
        self.status.info("Clicks cleared; the labels are kept as they are.")

    # --- refining in the background ----------------------------------------------------------------------
    def _start(self, found: dict, labels: napari.layers.Labels) -> None:
        clicks, data, model = self.clicks(labels), np.array(labels.data), self.refinement_model
        self._refining = labels
        name = CLICK_NAMES[clicks[-1][3]]
        self.run_job(lambda progress, should_stop: _refine_case(found, data, clicks, model),
                     lambda result: self._apply(labels, clicks, result),
                     f"Refining with {len(clicks)} click(s), the last one '{name}' at {clicks[-1][:3]}\u2026")
        self.progress.max = 0  # one step of unknown length: a busy bar

    def _apply(self, labels: napari.layers.Labels, clicks: list[Click], result: np.ndarray) -> None:
        current = np.asarray(labels.data)
        merged = merge_hand_edits(result, current, self._last_result.get(labels.unique_id), clicks)
        changed = np.nonzero(merged != current)
        if changed[0].size:
            labels.data_setitem(changed, merged[changed])
        self._last_result[labels.unique_id] = np.array(labels.data)
        self.status.info(f"{changed[0].size} voxels changed by {len(clicks)} click(s). Ctrl+Z on the labels "
                         "layer undoes this click's change.")

    def _on_error(self, err: Exception) -> None:
        self._drop_last_point(self._refining)
        super()._on_error(err)

    def on_cancelled(self) -> None:
        self._drop_last_point(self._refining)
        super().on_cancelled()

    def _on_layer_removed(self, event) -> None:
        self._last_result.pop(event.value.unique_id, None)
