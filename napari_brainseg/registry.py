"""The models the plugin offers: the bundled one, and the user's own registered in a models folder.

The folder is ``platformdirs.user_data_dir("napari-brainseg")/models`` (the environment variable
``NAPARI_BRAINSEG_MODELS_DIR`` overrides it). It holds a copy of every registered checkpoint and
``models.json``, the index of their names. Registering never overwrites: a name is taken once, and the
copy and the index are each written to a temporary file and renamed into place, and registrations by
several processes at once take turns (a lock file, ``.models.lock``): none is lost. A registration killed
midway is undone by the next one (its entry is marked pending until its copy is complete). The bundled
model is listed first, read-only, whenever its weights file exists. :func:`list_models` leaves out, with a
warning saying why, a model whose file is missing or damaged and an index entry edited into a wrong shape.
:data:`events` ``.changed`` is emitted with the new :class:`ModelEntry` after every registration (the
Segment widget refreshes its list).

Example (a small untrained model stands for one trained at your site):
    >>> from napari_brainseg.model import ModelInfo, build_network, save_checkpoint
    >>> info = ModelInfo(model_id="site-a", arch_kwargs={"spatial_dims": 3, "in_channels": 4, "out_channels": 3,
    ...                                                  "channels": [4, 8], "strides": [2]})
    >>> checkpoint = save_checkpoint("model.pt", build_network(info), info)
    >>> entry = register_model(checkpoint, name="my-site")
    >>> [m.name for m in list_models()]
    ['bundled', 'my-site']
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import warnings
import zipfile
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from psygnal import Signal

from .atomic import atomic_path, file_lock, write_text_atomic
from .model import BUNDLED, BUNDLED_PATH, info_from_dict, read_checkpoint

ENV_VAR = "NAPARI_BRAINSEG_MODELS_DIR"
INDEX_FILE = "models.json"
INDEX_FORMAT = "napari-brainseg-models"
LOCK_FILE = ".models.lock"
PENDING = "pending"
_REQUIRED = ("name", "file", "model_id", "version", "created")
_CHECKED: dict[tuple[Path, int, int], str | None] = {}


class RegistryError(ValueError):
    """A model that cannot be registered, or a models index that cannot be read."""


class RegistryWarning(UserWarning):
    """A registered model or index entry left out of the list, and why."""


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


def _read_index(folder: Path) -> list:
    """The index's raw list of entries (each checked later, on its own)."""
    path = folder / INDEX_FILE
    if not path.exists():
        return []
    try:
        index = json.loads(path.read_text())
        models = index["models"]
        if index.get("format") != INDEX_FORMAT or not isinstance(models, list):
            raise ValueError("unexpected content")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise RegistryError(
            f"The models index {path} cannot be read ({err}). Move it aside to start a new list; the model "
            f"files next to it are untouched and can be registered again."
        ) from None
    return models


def _write_index(folder: Path, models: list) -> None:
    write_text_atomic(folder / INDEX_FILE, json.dumps({"format": INDEX_FORMAT, "models": models}, indent=2) + "\n")


def _is_pending(record: Any) -> bool:
    """True for the entry of a registration that has not finished (or was killed before it did)."""
    return isinstance(record, dict) and bool(record.get(PENDING))


def _entry_problems(record: Any) -> list[str]:
    """What is wrong with one entry of the index, in words (nothing for a good one)."""
    if not isinstance(record, dict):
        return [f"it is {json.dumps(record)}, not an object"]
    problems = []
    for key in _REQUIRED:
        value = record.get(key)
        if key not in record:
            problems.append(f"it has no {key!r}")
        elif not isinstance(value, str) or not value.strip():
            problems.append(f"its {key!r} is {json.dumps(value)}, not a text")
    file = record.get("file")
    if isinstance(file, str) and (Path(file).name != file or file.startswith(".")):
        problems.append(f"its 'file' {file!r} is not a file name in the models folder")
    if not isinstance(record.get("parent"), (str, type(None))):
        problems.append(f"its 'parent' is {json.dumps(record['parent'])}, not a text or null")
    if not isinstance(record.get("metrics", {}), dict):
        problems.append(f"its 'metrics' is {json.dumps(record['metrics'])}, not an object")
    return problems


def _good_entries(folder: Path, models: list) -> list[dict]:
    """The finished, well-formed entries; every other one but an unfinished registration is reported."""
    good = []
    for number, record in enumerate(models, start=1):
        if _is_pending(record):
            continue
        problems = _entry_problems(record)
        if problems:
            name = record.get("name") if isinstance(record, dict) else None
            label = f"entry {number}" + (f" ({name!r})" if isinstance(name, str) else "")
            warnings.warn(
                f"The models index {folder / INDEX_FILE}: {label} is skipped because {'; '.join(problems)}. "
                "Correct or remove it by hand; the other models are listed.", RegistryWarning, stacklevel=3)
            continue
        good.append(record)
    return good


def model_file_problem(path: Path) -> str | None:
    """Why a checkpoint file cannot be loaded, found cheaply (its zip structure and checksums); None if whole.

    Each file is read once for a given size and modification time; later calls answer from memory.
    """
    try:
        stat = path.stat()
    except OSError:
        return "its file is missing"
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKED:
        _CHECKED[key] = _zip_problem(path)
    return _CHECKED[key]


def _zip_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("/data.pkl") for name in archive.namelist()):
                return "it is not a PyTorch checkpoint"
            for info in archive.infolist():
                if info.CRC:  # torch can be told to store no checksums
                    with archive.open(info) as member:
                        while member.read(1 << 22):
                            pass
    except zipfile.BadZipFile as err:
        detail = "its contents are damaged" if "CRC" in str(err) else "it is truncated or not a PyTorch file"
        return f"{detail} ({err})"
    except OSError as err:
        return f"it cannot be read ({err.strerror or err})"
    return None


def list_models() -> list[ModelEntry]:
    """The bundled model (when its weights exist) then the registered models, oldest first.

    A registered model whose file is missing or damaged, a malformed index entry, or an unreadable index
    is left out with a warning that says why; registrations still running are not listed yet.
    """
    entries = [_entry(BUNDLED, BUNDLED_PATH, read_only=True)] if BUNDLED_PATH.is_file() else []
    folder = models_dir()
    try:
        models = _good_entries(folder, _read_index(folder))
    except RegistryError as err:
        warnings.warn(str(err), RegistryWarning, stacklevel=2)
        return entries
    for record in models:
        path = folder / record["file"]
        problem = model_file_problem(path)
        if problem:
            warnings.warn(
                f"Model {record['name']!r} is left out: {path}: {problem}. Remove its entry from "
                f"{folder / INDEX_FILE} and register the checkpoint again.", RegistryWarning, stacklevel=2)
            continue
        known = {k: v for k, v in record.items() if k in ModelEntry.__dataclass_fields__}
        entries.append(ModelEntry(**{"parent": None, "metrics": {}, **known, "path": path, "read_only": False}))
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
        "registered model (napari-brainseg models lists them) or the path of a .pt checkpoint."
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
    Registrations by several processes at once are done one after the other (a lock file in the folder).
    """
    source = Path(checkpoint_path).expanduser()
    info = info_from_dict(read_checkpoint(source)["info"])
    name = (name if name is not None else info.model_id).strip()
    if not name:
        raise RegistryError("A model needs a name; type one.")
    folder = models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / LOCK_FILE):
        models = _without_interrupted(folder, _read_index(folder))
        _good_entries(folder, models)  # reports malformed entries; they are kept as they are
        taken = {m["name"].lower() for m in models if isinstance(m, dict) and isinstance(m.get("name"), str)}
        taken.add(BUNDLED)
        if name.lower() in taken:
            raise RegistryError(f"A model named {name!r} already exists; choose another name.")
        files = {p.name.lower() for p in folder.iterdir()}
        files |= {m["file"].lower() for m in models if isinstance(m, dict) and isinstance(m.get("file"), str)}
        target = folder / _file_name(name, files)
        entry = ModelEntry(name, target, info.model_id, info.version, info.parent, info.created, info.metrics)
        record = {**asdict(entry), "file": target.name,
                  "registered": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        for key in ("path", "read_only"):
            record.pop(key)
        _write_index(folder, [*models, {**record, PENDING: True}])  # a kill from here on is undone by the next
        try:
            with atomic_path(target) as temp:
                shutil.copyfile(source, temp)
            _write_index(folder, [*models, record])
        except BaseException:
            target.unlink(missing_ok=True)
            with suppress(OSError):
                _write_index(folder, models)
            raise
    events.changed.emit(entry)
    return entry


def _without_interrupted(folder: Path, models: list) -> list:
    """The entries but those of killed registrations, whose copies are removed (call with the lock held)."""
    for record in filter(_is_pending, models):
        if isinstance(record.get("file"), str) and Path(record["file"]).name == record["file"]:
            (folder / record["file"]).unlink(missing_ok=True)
    return [m for m in models if not _is_pending(m)]
