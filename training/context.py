"""Join a segmentation checkpoint and a context network (``train --scale 2``) into one checkpoint.

The result segments as the first does, and takes the context network's whole tumour where
:class:`~napari_brainseg.context.ContextRule` says (:mod:`napari_brainseg.context`). ``predict``, ``evaluate``,
``export-onnx``, ``finetune`` (which trains the segmentation network) and the widgets take it like any model.

Example (two small untrained networks stand for the trained ones):
    >>> from napari_brainseg.model import ModelInfo, build_network, load_model, save_checkpoint
    >>> kwargs = {"spatial_dims": 3, "in_channels": 4, "out_channels": 3, "channels": [4, 8], "strides": [2]}
    >>> seg, ctx = ModelInfo(model_id="seg", arch_kwargs=kwargs), ModelInfo(model_id="ctx", arch_kwargs=kwargs, scale=2)
    >>> paths = [save_checkpoint(f"{i.model_id}.pt", build_network(i), i) for i in (seg, ctx)]
    >>> model, info = load_model(add_context(*paths, "both.pt", version="2.0.0"))
    >>> info.arch, info.model_id, info.version, type(model).__name__
    ('with-context', 'seg', '2.0.0', 'WithContext')
"""

from __future__ import annotations

from pathlib import Path

import torch

from napari_brainseg.context import ContextRule, with_context_info
from napari_brainseg.model import CONTEXT_ARCH, build_network, load_model, save_checkpoint


def add_context(checkpoint: str | Path, context: str | Path, out: str | Path, rule: ContextRule = ContextRule(),
                version: str | None = None, half: bool = False) -> Path:
    """Write ``checkpoint`` with ``context`` as its context network under ``rule`` to ``out`` (never overwritten).

    ``context`` is a context network's checkpoint, or a model with a context network, whose context network is taken
    (the rule is ``rule`` either way).
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new file name (it is never overwritten).")
    network, info = load_model(checkpoint)
    context_network, context_info = load_model(context)
    if context_info.arch == CONTEXT_ARCH:
        context_network, context_info = context_network.context_network, context_network.context_info
    joined = with_context_info(info, context_info, rule)
    joined.version = version or info.version
    model = build_network(joined)
    with torch.no_grad():
        model.network.load_state_dict(network.state_dict())
        model.context_network.load_state_dict(context_network.state_dict())
    return save_checkpoint(out, model, joined, half=half)
