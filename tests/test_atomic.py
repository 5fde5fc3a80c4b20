"""Atomic writes: the target gets the complete new content, or stays exactly as it was."""

import pytest

from napari_brainseg.atomic import atomic_path, write_text_atomic


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
