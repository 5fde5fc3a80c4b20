"""The compute devices a model can run on: their names, which are present, and the choice of one.

:data:`DEVICES` is the one list of names that the command lines and the widgets offer; importing this
module does not import torch (the command line checks its arguments before torch loads).

Example:
    >>> DEVICES
    ('auto', 'cpu', 'cuda', 'mps')
    >>> available_devices()[-1], select_device("cpu").type
    ('cpu', 'cpu')
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

AUTO_DEVICE = "auto"
DEVICES: tuple[str, ...] = (AUTO_DEVICE, "cpu", "cuda", "mps")
"""Every device name accepted: ``auto`` (the best present), then each kind of device."""


def cpu_threads() -> int:
    """The CPU threads numpy-side work may use: ``OMP_NUM_THREADS`` when set (as torch does), else every CPU this
    process may run on."""
    try:
        return max(int(os.environ["OMP_NUM_THREADS"]), 1)
    except (KeyError, ValueError):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class DeviceError(RuntimeError):
    """A compute device that was asked for but is not available."""


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def available_devices() -> list[str]:
    """The devices this machine can run on, best first, always ending with ``"cpu"``."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if _mps_available():
        found.append("mps")
    return found + ["cpu"]


def select_device(name: str = AUTO_DEVICE) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; a named device must be present."""
    import torch

    name = name.lower()
    if name not in DEVICES:
        raise DeviceError(f"Unknown device {name!r}; choose one of {', '.join(DEVICES)}.")
    available = available_devices()
    if name == AUTO_DEVICE:
        return torch.device(available[0])
    if name not in available:
        raise DeviceError(
            f"{name.upper()} was asked for but is not available on this machine "
            f"(available: {', '.join(available)}). Choose 'auto' or 'cpu'."
        )
    return torch.device(name)
