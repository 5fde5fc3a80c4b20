"""The model registry: the bundled model first and read-only, registered models copied in, never overwritten."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from napari_brainseg import registry
from napari_brainseg.__main__ import main
from napari_brainseg.model import (
    DEFAULT_ARCH_KWARGS,
    CheckpointError,
    ModelInfo,
    build_network,
    load_model,
    save_checkpoint,
)
from napari_brainseg.registry import (
    ENV_VAR,
    INDEX_FILE,
    RegistryError,
    RegistryWarning,
    events,
    list_models,
    register_model,
)

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


# --- faults: concurrent and killed registrations, damaged files, hand-edited indexes ------------------------------

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_python(script: str, *args: str) -> subprocess.Popen:
    """Start ``python -c script args`` in the repository (the models folder comes through the environment)."""
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8")


def test_two_processes_registering_ten_models_each_lose_none(tmp_path, models_dir):
    source = make_checkpoint(tmp_path / "a.pt", "a")
    script = ("import sys; from napari_brainseg.registry import register_model\n"
              "for i in range(10): register_model(sys.argv[1], name=f'{sys.argv[2]}-{i}')")
    children = [run_python(script, str(source), tag) for tag in ("first", "second")]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
    names = {e.name for e in list_models()}
    assert names == {f"{tag}-{i}" for tag in ("first", "second") for i in range(10)}
    assert len(list(models_dir.glob("*.pt"))) == 20


KILL_WHILE_COPYING = """
import os, shutil, signal, sys
from napari_brainseg.registry import register_model
def copy_half_then_die(source, target, **kwargs):
    open(target, "wb").write(open(source, "rb").read()[:1000])
    os.kill(os.getpid(), signal.SIGKILL)
shutil.copyfile = copy_half_then_die
register_model(sys.argv[1], name="interrupted")
"""

KILL_AFTER_COPYING = """
import os, signal, sys
from napari_brainseg.registry import register_model
real_replace = os.replace
def replace_then_die(source, target):
    real_replace(source, target)
    if str(target).endswith(".pt"):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace_then_die
register_model(sys.argv[1], name="interrupted")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize("script", [KILL_WHILE_COPYING, KILL_AFTER_COPYING], ids=["while-copying", "after-copying"])
def test_a_registration_killed_midway_is_never_listed_and_the_next_one_removes_its_copy(tmp_path, models_dir, script):
    kept = register_model(make_checkpoint(tmp_path / "kept.pt", "kept"))
    source = make_checkpoint(tmp_path / "a.pt", "a")
    child = run_python(script, str(source))
    child.communicate(timeout=300)
    assert child.returncode == -9
    left = {p.name for p in models_dir.iterdir()} - {INDEX_FILE, registry.LOCK_FILE, kept.path.name}
    assert left, "the kill left a copy behind"
    assert list_models() == [kept], "an unfinished registration is not offered"

    again = register_model(source, name="interrupted")
    assert [e.name for e in list_models()] == ["kept", "interrupted"]
    assert {p.name for p in models_dir.iterdir()} == {INDEX_FILE, registry.LOCK_FILE, kept.path.name,
                                                      again.path.name}
    assert again.path.read_bytes() == source.read_bytes()


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # one byte changed inside the weights
        with zipfile.ZipFile(path) as archive:
            largest = max(archive.infolist(), key=lambda i: i.file_size)
            member = archive.read(largest)
        at = data.index(member) + len(member) // 2
        path.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])


@pytest.mark.parametrize(("how", "reason"), [("truncated", "truncated"), ("empty", "truncated"),
                                             ("flipped", "contents are damaged")])
def test_a_damaged_model_file_is_left_out_with_the_reason(tmp_path, how, reason):
    bad = register_model(make_checkpoint(tmp_path / "a.pt", "a"), name="damaged")
    good = register_model(make_checkpoint(tmp_path / "b.pt", "b"), name="good")
    damage(bad.path, how)
    with pytest.warns(RegistryWarning, match=rf"Model 'damaged' is left out: .*{reason}") as caught:
        assert list_models() == [good]
    assert len(caught) == 1
    if how != "flipped":  # torch itself loads a changed byte silently, as a wrong weight
        with pytest.raises(CheckpointError):
            load_model(bad.path)


def test_a_repaired_model_file_is_checked_again(tmp_path):
    entry = register_model(make_checkpoint(tmp_path / "a.pt", "a"), name="mine")
    whole = entry.path.read_bytes()
    damage(entry.path, "truncated")
    with pytest.warns(RegistryWarning):
        assert list_models() == []
    entry.path.write_bytes(whole)
    assert list_models() == [entry]


MALFORMED = [
    {"name": None, "file": "x.pt", "model_id": "x", "version": "1", "created": "today"},
    {"name": "no-file", "file": None, "model_id": "x", "version": "1", "created": "today"},
    {"file": "y.pt", "model_id": "y", "version": "1", "created": "today"},
    {"name": 7, "file": ["z.pt"], "model_id": "z", "version": "1", "created": "today"},
    {"name": "escape", "file": "../outside.pt", "model_id": "z", "version": "1", "created": "today"},
    "not an entry",
]


def test_a_hand_edited_index_keeps_its_good_models_and_names_each_bad_entry(tmp_path, models_dir, capsys):
    good = register_model(make_checkpoint(tmp_path / "a.pt", "a"), name="good")
    index = json.loads((models_dir / INDEX_FILE).read_text())
    index["models"] += MALFORMED
    (models_dir / INDEX_FILE).write_text(json.dumps(index))

    with pytest.warns(RegistryWarning) as caught:
        assert list_models() == [good]
    messages = [str(w.message) for w in caught]
    assert len(messages) == len(MALFORMED)
    assert "entry 2 is skipped because its 'name' is null, not a text" in messages[0]
    assert "entry 3 ('no-file') is skipped because its 'file' is null" in messages[1]
    assert "entry 4 is skipped because it has no 'name'" in messages[2]
    assert "its 'name' is 7, not a text; its 'file' is [\"z.pt\"], not a text" in messages[3]
    assert "'../outside.pt' is not a file name in the models folder" in messages[4]
    assert 'entry 7 is skipped because it is "not an entry", not an object' in messages[5]

    assert main(["register", str(make_checkpoint(tmp_path / "b.pt", "b")), "--name", "added"]) == 0
    out = capsys.readouterr()
    assert "Registered model 'added'" in out.out
    assert out.err.count("warning: ") == len(MALFORMED) and "Traceback" not in out.err
    with pytest.warns(RegistryWarning):
        assert [e.name for e in list_models()] == ["good", "added"]
    assert json.loads((models_dir / INDEX_FILE).read_text())["models"][1:7] == MALFORMED, "bad entries kept as edited"
