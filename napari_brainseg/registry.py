"""The models the plugin offers: the bundled one, and the user's own registered in a models folder.

The folder is ``platformdirs.user_data_dir("napari-brainseg")/models`` (the environment variable
``NAPARI_BRAINSEG_MODELS_DIR`` overrides it). It holds a copy of every registered checkpoint and
``models.json``, the index of their names. Registering never overwrites: a name is taken once, and the
copy and the index are each written to a temporary file and renamed into place. The bundled model is
listed first, read-only, whenever its weights file exists. :data:`events` ``.changed`` is emitted
with the new :class:`ModelEntry` after every registration (the Segment widget refreshes its list).

Example:
    >>> entry = register_model("runs/ft1/model.pt", name="my-site")  # doctest: +SKIP
    >>> [m.name for m in list_models()]  # doctest: +SKIP
    ['bundled', 'my-site']
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from psygnal import Signal

from .atomic import atomic_path, write_text_atomic
from .model import BUNDLED, BUNDLED_PATH, info_from_dict, read_checkpoint

ENV_VAR = "NAPARI_BRAINSEG_MODELS_DIR"
INDEX_FILE = "models.json"
INDEX_FORMAT = "napari-brainseg-models"


class RegistryError(ValueError):
    """A model that cannot be registered, or a models index that cannot be read."""


@dataclass(frozen=True)
class ModelEntry:
    """One model the plugin offers; ``path`` is what :func:`~napari_brainseg.model.load_model` takes."""

    name: str
    path: Path
    model_id: str
    version: str
    parent: str | None
    created: str
    metrics: dict[str, Any] = field(default_factory=dict)
    read_only: bool = False


class RegistryEvents:
    """Signals of the model registry."""

    changed = Signal(ModelEntry)
    """Emitted with the new entry after a model is registered."""


events = RegistryEvents()


def models_dir() -> Path:
    """The folder of the user's models (``$NAPARI_BRAINSEG_MODELS_DIR`` when set)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-brainseg")) / "models"


def _entry(name: str, path: Path, read_only: bool = False) -> ModelEntry:
    info = info_from_dict(read_checkpoint(path)["info"])
    return ModelEntry(name, path, info.model_id, info.version, info.parent, info.created, info.metrics, read_only)


def _read_index(folder: Path) -> list[dict]:
    path = folder / INDEX_FILE
    if not path.exists():
        return []
    try:
        index = json.loads(path.read_text())
        models = index["models"]
        if index.get("format") != INDEX_FORMAT or not all({"name", "file"} <= m.keys() for m in models):
            raise ValueError("unexpected content")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise RegistryError(
            f"The models index {path} cannot be read ({err}). Move it aside to start a new list; the model "
            f"files next to it are untouched and can be registered again."
        ) from None
    return models


def _write_index(folder: Path, models: list[dict]) -> None:
    write_text_atomic(folder / INDEX_FILE, json.dumps({"format": INDEX_FORMAT, "models": models}, indent=2) + "\n")


def list_models() -> list[ModelEntry]:
    """The bundled model (when its weights exist) then the registered models, oldest first.

    A registered model whose file has gone, or an unreadable index, is skipped with a warning.
    """
    entries = [_entry(BUNDLED, BUNDLED_PATH, read_only=True)] if BUNDLED_PATH.is_file() else []
    folder = models_dir()
    try:
        models = _read_index(folder)
    except RegistryError as err:
        warnings.warn(str(err), stacklevel=2)
        return entries
    for record in models:
        path = folder / record["file"]
        if not path.is_file():
            warnings.warn(f"Model {record['name']!r} is listed in {folder / INDEX_FILE} but {path} is missing.",
                          stacklevel=2)
            continue
        known = {k: v for k, v in record.items() if k in ModelEntry.__dataclass_fields__}
        entries.append(ModelEntry(**{**known, "path": path, "read_only": False}))
    return entries



def resolve_model(model: str | Path) -> str | Path:
    """What :func:`~napari_brainseg.model.load_model` takes for a model named by a user.

    ``"bundled"``, the path of a checkpoint file, or the name of a registered model (case-insensitive);
    an existing file wins over a name. Raises :class:`RegistryError` when it is none of these.
    """
    if str(model) == BUNDLED:
        return BUNDLED
    path = Path(model).expanduser()
    if path.is_file():
        return path
    for entry in list_models():
        if entry.name.lower() == str(model).lower():
            return entry.path
    raise RegistryError(
        f"No model named {str(model)!r} and no checkpoint file at {path}: give 'bundled', the name of a "
        f"registered model (napari-brainseg models lists them) or the path of a .pt checkpoint."
    )

def _file_name(name: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    candidate, n = f"{stem}.pt", 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{stem}-{n}.pt"
    return candidate


def register_model(checkpoint_path: str | Path, name: str | None = None) -> ModelEntry:
    """Copy a checkpoint into the models folder under ``name`` (default: its model id) and list it.

    Raises :class:`RegistryError` for a name already taken and
    :class:`~napari_brainseg.model.CheckpointError` for a file that is not a napari-brainseg checkpoint.
    """
    source = Path(checkpoint_path).expanduser()
    info = info_from_dict(read_checkpoint(source)["info"])
    name = (name if name is not None else info.model_id).strip()
    if not name:
        raise RegistryError("A model needs a name; type one.")
    folder = models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    models = _read_index(folder)
    taken = {m["name"].lower() for m in models} | {BUNDLED}
    if name.lower() in taken:
        raise RegistryError(f"A model named {name!r} already exists; choose another name.")
    files = {p.name.lower() for p in folder.iterdir()}
    target = folder / _file_name(name, files)
    with atomic_path(target) as temp:
        shutil.copyfile(source, temp)
    entry = ModelEntry(name, target, info.model_id, info.version, info.parent, info.created, info.metrics)
    record = {**asdict(entry), "file": target.name,
              "registered": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    for key in ("path", "read_only"):
        record.pop(key)
    try:
        _write_index(folder, [*models, record])
    except OSError:
        target.unlink()
        raise
    events.changed.emit(entry)
    return entry
