"""The training losses on the nested regions WT, TC and ET: three sigmoid channels that overlap.

``dice-bce`` is what the nested regions call for: MONAI's batch Dice on each sigmoid channel plus a binary
cross-entropy per channel, so that every voxel, background included, counts in both terms.

``dice-softmax-ce`` (the default, :data:`~.defaults.DEFAULT_LOSS`) is MONAI's ``DiceCELoss(sigmoid=True,
batch=True)``, the loss of every shipped model. With more than one channel its cross-entropy is a softmax over the
channels, read against the three overlapping region masks as class probabilities: a background voxel (all three 0)
adds nothing to it, and a voxel of all three regions only asks the three logits to be equal, so the Dice alone
teaches what is not tumour. It stays the default because it measured better on held-out cases at this project's
CPU schedule (model card, *Session 13*).

``tversky-softmax-ce`` is the default with its Dice swapped for MONAI's batch Tversky loss, which weighs a missed
voxel :data:`~.defaults.TVERSKY_BETA` and a false one :data:`~.defaults.TVERSKY_ALPHA`: every model of the recipe
finds the whole tumour too small (model card, *Session 16*).
"""

from __future__ import annotations

import torch

from napari_brainseg.labels import REGION_NAMES, REGIONS

from .defaults import DEFAULT_LOSS, DICE_BCE, DICE_SOFTMAX_CE, LOSSES, TVERSKY_ALPHA, TVERSKY_BETA, TVERSKY_SOFTMAX_CE


class DiceBCELoss(torch.nn.Module):
    """MONAI's batch Dice on each sigmoid channel plus the mean binary cross-entropy of every channel and voxel."""

    def __init__(self) -> None:
        super().__init__()
        from monai.losses import DiceLoss

        self.dice = DiceLoss(sigmoid=True, batch=True)
        self.bce = torch.nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice(logits, target) + self.bce(logits, target)


class TverskySoftmaxCELoss(torch.nn.Module):
    """MONAI's batch Tversky loss on each sigmoid channel plus ``dice-softmax-ce``'s own cross-entropy term."""

    def __init__(self) -> None:
        super().__init__()
        from monai.losses import DiceCELoss, TverskyLoss

        self.tversky = TverskyLoss(sigmoid=True, batch=True, alpha=TVERSKY_ALPHA, beta=TVERSKY_BETA)
        self.default = DiceCELoss(sigmoid=True, batch=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.tversky(logits, target) + self.default.ce(logits, target)


def region_target(label: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """The float (B, ``channels``, ...) masks WT, TC, ET of a (B, 1, ...) label map. A gated ensemble writes a fourth
    channel, its gate member's own whole tumour (:class:`~napari_brainseg.ensemble_network.Ensemble`): it learns WT.

    >>> label = torch.tensor([0, 2, 1, 4]).view(1, 1, 4)
    >>> region_target(label, channels=4)[0].int().tolist()
    [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 1, 1, 1]]
    """
    if channels not in (3, 4):
        raise ValueError(f"A network writes WT, TC and ET, and a gated ensemble its gate's whole tumour too: 3 or 4 "
                         f"channels; got {channels}.")
    regions = [torch.isin(label, torch.tensor(sorted(REGIONS[name]), device=label.device)) for name in REGION_NAMES]
    return torch.cat(regions + regions[: channels - 3], dim=1).float()


def region_loss(name: str = DEFAULT_LOSS) -> torch.nn.Module:
    """The loss called ``name`` (a key of :data:`LOSSES`), taking logits and the (B, 3, ...) WT/TC/ET masks."""
    if name == DICE_BCE:
        return DiceBCELoss()
    if name == DICE_SOFTMAX_CE:
        from monai.losses import DiceCELoss

        return DiceCELoss(sigmoid=True, batch=True)
    if name == TVERSKY_SOFTMAX_CE:
        return TverskySoftmaxCELoss()
    raise ValueError(f"Unknown loss {name!r}; choose one of {', '.join(LOSSES)}.")
