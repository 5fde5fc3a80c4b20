"""Average the weights of several checkpoints of one network (stochastic weight averaging, after the fact).

The checkpoints a run keeps at the end of each epoch (``--keep-checkpoints``) lie along the path the
optimiser took; their mean sits nearer the centre of that low-loss region than any one of them, which
tends to generalise better (Izmailov et al., "Averaging Weights Leads to Wider Optima and Better
Generalization", 2018). The networks here use instance normalisation, so the mean needs no pass over
the data to refresh batch statistics.

Example (two small untrained networks stand for a run's last epochs, ``RUN_DIR/epochs/model-e*.pt``):
    >>> from napari_brainseg.model import ModelInfo, build_network, load_model, save_checkpoint
    >>> info = ModelInfo(model_id="run", arch_kwargs={"spatial_dims": 3, "in_channels": 4, "out_channels": 3,
    ...                                               "channels": [4, 8], "strides": [2]})
    >>> paths = [save_checkpoint(f"model-e{i:03d}.pt", build_network(info), info) for i in (1, 2)]
    >>> path, rows = average_checkpoints(paths, "averaged.pt")
    >>> first, second, mean = (load_model(p)[0].state_dict() for p in (*paths, path))
    >>> all(torch.allclose(mean[k], (first[k] + second[k]) / 2) for k in mean if mean[k].is_floating_point())
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from napari_brainseg.inference import check_growth, region_thresholds
from napari_brainseg.io import BratsInputError, CaseFiles
from napari_brainseg.model import CheckpointError, build_network, info_from_dict, read_checkpoint, save_checkpoint

from .data import discover_cases
from .evaluate import evaluate_cases, mean_scores


def _same_network(first: dict, other: dict, name: str) -> None:
    a, b = first["info"], other["info"]
    if (a["arch"], a["arch_kwargs"]) != (b["arch"], b["arch_kwargs"]):
        raise CheckpointError(
            f"{name} holds a different network ({b['arch']} {b['arch_kwargs']}) from the first checkpoint "
            f"({a['arch']} {a['arch_kwargs']}); only checkpoints of one network can be averaged."
        )


def validation_cases(data: Sequence[str | Path], val_ids: Sequence[str]) -> list[CaseFiles]:
    cases = [c for c in discover_cases(data) if c.case_id in set(val_ids)]
    if not cases:
        raise BratsInputError(
            f"None of the model's validation cases ({', '.join(val_ids) or 'none recorded'}) is in "
            f"{', '.join(map(str, data))}; give the folder they came from, or average without validating."
        )
    return cases


def check_joining(paths: Sequence[str | Path], out: str | Path, what: str,
                  thresholds: Sequence[float] | None = None, wt_growth: Sequence[float] | None = None) -> Path:
    """``out`` as a path, once sure that there are checkpoints enough to join, that ``thresholds`` and
    ``wt_growth`` (if any) are usable and that ``out`` is a new file."""
    if len(paths) < 2:
        raise ValueError(f"{what} needs at least two checkpoints, got {len(paths)}.")
    if thresholds is not None:
        region_thresholds(thresholds)
    if wt_growth:
        check_growth(wt_growth)
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new file name (it is never overwritten).")
    return out


def average_checkpoints(paths: Sequence[str | Path], out: str | Path, version: str | None = None,
                        half: bool = False, val_data: Sequence[str | Path] | None = None,
                        device: str = "cpu", thresholds: Sequence[float] | None = None,
                        second_pass: bool | None = None,
                        wt_growth: Sequence[float] | None = None) -> tuple[Path, list[dict]]:
    """Write the mean of the checkpoints' weights to ``out``, described by the last checkpoint's info
    (with ``thresholds``, ``second_pass`` and ``wt_growth``, when given, as its
    :attr:`~napari_brainseg.model.ModelInfo.thresholds`, :attr:`~napari_brainseg.model.ModelInfo.second_pass` and
    :attr:`~napari_brainseg.model.ModelInfo.wt_growth`; an empty ``wt_growth`` turns growth off).

    The new checkpoint records the files it averages (``training["averaged"]``). The last checkpoint's
    scores are not the average's: with ``val_data`` the average is scored on the model's own validation
    cases found there, and those scores become its ``metrics`` (returned per case too); without, its
    ``metrics`` are empty. ``half`` stores fp16 weights.
    """
    out = check_joining(paths, out, "Averaging", thresholds, wt_growth)
    payloads = [read_checkpoint(p) for p in paths]
    for path, payload in zip(paths[1:], payloads[1:]):
        _same_network(payloads[0], payload, Path(path).name)
    states = [p["state_dict"] for p in payloads]
    mean = {}
    for key, value in states[-1].items():
        if value.is_floating_point():
            mean[key] = torch.stack([s[key].double() for s in states]).mean(0).float()
            if half:  # scored as stored
                mean[key] = mean[key].half().float()
        else:
            mean[key] = value
    info = info_from_dict(payloads[-1]["info"])
    info.training = {**info.training, "averaged": [str(p) for p in paths]}
    if version:
        info.version = version
    if thresholds:
        info.set_thresholds(thresholds)
    if second_pass is not None:
        info.second_pass = second_pass
    if wt_growth is not None:
        info.set_wt_growth(wt_growth)
    network = build_network(info)
    network.load_state_dict(mean)
    rows = []
    if val_data:
        rows = evaluate_cases(network.eval(), validation_cases(val_data, info.val_cases), device=device,
                              **info.segment_options())
    info.metrics = {"averaged_checkpoints": len(paths), **mean_scores(rows)} if rows else {}
    return save_checkpoint(out, network, info, half=half), rows
