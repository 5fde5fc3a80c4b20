"""The ensemble network: several segmentation networks whose probabilities are averaged (``arch`` ``ensemble``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

EPSILON = 1e-6
"""Probabilities are kept in [EPSILON, 1 - EPSILON] before they are turned back into logits."""


def region_weights(weights: Sequence[Sequence[float]], members: int, regions: int) -> list[list[float]]:
    """Each member's weight in each region, checked and scaled so that every region's weights sum to 1.

    >>> region_weights([[1, 0, 0], [0, 1, 1]], members=2, regions=3)
    [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    >>> region_weights([[3, 1, 1], [1, 1, 3]], members=2, regions=3)
    [[0.75, 0.5, 0.25], [0.25, 0.5, 0.75]]
    """
    rows = [[float(w) for w in row] for row in weights]
    if len(rows) != members or any(len(row) != regions for row in rows):
        raise ValueError(f"Region weights need one row of {regions} (one per region) for each of the {members} "
                         f"members; got {[len(row) for row in rows]} weights in {len(rows)} rows.")
    totals = [sum(column) for column in zip(*rows)]
    if any(w < 0 for row in rows for w in row) or min(totals) <= 0:
        raise ValueError(f"Region weights must be at least 0, and every region needs a member with a weight over 0; "
                         f"got {rows}.")
    return [[w / total for w, total in zip(row, totals)] for row in rows]


class Ensemble(nn.Module):
    """Networks that read the same input and write the same sigmoid regions, run as one.

    The output is a logit, as each member's is: that of the mean of the members' probabilities (weighted per region
    by ``weights``, one row per member, when given; see :func:`region_weights`), so that thresholding it at 0 is
    thresholding the mean probability at 0.5, and everything downstream (sliding window, ONNX export, fine-tuning)
    treats the ensemble like any one network.

    With ``core_gate`` (a member's index) the output has a fourth channel: that member's own whole-tumour logit,
    by which ``segment`` keeps TC and ET only inside the tumour that member finds
    (:func:`~napari_brainseg.inference.gate_core`).
    """

    def __init__(self, members: list[nn.Module], weights: Sequence[Sequence[float]] | None = None,
                 core_gate: int | None = None):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"An ensemble needs at least two networks, got {len(members)}.")
        if core_gate is not None and not 0 <= core_gate < len(members):
            raise ValueError(f"The core gate is one of the {len(members)} members, counted from 0; got {core_gate}.")
        self.members = nn.ModuleList(members)
        self.weights = None if weights is None else torch.tensor(weights, dtype=torch.float32)
        self.core_gate = core_gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = [member(x) for member in self.members]
        probabilities = torch.sigmoid(torch.stack(logits))
        if self.weights is None:
            mean = probabilities.mean(0)
        else:  # (members, regions) -> (members, 1, regions, 1, ...) against (members, batch, regions, ...)
            shape = (*self.weights.shape[:1], 1, self.weights.shape[1], *[1] * (probabilities.ndim - 3))
            mean = (probabilities * self.weights.to(probabilities).view(shape)).sum(0)
        mean = mean.clamp(EPSILON, 1 - EPSILON)
        joined = torch.log(mean) - torch.log1p(-mean)
        if self.core_gate is None:
            return joined
        return torch.cat([joined, logits[self.core_gate][:, :1]], dim=1)
