"""Which label lands where: ``segment`` on a stub network whose logits are known, voxel by voxel.

The stub (:class:`StubNetwork`) reads a *tissue code* from channel 0 of the normalised input and returns that
tissue's fixed WT/TC/ET logits (table :data:`TISSUES`); a voxel holding no known code (background, padding, or
any value the normalisation got wrong) gets :data:`NO_MATCH` logits, which say "oedema" there. The case
(:func:`coded_case`) is an off-centre brain with nested WT/TC/ET regions, slabs whose probabilities lie just
either side of 0.5, and two separate components of 2 % and 13 % of the largest, both under the default clean-up's
30 % (a caller's 10 % keeps the larger one).
Every expected label and probability is written out by hand from that geometry, not computed with the code
under test: the brain box is spelled out in :data:`BOX`, the normalised codes come from a z-score over the
brain voxels done here in numpy.

Backends: the ``segment_with`` fixture gives one function per backend, ``segment_with(stub, image, **options)``
with ``segment``'s keyword options, returning a :class:`~napari_brainseg.inference.Segmentation`. To run these
tests on another backend, add its name to :data:`BACKENDS` and a branch in ``segment_with`` that turns the
torch stub into that backend's model (the stub uses only element-wise ops, sums and comparisons, so it
exports to ONNX). They run on torch and on ONNX Runtime (the stub exported as a checkpoint would be); test-time
flips are torch's only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from napari_brainseg.inference import Segmentation, segment
from napari_brainseg.model import ModelInfo
from napari_brainseg.onnx_export import export_network
from napari_brainseg.onnx_model import open_onnx

BACKENDS = ["torch", "onnx"]
SHAPE = (20, 26, 30)
"""Display-space (Z, Y, X) shape of the stub case."""
BRAIN = (slice(2, 12), slice(9, 22), slice(6, 20))
BOX = (slice(0, 16), slice(5, 26), slice(2, 24))
"""The brain plus 4 voxels each way, cut at the volume's edges (z at 0, y at 26); x is cut nowhere."""

# tissue: (raw intensity of channel 0, WT/TC/ET logits, expected BraTS label)
TISSUES: dict[str, tuple[float, tuple[float, float, float], int]] = {
    "brain": (100.0, (-3.0, -3.0, -3.0), 0),
    "oedema": (300.0, (3.0, -3.0, -3.0), 2),
    "core": (380.0, (3.0, 3.0, -3.0), 1),
    "enhancing": (460.0, (3.0, 3.0, 3.0), 4),
    "wt_above": (240.0, (0.2, -3.0, -3.0), 2),  # WT probability 0.550
    "wt_below": (220.0, (-0.2, -3.0, -3.0), 0),  # WT probability 0.450
    "wt_at": (260.0, (0.0, -3.0, -3.0), 0),  # WT probability exactly 0.5: not over the threshold
    "tc_below": (340.0, (3.0, -0.2, -3.0), 2),
    "et_above": (520.0, (3.0, 3.0, 0.2), 4),
    "et_below": (500.0, (3.0, 3.0, -0.2), 1),
    "et_only": (560.0, (3.0, -3.0, 3.0), 4),  # not nested: ET wins
}
NO_MATCH = (2.0, -3.0, -3.0)
TOLERANCE = 1e-3
"""How close a normalised value must be to a tissue's code for the stub to recognise it."""

# (region, tissue), painted in order: later regions overwrite earlier ones.
LAYOUT: list[tuple[tuple[slice, slice, slice], str]] = [
    (BRAIN, "brain"),
    # main tumour: WT z 4-9, y 11-18, x 8-14, and a WT slab just above 0.5 at x 15, one just below at x 16
    ((slice(4, 10), slice(11, 19), slice(8, 15)), "oedema"),
    ((slice(4, 10), slice(11, 19), slice(15, 16)), "wt_above"),
    ((slice(4, 10), slice(11, 19), slice(16, 17)), "wt_below"),
    ((slice(4, 10), slice(19, 20), slice(8, 15)), "wt_at"),
    ((slice(5, 9), slice(12, 17), slice(9, 13)), "core"),
    ((slice(5, 9), slice(17, 18), slice(9, 13)), "tc_below"),
    ((slice(5, 7), slice(12, 14), slice(9, 11)), "enhancing"),
    ((slice(7, 8), slice(12, 14), slice(9, 11)), "et_above"),
    ((slice(8, 9), slice(12, 14), slice(9, 11)), "et_below"),
    ((slice(4, 5), slice(11, 12), slice(8, 9)), "et_only"),
    # a separate component of 50 voxels (13 % of the main tumour's 384): dropped by the default clean-up (30 %)
    ((slice(5, 10), slice(12, 17), slice(18, 20)), "core"),
    # a separate component of 8 voxels (under 10 %): dropped by the default clean-up
    ((slice(10, 12), slice(19, 21), slice(18, 20)), "oedema"),
]
SMALL_COMPONENT = (slice(10, 12), slice(19, 21), slice(18, 20))
MEDIUM_COMPONENT = (slice(5, 10), slice(12, 17), slice(18, 20))


def coded_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw (4, Z, Y, X) image, its tissue map (names, '' outside the brain) and the expected labels."""
    tissue = np.full(SHAPE, "", dtype=object)
    for region, name in LAYOUT:
        tissue[region] = name
    brain = tissue != ""
    image = np.zeros((4, *SHAPE), dtype=np.float32)
    expected = np.zeros(SHAPE, dtype=np.uint8)
    for name, (raw, _, label) in TISSUES.items():
        image[0][tissue == name] = raw
        expected[tissue == name] = label
    expected[SMALL_COMPONENT] = expected[MEDIUM_COMPONENT] = 0
    x_index = np.broadcast_to(np.arange(SHAPE[2], dtype=np.float32), SHAPE)
    image[1][brain] = 50.0
    image[2][brain] = 80.0 + 0.5 * image[0][brain]
    image[3][brain] = 1.0 + x_index[brain]  # rises with x: tells a mirrored input from the original
    return image, tissue, expected


def brain_codes(image: np.ndarray) -> dict[str, float]:
    """Each tissue's channel-0 value after a z-score over the brain (non-zero) voxels."""
    values = image[0][image[0] != 0].astype(np.float64)
    mean, std = values.mean(), values.std()
    return {name: (raw - mean) / std for name, (raw, _, _) in TISSUES.items()}


class StubNetwork(nn.Module):
    """Fixed logits per tissue code of channel 0; ``mirror_tilt`` is added to WT where the input is mirrored in x.

    The stub is equivariant to flips (a flipped input gives the flipped output) unless ``mirror_tilt`` is set:
    then an input whose channel 3 falls along x (the original rises) gets ``mirror_tilt`` more WT logit.
    """

    def __init__(self, codes: dict[str, float], mirror_tilt: float = 0.0):
        super().__init__()
        self.register_buffer("codes", torch.tensor([codes[name] for name in TISSUES], dtype=torch.float32))
        self.register_buffer("logits", torch.tensor([TISSUES[name][1] for name in TISSUES], dtype=torch.float32))
        self.register_buffer("no_match", torch.tensor(NO_MATCH, dtype=torch.float32))
        self.mirror_tilt = mirror_tilt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        match = (torch.abs(x[:, :1] - self.codes.view(1, -1, 1, 1, 1)) < TOLERANCE).float()  # (B, K, Z, Y, X)
        known = torch.einsum("bkzyx,kc->bczyx", match, self.logits - self.no_match)
        out = self.no_match.view(1, 3, 1, 1, 1) + known
        x_index = torch.arange(x.shape[-1], dtype=x.dtype)
        mirrored = ((x[:, 3] * x_index).sum(dim=(1, 2, 3)) < 0).float()  # (B,)
        wt_only = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1, 1)  # no in-place indexing: exports shape-free
        return out + self.mirror_tilt * mirrored.view(-1, 1, 1, 1, 1) * wt_only


SegmentFunction = Callable[..., Segmentation]


@pytest.fixture(params=BACKENDS)
def segment_with(request, tmp_path) -> SegmentFunction:
    """``segment_with(stub, image, **options)``: segment ``image`` with the stub network on one backend.

    ``onnx``: the stub exported as a checkpoint would be (:func:`~napari_brainseg.onnx_export.export_network`) and
    run by ONNX Runtime; test-time flips are torch's only, so those cases are skipped there.
    """
    if request.param == "torch":
        return lambda stub, image, **options: segment(image, stub, device="cpu", **options)
    if request.param == "onnx":

        def with_onnx(stub: nn.Module, image: np.ndarray, **options) -> Segmentation:
            if options.get("tta"):
                pytest.skip("test-time flips run with the torch backend")
            path, _ = export_network(stub, ModelInfo(model_id="stub"), tmp_path / "stub.onnx", fingerprint="stub")
            return segment(image, open_onnx(path), device="cpu", **options)

        return with_onnx
    raise NotImplementedError(request.param)


def _sigmoid(logits) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(logits, dtype=np.float64)))


def in_box() -> np.ndarray:
    inside = np.zeros(SHAPE, dtype=bool)
    inside[BOX] = True
    return inside


def expected_logits(tissue: np.ndarray) -> np.ndarray:
    """WT/TC/ET logits: the tissue's inside the brain, NO_MATCH's elsewhere."""
    logits = np.empty((3, *SHAPE))
    logits[:] = np.array(NO_MATCH)[:, None, None, None]
    for name, (_, values, _) in TISSUES.items():
        logits[:, tissue == name] = np.array(values)[:, None]
    return logits


def expected_probabilities(tissue: np.ndarray) -> np.ndarray:
    """The sigmoid of :func:`expected_logits` inside the brain box, 0 outside it (the network never saw it)."""
    return np.where(in_box(), _sigmoid(expected_logits(tissue)), 0.0)


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
    image, tissue, expected = coded_case()
    return image, tissue, expected, brain_codes(image)


def test_the_stub_case_is_what_the_tests_below_assume(case):
    image, tissue, expected, codes = case
    assert min(abs(value) for value in codes.values()) > 10 * TOLERANCE, "no code is mistaken for background"
    assert image[0][BRAIN].all() and np.count_nonzero(image[0]) == image[0][BRAIN].size
    main = expected[4:10, 11:19, 8:17]
    assert np.count_nonzero(main) == 384 and np.count_nonzero(tissue[MEDIUM_COMPONENT] != "") == 50
    assert set(np.unique(expected).tolist()) == {0, 1, 2, 4}
    crop = image[0][BOX].astype(np.float64)
    over_all_voxels = {name: (raw - crop.mean()) / crop.std() for name, (raw, _, _) in TISSUES.items()}
    assert all(abs(over_all_voxels[name] - codes[name]) > 10 * TOLERANCE for name in TISSUES), (
        "a z-score over all voxels of the box would give other codes, so the tests below would see it")


ROI_OPTIONS = {
    "model's window": {},
    "one pass": {"roi_size": None},
    "small overlapping windows": {"roi_size": (10, 12, 8), "overlap": 0.5},
}


@pytest.mark.parametrize("tta", [False, True], ids=["no flips", "flips"])
@pytest.mark.parametrize("roi", list(ROI_OPTIONS))
def test_segment_gives_the_exact_label_map_and_probabilities(segment_with, case, roi, tta):
    image, tissue, expected, codes = case
    result = segment_with(StubNetwork(codes), image, tta=tta, **ROI_OPTIONS[roi])
    np.testing.assert_array_equal(result.labels, expected)
    np.testing.assert_allclose(result.probabilities, expected_probabilities(tissue), atol=1e-5)
    if tta:
        assert result.uncertainty is not None and result.uncertainty.shape == SHAPE
        np.testing.assert_allclose(result.uncertainty, 0, atol=1e-5, err_msg="flips undone: all members agree")
    else:
        assert result.uncertainty is None


def test_each_label_is_where_the_layout_puts_it(segment_with, case):
    """The same answer, spelled out at a few voxels: nesting, the threshold and the clean-up."""
    image, _, _, codes = case
    labels = segment_with(StubNetwork(codes), image).labels
    assert labels[5, 12, 9] == 4, "enhancing"
    assert labels[7, 12, 9] == 4 and labels[8, 12, 9] == 1, "ET probability 0.55 is ET, 0.45 is not"
    assert labels[6, 15, 12] == 1, "core"
    assert labels[6, 17, 12] == 2, "TC probability 0.45 leaves oedema"
    assert labels[6, 15, 15] == 2 and labels[6, 15, 16] == 0, "WT probability 0.55 is tumour, 0.45 is not"
    assert labels[6, 19, 10] == 0, "WT probability 0.5 is not over the threshold"
    assert labels[4, 11, 8] == 4, "ET without TC is still ET"
    assert not labels[MEDIUM_COMPONENT].any(), "a component of 13 % of the largest goes"
    assert not labels[SMALL_COMPONENT].any(), "a component of 2 % of the largest goes"
    assert not labels[:, :, :6].any() and not labels[:, :9].any(), "nothing off the brain"


@pytest.mark.parametrize("fraction, small, medium", [(0, 2, 1), (0.1, 0, 1)], ids=["off", "10 %"])
def test_the_clean_up_drops_what_is_under_the_callers_fraction(segment_with, case, fraction, small, medium):
    """0 keeps the 2 % and the 13 % components; 10 % of the largest drops only the 2 % one."""
    image, _, expected, codes = case
    labels = segment_with(StubNetwork(codes), image, min_component_fraction=fraction).labels
    assert (labels[SMALL_COMPONENT] == small).all() and (labels[MEDIUM_COMPONENT] == medium).all()
    elsewhere = np.ones(SHAPE, dtype=bool)
    elsewhere[SMALL_COMPONENT] = elsewhere[MEDIUM_COMPONENT] = False
    np.testing.assert_array_equal(labels[elsewhere], expected[elsewhere])


@pytest.mark.parametrize("threshold, wt_slab", [(0.4, 2), (0.6, 0)])
def test_the_threshold_applies_to_every_region(segment_with, case, threshold, wt_slab):
    image, _, _, codes = case
    labels = segment_with(StubNetwork(codes), image, threshold=threshold).labels
    assert (labels[4:10, 11:19, 16] == wt_slab).all(), "WT 0.45"
    assert (labels[4:10, 11:19, 15] == wt_slab).all(), "WT 0.55"


@pytest.mark.parametrize("thresholds, wt_below, tc_below, et_below",
                         [((0.4, 0.5, 0.5), 2, 2, 1), ((0.5, 0.4, 0.4), 0, 1, 4)], ids=["WT lower", "TC and ET lower"])
def test_each_region_can_have_its_own_threshold(segment_with, case, thresholds, wt_below, tc_below, et_below):
    """Probabilities of 0.45 pass a threshold of 0.4 in their own region only."""
    image, tissue, expected, codes = case
    labels = segment_with(StubNetwork(codes), image, threshold=thresholds).labels
    assert (labels[tissue == "wt_below"] == wt_below).all(), "WT 0.45"
    assert (labels[tissue == "tc_below"] == tc_below).all(), "TC 0.45"
    assert (labels[tissue == "et_below"] == et_below).all(), "ET 0.45"
    clear = ~np.isin(tissue, ["wt_below", "wt_at", "tc_below", "et_below"])
    np.testing.assert_array_equal(labels[clear], expected[clear])


def test_whole_tumour_growth_turns_the_faint_slabs_joined_to_the_tumour_into_oedema_and_nothing_else(segment_with,
                                                                                                      case):
    """Growth over 0.4 within 1 voxel: the WT 0.45 and 0.5 slabs beside the tumour become oedema; the brain (WT 0.05)
    stays background, and so do the components the clean-up dropped (not joined to what it kept)."""
    image, tissue, expected, codes = case
    labels = segment_with(StubNetwork(codes), image, wt_growth=(0.4, 1)).labels
    grown = expected.copy()
    grown[np.isin(tissue, ["wt_below", "wt_at"])] = 2
    np.testing.assert_array_equal(labels, grown)


def test_a_stub_that_sees_the_mirror_image_differently_is_averaged_over_the_four_orientations(segment_with, case):
    """Only the x-mirrored pass adds 3.5 to the WT logit: averaged, the 0.45 and 0.5 slabs rise over 0.5, the brain
    does not."""
    image, tissue, expected, codes = case
    tilt = 3.5
    result = segment_with(StubNetwork(codes, mirror_tilt=tilt), image, tta=True)
    wt_below = float(_sigmoid(-0.2))
    assert (3 * wt_below + float(_sigmoid(-0.2 + tilt))) / 4 > 0.5
    assert (3 * float(_sigmoid(-3)) + float(_sigmoid(-3 + tilt))) / 4 < 0.5 < float(_sigmoid(-3 + tilt))
    want = expected.copy()
    want[4:10, 11:19, 16] = 2
    want[4:10, 19, 8:15] = 2
    np.testing.assert_array_equal(result.labels, want)
    inside = in_box()
    plain = _sigmoid(expected_logits(tissue)[0])
    mirrored = _sigmoid(expected_logits(tissue)[0] + tilt)
    np.testing.assert_allclose(result.probabilities[0], np.where(inside, (3 * plain + mirrored) / 4, 0), atol=1e-5)
    spread = np.abs(mirrored - plain) * np.sqrt(3) / 4  # std of three equal members and one other
    np.testing.assert_allclose(result.uncertainty, np.where(inside, spread, 0), atol=1e-5)
