"""The npe2 manifest of the installed plugin: valid, importable, and offering what the README promises."""

from __future__ import annotations

from pathlib import Path

import pytest
from npe2 import PluginManifest

import napari_brainseg

PLUGIN = "napari-brainseg"


@pytest.fixture(scope="module")
def manifest() -> PluginManifest:
    """The manifest as napari finds it: through the installed distribution's entry point."""
    return PluginManifest.from_distribution(PLUGIN)


def test_the_installed_manifest_is_valid_and_every_command_imports(manifest):
    manifest.validate_imports()  # what `npe2 validate --imports napari-brainseg` runs


def test_the_manifest_ships_inside_the_package():
    shipped = Path(napari_brainseg.__file__).parent / "napari.yaml"
    assert shipped.is_file()
    assert PluginManifest.from_file(shipped).name == PLUGIN


def test_the_reader_takes_nifti_files_and_case_folders(manifest):
    [reader] = manifest.contributions.readers
    assert {"*.nii", "*.nii.gz"} <= set(reader.filename_patterns)
    assert reader.accepts_directories


def test_the_widgets_are_offered_in_workflow_order(manifest):
    names = [widget.display_name for widget in manifest.contributions.widgets]
    assert names[:5] == ["Load case", "Segment", "Edit labels", "Refine with clicks", "Export corrections"]
