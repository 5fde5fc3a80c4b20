"""ONNX exports: made from a checkpoint and checked to agree with it, found or made once, refused when foreign."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_brainseg import backend, onnx_model
from napari_brainseg.backend import choose_backend, load_for_inference
from napari_brainseg.model import SLICE_ARCH, ModelInfo, build_network, load_model, save_checkpoint, slice_arch_kwargs
from napari_brainseg.onnx_export import export_onnx, fp16_weights, to_onnx
from napari_brainseg.onnx_model import (
    OnnxModelError,
    checkpoint_sha256,
    load_onnx_model,
    onnx_path_beside,
    open_onnx,
)


@pytest.fixture
def checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A copy of the tiny checkpoint in a folder of its own (exports land beside it)."""
    return Path(shutil.copy(tiny_checkpoint, tmp_path / "tiny.pt"))


@pytest.fixture
def other_checkpoint(tmp_path: Path) -> Path:
    """Another tiny checkpoint: same architecture, other weights."""
    torch.manual_seed(1)
    info = ModelInfo(model_id="other", arch_kwargs={**ModelInfo(model_id="x").arch_kwargs,
                                                    "channels": [4, 8], "strides": [2]})
    return save_checkpoint(tmp_path / "other" / "other.pt", build_network(info), info)


@pytest.fixture
def no_cache(tmp_path: Path, monkeypatch) -> Path:
    """The user data folder for exports, redirected into the test's folder."""
    folder = tmp_path / "user-data" / "onnx"
    monkeypatch.setattr(onnx_model, "cache_dir", lambda: folder)
    return folder


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_an_export_computes_what_its_checkpoint_computes(checkpoint, precision):
    path, _ = export_onnx(checkpoint, precision=precision)
    assert path == checkpoint.with_suffix(".onnx")
    exported = open_onnx(path, checkpoint_sha256(checkpoint))
    network, info = load_model(checkpoint)
    x = np.random.default_rng(3).normal(size=(2, 4, 96, 96, 96)).astype(np.float32)
    with torch.inference_mode():
        expected = network(torch.from_numpy(x)).numpy()
    got = exported(x)
    assert got.shape == expected.shape == (2, 3, 96, 96, 96)
    tolerance = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.2}[precision]
    np.testing.assert_allclose(got, expected, atol=tolerance * max(1.0, float(np.abs(expected).max())))
    assert exported.precision == precision


def test_fp16_weights_store_every_weight_in_half_and_keep_float32_input_and_output(checkpoint):
    from onnx import TensorProto

    network, _ = load_model(checkpoint)
    proto = to_onnx(network, (1, 4, 32, 32, 32))
    floats = {t.name: len(t.raw_data) for t in proto.graph.initializer if t.data_type == TensorProto.FLOAT}
    half = fp16_weights(proto)
    halves = {t.name: len(t.raw_data) for t in half.graph.initializer if t.data_type == TensorProto.FLOAT16}
    assert not [t.name for t in half.graph.initializer if t.data_type == TensorProto.FLOAT]
    assert sum(halves.values()) * 2 == sum(floats.values())
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT


def test_the_metadata_say_all_the_cpu_path_needs(checkpoint):
    exported = open_onnx(export_onnx(checkpoint)[0])
    meta = exported.session.get_modelmeta().custom_metadata_map
    _, info = load_model(checkpoint)
    assert exported.info == info
    assert json.loads(meta["model_info"])["channels"] == ["flair", "t1", "t1ce", "t2"] == info.channels
    assert exported.window == (96, 96, 96) and exported.overlap == 0.25
    assert meta["checkpoint_sha256"] == checkpoint_sha256(checkpoint)
    assert meta["model_id"] == info.model_id and meta["version"] == info.version


def test_an_export_that_does_not_belong_to_its_checkpoint_is_refused(checkpoint, other_checkpoint, no_cache):
    shutil.copy(export_onnx(checkpoint)[0], onnx_path_beside(other_checkpoint))
    with pytest.raises(OnnxModelError, match=r"not exported from the checkpoint beside it.*export-onnx"):
        load_onnx_model(other_checkpoint)


def test_a_checkpoint_changed_after_its_export_is_refused(checkpoint, other_checkpoint, no_cache):
    export_onnx(checkpoint)
    shutil.copy(other_checkpoint, checkpoint)  # e.g. retrained in place
    with pytest.raises(OnnxModelError, match="the checkpoint changed after the export"):
        load_onnx_model(checkpoint)


def test_foreign_or_broken_onnx_files_are_refused(checkpoint, tmp_path):
    import onnx

    network, _ = load_model(checkpoint)
    foreign = tmp_path / "foreign.onnx"
    onnx.save(to_onnx(network, (1, 4, 16, 16, 16)), foreign)
    with pytest.raises(OnnxModelError, match="not a napari-brainseg export"):
        open_onnx(foreign)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(OnnxModelError, match="not a readable ONNX model"):
        open_onnx(broken)


def test_a_checkpoint_without_export_is_exported_once_beside_it(checkpoint, no_cache, monkeypatch):
    first = load_onnx_model(checkpoint)
    assert first.path == checkpoint.with_suffix(".onnx") and first.path.is_file()
    monkeypatch.setattr("napari_brainseg.onnx_export.export_onnx", _must_not_export)
    assert load_onnx_model(checkpoint).path == first.path
    assert not no_cache.exists()


def test_a_checkpoint_in_a_folder_that_cannot_be_written_is_exported_to_the_user_data_folder(
    checkpoint, no_cache, monkeypatch
):
    monkeypatch.setattr(onnx_model, "onnx_path_beside", lambda _: Path("/dev/null/cannot/model.onnx"))
    exported = load_onnx_model(checkpoint)
    assert exported.path.parent == no_cache
    monkeypatch.setattr("napari_brainseg.onnx_export.export_onnx", _must_not_export)
    assert load_onnx_model(checkpoint).path == exported.path


def _must_not_export(*_args, **_kwargs):
    raise AssertionError("exported again")


@pytest.fixture
def slice_checkpoint(tmp_path: Path) -> Path:
    info = ModelInfo(model_id="slices", arch=SLICE_ARCH,
                     arch_kwargs={**slice_arch_kwargs(), "channels": [4, 8], "strides": [2]})
    return save_checkpoint(tmp_path / "slices.pt", build_network(info), info)


def test_a_checkpoint_that_cannot_be_exported_is_refused_and_auto_runs_it_with_torch(slice_checkpoint, no_cache):
    with pytest.raises(OnnxModelError, match="cannot be exported to ONNX"):
        load_onnx_model(slice_checkpoint)
    with pytest.raises(OnnxModelError, match="cannot be exported"):
        load_for_inference(slice_checkpoint, backend="onnx", device="cpu")
    with pytest.warns(UserWarning, match="cannot be exported.*Running it with torch instead"):
        loaded = load_for_inference(slice_checkpoint, backend="auto", device="cpu")
    assert loaded.backend == "torch" and isinstance(loaded.model, torch.nn.Module)
    assert not list(no_cache.parent.rglob("*.onnx")) and not slice_checkpoint.with_suffix(".onnx").exists()


def test_the_cpu_without_flips_runs_on_onnx_and_the_rest_on_torch(monkeypatch):
    monkeypatch.setattr(backend, "torch_may_have_accelerator", lambda: False)
    assert choose_backend("auto", "auto") == ("onnx", "cpu")
    assert choose_backend("auto", "cpu") == ("onnx", "cpu")
    assert choose_backend("auto", "cpu", tta=True) == ("torch", "cpu")
    assert choose_backend("auto", "cuda") == ("torch", "cuda")
    assert choose_backend("torch", "cpu") == ("torch", "cpu")
    assert choose_backend("onnx", "auto") == ("onnx", "cpu")
    with pytest.raises(ValueError, match="Test-time flips run with the torch backend"):
        choose_backend("onnx", "cpu", tta=True)
    with pytest.raises(ValueError, match="runs on the CPU"):
        choose_backend("onnx", "mps")


def test_a_cpu_only_torch_build_is_recognised_without_importing_torch():
    assert backend.torch_may_have_accelerator() == (torch.version.cuda is not None or torch.version.hip is not None)


def test_the_bundled_model_ships_an_export_that_belongs_to_it():
    exported = load_onnx_model("bundled")
    _, info = load_model("bundled")
    assert exported.path.name == "brainseg_unet3d.onnx"
    assert exported.info == info
