"""The sample case: a synthetic glioma that opens offline, says it is synthetic, and can be segmented/exported."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Labels
from npe2 import PluginManifest

from napari_brainseg import _sample_data
from napari_brainseg.layers import METADATA_KEY
from napari_brainseg.synthetic import SYNTHETIC_CASE_ID

PLUGIN, KEY = "napari-brainseg", "synthetic_glioma"


@pytest.fixture(autouse=True)
def small_sample(tmp_path, monkeypatch):
    """A small sample in a private cache folder (the real one is 240 x 240 x 155)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(_sample_data, "SAMPLE_SHAPE", (48, 56, 40))


def test_the_sample_is_listed_as_synthetic_and_not_a_patient():
    [sample] = PluginManifest.from_distribution(PLUGIN).contributions.sample_data
    assert sample.key == KEY
    assert "Synthetic" in sample.display_name and "not a patient" in sample.display_name


def test_the_sample_opens_as_a_case_with_geometry_and_hidden_ground_truth(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    viewer.open_sample(PLUGIN, KEY)
    assert [type(layer) for layer in viewer.layers] == [Image] * 4 + [Labels]
    assert [layer.name for layer in viewer.layers][:4] == ["FLAIR", "T1", "T1ce", "T2"]
    truth = viewer.layers[-1]
    assert not truth.visible and SYNTHETIC_CASE_ID in truth.name
    meta = viewer.layers["FLAIR"].metadata[METADATA_KEY]
    assert meta["case_id"] == SYNTHETIC_CASE_ID and meta["geometry"].shape == (48, 56, 40)
    assert all(path.is_file() for path in meta["files"].images.values()), "real files, so it can be exported"
    assert set(np.unique(truth.data)) == {0, 1, 2, 4}


def test_the_sample_is_made_once_and_then_read_from_the_cache():
    first = _sample_data.sample_case_files()
    written = {path: path.stat().st_mtime_ns for path in first.images.values()}
    second = _sample_data.sample_case_files()
    assert {path: path.stat().st_mtime_ns for path in second.images.values()} == written


def test_an_incomplete_cached_sample_is_made_again():
    files = _sample_data.sample_case_files()
    files.images["t2"].unlink()
    again = _sample_data.sample_case_files()
    assert again.images["t2"].is_file() and again.seg.is_file()
