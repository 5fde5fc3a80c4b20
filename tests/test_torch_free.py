"""The CPU path needs neither torch nor MONAI: importing the plugin and predicting with ONNX Runtime work without them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_brainseg.backend import load_for_inference
from napari_brainseg.inference import segment
from napari_brainseg.io import load_case
from napari_brainseg.onnx_export import export_onnx

REPO_ROOT = Path(__file__).resolve().parents[1]
BLOCK_TORCH = "import sys; sys.modules.update(torch=None, monai=None); "
"""Makes ``import torch`` and ``import monai`` (and any of their submodules) raise ImportError."""


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], check=False, capture_output=True, text=True, encoding="utf-8",
                          cwd=REPO_ROOT, timeout=600)


def test_importing_the_core_imports_neither_torch_nor_monai():
    modules = ["napari_brainseg", "napari_brainseg.__main__", "napari_brainseg.backend", "napari_brainseg.inference",
               "napari_brainseg.io", "napari_brainseg.labels", "napari_brainseg.model", "napari_brainseg.onnx_model",
               "napari_brainseg.preprocess", "napari_brainseg.window", "napari_brainseg.registry"]
    done = run_python(f"import sys; import {', '.join(modules)}; print(sorted({{'torch', 'monai'}} & set(sys.modules)))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture
def exported_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    checkpoint = Path(shutil.copy(tiny_checkpoint, tmp_path / "tiny.pt"))
    export_onnx(checkpoint)
    return checkpoint


def test_predict_works_where_torch_and_monai_cannot_be_imported(synthetic_case_dir, exported_checkpoint, tmp_path):
    out = tmp_path / "case_seg.nii.gz"
    done = run_python(
        BLOCK_TORCH + "from napari_brainseg.__main__ import main; sys.exit(main(sys.argv[1:]))",
        "predict", str(synthetic_case_dir), "--output", str(out), "--model", str(exported_checkpoint),
    )
    assert done.returncode == 0, done.stderr
    assert "(onnx)" in done.stderr
    case = load_case(synthetic_case_dir)
    expected = case.geometry.to_nifti(segment(case.image, load_for_inference(exported_checkpoint).model).labels)
    assert np.array_equal(np.asarray(nib.load(out).dataobj), np.asarray(expected.dataobj))


def test_without_torch_a_checkpoint_without_export_is_refused_with_the_reason(synthetic_case_dir, tiny_checkpoint,
                                                                              tmp_path):
    checkpoint = Path(shutil.copy(tiny_checkpoint, tmp_path / "tiny.pt"))
    done = run_python(
        BLOCK_TORCH + "from napari_brainseg.__main__ import main; sys.exit(main(sys.argv[1:]))",
        "predict", str(synthetic_case_dir), "--output", str(tmp_path / "seg.nii.gz"), "--model", str(checkpoint),
        "--backend", "onnx",
    )
    assert done.returncode == 1
    assert "tiny.pt has no ONNX export and one cannot be made here" in done.stderr
    assert "install torch" in done.stderr
