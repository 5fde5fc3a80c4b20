"""Load case widget: a case folder or four files picked one by one; problems shown, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Labels

from napari_brainseg._widgets.load import LoadWidget
from napari_brainseg.io import load_case
from napari_brainseg.layers import METADATA_KEY


@pytest.fixture
def viewer_and_widget(make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy()
    widget = LoadWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


@pytest.fixture
def shown_errors(monkeypatch) -> list[str]:
    """Messages sent to napari's error notifications."""
    shown: list[str] = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    return shown


def test_picking_a_folder_shows_which_file_is_which_modality(viewer_and_widget, make_case):
    viewer, widget = viewer_and_widget
    files = make_case(naming="brats2023")
    widget.folder.value = files.folder
    assert {m: edit.value for m, edit in widget.files.items()} == files.images
    assert widget.seg.value == files.seg
    assert files.case_id in widget.status.value and not widget.status.is_error
    assert len(viewer.layers) == 0, "nothing is loaded before Load case is pressed"


def test_loading_a_folder_adds_the_case_layers_and_names_their_files(viewer_and_widget, make_case):
    viewer, widget = viewer_and_widget
    files = make_case()
    widget.folder.value = files.folder
    widget.load_button.clicked()
    case = load_case(files)
    assert [type(layer) for layer in viewer.layers] == [Image] * 4 + [Labels]
    assert np.array_equal(viewer.layers["T2"].data, case.image[3])
    assert viewer.layers["FLAIR"].metadata[METADATA_KEY]["files"] == files
    for path in [*files.images.values(), files.seg]:
        assert path.name in widget.status.value


def test_four_files_picked_one_by_one_load_as_one_case(viewer_and_widget, make_case):
    viewer, widget = viewer_and_widget
    files = make_case(with_seg=False)
    renamed = {}
    for modality, path in files.images.items():  # names that say nothing about the modality
        renamed[modality] = path.with_name(f"scan_{len(renamed)}.nii.gz")
        path.rename(renamed[modality])
    for modality, edit in widget.files.items():
        edit.value = renamed[modality]
    widget.load_button.clicked()
    assert [layer.name for layer in viewer.layers] == ["FLAIR", "T1", "T1ce", "T2"]
    assert "T1ce \u2190 scan_2.nii.gz" in widget.status.value


def test_a_missing_modality_is_reported_in_the_widget_and_loads_nothing(viewer_and_widget, make_case, shown_errors):
    viewer, widget = viewer_and_widget
    files = make_case()
    for modality in ("flair", "t1", "t2"):
        widget.files[modality].value = files.images[modality]
    widget.load_button.clicked()
    assert widget.status.is_error and "Missing modality: T1ce" in widget.status.value
    assert shown_errors == [widget.status.value]
    assert len(viewer.layers) == 0


def test_a_corrupt_file_is_reported_and_loads_nothing(viewer_and_widget, make_case, shown_errors):
    viewer, widget = viewer_and_widget
    files = make_case()
    files.images["flair"].write_bytes(b"not a nifti at all")
    widget.folder.value = files.folder
    widget.load_button.clicked()
    assert widget.status.is_error and files.images["flair"].name in widget.status.value
    assert len(viewer.layers) == 0


def test_a_folder_without_a_case_is_reported(viewer_and_widget, tmp_path, shown_errors):
    _, widget = viewer_and_widget
    widget.folder.value = tmp_path
    assert widget.status.is_error and "No BraTS files" in widget.status.value


def test_four_files_of_four_patients_are_refused_naming_the_odd_files(viewer_and_widget, make_case, shown_errors):
    viewer, widget = viewer_and_widget
    cases = [make_case(case_id=f"Patient_{i}", with_seg=False) for i in range(4)]
    for i, (modality, edit) in enumerate(widget.files.items()):
        edit.value = cases[i].images[modality]
    widget.load_button.clicked()
    assert widget.status.is_error and "not all from one case" in widget.status.value
    for i, modality in enumerate(list(widget.files)[1:], start=1):
        assert cases[i].images[modality].name in widget.status.value
    assert len(viewer.layers) == 0
