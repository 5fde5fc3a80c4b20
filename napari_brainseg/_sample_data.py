"""Sample data: a synthetic, BraTS-like glioma case (not a patient), made offline.

The case is written once as BraTS NIfTI files to the user's cache folder and read from there after,
so that it opens quickly and has real files and a :class:`~napari_brainseg.io.Geometry`: it can be
segmented, edited and exported like any real case.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from platformdirs import user_cache_dir

from .atomic import temp_folder
from .io import BratsInputError, CaseFiles, find_case, load_case
from .layers import LayerDataTuple, case_layers
from .synthetic import SAMPLE_SHAPE, SYNTHETIC_CASE_ID, write_synthetic_case

SAMPLE_VERSION = 1
"""Bump when :mod:`synthetic` changes what it draws, so that cached copies are made again."""


def sample_folder() -> Path:
    """Where the sample case's files are cached."""
    return Path(user_cache_dir("napari-brainseg")) / f"sample-v{SAMPLE_VERSION}" / SYNTHETIC_CASE_ID


def sample_case_files() -> CaseFiles:
    """The sample case's files, written (atomically, as a whole folder) on first use."""
    folder = sample_folder()
    try:
        return find_case(folder)
    except BratsInputError:
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete cache: make it again
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        with temp_folder(folder.parent, folder.name) as staging:
            write_synthetic_case(staging, shape=SAMPLE_SHAPE)
            os.replace(staging, folder)
    except OSError:
        if not folder.is_dir():  # not a race with another process that wrote it first
            raise
    return find_case(folder)


def synthetic_glioma() -> list[LayerDataTuple]:
    """The sample case's four modalities; its synthetic ground truth comes as a hidden Labels layer."""
    return case_layers(load_case(sample_case_files()), show_labels=False)
