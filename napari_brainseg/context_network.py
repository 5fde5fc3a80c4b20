"""A segmentation network with a context network beside it (``arch`` ``with-context``, :mod:`.context`)."""

from __future__ import annotations

from torch import nn

from .context import ContextRule
from .model import ModelInfo


class WithContext(nn.Module):
    """Runs as its segmentation network (sliding windows, fine-tuning, export); ``segment`` also runs
    ``context_network`` once over the whole brain, as the model ``context_info`` describes, and applies ``rule``."""

    def __init__(self, network: nn.Module, context: nn.Module, context_info: ModelInfo, rule: ContextRule):
        super().__init__()
        self.network = network
        self.context_network = context
        self.context_info = context_info
        self.rule = rule

    def forward(self, x):
        return self.network(x)
