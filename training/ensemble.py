"""Join segmentation checkpoints into one ensemble checkpoint, whose probabilities are the mean of theirs.

The members may be different networks (say an 8-channel UNet and a 16-channel one) as long as they read the
same channels, normalised the same way, and write the same regions. The ensemble is an ordinary checkpoint
(``arch`` ``ensemble``): ``predict``, ``evaluate``, ``finetune``, ``export-onnx`` and the widgets take it
like any other model, at the cost of one pass of each member. With ``weights`` the mean is weighted per region, so
that each region can come from the member that finds it best (the bundled model since v1.6.0: the whole tumour from
one network, the core and enhancing tumour from another). With ``core_gate`` the core and enhancing tumour are kept
only inside the tumour that one member finds on its own (since v1.6.1, the core's own network:
:func:`~napari_brainseg.inference.gate_core`).

Example (two small untrained networks stand for two trained models):
    >>> from napari_brainseg.model import ModelInfo, build_network, load_model, save_checkpoint
    >>> infos = [ModelInfo(model_id=f"m{i}", arch_kwargs={"spatial_dims": 3, "in_channels": 4, "out_channels": 3,
    ...                                                   "channels": [4 * i, 8], "strides": [2]}) for i in (1, 2)]
    >>> paths = [save_checkpoint(f"m{i}.pt", build_network(info), info) for i, info in enumerate(infos)]
    >>> path, rows = ensemble_checkpoints(paths, "ensemble.pt", model_id="both")
    >>> model, info = load_model(path)
    >>> info.arch, len(model.members), info.parent
    ('ensemble', 2, 'm1 + m2')
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from napari_brainseg.ensemble_network import region_weights
from napari_brainseg.model import (
    ENSEMBLE_ARCH,
    OUTPUT,
    OUTPUT_BEFORE_THRESHOLDS,
    CheckpointError,
    ModelInfo,
    build_network,
    load_model,
    save_checkpoint,
)

from .average import check_joining, validation_cases
from .evaluate import evaluate_cases, mean_scores

MUST_AGREE = ("channels", "normalisation", "output", "labels", "orientation", "patch_size")
"""What every member must share with the first: what it reads, how, and what it writes."""


def _agree(key: str, first: Any, other: Any) -> bool:
    """Whether two models say the same of ``key``; outputs that differ only in how they state their thresholds do
    (an ensemble has thresholds of its own)."""
    return first == other or (key == "output" and {first, other} <= {OUTPUT, OUTPUT_BEFORE_THRESHOLDS})


def _check_compatible(first: ModelInfo, other: ModelInfo, name: str) -> None:
    for key in MUST_AGREE:
        if not _agree(key, getattr(first, key), getattr(other, key)):
            raise CheckpointError(
                f"{name} ({other.model_id}) differs from the first model ({first.model_id}) in its {key} "
                f"({getattr(other, key)!r} against {getattr(first, key)!r}); only models that read and write "
                "the same can be averaged."
            )


def ensemble_info(infos: Sequence[ModelInfo], paths: Sequence[str | Path], model_id: str | None = None,
                  version: str | None = None, weights: Sequence[Sequence[float]] | None = None,
                  core_gate: int | None = None) -> ModelInfo:
    """The description of an ensemble of the models ``infos`` (read from ``paths``), its mean weighted by ``weights``
    (one row per member, one weight per region; default: equal; see :func:`~.ensemble_network.region_weights`),
    its core bounded by the member ``core_gate``'s own tumour when given (counted from 0; see
    :func:`~napari_brainseg.inference.gate_core`).

    It trained on every case any member trained on; its validation cases are those that every member kept
    out of training.
    """
    first = infos[0]
    trained = sorted({case for info in infos for case in info.train_cases})
    unseen = [case for case in first.val_cases
              if all(case in info.val_cases for info in infos) and case not in trained]
    shared = {key: first.arch_kwargs[key] for key in ("in_channels", "out_channels")}
    members = {"members": [{"arch": i.arch, "arch_kwargs": i.arch_kwargs} for i in infos]}
    if weights is not None:
        members["weights"] = region_weights(weights, len(infos), shared["out_channels"])
    if core_gate is not None:
        if not 0 <= core_gate < len(infos):
            raise ValueError(f"The core gate must be one of the {len(infos)} checkpoints; got number {core_gate + 1}.")
        members["core_gate"] = core_gate
    return ModelInfo(
        model_id=model_id or f"{first.model_id}-ensemble", version=version or first.version, arch=ENSEMBLE_ARCH,
        arch_kwargs={**shared, **members},
        **{key: getattr(first, key) for key in MUST_AGREE},
        train_cases=trained, val_cases=unseen,
        corrected_cases=sorted({case for info in infos for case in info.corrected_cases}),
        parent=" + ".join(info.model_id for info in infos),
        training={"ensemble": [{"path": str(path), "model_id": info.model_id, "version": info.version,
                                "training": info.training} for path, info in zip(paths, infos)]},
    )


def ensemble_checkpoints(paths: Sequence[str | Path], out: str | Path, model_id: str | None = None,
                         version: str | None = None, half: bool = False,
                         val_data: Sequence[str | Path] | None = None, device: str = "cpu",
                         thresholds: Sequence[float] | None = None,
                         second_pass: bool | None = None,
                         wt_growth: Sequence[float] | None = None,
                         weights: Sequence[Sequence[float]] | None = None,
                         core_gate: int | None = None) -> tuple[Path, list[dict]]:
    """Write the ensemble of the checkpoints ``paths`` to ``out`` (never overwritten), its mean weighted per region
    by ``weights`` (one row per checkpoint; default: equal), its core bounded by checkpoint ``core_gate``'s own
    tumour when given (counted from 0; see :func:`ensemble_info`), with ``thresholds`` (default
    0.5 each) as its :attr:`~napari_brainseg.model.ModelInfo.thresholds`, ``second_pass`` (default off) as its
    :attr:`~napari_brainseg.model.ModelInfo.second_pass` and ``wt_growth`` (default none) as its
    :attr:`~napari_brainseg.model.ModelInfo.wt_growth`.

    With ``val_data`` it is scored on its validation cases found there (see :func:`ensemble_info`), and those
    scores become its ``metrics`` (returned per case too). ``half`` stores fp16 weights, and scores them as stored.
    """
    out = check_joining(paths, out, "An ensemble", thresholds, wt_growth)
    loaded = [load_model(path) for path in paths]
    for path, (_, info) in zip(paths[1:], loaded[1:]):
        _check_compatible(loaded[0][1], info, Path(path).name)
    info = ensemble_info([i for _, i in loaded], paths, model_id, version, weights, core_gate)
    if thresholds:
        info.set_thresholds(thresholds)
    info.second_pass = bool(second_pass)
    info.set_wt_growth(wt_growth or ())
    network = build_network(info)
    with torch.no_grad():
        for member, (model, _) in zip(network.members, loaded):
            member.load_state_dict(model.state_dict())
            if half:
                for value in member.state_dict().values():
                    if value.is_floating_point():
                        value.copy_(value.half().float())
    rows = []
    if val_data:
        rows = evaluate_cases(network.eval(), validation_cases(val_data, info.val_cases), device=device,
                              **info.segment_options())
    info.metrics = mean_scores(rows) if rows else {}
    return save_checkpoint(out, network, info, half=half), rows
