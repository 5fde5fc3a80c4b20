"""The self-describing checkpoint: it round-trips, and anything else is refused with a clear message."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from napari_brainseg import model as model_module
from napari_brainseg.model import (
    DEFAULT_ARCH_KWARGS,
    FORMAT,
    SLICE_ARCH,
    FORMAT_VERSION,
    CheckpointError,
    ModelInfo,
    build_network,
    info_from_dict,
    load_model,
    read_checkpoint,
    save_checkpoint,
    slice_arch_kwargs,
)

TINY = {**DEFAULT_ARCH_KWARGS, "channels": [4, 8], "strides": [2]}


def tiny_info(**changes) -> ModelInfo:
    return ModelInfo(model_id="tiny", arch_kwargs=dict(TINY), **changes)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_checkpoint_round_trips_weights_and_description(tmp_path):
    torch.manual_seed(0)
    info = tiny_info(version="1.2.3", train_cases=["A", "B"], metrics={"Dice_WT": 0.9}, parent="base-model")
    model = build_network(info)
    path = save_checkpoint(tmp_path / "sub" / "model.pt", model, info)
    loaded, loaded_info = load_model(path)
    assert same_weights(loaded, model)
    assert asdict(loaded_info) == asdict(info)
    assert not loaded.training, "a loaded model is ready for inference"
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def tiny_slice_info(context: int = 1) -> ModelInfo:
    kwargs = {**slice_arch_kwargs(context), "channels": [4, 8], "strides": [2]}
    return ModelInfo(model_id="tiny-2.5d", arch=SLICE_ARCH, arch_kwargs=kwargs, patch_size=[4, 16, 16])


def test_a_2_5d_network_reads_and_writes_3d_volumes_and_round_trips(tmp_path):
    torch.manual_seed(0)
    info = tiny_slice_info()
    model = build_network(info).eval()
    x = torch.randn(2, 4, 5, 16, 16)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 3, 5, 16, 16)
        loaded, loaded_info = load_model(save_checkpoint(tmp_path / "slices.pt", model, info))
        assert loaded_info.arch == SLICE_ARCH and loaded_info.arch_kwargs["context"] == 1
        assert torch.equal(loaded(x), out)


@pytest.mark.parametrize("z", [0, 2, 4])
def test_each_slice_is_segmented_from_itself_and_its_neighbours(z):
    """Slice z sees slices z-1, z, z+1 of every modality as channels (the edge slice repeated at the ends)."""
    torch.manual_seed(0)
    model = build_network(tiny_slice_info()).eval()
    x = torch.randn(1, 4, 5, 16, 16)
    neighbours = [min(max(z + d, 0), 4) for d in (-1, 0, 1)]
    stack = torch.stack([x[0, :, n] for n in neighbours], dim=1).reshape(1, 12, 16, 16)  # channel-major
    with torch.no_grad():
        assert torch.allclose(model(x)[:, :, z], model.net(stack), atol=1e-6)


def test_a_half_precision_checkpoint_loads_as_float32(tmp_path):
    info = tiny_info()
    path = save_checkpoint(tmp_path / "half.pt", build_network(info), info, half=True)
    stored = read_checkpoint(path)["state_dict"].values()
    assert all(v.dtype == torch.float16 for v in stored if v.is_floating_point())
    model, _ = load_model(path)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_saving_leaves_no_temporary_file(tmp_path):
    info = tiny_info()
    save_checkpoint(tmp_path / "model.pt", build_network(info), info)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_a_foreign_pytorch_file_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"epoch": 3, "weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a napari-brainseg checkpoint"):
        load_model(path)


def test_a_plain_state_dict_is_refused(tmp_path):
    path = tmp_path / "state_dict.pt"
    torch.save(build_network(tiny_info()).state_dict(), path)
    with pytest.raises(CheckpointError, match=f"no '{FORMAT}' marker"):
        load_model(path)


def test_a_file_that_is_not_pytorch_is_refused(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a model")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_model(path)


def test_weights_that_do_not_fit_the_declared_architecture_are_refused(tmp_path):
    bigger = ModelInfo(model_id="bigger", arch_kwargs={**TINY, "channels": [4, 16]})
    path = save_checkpoint(tmp_path / "lying.pt", build_network(bigger), tiny_info())
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        load_model(path)


def test_an_unknown_architecture_is_refused(tmp_path):
    info = tiny_info()
    path = save_checkpoint(tmp_path / "model.pt", build_network(info), info)
    payload = torch.load(path, weights_only=True)
    payload["info"]["arch"] = "somebody.ViT"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="Unknown architecture 'somebody.ViT'"):
        load_model(path)


def test_a_newer_checkpoint_format_is_refused(tmp_path):
    info = tiny_info()
    path = save_checkpoint(tmp_path / "model.pt", build_network(info), info)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="newer than this plugin's"):
        load_model(path)


def test_a_missing_checkpoint_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")


def test_missing_bundled_weights_are_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(model_module, "BUNDLED_PATH", tmp_path / "brainseg_unet3d.pt")
    with pytest.raises(CheckpointError, match="bundled weights .* are missing"):
        load_model("bundled")


def test_info_from_a_newer_version_ignores_keys_it_does_not_know():
    raw = {**asdict(tiny_info()), "added_in_a_later_version": 42}
    assert info_from_dict(raw) == tiny_info(created=raw["created"])


def test_a_checkpoint_from_before_per_region_thresholds_reads_as_0_5_each():
    raw = asdict(tiny_info())
    del raw["thresholds"]
    assert info_from_dict(raw).thresholds == [0.5, 0.5, 0.5]
