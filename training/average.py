"""Average the weights of several checkpoints of one network (stochastic weight averaging, after the fact).

The checkpoints a run keeps at the end of each epoch (``--keep-checkpoints``) lie along the path the
optimiser took; their mean sits nearer the centre of that low-loss region than any one of them, which
tends to generalise better (Izmailov et al., "Averaging Weights Leads to Wider Optima and Better
Generalization", 2018). The networks here use instance normalisation, so the mean needs no pass over
the data to refresh batch statistics.

Example:
    >>> paths = sorted(Path("RUN_DIR/epochs").glob("model-e*.pt"))[-20:]  # doctest: +SKIP
    >>> average_checkpoints(paths, "averaged.pt")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from napari_brainseg.model import CheckpointError, build_network, info_from_dict, read_checkpoint, save_checkpoint


def _same_network(first: dict, other: dict, name: str) -> None:
    a, b = first["info"], other["info"]
    if (a["arch"], a["arch_kwargs"]) != (b["arch"], b["arch_kwargs"]):
        raise CheckpointError(
            f"{name} holds a different network ({b['arch']} {b['arch_kwargs']}) from the first checkpoint "
            f"({a['arch']} {a['arch_kwargs']}); only checkpoints of one network can be averaged."
        )


def average_checkpoints(paths: Sequence[str | Path], out: str | Path, version: str | None = None,
                        half: bool = False) -> Path:
    """Write the mean of the checkpoints' weights to ``out``, described by the last checkpoint's info.

    The new checkpoint records the files it averages (``training["averaged"]``); its ``metrics`` are
    emptied, since the last checkpoint's scores are not the average's. ``half`` stores fp16 weights.
    """
    if len(paths) < 2:
        raise ValueError(f"Averaging needs at least two checkpoints, got {len(paths)}.")
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose a new file name (it is never overwritten).")
    payloads = [read_checkpoint(p) for p in paths]
    for path, payload in zip(paths[1:], payloads[1:]):
        _same_network(payloads[0], payload, Path(path).name)
    states = [p["state_dict"] for p in payloads]
    mean = {}
    for key, value in states[-1].items():
        if value.is_floating_point():
            mean[key] = torch.stack([s[key].double() for s in states]).mean(0).float()
        else:
            mean[key] = value
    info = info_from_dict(payloads[-1]["info"])
    info.training = {**info.training, "averaged": [str(p) for p in paths]}
    info.metrics = {}
    if version:
        info.version = version
    network = build_network(info)
    network.load_state_dict(mean)
    return save_checkpoint(out, network, info, half=half)
