"""The training losses on the nested regions WT, TC and ET: three sigmoid channels that overlap.

``dice-bce`` (the default) is what the nested regions need: MONAI's batch Dice on each sigmoid channel plus a binary
cross-entropy per channel, so that every voxel, background included, counts in both terms.

``dice-softmax-ce`` is MONAI's ``DiceCELoss(sigmoid=True, batch=True)``, every run's loss until session 13. With more
than one channel its cross-entropy is a softmax over the channels, read against the three overlapping region masks as
class probabilities: a background voxel (all three 0) adds nothing to it, and a voxel of all three regions only asks
the three logits to be equal. So the Dice alone taught those models what is not tumour. It stays to repeat those runs.
"""

from __future__ import annotations

import torch

from .defaults import DICE_BCE, DICE_SOFTMAX_CE, LOSSES


class DiceBCELoss(torch.nn.Module):
    """MONAI's batch Dice on each sigmoid channel plus the mean binary cross-entropy of every channel and voxel."""

    def __init__(self) -> None:
        super().__init__()
        from monai.losses import DiceLoss

        self.dice = DiceLoss(sigmoid=True, batch=True)
        self.bce = torch.nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice(logits, target) + self.bce(logits, target)


def region_loss(name: str = DICE_BCE) -> torch.nn.Module:
    """The loss called ``name`` (a key of :data:`LOSSES`), taking logits and the (B, 3, ...) WT/TC/ET masks."""
    if name == DICE_BCE:
        return DiceBCELoss()
    if name == DICE_SOFTMAX_CE:
        from monai.losses import DiceCELoss

        return DiceCELoss(sigmoid=True, batch=True)
    raise ValueError(f"Unknown loss {name!r}; choose one of {', '.join(LOSSES)}.")
