"""The 2.5-D network: a 2-D network run slice by slice over 3-D input (``arch`` ``monai.UNet-2.5d``)."""

from __future__ import annotations

import torch
from torch import nn


class SliceNetwork(nn.Module):
    """A 2-D network run over the axial slices of a 3-D input, so that it reads and writes (B, C, Z, Y, X).

    Each slice is stacked with its ``context`` neighbours on either side (edges repeated) as channels; the
    slices go through the 2-D network ``chunk`` at a time (bounding memory at inference).
    """

    def __init__(self, net: nn.Module, context: int, chunk: int = 32):
        super().__init__()
        self.net, self.context, self.chunk = net, context, chunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.as_subclass(torch.Tensor)  # e.g. a MONAI MetaTensor, whose per-case metadata cannot follow slices
        b, c, z, y, w = x.shape
        k = self.context
        padded = torch.nn.functional.pad(x, (0, 0, 0, 0, k, k), mode="replicate") if k else x
        stacks = padded.unfold(2, 2 * k + 1, 1)  # (B, C, Z, Y, X, 2k+1)
        stacks = stacks.permute(0, 2, 1, 5, 3, 4).reshape(b * z, c * (2 * k + 1), y, w)
        out = torch.cat([self.net(stacks[i : i + self.chunk]) for i in range(0, b * z, self.chunk)])
        return out.reshape(b, z, -1, y, w).permute(0, 2, 1, 3, 4)
