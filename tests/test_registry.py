"""The model registry: the bundled model first and read-only, registered models copied in, never overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from napari_brainseg import registry
from napari_brainseg.__main__ import main
from napari_brainseg.model import DEFAULT_ARCH_KWARGS, CheckpointError, ModelInfo, build_network, save_checkpoint
from napari_brainseg.registry import ENV_VAR, INDEX_FILE, RegistryError, events, list_models, register_model

TINY = {**DEFAULT_ARCH_KWARGS, "channels": [4, 8], "strides": [2]}


@pytest.fixture(autouse=True)
def models_dir(tmp_path, monkeypatch) -> Path:
    """An empty models folder, and no bundled weights (they are tested on purpose below)."""
    folder = tmp_path / "models"
    monkeypatch.setenv(ENV_VAR, str(folder))
    monkeypatch.setattr(registry, "BUNDLED_PATH", tmp_path / "no-bundled-weights.pt")
    return folder


def make_checkpoint(path: Path, model_id: str = "child", **info) -> Path:
    info = ModelInfo(model_id=model_id, arch_kwargs=dict(TINY), **info)
    return save_checkpoint(path, build_network(info), info)


def test_the_models_folder_follows_the_environment_variable(models_dir):
    assert registry.models_dir() == models_dir


def test_without_bundled_weights_or_registrations_no_model_is_listed():
    assert list_models() == []


def test_the_bundled_model_is_listed_first_and_read_only_when_its_weights_exist(tmp_path, monkeypatch):
    bundled = make_checkpoint(tmp_path / "bundled.pt", "brainseg-bundled", version="1.0.0")
    monkeypatch.setattr(registry, "BUNDLED_PATH", bundled)
    register_model(make_checkpoint(tmp_path / "mine.pt", "mine"))
    first, second = list_models()
    assert (first.name, first.path, first.model_id, first.read_only) == ("bundled", bundled, "brainseg-bundled", True)
    assert (second.name, second.read_only) == ("mine", False)


def test_registering_copies_the_checkpoint_and_records_its_lineage_and_metrics(tmp_path, models_dir):
    source = make_checkpoint(tmp_path / "run" / "model.pt", "site-a-ft", version="1.0.0+ft20250101",
                             parent="brainseg-bundled", metrics={"Dice_WT": 0.91}, corrected_cases=["Case_1"])
    entry = register_model(source, name="Site A")
    assert entry.path.parent == models_dir and entry.path.read_bytes() == source.read_bytes()
    assert (entry.name, entry.model_id, entry.version, entry.parent) == (
        "Site A", "site-a-ft", "1.0.0+ft20250101", "brainseg-bundled")
    assert entry.metrics == {"Dice_WT": 0.91} and entry.created and not entry.read_only
    assert list_models() == [entry]
    index = json.loads((models_dir / INDEX_FILE).read_text())
    assert index["models"][0]["name"] == "Site A" and index["models"][0]["registered"]
    source.unlink()
    assert list_models() == [entry], "the registered copy does not depend on the run folder"


def test_the_name_defaults_to_the_model_id(tmp_path):
    assert register_model(make_checkpoint(tmp_path / "model.pt", "brainseg-ft1")).name == "brainseg-ft1"


def test_registering_never_overwrites_an_existing_name(tmp_path):
    first = register_model(make_checkpoint(tmp_path / "a.pt", "a"), name="mine")
    kept = first.path.read_bytes()
    for name in ("mine", "MINE", "bundled"):
        with pytest.raises(RegistryError, match="already exists; choose another name"):
            register_model(make_checkpoint(tmp_path / "b.pt", "b"), name=name)
    assert first.path.read_bytes() == kept
    assert [e.name for e in list_models()] == ["mine"]


def test_names_that_make_the_same_file_name_get_separate_files(tmp_path):
    a = register_model(make_checkpoint(tmp_path / "a.pt", "a"), name="site/a")
    b = register_model(make_checkpoint(tmp_path / "b.pt", "b"), name="site a")
    assert a.path != b.path and a.path.exists() and b.path.exists()
    assert [e.model_id for e in list_models()] == ["a", "b"]


@pytest.mark.parametrize("content", ["plain state dict", "text"])
def test_a_file_that_is_not_our_checkpoint_is_refused_and_nothing_is_written(tmp_path, models_dir, content):
    bad = tmp_path / "bad.pt"
    if content == "text":
        bad.write_text("hello")
    else:
        torch.save(build_network(ModelInfo(model_id="x", arch_kwargs=dict(TINY))).state_dict(), bad)
    with pytest.raises(CheckpointError):
        register_model(bad)
    assert list_models() == []
    assert not models_dir.exists() or not any(models_dir.iterdir())


def test_an_empty_name_is_refused(tmp_path):
    with pytest.raises(RegistryError, match="needs a name"):
        register_model(make_checkpoint(tmp_path / "a.pt"), name="  ")


def test_changed_is_emitted_with_the_new_entry_after_registration(tmp_path):
    seen = []
    events.changed.connect(seen.append)
    try:
        entry = register_model(make_checkpoint(tmp_path / "a.pt", "a"))
    finally:
        events.changed.disconnect(seen.append)
    assert seen == [entry]
    assert entry in list_models(), "listeners see the new model when they are told"


def test_a_registered_model_whose_file_is_gone_is_skipped_with_a_warning(tmp_path):
    gone = register_model(make_checkpoint(tmp_path / "a.pt", "a"))
    kept = register_model(make_checkpoint(tmp_path / "b.pt", "b"))
    gone.path.unlink()
    with pytest.warns(UserWarning, match="missing"):
        assert list_models() == [kept]


def test_an_unreadable_index_is_reported_and_never_overwritten(tmp_path, models_dir):
    models_dir.mkdir()
    (models_dir / INDEX_FILE).write_text("{ not json")
    with pytest.warns(UserWarning, match="cannot be read"):
        assert list_models() == []
    with pytest.raises(RegistryError, match="Move it aside"):
        register_model(make_checkpoint(tmp_path / "a.pt"))
    assert (models_dir / INDEX_FILE).read_text() == "{ not json"


def test_the_register_command_adds_a_checkpoint(tmp_path, capsys):
    assert main(["register", str(make_checkpoint(tmp_path / "a.pt", "a")), "--name", "from-cli"]) == 0
    assert "Registered model 'from-cli'" in capsys.readouterr().out
    assert [e.name for e in list_models()] == ["from-cli"]
    assert main(["register", str(tmp_path / "a.pt"), "--name", "from-cli"]) == 1
    assert "already exists" in capsys.readouterr().err
