"""The ensemble network: several segmentation networks whose probabilities are averaged (``arch`` ``ensemble``)."""

from __future__ import annotations

import torch
from torch import nn

EPSILON = 1e-6
"""Probabilities are kept in [EPSILON, 1 - EPSILON] before they are turned back into logits."""


class Ensemble(nn.Module):
    """Networks that read the same input and write the same sigmoid regions, run as one.

    The output is a logit, as each member's is: that of the mean of the members' probabilities, so that
    thresholding it at 0 is thresholding the mean probability at 0.5, and everything downstream (sliding
    window, ONNX export, fine-tuning) treats the ensemble like any one network.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"An ensemble needs at least two networks, got {len(members)}.")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([torch.sigmoid(member(x)) for member in self.members]).mean(0)
        mean = mean.clamp(EPSILON, 1 - EPSILON)
        return torch.log(mean) - torch.log1p(-mean)
