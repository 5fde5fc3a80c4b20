"""A context network's say in the whole tumour: a coarse second opinion for tumours found too small.

The segmentation network reads 96^3 windows of 1 mm voxels and finds large tumours too small, confidently
(weights/MODEL_CARD.md, *Session 16*). A context network reads the whole brain at once, 2 mm voxels in one
window (``info.scale`` 2, :mod:`.resample`): it finds large tumours whole, and small ones too large (*Session
17*). So its opinion is taken only when it sees a large tumour that the segmentation network found much smaller:
when its whole tumour holds at least :attr:`ContextRule.min_voxels` voxels and at least
:attr:`ContextRule.min_ratio` times the segmentation's. Then the whole-tumour probability is the weighted mean of
both, thresholded, cleaned up and grown as the segmentation's own; TC and ET stay the segmentation network's.

A model with a context network is one checkpoint (``arch`` :data:`CONTEXT_ARCH`, written by
``napari-brainseg add-context``); its ``arch_kwargs`` hold both networks and the rule.

Plain numpy, so that both inference backends share it without importing torch.

Example (a context that sees twice the tumour the segmentation found):
    >>> import numpy as np
    >>> rule = ContextRule(min_voxels=8, min_ratio=1.25, weight=0.5)
    >>> labels = np.zeros((4, 4, 4), np.uint8); labels[1:3, 1:3, 1] = 2
    >>> context_labels = np.zeros_like(labels); context_labels[1:3, 1:3, 1:3] = 2
    >>> context_fires(labels, context_labels, rule)
    True
    >>> context_fires(context_labels, context_labels, rule)
    False
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .labels import BACKGROUND
from .model import CONTEXT_ARCH, ModelInfo

CONTEXT_FIELDS = ("model_id", "version", "arch", "arch_kwargs", "normalisation", "thresholds", "scale", "patch_size",
                  "train_cases", "val_cases")
"""What a model with a context network keeps of the context model's description."""


@dataclass(frozen=True)
class ContextRule:
    """When and how much the context network's whole tumour counts (chosen in weights/MODEL_CARD.md, *Session 17*)."""

    min_voxels: int = 100_000
    """The context's whole tumour must hold at least this many voxels of the case's grid (100 ml at 1 mm)..."""
    min_ratio: float = 1.25
    """... and at least this many times the segmentation's whole tumour."""
    weight: float = 0.5
    """The context's share of the whole-tumour probability when it counts."""

    def __post_init__(self) -> None:
        if self.min_voxels < 0 or self.min_ratio < 0 or not 0 < self.weight <= 1:
            raise ValueError(f"A context rule needs min_voxels and min_ratio of at least 0 and a weight in (0, 1]; "
                             f"got {self}.")


def context_info(info: ModelInfo) -> ModelInfo:
    """The description of the context model inside a model with a context network."""
    return ModelInfo(**info.arch_kwargs["context"])


def network_info(info: ModelInfo) -> ModelInfo:
    """The description of the segmentation network inside a model with a context network."""
    kept = {k: v for k, v in asdict(info).items() if k not in ("arch", "arch_kwargs")}
    network = info.arch_kwargs["network"]
    return ModelInfo(**kept, arch=network["arch"], arch_kwargs=network["arch_kwargs"])


def context_rule(info: ModelInfo) -> ContextRule:
    """The rule of a model with a context network."""
    return ContextRule(**info.arch_kwargs["rule"])


def with_context_info(info: ModelInfo, context: ModelInfo, rule: ContextRule) -> ModelInfo:
    """``info`` (a segmentation model) with ``context`` as its context network, under ``rule``."""
    if context.scale < 2:
        raise ValueError(f"{context.model_id} reads cases on their own grid (scale 1); a context network reads them "
                         "coarser: train it with `napari-brainseg train --scale 2`.")
    if info.arch == CONTEXT_ARCH:
        raise ValueError(f"{info.model_id} already has a context network.")
    if info.channels != context.channels:
        raise ValueError(f"{context.model_id} reads {context.channels}, {info.model_id} reads {info.channels}; a "
                         "context network must read the same channels.")
    kept = {k: v for k, v in asdict(info).items() if k not in ("arch", "arch_kwargs")}
    arch_kwargs: dict[str, Any] = {
        "network": {"arch": info.arch, "arch_kwargs": info.arch_kwargs},
        "context": {key: getattr(context, key) for key in CONTEXT_FIELDS},
        "rule": asdict(rule),
    }
    return ModelInfo(**kept, arch=CONTEXT_ARCH, arch_kwargs=arch_kwargs)


def context_fires(labels: np.ndarray, context_labels: np.ndarray, rule: ContextRule) -> bool:
    """Whether the context's whole tumour is large, and much larger than the segmentation's."""
    found = np.count_nonzero(labels != BACKGROUND)
    seen = np.count_nonzero(context_labels != BACKGROUND)
    return bool(seen >= rule.min_voxels and seen >= rule.min_ratio * found)


def whole_tumour_with_context(probabilities: np.ndarray, context_probabilities: np.ndarray,
                              rule: ContextRule) -> np.ndarray:
    """The (3, Z, Y, X) probabilities with the whole tumour's the rule's weighted mean of both (TC, ET kept)."""
    mixed = probabilities.copy()
    mixed[0] = (1 - rule.weight) * probabilities[0] + rule.weight * context_probabilities[0]
    return mixed
