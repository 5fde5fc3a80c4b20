"""Retrain widget: fine-tunes in the background with progress and Cancel, then lists the new model for segmenting."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_brainseg import registry
from napari_brainseg._widgets.retrain import RetrainWidget
from napari_brainseg._widgets.segment import SegmentWidget
from napari_brainseg.export import SIDECAR_NAME
from napari_brainseg.synthetic import write_synthetic_case

SHAPE = (40, 48, 32)
TIMEOUT_MS = 120_000


@pytest.fixture(autouse=True)
def private_models_folder(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv(registry.ENV_VAR, str(folder))
    monkeypatch.setattr(registry, "BUNDLED_PATH", tmp_path / "no-bundled-weights.pt")
    return folder


@pytest.fixture
def base(tiny_checkpoint) -> registry.ModelEntry:
    return registry.register_model(tiny_checkpoint, name="tiny-base")


@pytest.fixture
def data(tmp_path) -> tuple[Path, Path]:
    """(corrections, original): one corrected case and three original ones."""
    write_synthetic_case(tmp_path / "corrections" / "Case_000" / "v001", "Case_000", shape=SHAPE, seed=10)
    (tmp_path / "corrections" / "Case_000" / "v001" / SIDECAR_NAME).write_text("{}")  # as an export leaves it
    for seed in range(3):
        write_synthetic_case(tmp_path / "original" / f"Case_{seed:03d}", f"Case_{seed:03d}", shape=SHAPE, seed=seed)
    return tmp_path / "corrections", tmp_path / "original"


@pytest.fixture
def widget(viewer, base, data) -> RetrainWidget:
    widget = RetrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.corrections.value, widget.original.value = data
    widget.base.value = base.path
    widget.device.value = "cpu"
    widget.name.value = "site-a"
    return widget


def test_the_base_models_come_from_the_registry(widget, base):
    assert widget.base.choices == (base.path,)
    assert widget.epochs.value >= 1 and widget.steps.value >= 1


def test_fine_tuning_shows_progress_then_registers_the_new_model_and_the_comparison(widget, viewer, qtbot):
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment)
    widget.epochs.value, widget.steps.value = 1, 2
    steps_seen = []
    widget.run_button.clicked()
    widget.job.progressed.connect(lambda p: steps_seen.append((p.stage, p.done, p.total)))
    assert not widget.run_button.enabled and widget.cancel_button.enabled and not widget.progress.native.isHidden()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)

    assert not widget.status.is_error, widget.status.value
    assert ("train", 2, 2) in steps_seen
    assert widget.loss.value.startswith("Step 2/2, loss ")
    names = [m.name for m in registry.list_models()]
    assert names == ["tiny-base", "site-a"]
    [new] = [m for m in registry.list_models() if m.name == "site-a"]
    assert new.parent == "tiny" and new.model_id == "site-a"
    assert "Segment widget's model list" in widget.status.value
    for word in ("base", "new", "change", "Dice_WT", "HD95_ET"):
        assert word in widget.result.value
    assert new.path in widget.base.choices, "the new model can be the next base"
    assert new.path in segment.model.choices, "the Segment widget offers it at once"
    assert widget.run_button.enabled and not widget.cancel_button.enabled and widget.progress.native.isHidden()
    assert widget.name.value != "site-a", "a fresh name is offered for the next model"


def test_cancel_stops_training_and_registers_nothing(widget, qtbot):
    widget.epochs.value, widget.steps.value = 100, 100
    widget.run_button.clicked()
    qtbot.waitUntil(lambda: widget.loss.value.startswith("Step"), timeout=TIMEOUT_MS)
    widget.cancel_button.clicked()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert "Cancelled; no model was registered" in widget.status.value
    assert [m.name for m in registry.list_models()] == ["tiny-base"]
    assert widget.result.value == ""


def test_a_name_already_taken_is_refused_before_training(widget):
    widget.name.value = "tiny-base"
    widget.run_button.clicked()
    assert widget.worker is None
    assert widget.status.is_error and "already exists" in widget.status.value


def test_a_corrections_folder_without_cases_is_refused_before_training(widget, tmp_path):
    (tmp_path / "empty").mkdir()
    widget.corrections.value = tmp_path / "empty"
    widget.run_button.clicked()
    assert widget.worker is None
    assert widget.status.is_error and "No labelled BraTS cases" in widget.status.value
    assert [m.name for m in registry.list_models()] == ["tiny-base"]
