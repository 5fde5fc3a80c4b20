"""Shared fixtures: the real BraTS data (when present), small synthetic cases on disk, a tiny checkpoint.

* ``real_data_dir`` -- ``../shared/data/brats2018`` next to the repository; the test is skipped without it.
* ``real_case_dir`` -- the first real case folder in it.
* ``make_case(...)`` -- a factory writing a small synthetic BraTS case into ``tmp_path``; returns its
  :class:`~napari_brainseg.io.CaseFiles`. Choose the naming, the voxel orientation (any axcodes, e.g.
  ``"LPS"`` as BraTS ships or ``"RAS"``: the same anatomy stored the other way round), spacing, shape, seed,
  and the header's ``(qform_code, sform_code)``: :data:`BRATS_HEADER_CODES` by default, as BraTS files have.
* ``synthetic_case_dir`` -- the folder of one such case (BraTS 2018 names, LPS, 1 mm).
* ``replace_volume(path, data, affine=None)`` -- overwrite one NIfTI file with other voxels (to break a case).
* ``tiny_checkpoint`` -- path of a tiny, untrained, seeded model saved with ``save_checkpoint``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

from napari_brainseg.io import CaseFiles
from napari_brainseg.synthetic import write_synthetic_case

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "brats2018"

SMALL_SHAPE = (40, 48, 32)
"""Source voxel shape (x, y, z) of synthetic test cases: every side different, to catch swapped axes."""

TINY_ARCH = {"channels": [4, 8], "strides": [2]}
BRATS_HEADER_CODES = (2, 1)
"""``(qform_code, sform_code)`` of BraTS files: qform "aligned to an anatomical truth", sform "scanner"."""


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real BraTS 2018 cases (read-only); skips the test when they are absent."""
    if not REAL_DATA_DIR.is_dir() or not any(REAL_DATA_DIR.iterdir()):
        pytest.skip(f"real BraTS data not found at {REAL_DATA_DIR}")
    return REAL_DATA_DIR


@pytest.fixture(scope="session")
def real_case_dir(real_data_dir: Path) -> Path:
    """One real case folder (the first in name order)."""
    return min(p for p in real_data_dir.iterdir() if p.is_dir())


def set_header_codes(files: CaseFiles, qform_code: int, sform_code: int) -> None:
    """Rewrite a case's files in place with these qform/sform codes (same affine, same voxels)."""
    for path in [*files.images.values(), *([files.seg] if files.seg else [])]:
        image = nib.load(str(path))
        image = nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, image.header)
        image.set_qform(image.affine, qform_code)
        image.set_sform(image.affine, sform_code)
        nib.save(image, str(path))


def reorient_files(files: CaseFiles, axcodes: str) -> None:
    """Rewrite a case's files in place with another voxel order; the world position of every voxel stays."""
    for path in [*files.images.values(), *([files.seg] if files.seg else [])]:
        image = nib.load(str(path))
        transform = ornt_transform(io_orientation(image.affine), axcodes2ornt(tuple(axcodes)))
        nib.save(image.as_reoriented(transform), str(path))


@pytest.fixture
def make_case(tmp_path: Path) -> Callable[..., CaseFiles]:
    """Factory: ``make_case(case_id=..., naming=..., orientation=..., spacing=..., shape=..., ...)``."""

    def make(
        case_id: str = "Synthetic_001",
        naming: str = "brats2018",
        orientation: str = "LPS",
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        shape: Sequence[int] = SMALL_SHAPE,
        with_seg: bool = True,
        seed: int = 0,
        folder: str | Path | None = None,
        header_codes: tuple[int, int] = BRATS_HEADER_CODES,
    ) -> CaseFiles:
        affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
        affine[:3, 3] = [spacing[0] * shape[0] / 2, spacing[1] * shape[1] / 2, -spacing[2] * shape[2] / 2]
        target = tmp_path / (folder or f"{case_id}_{naming}_{orientation}")
        files = write_synthetic_case(target, case_id, naming, shape, affine, with_seg, seed)
        if orientation != "LPS":
            reorient_files(files, orientation)
        set_header_codes(files, *header_codes)
        return files

    return make


@pytest.fixture
def synthetic_case_dir(make_case) -> Path:
    """A small synthetic case folder: BraTS 2018 names, LPS like BraTS, 1 mm voxels, with its labels."""
    return make_case().folder


def _replace_volume(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Overwrite a NIfTI file with ``data``, keeping its affine unless another is given."""
    nib.save(nib.Nifti1Image(data, nib.load(str(path)).affine if affine is None else affine), str(path))
    return path


@pytest.fixture
def replace_volume() -> Callable[..., Path]:
    """``replace_volume(path, data, affine=None)``: overwrite one file of a case, e.g. to make it unusable."""
    return _replace_volume


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny untrained UNet (seeded) in the plugin's checkpoint format."""
    import torch

    from napari_brainseg.model import DEFAULT_ARCH_KWARGS, ModelInfo, build_network, save_checkpoint

    torch.manual_seed(0)
    info = ModelInfo(model_id="tiny", version="0.0.1", arch_kwargs={**DEFAULT_ARCH_KWARGS, **TINY_ARCH})
    return save_checkpoint(tmp_path_factory.mktemp("models") / "tiny.pt", build_network(info), info)



@pytest.fixture
def viewer(make_napari_viewer_proxy):
    """A real napari viewer (tests that need another kind define their own)."""
    return make_napari_viewer_proxy()


@pytest.fixture
def widget(viewer, tiny_checkpoint):
    """A docked Segment widget set to the tiny checkpoint (tests of other widgets define their own)."""
    from napari_brainseg._widgets.segment import SegmentWidget

    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.checkpoint.value = tiny_checkpoint
    return widget
