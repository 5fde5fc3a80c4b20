"""Layer conventions: how a case looks in napari, and finding a case's modalities however it was opened."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Labels

from napari_brainseg.io import MODALITIES, BratsInputError, load_case
from napari_brainseg.labels import LABEL_COLORS
from napari_brainseg.layers import (
    METADATA_KEY,
    case_context,
    case_layers,
    contrast_limits,
    find_modality_layers,
    modality_from_name,
    prediction_layer_data,
    stack_modalities,
)


def _layers(layer_data):
    return [Image(d, **k) if kind == "image" else Labels(d, **k) for d, k, kind in layer_data]


def _image(name: str, shape=(4, 5, 6), value: float = 1.0, **kwargs) -> Image:
    return Image(np.full(shape, value, dtype=np.float32), name=name, **kwargs)


@pytest.mark.parametrize(
    ("name", "modality"),
    [
        ("FLAIR", "flair"), ("flair", "flair"), ("t2f", "flair"), ("Brats18_2013_11_1_flair", "flair"),
        ("BraTS-GLI-00000-000-t2f.nii.gz", "flair"), ("FLAIR [1]", "flair"),
        ("T1", "t1"), ("t1n", "t1"), ("Brats18_X_t1", "t1"),
        ("T1ce", "t1ce"), ("t1c", "t1ce"), ("Brats18_X_t1ce", "t1ce"), ("T1Gd", "t1ce"),
        ("T2", "t2"), ("t2w", "t2"), ("Brats18_X_t2.nii", "t2"),
        ("Brats18_X_seg", None), ("Synthetic_glioma_001 uncertainty", None), ("t1ce_mask", None), ("", None),
    ],
)  # fmt: skip
def test_modality_is_recognised_from_a_layer_name(name, modality):
    assert modality_from_name(name) == modality


def test_a_case_opens_as_four_gray_modalities_scaled_in_mm_and_its_labels(make_case):
    case = load_case(make_case(spacing=(1.0, 1.2, 2.0)))
    layer_data = case_layers(case)
    assert [kwargs["name"] for _, kwargs, _ in layer_data[:4]] == ["FLAIR", "T1", "T1ce", "T2"]
    assert [kind for *_, kind in layer_data] == ["image"] * 4 + ["labels"]
    for (data, kwargs, _), modality in zip(layer_data, MODALITIES):
        assert kwargs["scale"] == case.spacing
        assert kwargs["colormap"] == "gray"
        assert kwargs["visible"] == (modality == "flair")
        low, high = kwargs["contrast_limits"]
        assert data[data > 0].min() <= low < high <= data.max()
        assert kwargs["metadata"][METADATA_KEY]["modality"] == modality
        assert kwargs["metadata"][METADATA_KEY]["geometry"] is case.geometry
    seg, seg_kwargs, _ = layer_data[4]
    assert seg.dtype == np.uint8 and np.array_equal(seg, case.seg)
    assert seg_kwargs["metadata"][METADATA_KEY]["files"] == case.files


def test_contrast_ignores_background_and_a_few_bright_voxels():
    volume = np.zeros((10, 10, 10), dtype=np.float32)
    volume[2:8, 2:8, 2:8] = np.linspace(100, 200, 216).reshape(6, 6, 6)
    volume[5, 5, 5] = 1e6
    low, high = contrast_limits(volume)
    assert 100 <= low < 110 and 190 < high < 1e5


def test_a_prediction_layer_is_uint8_in_brats_colours_and_remembers_the_original(make_case):
    case = load_case(make_case())
    context = case_context({m: layer for m, layer in zip(MODALITIES, _layers(case_layers(case)))})
    labels = case.seg.astype(np.int64)
    data, kwargs, kind = prediction_layer_data(labels, context, "tiny", "0.0.1")
    layer = Labels(data, **kwargs)
    assert kind == "labels" and layer.data.dtype == np.uint8
    assert layer.name == f"{case.case_id} segmentation"
    for label, colour in LABEL_COLORS.items():
        if label:
            assert np.allclose(layer.colormap.map(label)[:3], np.array(_hex_rgb(colour)))
    meta = layer.metadata[METADATA_KEY]
    assert meta["model_id"] == "tiny" and meta["model_version"] == "0.0.1"
    assert meta["geometry"] is case.geometry and meta["files"] == case.files
    layer.data[layer.data > 0] = 0
    assert meta["prediction"].any(), "the original prediction is a copy, not the edited data"


def _hex_rgb(colour: str) -> tuple[float, float, float]:
    return tuple(int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))


def test_modalities_are_found_by_plugin_metadata_whatever_their_names(make_case):
    layers = _layers(case_layers(load_case(make_case())))
    for layer in layers:
        layer.name = f"renamed {layer.name}"  # metadata wins over names
    found = find_modality_layers(layers)
    assert {m: layer.metadata[METADATA_KEY]["modality"] for m, layer in found.items()} == {m: m for m in MODALITIES}


def test_modalities_opened_by_another_reader_are_found_by_name_and_stacked_in_channel_order():
    layers = [
        _image(f"Brats18_X_{m}", value=i + 1, scale=(2, 1, 1)) for i, m in enumerate(["t2", "t1ce", "flair", "t1"])
    ]
    layers.append(_image("something else", value=9))
    found = find_modality_layers(layers)
    stack = stack_modalities(found)
    assert stack.shape == (4, 4, 5, 6) and stack.dtype == np.float32
    assert stack[:, 0, 0, 0].tolist() == [3, 4, 2, 1]  # flair, t1, t1ce, t2
    context = case_context(found)
    assert context.case_id == "Brats18_X" and context.spacing == (2.0, 1.0, 1.0) and context.geometry is None


def test_the_selected_case_wins_when_two_cases_are_open():
    first = [_image(f"A_{m}", value=1) for m in MODALITIES]
    second = [_image(f"B_{m}", value=2) for m in MODALITIES]
    assert find_modality_layers(first + second)["flair"] is second[0], "the newest case by default"
    assert find_modality_layers(first + second, prefer=first[2])["flair"] is first[0]


def test_a_missing_modality_is_named_in_the_error():
    found = find_modality_layers([_image(name) for name in ("FLAIR", "T1", "T2")])
    with pytest.raises(BratsInputError, match="No image layer for T1ce"):
        stack_modalities(found)


def test_modalities_of_different_shapes_are_refused():
    layers = [_image(m) for m in ("FLAIR", "T1", "T1ce")] + [_image("T2", shape=(4, 5, 7))]
    with pytest.raises(BratsInputError, match="differ in shape"):
        stack_modalities(find_modality_layers(layers))


def test_a_2d_image_is_not_taken_for_a_volume():
    layers = [_image(m) for m in ("FLAIR", "T1", "T1ce")] + [_image("T2", shape=(5, 6))]
    with pytest.raises(BratsInputError, match="3-D"):
        stack_modalities(find_modality_layers(layers))
