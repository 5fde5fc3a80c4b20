"""The training losses on the overlapping regions WT/TC/ET: Dice + a binary cross-entropy per region, and MONAI's
DiceCELoss (the default), whose cross-entropy ignores background voxels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss, TverskyLoss

from napari_brainseg.training.losses import DICE_BCE, DICE_SOFTMAX_CE, TVERSKY_SOFTMAX_CE, region_loss, region_target


def regions_and_logits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits and nested WT/TC/ET masks (ET inside TC inside WT) for two 8^3 patches."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 8, 8, 8, generator=generator)
    level = torch.randint(0, 4, (2, 1, 8, 8, 8), generator=generator)  # 0 background, 1 WT, 2 TC, 3 ET
    target = torch.cat([level >= 1, level >= 2, level >= 3], dim=1).float()
    return logits, target


def test_dice_bce_is_monai_batch_dice_plus_the_binary_cross_entropy_of_every_region_and_voxel():
    logits, target = regions_and_logits()
    expected = DiceLoss(sigmoid=True, batch=True)(logits, target) + F.binary_cross_entropy(
        torch.sigmoid(logits), target)
    assert region_loss(DICE_BCE)(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_tversky_softmax_ce_is_the_default_with_a_tversky_loss_weighing_missed_voxels_more_in_place_of_dice():
    logits, target = regions_and_logits(2)
    default = DiceCELoss(sigmoid=True, batch=True)
    expected = TverskyLoss(sigmoid=True, batch=True, alpha=0.3, beta=0.7)(logits, target) + default.ce(logits, target)
    assert region_loss(TVERSKY_SOFTMAX_CE)(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_tversky_softmax_ce_costs_a_missed_voxel_more_than_a_false_one():
    target = torch.zeros(1, 3, 4, 4, 4)
    target[:, :, :2] = 1.0  # half the patch is tumour in every region
    missed = torch.full_like(target, -3.0)  # background everywhere: half the patch missed
    false = torch.full_like(target, 3.0)  # tumour everywhere: half the patch false
    tversky = region_loss(TVERSKY_SOFTMAX_CE).tversky
    assert tversky(missed, target).item() > tversky(false, target).item()


def test_the_default_is_the_loss_of_every_shipped_model():
    logits, target = regions_and_logits(1)
    assert region_loss()(logits, target).item() == region_loss(DICE_SOFTMAX_CE)(logits, target).item()


def test_only_dice_bce_teaches_background_voxels_in_its_cross_entropy():
    logits = torch.full((1, 3, 4, 4, 4), 3.0, requires_grad=True)  # confident tumour everywhere
    background = torch.zeros(1, 3, 4, 4, 4)
    new, old = region_loss(DICE_BCE), region_loss(DICE_SOFTMAX_CE)
    assert new.bce(logits, background).item() == pytest.approx(F.softplus(torch.tensor(3.0)).item())
    assert old.ce(logits, background).item() == 0.0  # the softmax cross-entropy of an all-zero target
    old.ce(logits, background).backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_an_unknown_loss_is_refused_with_the_known_ones():
    known = "dice-softmax-ce, dice-bce, tversky-softmax-ce"
    with pytest.raises(ValueError, match=f"Unknown loss 'focal'; choose one of {known}"):
        region_loss("focal")


def test_the_targets_are_the_nested_regions_and_a_gated_ensemble_s_fourth_channel_learns_the_whole_tumour():
    label = torch.tensor([0, 2, 1, 4, 2]).view(1, 1, 5)
    three = region_target(label)
    assert three[0].int().tolist() == [[0, 1, 1, 1, 1], [0, 0, 1, 1, 0], [0, 0, 0, 1, 0]]
    four = region_target(label, channels=4)
    assert torch.equal(four[:, :3], three) and torch.equal(four[:, 3], three[:, 0])
    with pytest.raises(ValueError, match="3 or 4 channels; got 5"):
        region_target(label, channels=5)
