"""Which engine runs a model: ONNX Runtime on the CPU (no torch, no MONAI), torch on CUDA/MPS and for test-time flips.

``auto`` (the default of ``predict``, the Segment widget and ``training evaluate``) takes ONNX Runtime when
the model runs on the CPU without test-time flips, and torch otherwise. Whether a GPU could be present is
first judged from the installed torch build without importing it (a CPU-only build cannot see one), so the
CPU path does not pay torch's import. If a checkpoint has no usable ONNX export and none can be made,
``auto`` warns and runs it with torch; an explicit ``onnx`` fails with the reason.

Usage (not run as a doctest: it needs real data or writes files)::

    loaded = load_for_inference("bundled")
    loaded.backend, loaded.device, loaded.info.model_id
    ('onnx', 'cpu', 'brainseg-unet3d16-brats2018')
"""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .devices import DEVICES, DeviceError, select_device

if TYPE_CHECKING:
    from .model import ModelInfo

AUTO, TORCH, ONNX = "auto", "torch", "onnx"
BACKENDS = (AUTO, TORCH, ONNX)
"""Every backend name accepted (importing this module imports only :mod:`~napari_brainseg.devices`)."""
BACKEND_HELP = "auto: ONNX Runtime on the CPU (no torch), torch on CUDA/MPS and with --tta"
ACCELERATORS = ("cuda", "mps")


@dataclass
class LoadedModel:
    """A model ready for :func:`napari_brainseg.inference.segment`, with the engine and device it runs on."""

    model: Any  # an OnnxModel, or a torch module
    info: ModelInfo
    backend: str
    device: str


def torch_may_have_accelerator() -> bool:
    """Whether the installed torch could see a GPU (CUDA, ROCm or Apple MPS), judged without importing it."""
    if sys.platform == "darwin":
        return True
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    try:
        text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text()
    except OSError:
        return True
    return any(re.search(rf"^{name}\b[^=\n]*=\s*(?!None\s*$)\S", text, re.M) for name in ("cuda", "hip"))


def _check_device(device: str) -> str:
    device = device.lower()
    if device not in DEVICES:
        raise DeviceError(f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    return device


def choose_backend(backend: str = AUTO, device: str = "auto", tta: bool = False) -> tuple[str, str]:
    """The engine and device a model will run on: ``(backend, device)``, e.g. ``("onnx", "cpu")``.

    An ``auto`` device stays ``auto`` for torch (resolved when the model is loaded).
    """
    device = _check_device(device)
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if backend == ONNX:
        if tta:
            raise ValueError("Test-time flips run with the torch backend; choose backend 'torch' or 'auto'.")
        if device in ACCELERATORS:
            raise ValueError(f"The ONNX backend runs on the CPU; choose device 'cpu', or backend 'torch' for "
                             f"{device.upper()}.")
        return ONNX, "cpu"
    if backend == TORCH or tta or device in ACCELERATORS:
        return TORCH, device
    if device == "auto" and torch_may_have_accelerator() and select_device("auto").type != "cpu":
        return TORCH, device
    return ONNX, "cpu"


def load_for_inference(model: str | Path = "bundled", backend: str = AUTO, device: str = "auto",
                       tta: bool = False) -> LoadedModel:
    """Load ``"bundled"`` or a checkpoint for the engine :func:`choose_backend` picks."""
    engine, device = choose_backend(backend, device, tta)
    if engine == ONNX:
        from .onnx_model import OnnxModelError, load_onnx_model

        try:
            onnx_model = load_onnx_model(model)
            return LoadedModel(onnx_model, onnx_model.info, ONNX, "cpu")
        except OnnxModelError as err:
            if backend == ONNX:
                raise
            warnings.warn(f"{err} Running it with torch instead.", stacklevel=2)
    from .model import load_model

    network, info = load_model(model)
    return LoadedModel(network, info, TORCH, select_device(device).type)
