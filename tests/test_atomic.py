"""Atomic writes: the target gets the complete new content, or stays exactly as it was."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from napari_brainseg.atomic import (
    HOST,
    STALE_UNCHECKED_S,
    atomic_path,
    remove_left_overs,
    temp_folder,
    write_text_atomic,
)

if os.name == "posix":
    import fcntl


def test_a_successful_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "index.json"
    target.write_text("old")
    with atomic_path(target) as temp:
        temp.write_text("new")
        assert target.read_text() == "old", "the target is untouched until the block ends"
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_byte_identical_and_no_temporary_file(tmp_path, error):
    target = tmp_path / "model.pt"
    old = bytes(range(256))
    target.write_bytes(old)
    with pytest.raises(type(error)), atomic_path(target) as temp:
        temp.write_bytes(b"half a checkpoint")
        raise error
    assert target.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_a_block_that_fails_before_writing_creates_nothing(tmp_path):
    target = tmp_path / "report.pdf"
    with pytest.raises(ValueError), atomic_path(target):
        raise ValueError("bad input")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["Brats18_X_seg.nii.gz", "report.pdf", "model-1.0.pt", "README"])
def test_the_temporary_file_is_hidden_next_to_the_target_with_its_full_suffix(tmp_path, name):
    target = tmp_path / name
    with atomic_path(target) as temp:
        temp.write_text("x")
    assert temp.parent == tmp_path
    assert temp.name.startswith(".") and temp.name != name
    assert temp.name.endswith("".join(target.suffixes))
    assert not temp.exists()


def test_writers_that_pick_the_format_from_the_name_write_the_target_format(tmp_path):
    nib = pytest.importorskip("nibabel")
    np = pytest.importorskip("numpy")
    target = tmp_path / "case_seg.nii.gz"
    with atomic_path(target) as temp:
        nib.save(nib.Nifti1Image(np.ones((2, 3, 4), dtype=np.uint8), np.eye(4)), temp)
    assert target.read_bytes()[:2] == b"\x1f\x8b", "gzip-compressed, as .nii.gz says"
    assert nib.load(target).shape == (2, 3, 4)


def test_write_text_atomic_creates_or_replaces_a_text_file(tmp_path):
    target = tmp_path / "split.json"
    write_text_atomic(target, "{}\n")
    assert target.read_text() == "{}\n"
    write_text_atomic(target, '{"train": []}\n')
    assert target.read_text() == '{"train": []}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["split.json"]


# --- temporaries of writers that died: removed by the next write, never one still being written ------------------

REPO_ROOT = Path(__file__).resolve().parents[1]
posix_only = pytest.mark.skipif(os.name != "posix", reason="process checks and locks are POSIX")

WRITE_AND_WAIT = """
import sys, time
from pathlib import Path
from napari_brainseg.atomic import atomic_path, temp_folder
target = Path(sys.argv[1])
if sys.argv[2] == "file":
    with atomic_path(target) as temp:
        temp.write_text("half")
        print(temp, flush=True)
        sys.stdin.readline()  # writes on until told to finish
        temp.write_text("whole")
else:
    with temp_folder(target.parent, target.name) as temp:
        (temp / "part.nii.gz").write_text("half")
        print(temp, flush=True)
        sys.stdin.readline()
        temp.rename(target)
"""


def start_writer(target: Path, kind: str) -> tuple[subprocess.Popen, Path]:
    """A child process in the middle of writing ``target``; returns it and its temporary path."""
    child = subprocess.Popen([sys.executable, "-c", WRITE_AND_WAIT, str(target), kind], cwd=REPO_ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8")
    temp = Path(child.stdout.readline().strip())
    assert temp.exists()
    return child, temp


def dead_pid() -> int:
    """The id of a process that has ended."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, encoding="utf-8", check=True).stdout)


def test_temporary_names_say_which_process_on_which_machine_writes_them(tmp_path):
    with atomic_path(tmp_path / "Brats18_X_seg.nii.gz") as temp:
        assert temp.name.startswith(f".Brats18_X_seg~tmp~{os.getpid()}~{HOST}~") and temp.name.endswith(".nii.gz")


@posix_only
@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_temporary_left_by_a_killed_writer_is_removed_by_the_next_write_into_its_folder(tmp_path, kind):
    child, temp = start_writer(tmp_path / "model.pt", kind)
    child.kill()
    child.wait()
    assert temp.exists(), "a hard kill cannot clean up"
    write_text_atomic(tmp_path / "other.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json"]


@posix_only
@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_temporary_that_a_live_process_is_still_writing_is_never_removed(tmp_path, kind):
    child, temp = start_writer(tmp_path / "model.pt", kind)
    write_text_atomic(tmp_path / "other.json", "{}")
    with temp_folder(tmp_path, "export"):
        assert remove_left_overs(tmp_path) == []
    assert temp.exists()
    child.communicate("finish\n", timeout=60)
    assert child.returncode == 0, "the live writer finished its write"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "other.json"]


@posix_only
def test_a_locked_temporary_is_kept_even_when_its_process_id_is_gone(tmp_path):
    """A writer in another PID namespace (a container sharing the folder) still holds its lock."""
    temp = tmp_path / f".model~tmp~{dead_pid()}~{HOST}~0123abcd.pt"
    temp.write_text("half")
    with temp.open() as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert remove_left_overs(tmp_path) == []
    assert remove_left_overs(tmp_path) == [temp]


def test_a_temporary_from_another_machine_is_removed_only_after_a_day_untouched(tmp_path):
    temp = tmp_path / ".model~tmp~123~some-other-host~0123abcd.pt"
    temp.write_text("half")
    assert remove_left_overs(tmp_path) == []
    a_day_ago = time.time() - STALE_UNCHECKED_S - 60
    os.utime(temp, (a_day_ago, a_day_ago))
    assert remove_left_overs(tmp_path) == [temp]


def test_files_that_are_not_owner_tagged_temporaries_are_never_touched(tmp_path):
    names = [".hidden", ".model-0123456789ab.pt", "notes~tmp~1~host~0123abcd.txt", ".x~tmp~abc~host~0123abcd.pt"]
    for name in names:
        (tmp_path / name).write_text("mine")
    old = time.time() - STALE_UNCHECKED_S - 60
    for name in names:
        os.utime(tmp_path / name, (old, old))
    write_text_atomic(tmp_path / "index.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names, "index.json"])
