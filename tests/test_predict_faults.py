"""``predict`` when the machine fails it: a full disk names the file and the disk and keeps the old output; SIGTERM
stops like Ctrl+C; a hard kill's temporary file is removed by the next run; never a partial file under a final name."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_brainseg.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[1]

# The child process runs the real command; its second label-map save pauses after writing the temporary file,
# so that the test can signal it mid-write (the pause is this script's, not a setting of the command).
PAUSE_ON_SECOND_SAVE = """
import signal, sys, time, nibabel
from napari_brainseg.__main__ import main
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl+C as in a terminal, even if started in background
real_save, saves = nibabel.save, []
def save_then_pause(image, path):
    real_save(image, path)
    saves.append(path)
    if len(saves) == 2:
        print("writing", path, flush=True)
        time.sleep(300)
nibabel.save = save_then_pause
sys.exit(main(sys.argv[1:]))
"""


def predict_args(tiny_checkpoint: Path, *args: str | Path) -> list[str]:
    return ["predict", *map(str, args), "--model", str(tiny_checkpoint), "--device", "cpu"]


def start_paused_predict(make_case, tiny_checkpoint, out: Path) -> tuple[subprocess.Popen, Path]:
    """Start predict on two cases in a child process; return it once it is writing the second output."""
    cases = [make_case(case_id=f"Case_{i}", folder=f"case{i}").folder for i in (1, 2)]
    child = subprocess.Popen(
        [sys.executable, "-c", PAUSE_ON_SECOND_SAVE, *predict_args(tiny_checkpoint, *cases, "--output-dir", out)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
    )
    line = child.stdout.readline()
    assert line.startswith("writing"), child.communicate(timeout=60)
    temp = Path(line.split(maxsplit=1)[1].strip())
    assert temp.exists() and temp.name.startswith("."), "the pause is in the middle of the write"
    return child, temp


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(("sig", "status", "how"), [(signal.SIGTERM, 143, "stopped by SIGTERM"),
                                                    (signal.SIGINT, 130, "interrupted")])
def test_a_signal_mid_write_stops_cleans_up_and_says_what_was_written(make_case, tiny_checkpoint, tmp_path, sig,
                                                                      status, how):
    out = tmp_path / "out"
    child, _ = start_paused_predict(make_case, tiny_checkpoint, out)
    child.send_signal(sig)
    _, err = child.communicate(timeout=120)
    assert child.returncode == status, err
    assert "[1/2] Case_1: wrote" in err
    assert (f"error: {how} after writing 1 of 2 outputs; outputs already written are complete, the current one "
            "was not written and no partial file is left.") in err
    assert files_in(out) == ["Case_1_seg.nii.gz"], "the finished output, nothing of the interrupted one"
    assert set(np.unique(np.asarray(nib.load(out / "Case_1_seg.nii.gz").dataobj))) <= {0, 1, 2, 4}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_temporary_file_of_a_killed_run_is_removed_by_the_next_run(make_case, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    child, temp = start_paused_predict(make_case, tiny_checkpoint, out)
    child.kill()
    child.communicate(timeout=60)
    assert files_in(out) == sorted(["Case_1_seg.nii.gz", temp.name]), "a hard kill cannot clean up"

    case = make_case(case_id="Case_3", folder="case3").folder
    assert main(predict_args(tiny_checkpoint, case, "--output-dir", out)) == 0, capsys.readouterr().err
    assert files_in(out) == ["Case_1_seg.nii.gz", "Case_3_seg.nii.gz"]


@pytest.mark.parametrize("existing", [True, False], ids=["old-output-kept", "no-old-output"])
@pytest.mark.parametrize(("code", "problem", "full", "advice"), [
    (errno.ENOSPC, "the disk holding {folder}", "is full; ", "Free some space or choose another output folder"),
    (errno.EROFS, "no permission to write in {folder}", "", "Choose another output folder"),
])
def test_a_full_disk_or_refused_write_names_the_file_the_disk_and_what_was_kept(
        synthetic_case_dir, tiny_checkpoint, tmp_path, monkeypatch, capsys, existing, code, problem, full, advice):
    out = tmp_path / "out"
    target = out / "Synthetic_001_seg.nii.gz"
    if existing:
        out.mkdir()
        target.write_bytes(b"the earlier output")
    real_save = nib.save

    def save_until_the_disk_fills(image, path):
        real_save(image, path)  # part of the file is on disk when the error comes
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(nib, "save", save_until_the_disk_fills)
    assert main(predict_args(tiny_checkpoint, synthetic_case_dir, "--output-dir", out, "--overwrite")) == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert f"error: [1/1] Synthetic_001: could not write {target}: {problem.format(folder=out)}" in line
    assert ("the existing Synthetic_001_seg.nii.gz there was kept as it was" if existing
            else "no partial file was left") in line
    assert full in line and advice in line
    assert files_in(out) == (["Synthetic_001_seg.nii.gz"] if existing else [])
    if existing:
        assert target.read_bytes() == b"the earlier output"
