"""The Prepare study widget in a real viewer: prepare a synthetic study, segment it, show it on the native T1ce."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_brainseg._widgets.prepare import PrepareWidget
from napari_brainseg._widgets.segment import SegmentWidget
from napari_brainseg.cases.prepare import labels_to_native

pytest.importorskip("SimpleITK")
from test_prepare import study  # noqa: E402,F401 -- the synthetic study fixture

JOB_TIMEOUT_MS = 300_000


def docked(viewer, widget):
    """``widget`` docked in the viewer's window, so that it closes with the viewer."""
    viewer.window.add_dock_widget(widget)
    return widget


def prepare_in(viewer, qtbot, study, folder) -> PrepareWidget:  # noqa: F811
    widget = docked(viewer, PrepareWidget(viewer))
    for modality, path in study.items():
        widget.files[modality].value = path
    widget.out.value = folder
    widget.skull_stripped.value = True
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=JOB_TIMEOUT_MS)
    return widget


def test_a_prepared_study_opens_segments_and_shows_on_the_native_t1ce(
    make_napari_viewer_proxy, qtbot, study, tmp_path, tiny_checkpoint  # noqa: F811
):
    viewer = make_napari_viewer_proxy()
    widget = prepare_in(viewer, qtbot, study, tmp_path / "P01")
    assert [layer.name for layer in viewer.layers] == ["FLAIR", "T1", "T1ce", "T2"]
    assert widget.status.value.startswith("Prepared P01")

    segment = docked(viewer, SegmentWidget(viewer))
    segment.checkpoint.value = tiny_checkpoint
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=JOB_TIMEOUT_MS)
    segmentation = viewer.layers["P01 segmentation"]
    segmentation.data = np.zeros_like(segmentation.data)
    segmentation.data[10:20, 12:30, 8:25] = 2  # a tumour where the tiny untrained model may find none

    widget.labels.value = segmentation
    widget.show_native()

    native_t1ce, native_labels = viewer.layers[-2], viewer.layers[-1]
    assert native_t1ce.name == "P01 T1ce (native)" and native_labels.name == "P01 segmentation (native T1ce)"
    assert [layer.visible for layer in viewer.layers] == [False] * (len(viewer.layers) - 2) + [True, True]
    t1ce = nib.load(study["t1ce"])
    expected = labels_to_native(
        segmentation.metadata["brainseg"]["geometry"].to_nifti(segmentation.data), widget.prepared.record
    )
    geometry = native_labels.metadata["brainseg"]["geometry"]
    assert np.allclose(geometry.affine, t1ce.affine, atol=1e-4)
    assert np.array_equal(geometry.to_source(native_labels.data), np.asarray(expected.dataobj))
    assert native_labels.data.any()


def test_cancelling_writes_no_case_folder(make_napari_viewer_proxy, qtbot, study, tmp_path):  # noqa: F811
    viewer = make_napari_viewer_proxy()
    widget = docked(viewer, PrepareWidget(viewer))
    for modality, path in study.items():
        widget.files[modality].value = path
    widget.out.value = tmp_path / "P01"
    widget.skull_stripped.value = True
    widget.run()
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=JOB_TIMEOUT_MS)
    assert widget.status.value == PrepareWidget.CANCELLED
    assert not (tmp_path / "P01").exists()
    assert len(viewer.layers) == 0


def test_a_missing_sequence_is_reported_before_anything_runs(make_napari_viewer_proxy, study, tmp_path):  # noqa: F811
    viewer = make_napari_viewer_proxy()
    widget = docked(viewer, PrepareWidget(viewer))
    widget.files["t1ce"].value = study["t1ce"]
    widget.out.value = tmp_path / "P01"
    widget.skull_stripped.value = True
    widget.run()
    assert widget.worker is None
    assert widget.status.is_error and widget.status.value.startswith("Missing sequence: FLAIR, T1, T2")
    assert not (tmp_path / "P01").exists()
