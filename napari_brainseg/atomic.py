"""Writes that leave nothing half-done: a file or folder appears complete under its final name, or not at all.

Every writer of the plugin and of training (checkpoints, predictions, exports, the model registry, reports)
first writes to a hidden temporary name next to the target, then renames it onto the target in one step
(``os.replace``); a failed or interrupted write removes its temporary file.

A hard kill (``kill -9``, a power cut) cannot remove anything, so temporary names say who owns them:
``.<name>~tmp~<pid>~<host>~<random><suffix>``, and the owner holds a lock on the file for as long as it
writes (POSIX). The next write into the same folder removes the temporaries whose owners are gone, never
one that a running process is still writing: a temporary is removed when its process no longer runs on this
machine and nobody holds its lock, or, written on another machine (a shared disk) or where processes cannot
be checked (Windows), when nobody holds its lock and it has been untouched for a day.

Example:
    >>> import nibabel as nib, numpy as np, tempfile
    >>> out = Path(tempfile.mkdtemp()) / "case_seg.nii.gz"
    >>> with atomic_path(out) as temp:  # temp ends in .nii.gz too, so nibabel writes the same format
    ...     nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), temp)
    >>> [p.name for p in out.parent.iterdir()]
    ['case_seg.nii.gz']
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; ownership is judged by name and age only
    fcntl = None

TEMP_TAG = "~tmp~"
STALE_UNCHECKED_S = 24 * 3600
"""How long a temporary whose owner cannot be checked from here must be untouched before it counts as left over."""
NO_SPACE = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
NO_PERMISSION = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})

HOST = re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname()) or "host"
_TEMP_NAME = re.compile(rf"^\..*{re.escape(TEMP_TAG)}(?P<pid>\d+)~(?P<host>[A-Za-z0-9.-]+)~[0-9a-f]{{8}}(\..*)?$")


def temp_name(name: str) -> str:
    """A hidden, owner-tagged, unused name for a temporary of ``name``, keeping its full suffix (``.nii.gz``).

    Writers that choose the format from the name (nibabel, matplotlib) then choose the same format.
    """
    suffix = "".join(Path(name).suffixes)
    stem = name[: len(name) - len(suffix)]
    return f".{stem}{TEMP_TAG}{os.getpid()}~{HOST}~{uuid.uuid4().hex[:8]}{suffix}"


def _lock(fd: int) -> None:
    """Hold an exclusive lock on ``fd`` while it is open (nothing where locks are not supported)."""
    if fcntl is not None:
        with suppress(OSError):  # e.g. a file system without locks: the owner's pid still protects it
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _is_locked(path: Path) -> bool:
    """True when a process holds the lock of the temporary ``path``."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def _process_runs(pid: int) -> bool | None:
    """Whether process ``pid`` of this machine runs; None where that cannot be checked."""
    if os.name != "posix":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def is_left_over(path: Path) -> bool:
    """True for an owner-tagged temporary whose writer is gone (see the module docstring for the rule)."""
    match = _TEMP_NAME.match(path.name)
    if match is None or _is_locked(path):
        return False
    runs = _process_runs(int(match["pid"])) if match["host"] == HOST else None
    if runs is None:
        try:
            return time.time() - path.lstat().st_mtime > STALE_UNCHECKED_S
        except OSError:
            return False
    return not runs


def remove_left_overs(folder: str | Path) -> list[Path]:
    """Remove the temporary files and folders in ``folder`` whose writers are gone; returns what was removed."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        path = Path(folder) / name
        if not _TEMP_NAME.match(name) or not is_left_over(path):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        except OSError:  # not ours to remove after all (permissions): leave it
            continue
        removed.append(path)
    return removed


@contextmanager
def _owned(temp: Path, create: Callable[[Path], int]) -> Iterator[None]:
    """Create ``temp`` (``create`` returns an open descriptor) and hold its lock until the block ends."""
    fd = create(temp)
    try:
        _lock(fd)
        if os.name == "nt":  # Windows cannot rename a file that is open
            os.close(fd)
            fd = -1
        yield
    finally:
        if fd >= 0:
            os.close(fd)


def _create_file(path: Path) -> int:
    return os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)


def _create_folder(path: Path) -> int:
    path.mkdir(mode=0o777)
    return os.open(path, os.O_RDONLY)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path`` to: renamed onto ``path`` when the block succeeds, removed if it raises.

    The temporary file exists (empty) when the block starts; any writer may replace its content. Left-over
    temporaries of dead writers in the same folder are removed first.
    """
    path = Path(path)
    remove_left_overs(path.parent)
    temp = path.with_name(temp_name(path.name))
    try:
        with _owned(temp, _create_file):
            yield temp
            os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def temp_folder(parent: str | Path, name: str) -> Iterator[Path]:
    """A new hidden, owner-tagged folder in ``parent`` to build a folder in; whatever is left of it is removed.

    The block publishes its work by renaming the folder (``os.rename``); left-over temporaries of dead
    writers in ``parent`` are removed first.
    """
    parent = Path(parent)
    remove_left_overs(parent)
    temp = parent / temp_name(name)
    try:
        with _owned(temp, _create_folder):
            yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace the file ``path`` with ``text`` in one step."""
    with atomic_path(path) as temp:
        temp.write_text(text)


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if needed), waiting for other holders.

    Used around read-modify-write of a shared file. On POSIX this is ``flock`` (released by the system if
    the holder dies); on Windows, ``msvcrt.locking`` on its first byte, retried until free.
    """
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_problem(err: BaseException, folder: str | Path) -> str | None:
    """In words, why a write into ``folder`` failed when the disk is full or the write was refused; else None."""
    code = getattr(err, "errno", None)
    if code in NO_SPACE:
        return f"the disk holding {folder}{_mounted_at(Path(folder))} is full"
    if code in NO_PERMISSION:
        return f"no permission to write in {folder}"
    return None


def _mounted_at(folder: Path) -> str:
    """`` (mounted at /data)`` for the mount point of the disk holding ``folder``, when that is not ``/``."""
    path = folder.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return "" if path == path.parent else f" (mounted at {path})"
