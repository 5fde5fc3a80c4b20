"""The npe2 reader: BraTS cases (folder or any file, both namings, .nii and .nii.gz) and single NIfTI volumes."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from napari.layers import Image, Labels

from napari_brainseg._reader import get_reader
from napari_brainseg.io import BratsInputError, load_case
from napari_brainseg.labels import ET
from napari_brainseg.layers import METADATA_KEY

PLUGIN = "napari-brainseg"


def _read(path: Path | str):
    reader = get_reader(str(path))
    assert callable(reader), f"the reader declined {path}"
    return reader(str(path))


def _to_uncompressed(files) -> Path:
    for path in [*files.images.values(), files.seg]:
        nib.save(nib.load(str(path)), str(path)[: -len(".gz")])
        path.unlink()
    return files.folder


@pytest.mark.parametrize("naming", ["brats2018", "brats2023"])
def test_a_case_folder_opens_as_four_modalities_and_its_labels(make_case, naming):
    files = make_case(naming=naming)
    layer_data = _read(files.folder)
    assert [kwargs["name"] for _, kwargs, _ in layer_data] == [
        "FLAIR",
        "T1",
        "T1ce",
        "T2",
        f"{files.case_id} reference labels",
    ]
    seg = layer_data[-1][0]
    assert seg.dtype == np.uint8 and set(np.unique(seg)) == {0, 1, 2, ET}, "2023's ET=3 reads as 4"


@pytest.mark.parametrize("role", ["flair", "t1ce", "seg"])
def test_any_file_of_a_case_opens_the_whole_case(make_case, role):
    files = make_case()
    path = files.seg if role == "seg" else files.images[role]
    assert len(_read(path)) == 5


def test_uncompressed_nii_cases_open_too(make_case):
    folder = _to_uncompressed(make_case(naming="brats2023"))
    assert [kind for *_, kind in _read(folder)] == ["image"] * 4 + ["labels"]


def test_a_case_without_labels_opens_as_four_images(make_case):
    assert [kind for *_, kind in _read(make_case(with_seg=False).folder)] == ["image"] * 4


@pytest.mark.parametrize("what", ["text file", "folder without BraTS files", "missing path", "several files"])
def test_the_reader_declines_what_it_cannot_read(tmp_path, make_case, what):
    if what == "text file":
        path = tmp_path / "notes.txt"
        path.write_text("hello")
    elif what == "folder without BraTS files":
        path = tmp_path / "empty"
        path.mkdir()
    elif what == "missing path":
        path = tmp_path / "gone_flair.nii.gz"
    else:
        files = make_case()
        path = [str(files.images["flair"]), str(files.images["t1"])]
    assert get_reader(path if isinstance(path, list) else str(path)) is None


def test_a_case_with_a_corrupt_file_says_which_file_and_what_to_do(make_case, make_napari_viewer_proxy):
    files = make_case()
    files.images["t1"].write_bytes(files.images["t1"].read_bytes()[:300])
    with pytest.raises(BratsInputError, match=files.images["t1"].name):
        _read(files.folder)
    viewer = make_napari_viewer_proxy()
    with pytest.raises(Exception, match=files.images["t1"].name):
        viewer.open(str(files.folder), plugin=PLUGIN)
    assert len(viewer.layers) == 0


def test_a_case_folder_missing_a_modality_names_it(make_case):
    files = make_case()
    files.images["t2"].unlink()
    with pytest.raises(BratsInputError, match="Missing modality: T2"):
        _read(files.folder)


def test_a_plain_nifti_opens_as_one_image_layer_with_its_spacing(tmp_path):
    path = tmp_path / "brain.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), np.diag([-1.0, -1.0, 2.5, 1])), path)
    [(data, kwargs, kind)] = _read(path)
    assert kind == "image" and kwargs["name"] == "brain" and data.shape == (5, 4, 3)
    assert kwargs["scale"] == (2.5, 1.0, 1.0)
    assert kwargs["metadata"][METADATA_KEY]["geometry"].shape == (3, 4, 5)


def test_a_lone_modality_file_opens_as_an_image_the_segment_widget_recognises(make_case):
    files = make_case()
    for role in ("t1", "t1ce", "t2", "seg"):
        (files.seg if role == "seg" else files.images[role]).unlink()
    [(_, kwargs, kind)] = _read(files.images["flair"])
    assert kind == "image" and kwargs["metadata"][METADATA_KEY]["modality"] == "flair"
    assert kwargs["metadata"][METADATA_KEY]["case_id"] == files.case_id


def test_an_integer_seg_volume_opens_as_labels_in_brats_colours(tmp_path):
    labels = np.zeros((6, 7, 8), dtype=np.uint8)
    labels[1:3, 1:3, 1:3], labels[3:5, 3:5, 3:5] = 2, 3  # a BraTS 2023 map: ET written as 3
    path = tmp_path / "my_seg.nii.gz"
    nib.save(nib.Nifti1Image(labels, np.eye(4)), path)
    [(data, kwargs, kind)] = _read(path)
    assert kind == "labels" and data.dtype == np.uint8
    assert set(np.unique(data)) == {0, 2, ET}
    assert np.allclose(Labels(data, **kwargs).colormap.map(ET)[:3], [1.0, 215 / 255, 0.0])


def test_napari_opens_a_case_with_the_plugin(make_case, make_napari_viewer_proxy):
    files = make_case()
    viewer = make_napari_viewer_proxy()
    viewer.open(str(files.folder), plugin=PLUGIN)
    case = load_case(files)
    assert [type(layer) for layer in viewer.layers] == [Image] * 4 + [Labels]
    assert np.array_equal(viewer.layers["T1ce"].data, case.image[2])
    assert tuple(viewer.layers["FLAIR"].scale) == case.spacing
