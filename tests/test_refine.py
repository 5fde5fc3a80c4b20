"""Click refinement: the simulated user, the guidance encoding, ``refine`` and its click-network checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_brainseg.clicks import CLICK_LABELS, ClickError, check_clicks, guidance_maps, next_click
from napari_brainseg.io import MODALITIES
from napari_brainseg.labels import BACKGROUND, ED, ET, NCR, LabelError, mask_dice
from napari_brainseg.model import CheckpointError, load_model, save_checkpoint
from napari_brainseg.preprocess import OUTSIDE_TUMOUR, ROBUST
import napari_brainseg.refine as refine_module
from napari_brainseg.refine import (
    GUIDANCE,
    REFINEMENT,
    brain_statistics,
    click_window,
    load_refinement_model,
    merge_hand_edits,
    refine,
    refinement_network,
)
from napari_brainseg.synthetic import synthetic_case


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, np.ndarray]:
    """A synthetic (4, Z, Y, X) stack and its expert labels."""
    images, seg = synthetic_case(shape=(48, 56, 40), seed=0)
    return np.stack([images[m] for m in MODALITIES]).astype(np.float32), seg.astype(np.uint8)


# --- the simulated user ---------------------------------------------------------------------------------
def test_the_next_click_is_deepest_in_the_largest_error_with_the_experts_label():
    truth = np.zeros((20, 20, 20), np.uint8)
    truth[2:15, 2:15, 2:15] = ED  # a big missed region, centre (8, 8, 8)
    truth[17:19, 17:19, 17:19] = ET  # a small one
    assert next_click(np.zeros_like(truth), truth) == (8, 8, 8, ED)
    assert next_click(truth, truth) is None


def test_the_next_click_ignores_errors_outside_the_region():
    truth = np.zeros((10, 10, 10), np.uint8)
    truth[:5] = NCR
    region = np.zeros(truth.shape, bool)
    region[5:] = True
    assert next_click(np.zeros_like(truth), truth, region) is None


def test_a_click_on_a_false_positive_carries_not_tumour():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[3:8, 3:8, 3:8] = ET
    assert next_click(labels, np.zeros_like(labels)) == (5, 5, 5, BACKGROUND)


# --- guidance and checks ----------------------------------------------------------------------------------
def test_each_click_label_has_its_own_gaussian_map_peaking_at_the_click():
    box = (slice(10, 20), slice(0, 8), slice(4, 12))
    maps = guidance_maps([(12, 3, 6, ET), (15, 5, 9, BACKGROUND)], box, sigma=2.0)
    assert maps.shape == (len(CLICK_LABELS), 10, 8, 8)
    et, negative = CLICK_LABELS.index(ET), CLICK_LABELS.index(BACKGROUND)
    assert maps[et, 2, 3, 2] == pytest.approx(1.0)
    assert maps[negative, 5, 5, 5] == pytest.approx(1.0)
    assert maps[CLICK_LABELS.index(NCR)].max() == 0
    assert maps[et, 2, 3, 5] == pytest.approx(np.exp(-9 / 8), rel=1e-5), "a Gaussian of width sigma"


@pytest.mark.parametrize(
    ("clicks", "message"),
    [
        ([], "No clicks"),
        ([(1, 2, 3, 3)], "label 3"),
        ([(1, 2, 30, 2)], "outside the volume"),
        ([(-1, 2, 3, 2)], "outside the volume"),
        ([(0, 0, 0, 2)], "outside the brain"),
        ([(1, 2, 3)], "(z, y, x, label)"),
    ],
)
def test_bad_clicks_are_refused_with_a_message(clicks, message):
    brain = np.ones((10, 10, 10), bool)
    brain[0, 0, 0] = False
    with pytest.raises(ClickError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_clicks(clicks, brain.shape, brain)


def test_the_window_is_bounded_centred_and_inside_the_volume():
    assert click_window((50, 100, 120), (155, 240, 240), (48, 64, 64)) == (slice(26, 74), slice(68, 132),
                                                                          slice(88, 152))
    assert click_window((2, 235, 5), (155, 240, 240), (48, 64, 64)) == (slice(0, 48), slice(176, 240), slice(0, 64))
    assert click_window((3, 3, 3), (10, 20, 30), (48, 64, 64)) == (slice(0, 10), slice(0, 20), slice(0, 30))


# --- refine by region growing ------------------------------------------------------------------------------
def test_a_click_in_a_missed_region_labels_it_and_never_changes_its_inputs(case):
    image, truth = case
    labels = truth.copy()
    labels[labels == ED] = BACKGROUND  # the oedema was missed
    before_image, before_labels = image.copy(), labels.copy()
    click = next_click(labels, truth, np.any(image != 0, axis=0))
    assert click[3] == ED
    out = refine(image, labels, [click])
    assert out.dtype == np.uint8 and out is not labels
    assert np.array_equal(image, before_image) and np.array_equal(labels, before_labels), "inputs never change"
    assert out[click[:3]] == ED
    assert mask_dice(out == ED, truth == ED) > 0.3 > mask_dice(labels == ED, truth == ED), "a good part recovered"


def test_region_growing_changes_nothing_outside_its_window(case, monkeypatch):
    image, truth = case
    labels = truth.copy()
    labels[labels == ED] = BACKGROUND
    click = next_click(labels, truth, np.any(image != 0, axis=0))
    monkeypatch.setattr(refine_module, "GROWING_WINDOW", (12, 12, 12))  # smaller than the missed oedema
    monkeypatch.setattr(refine_module, "MAX_BORDER_CHANGE", 0.0)  # no border fit
    out = refine(image, labels, [click])
    outside = np.ones(out.shape, bool)
    outside[click_window(click[:3], out.shape, (12, 12, 12))] = False
    assert (labels != truth)[outside].any(), "missed oedema lies outside the window too"
    assert (out != labels).any() and np.array_equal(out[outside], labels[outside])


def test_a_not_tumour_click_removes_a_small_false_positive(case):
    image, truth = case
    labels = truth.copy()
    brain = np.any(image != 0, axis=0)
    spot = tuple(int(v) for v in np.argwhere(brain & (truth == 0))[len(np.argwhere(brain & (truth == 0))) // 3])
    box = tuple(slice(v - 1, v + 2) for v in spot)
    labels[box] = ET
    out = refine(image, labels, [(*spot, BACKGROUND)])
    assert not out[box].any()
    assert np.array_equal(out[labels == truth], truth[labels == truth])


def test_every_click_in_the_window_holds(case):
    image, truth = case
    tumour = np.argwhere(truth == ED)
    clicks = [(*map(int, tumour[0]), NCR), (*map(int, tumour[len(tumour) // 2]), ET)]
    out = refine(image, truth, clicks)
    for z, y, x, label in clicks:
        assert out[z, y, x] == label


LOOKS = {"normal": (100, 100, 100, 100), "oedema": (250, 100, 100, 250), "enhancing": (300, 100, 400, 300),
         "necrosis": (200, 60, 80, 350)}
"""Mean FLAIR, T1, T1ce, T2 of each tissue of the nested-ball cases."""
CENTRE = 28


def _nested_balls(looks: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The radius from the centre of a 56^3 volume, whether a voxel lies in its upper half (z < centre), and a
    noisy (4, Z, Y, X) image whose voxels look like the tissue whose mask in ``looks`` holds them (else normal)."""
    r = np.sqrt(sum((g - float(CENTRE)) ** 2 for g in np.indices((56, 56, 56))))
    upper = np.arange(56)[:, None, None] < CENTRE
    image = np.empty((4, *r.shape), np.float32)
    image[:] = np.asarray(LOOKS["normal"], np.float32)[:, None, None, None]
    for tissue, mask in looks.items():
        image[:, mask] = np.asarray(LOOKS[tissue], np.float32)[:, None]
    return r, upper, image + np.random.default_rng(3).normal(0, 5, image.shape).astype(np.float32)


def _changed_only_where_wrong(labels: np.ndarray, out: np.ndarray, truth: np.ndarray) -> bool:
    changed = out != labels
    return bool(changed.sum() > 100 and np.array_equal(out[changed], truth[changed]))


def test_a_click_on_missed_oedema_round_the_tumour_fills_it_and_stops_where_look_alike_brain_begins():
    r, upper, _ = _nested_balls({})
    truth = np.where(r < 6, ET, np.where(r < 13, ED, BACKGROUND)).astype(np.uint8)
    labels = np.where(truth == ED, BACKGROUND, truth).astype(np.uint8)  # the oedema was missed
    _, _, image = _nested_balls({"oedema": (truth == ED) | ((r >= 6) & upper), "enhancing": truth == ET})
    click = (CENTRE - 9, CENTRE, CENTRE, ED)  # in the half where all the brain beyond looks like oedema
    out = refine(image, labels, [click])
    assert mask_dice(out > 0, truth > 0) > mask_dice(labels > 0, truth > 0) + 0.1, "a good part of the oedema"
    assert _changed_only_where_wrong(labels, out, truth), "and only the oedema"


def test_a_click_on_missed_necrosis_inside_the_oedema_stops_where_look_alike_oedema_begins():
    r, upper, _ = _nested_balls({})
    truth = np.where(r < 9, NCR, np.where(r < 15, ED, BACKGROUND)).astype(np.uint8)
    labels = np.where(r < 5, NCR, np.where(r < 15, ED, BACKGROUND)).astype(np.uint8)  # too little necrosis
    _, _, image = _nested_balls({"oedema": truth == ED, "necrosis": (truth == NCR) | ((r < 15) & upper)})
    click = (CENTRE - 7, CENTRE, CENTRE, NCR)  # in the half where the oedema beyond looks like necrosis
    out = refine(image, labels, [click])
    assert mask_dice(out == NCR, truth == NCR) > mask_dice(labels == NCR, truth == NCR) + 0.1
    assert _changed_only_where_wrong(labels, out, truth)


def test_a_click_on_missed_enhancement_beside_the_tumour_takes_all_of_it_not_a_shell_round_the_tumour():
    r, _, _ = _nested_balls({})
    centre = (CENTRE, CENTRE, CENTRE + 17)
    from_centre = np.sqrt(sum((g - c) ** 2 for g, c in zip(np.indices(r.shape), centre)))
    lesion = from_centre < 6
    truth = np.where(lesion, ET, np.where(r < 10, ED, BACKGROUND)).astype(np.uint8)
    labels = np.where(lesion, BACKGROUND, truth).astype(np.uint8)  # the lesion was missed
    _, _, image = _nested_balls({"oedema": truth == ED, "enhancing": lesion})
    out = refine(image, labels, [(*centre, ET)])
    inner = from_centre < 4  # away from the lesion's edge, which smoothing blurs
    assert (out[inner] == ET).all(), "its far side too, not only what lies as near the tumour as the click"
    assert lesion[out != labels].all(), "and nothing else"


def test_a_not_tumour_click_on_an_over_drawn_rim_trims_it_and_keeps_faint_tumour_inside():
    r, upper, _ = _nested_balls({})
    truth = np.where(r < 4, ET, np.where(r < 8, ED, BACKGROUND)).astype(np.uint8)
    labels = np.where(r < 4, ET, np.where(r < 14, ED, BACKGROUND)).astype(np.uint8)  # the oedema over-drawn
    faint = (truth == ED) & upper  # oedema that looks like normal brain
    _, _, image = _nested_balls({"oedema": (truth == ED) & ~faint, "enhancing": truth == ET})
    click = (CENTRE - 11, CENTRE, CENTRE, BACKGROUND)
    out = refine(image, labels, [click])
    assert mask_dice(out > 0, truth > 0) > mask_dice(labels > 0, truth > 0) + 0.1, "a good part of the rim"
    assert _changed_only_where_wrong(labels, out, truth), "and no tumour, faint or not"


def test_a_not_tumour_click_on_the_tumour_itself_trims_it_rather_than_erasing_it(case):
    image, truth = case
    labels = truth.copy()
    brain = np.any(image != 0, axis=0)
    grown = ndimage.binary_dilation(truth > 0, iterations=3) & brain & (truth == BACKGROUND)
    labels[grown] = ED  # the oedema was over-drawn all round
    click = next_click(labels, truth, brain)
    assert click[3] == BACKGROUND
    out = refine(image, labels, [click])
    assert (out > 0).sum() >= 0.9 * (truth > 0).sum(), "the tumour stays"
    assert mask_dice(out > 0, truth > 0) >= mask_dice(labels > 0, truth > 0), "no worse: trimmed, not erased"


CAP = 8
"""The cap: the part of the tumour more than this many voxels above its centre."""
WINDOW = (8, 8, 8)
"""A growing window far smaller than the cap's shell."""


def _cap_case(labelled_radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Enhancing tumour (r < 6) in oedema (r < 20), both looking as they are labelled, and labels whose oedema on
    the cap ends at ``labelled_radius`` instead: the image, the truth and the labels."""
    r, _, _ = _nested_balls({})
    truth = np.where(r < 6, ET, np.where(r < 20, ED, BACKGROUND)).astype(np.uint8)
    cap = np.arange(56)[:, None, None] < CENTRE - CAP
    labels = np.where(cap & (r >= 6), np.where(r < labelled_radius, ED, BACKGROUND), truth).astype(np.uint8)
    _, _, image = _nested_balls({"oedema": truth == ED, "enhancing": truth == ET})
    return image, truth, labels


def _outside_window(click: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    outside = np.ones(shape, bool)
    outside[click_window(click[:3], shape, WINDOW)] = False
    return outside


def test_a_click_on_a_shell_missed_over_the_tumours_cap_restores_it_beyond_the_window(monkeypatch):
    image, truth, labels = _cap_case(labelled_radius=17)
    monkeypatch.setattr(refine_module, "GROWING_WINDOW", WINDOW)
    click = (CENTRE - 18, CENTRE, CENTRE, ED)  # in the missed shell, on the tumour's top
    out = refine(image, labels, [click])
    missed = (labels != truth) & _outside_window(click, labels.shape)
    assert missed.sum() > 1000 and (out[missed] == ED).mean() > 0.75, "most of the shell, beyond the window"
    assert _changed_only_where_wrong(labels, out, truth), "and nothing else"


def test_a_not_tumour_click_on_a_rim_over_drawn_on_the_cap_trims_it_beyond_the_window(monkeypatch):
    image, truth, labels = _cap_case(labelled_radius=23)
    monkeypatch.setattr(refine_module, "GROWING_WINDOW", WINDOW)
    click = (CENTRE - 21, CENTRE, CENTRE, BACKGROUND)
    out = refine(image, labels, [click])
    extra = (labels != truth) & _outside_window(click, labels.shape)
    assert extra.sum() > 1000 and (out[extra] == BACKGROUND).mean() > 0.9
    assert _changed_only_where_wrong(labels, out, truth)


def test_the_border_fit_keeps_no_change_larger_than_its_share_of_the_tumour(monkeypatch):
    image, truth, labels = _cap_case(labelled_radius=17)
    monkeypatch.setattr(refine_module, "GROWING_WINDOW", WINDOW)
    missed = (labels != truth).sum() / (labels != BACKGROUND).sum()
    monkeypatch.setattr(refine_module, "MAX_BORDER_CHANGE", missed / 2)
    click = (CENTRE - 18, CENTRE, CENTRE, ED)
    out = refine(image, labels, [click])
    outside = _outside_window(click, labels.shape)
    assert (out != labels).any() and np.array_equal(out[outside], labels[outside]), "region growing alone"


def test_the_border_fit_removes_oedema_only_and_leaves_the_core_to_class_clicks(monkeypatch):
    image, truth, labels = _cap_case(labelled_radius=23)
    labels[(labels != truth) & (labels == ED)] = ET  # the over-drawn rim is enhancing, not oedema
    monkeypatch.setattr(refine_module, "GROWING_WINDOW", WINDOW)
    click = (CENTRE - 21, CENTRE, CENTRE, BACKGROUND)
    out = refine(image, labels, [click])
    outside = _outside_window(click, labels.shape)
    assert np.array_equal(out[outside], labels[outside])


def test_every_click_holds_after_a_border_fit(monkeypatch):
    image, truth, labels = _cap_case(labelled_radius=17)
    monkeypatch.setattr(refine_module, "GROWING_WINDOW", WINDOW)
    older = (CENTRE - 12, CENTRE + 14, CENTRE, BACKGROUND)  # on the missed shell, outside the newest click's window
    newest = (CENTRE - 18, CENTRE, CENTRE, ED)
    assert _outside_window(newest, labels.shape)[older[:3]] and truth[older[:3]] == ED
    out = refine(image, labels, [older, newest])
    assert (out[_outside_window(newest, labels.shape)] == ED).sum() > 1000, "the fit reached the shell"
    assert out[older[:3]] == BACKGROUND and out[newest[:3]] == ED


def test_a_change_joins_its_click_through_what_region_growing_changed():
    line = np.zeros((1, 1, 12), bool)
    change, grown, seeds = line.copy(), line.copy(), line.copy()
    change[..., 6:10], grown[..., 2:6], seeds[..., 2] = True, True, True
    assert np.array_equal(refine_module._joined(change, seeds, grown), change)
    assert not refine_module._joined(change, seeds, line).any(), "not joined without it"


def test_a_clicks_depth_is_the_full_distance_transforms_up_to_the_depth_that_still_changes_its_reach():
    rng = np.random.default_rng(0)
    region = ndimage.binary_opening(rng.random((40, 40, 40)) < 0.9, iterations=2)
    region[:, :, 30:] = True  # deep inside: the cap, and a region reaching the array's edge
    full = ndimage.distance_transform_edt(region)
    cap = refine_module.MAX_USEFUL_DEPTH
    for voxel in [tuple(v) for v in np.argwhere(region)[::97]] + [(20, 20, 39), (0, 0, 35)]:
        assert refine_module._depth(region, voxel, cap) == pytest.approx(min(full[voxel], cap))
    assert refine_module._depth(np.ones((5, 5, 5), bool), (2, 2, 2), cap) == cap


def test_a_class_click_inside_the_tumour_leaves_its_border_alone():
    image, truth, labels = _cap_case(labelled_radius=17)
    out = refine(image, labels, [(CENTRE - 8, CENTRE, CENTRE, NCR)])
    assert np.array_equal(out != BACKGROUND, labels != BACKGROUND)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda image, labels: (image[:3], labels), ValueError, "4, Z, Y, X"),
        (lambda image, labels: (image, labels[:-1]), LabelError, "shape"),
        (lambda image, labels: (image, np.where(labels == ET, 3, labels).astype(np.uint8)), LabelError, r"\[3\]"),
    ],
)
def test_bad_images_or_labels_are_refused(case, change, error, message):
    image, labels = change(*case)
    with pytest.raises(error, match=message):
        refine(image, labels, [(20, 20, 20, ED)])


def test_bad_clicks_leave_the_labels_unchanged(case):
    image, truth = case
    labels = truth.copy()
    with pytest.raises(ClickError, match="outside the brain"):
        refine(image, labels, [(0, 0, 0, ED)])
    assert np.array_equal(labels, truth)


def test_hand_edits_since_the_last_refinement_are_kept_unless_clicked():
    last = np.zeros((4, 4, 4), np.uint8)
    current = last.copy()
    current[0, 0, :2] = NCR  # painted by hand
    refined = np.full_like(last, ED)
    merged = merge_hand_edits(refined, current, last, [(0, 0, 1, ED)])
    assert merged[0, 0, 0] == NCR, "painted, not clicked: kept"
    assert merged[0, 0, 1] == ED, "painted, then clicked: the click wins"
    assert merged[1, 1, 1] == ED
    assert np.array_equal(merge_hand_edits(refined, current, None, []), refined)


# --- the click network --------------------------------------------------------------------------------------
def test_a_new_click_network_segments_exactly_as_its_base_model(tiny_checkpoint):
    base, _ = load_model(tiny_checkpoint)
    network, info = refinement_network(tiny_checkpoint)
    assert info.kind == REFINEMENT and info.guidance == GUIDANCE
    assert info.arch_kwargs["in_channels"] == 4 + len(CLICK_LABELS) + 3
    torch.manual_seed(1)
    image, guidance = torch.randn(1, 4, 16, 16, 16), torch.rand(1, 7, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(network(torch.cat([image, guidance], 1)), base(image), atol=1e-5)


@pytest.fixture
def click_checkpoint(tiny_checkpoint, tmp_path):
    network, info = refinement_network(tiny_checkpoint)
    return save_checkpoint(tmp_path / "clicks.pt", network, info)


def test_refine_runs_a_click_network_checkpoint(case, click_checkpoint):
    image, truth = case
    labels = truth.copy()
    labels[labels == ED] = BACKGROUND
    click = next_click(labels, truth, np.any(image != 0, axis=0))
    out = refine(image, labels, [click], model=click_checkpoint)
    assert out.dtype == np.uint8 and out.shape == labels.shape
    assert out[click[:3]] == ED
    outside = np.ones(out.shape, bool)
    outside[click_window(click[:3], out.shape, GUIDANCE["window"])] = False
    assert np.array_equal(out[outside], labels[outside])


def test_brain_statistics_are_the_median_and_iqr_of_a_sample_of_brain_voxels_for_a_robust_model(case):
    image, _ = case
    sample = image.reshape(4, -1)[:, ::7]
    sample = sample[:, np.any(sample != 0, axis=0)]
    q25, q50, q75 = np.percentile(sample, [25, 50, 75], axis=1)
    centre, spread = brain_statistics(image, ROBUST)
    np.testing.assert_allclose(centre, q50, rtol=1e-6)
    np.testing.assert_allclose(spread, (q75 - q25) / 1.349, rtol=1e-6)


def test_brain_statistics_leave_out_the_excluded_voxels(case):
    image, truth = case
    sample = image.reshape(4, -1)[:, ::7]
    sample = sample[:, np.any(sample != 0, axis=0) & (truth.ravel()[::7] == BACKGROUND)]
    centre, spread = brain_statistics(image, OUTSIDE_TUMOUR, exclude=truth != BACKGROUND)
    np.testing.assert_allclose(centre, sample.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(spread, sample.std(axis=1), rtol=1e-6)
    everything = np.ones(truth.shape, dtype=bool)  # nothing left: all the brain's voxels
    brain = image[:, np.any(image != 0, axis=0)].astype(np.float64)
    centre, spread = brain_statistics(image, OUTSIDE_TUMOUR, exclude=everything)
    np.testing.assert_allclose(centre, brain.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(spread, brain.std(axis=1), rtol=1e-6)


@pytest.mark.parametrize("normalisation", [ROBUST, OUTSIDE_TUMOUR], ids=["robust", "outside-tumour"])
def test_a_click_network_sees_the_window_normalised_as_its_base(case, tiny_checkpoint, tmp_path, monkeypatch,
                                                               normalisation):
    image, truth = case
    segmenter, base_info = load_model(tiny_checkpoint)
    base_info.normalisation = normalisation
    base = save_checkpoint(tmp_path / "base.pt", segmenter, base_info)
    network, info = refinement_network(base)
    assert info.normalisation == normalisation
    seen, original = [], refine_module.network_input

    def spy(window: np.ndarray, *args) -> np.ndarray:
        seen.append(window)
        return original(window, *args)

    monkeypatch.setattr(refine_module, "network_input", spy)
    labels = np.where(truth == ED, BACKGROUND, truth).astype(np.uint8)
    click = next_click(labels, truth, np.any(image != 0, axis=0))
    refine(image, labels, [click], model=save_checkpoint(tmp_path / "clicks.pt", network, info))
    box = click_window(click[:3], labels.shape, GUIDANCE["window"])
    brain = np.any(image[(slice(None), *box)] != 0, axis=0)
    tumour = labels != BACKGROUND if normalisation == OUTSIDE_TUMOUR else None  # the current labels' tumour
    centre, spread = brain_statistics(image, normalisation, tumour)
    window = image[(slice(None), *box)]
    expected = np.where(brain, (window - centre[:, None, None, None]) / spread[:, None, None, None], 0)
    np.testing.assert_allclose(seen[0], expected, atol=1e-5)


def test_checkpoints_of_the_wrong_kind_are_refused(case, tiny_checkpoint, click_checkpoint, tmp_path):
    image, truth = case
    with pytest.raises(CheckpointError, match="is a segmentation model .* not a click-refinement model"):
        refine(image, truth, [(20, 20, 20, ED)], model=tiny_checkpoint)
    with pytest.raises(CheckpointError, match="is a click-refinement model .* not a segmentation model"):
        load_model(click_checkpoint)
    network, info = refinement_network(tiny_checkpoint)
    info.guidance = {**GUIDANCE, "encoding": "distance-maps"}
    with pytest.raises(CheckpointError, match="expects guidance"):
        load_refinement_model(save_checkpoint(tmp_path / "other.pt", network, info))
