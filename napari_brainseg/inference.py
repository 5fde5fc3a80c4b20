"""Run a model on a case: device choice with CPU fallback, normalisation, brain crop, windowing.

The network sees the brain's bounding box only, normalised per channel over brain voxels
(:mod:`napari_brainseg.preprocess`), by a Gaussian-weighted sliding window (default: the training patch size)
or in one pass over the whole box (fastest, but less accurate for the bundled model). A torch model runs
through MONAI's ``sliding_window_inference`` on any device; an ONNX export
(:class:`~napari_brainseg.onnx_model.OnnxModel`) through the same window in numpy
(:mod:`napari_brainseg.window`) on the CPU, without importing torch or MONAI: this module imports torch only
when a torch model runs. Test-time flips (torch only)
average the sigmoid outputs of mirrored inputs; their spread is the voxel-wise uncertainty.

Example:
    >>> from napari_brainseg.io import load_case
    >>> from napari_brainseg.model import load_model
    >>> model, info = load_model("bundled")  # doctest: +SKIP
    >>> result = segment(load_case(path).image, model, device="cpu")  # doctest: +SKIP
    >>> result.labels.dtype, sorted(set(result.labels.ravel()))  # doctest: +SKIP
    (dtype('uint8'), [0, 1, 2, 4])
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .labels import BACKGROUND, NCR, labels_from_regions, minor_components, small_enhancing
from .onnx_model import OnnxModel
from .preprocess import BRAIN_MARGIN, brain_box, normalise  # noqa: F401 -- BRAIN_MARGIN re-exported
from .window import OVERLAP, count_windows, sliding_window

if TYPE_CHECKING:
    import torch
    from torch import nn

DEVICES = ("auto", "cpu", "cuda", "mps")
NET_MULTIPLE = 16
FLIP_AXES: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,))
WINDOW = (96, 96, 96)
"""Sliding window of 3-D models: the bundled model's training patch (see weights/MODEL_CARD.md for the choice)."""
WINDOW_BATCH = 2
"""Windows per network call. On the CPU (torch 2.13, 2 threads) a batch of two (or four) 96^3 windows costs
2.3x less per window than one window alone (``benchmarks/window_batch.py``)."""
AUTO = "auto"
"""``roi_size`` that lets the model decide: :data:`WINDOW` for a 3-D network, one pass for a slice network."""
MIN_COMPONENT_FRACTION = 0.1
"""Default clean-up: drop tumour components smaller than this share of the largest."""
MIN_ENHANCING_VOXELS = 0
"""Default small-ET rule: an enhancing tumour of fewer voxels than this in all becomes NCR/NET (0: off)."""

ProgressCallback = Callable[[int, int], None]


class DeviceError(RuntimeError):
    """A compute device that was asked for but is not available."""


class Cancelled(Exception):
    """Raised inside inference when the caller asked it to stop."""


@dataclass
class Segmentation:
    """The result of :func:`segment`, in the same (display) space as the input image."""

    labels: np.ndarray
    probabilities: np.ndarray
    uncertainty: np.ndarray | None
    device: str
    seconds: float
    fell_back_to_cpu: bool = False
    backend: str = "torch"


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


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; a named device must be present."""
    import torch

    name = name.lower()
    if name not in DEVICES:
        raise DeviceError(f"Unknown device {name!r}; choose one of {', '.join(DEVICES)}.")
    available = available_devices()
    if name == "auto":
        return torch.device(available[0])
    if name not in available:
        raise DeviceError(
            f"{name.upper()} was asked for but is not available on this machine "
            f"(available: {', '.join(available)}). Choose 'auto' or 'cpu'."
        )
    return torch.device(name)


def _round_up(size: int, multiple: int = NET_MULTIPLE) -> int:
    return int(math.ceil(size / multiple) * multiple)


def default_window(model: nn.Module | OnnxModel) -> tuple[int, ...] | None:
    """A model's own way through a case: a 2.5-D slice network sees the whole box at once (every slice with
    its true neighbours, each slice whole, as in training), a 3-D network a sliding :data:`WINDOW`; an ONNX
    export the window its metadata give."""
    if isinstance(model, OnnxModel):
        return model.window
    from .slice_network import SliceNetwork

    return None if isinstance(model, SliceNetwork) else WINDOW


def _counting(
    predict: Callable[[Any], Any], total: int, progress: ProgressCallback | None, should_stop: Callable[[], bool] | None
) -> Callable[[Any], Any]:
    """``predict`` that first checks ``should_stop`` and afterwards reports the windows done of ``total``."""
    done = 0

    def window(batch):
        nonlocal done
        if should_stop is not None and should_stop():
            raise Cancelled("Segmentation cancelled.")
        out = predict(batch)
        done += batch.shape[0]
        if progress is not None:
            progress(done, total)
        return out

    return window


def _flip_passes(x: torch.Tensor, flips: Sequence[tuple[int, ...]]):
    import torch

    for axes in flips:
        yield axes, (torch.flip(x, axes) if axes else x)


def predict_regions(
    model: nn.Module,
    image: np.ndarray,
    device: torch.device,
    roi_size: Sequence[int] | None = None,
    overlap: float = OVERLAP,
    tta: bool = False,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean sigmoid WT/TC/ET probabilities for a normalised (C, Z, Y, X) crop, and their TTA spread.

    ``roi_size=None`` runs the whole crop in one pass (padded to a multiple of 16).
    """
    import torch
    from monai.inferers import sliding_window_inference

    flips = FLIP_AXES if tta else FLIP_AXES[:1]
    roi = list(roi_size) if roi_size else [_round_up(s) for s in image.shape[1:]]
    window = _counting(model, count_windows(image.shape[1:], roi, overlap) * len(flips), progress, should_stop)
    x = torch.from_numpy(image[None]).to(device)
    members = []
    with torch.inference_mode():
        for axes, flipped in _flip_passes(x, flips):
            logits = sliding_window_inference(flipped, roi, WINDOW_BATCH, window, overlap=overlap,
                                                mode="gaussian")
            probs = torch.sigmoid(logits)
            members.append((torch.flip(probs, axes) if axes else probs)[0].float().cpu().numpy())
    stack = np.stack(members)
    spread = stack.std(axis=0).max(axis=0) if len(members) > 1 else None
    return stack.mean(axis=0), spread


def predict_regions_onnx(
    model: OnnxModel,
    image: np.ndarray,
    roi_size: Sequence[int] | None = None,
    overlap: float = OVERLAP,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """:func:`predict_regions` for an ONNX export, on the CPU in numpy (no flips): WT/TC/ET probabilities."""
    from scipy.special import expit

    roi = list(roi_size) if roi_size else [_round_up(s) for s in image.shape[1:]]
    window = _counting(model, count_windows(image.shape[1:], roi, overlap), progress, should_stop)
    return expit(sliding_window(image, roi, window, overlap=overlap, batch=WINDOW_BATCH))


def _run_with_cpu_fallback(run: Callable[[torch.device], object], device: torch.device):
    """Run on ``device``; if an accelerator lacks an op or returns NaN, run again on the CPU."""
    import torch

    if device.type == "cpu":
        return run(device), False
    try:
        result = run(device)
    except Cancelled:
        raise
    except (RuntimeError, NotImplementedError, TypeError) as err:
        warnings.warn(f"{device.type.upper()} failed ({str(err).splitlines()[0]}); running on CPU instead.")
        return run(torch.device("cpu")), True
    if np.isnan(result[0]).any():
        warnings.warn(f"{device.type.upper()} returned NaN probabilities; running on CPU instead.")
        return run(torch.device("cpu")), True
    return result, False


def labels_from_probabilities(probabilities: np.ndarray, brain: np.ndarray, threshold: float = 0.5,
                              min_component_fraction: float = MIN_COMPONENT_FRACTION,
                              min_enhancing_voxels: int = MIN_ENHANCING_VOXELS) -> np.ndarray:
    """BraTS labels from (3, Z, Y, X) WT/TC/ET probabilities: threshold inside the brain, then the clean-ups.

    Tumour components smaller than ``min_component_fraction`` of the largest are dropped (0 keeps all); then an
    enhancing tumour of fewer than ``min_enhancing_voxels`` voxels in all becomes NCR/NET (0: off).
    """
    labels = labels_from_regions((probabilities > threshold) & brain)
    if min_component_fraction > 0:
        labels[minor_components(labels, min_component_fraction)] = BACKGROUND
    if min_enhancing_voxels > 0:
        labels[small_enhancing(labels, min_enhancing_voxels)] = NCR
    return labels


def segment(
    image: np.ndarray,
    model: nn.Module | OnnxModel,
    device: str | torch.device = "auto",
    roi_size: Sequence[int] | str | None = AUTO,
    overlap: float | None = None,
    tta: bool = False,
    threshold: float = 0.5,
    min_component_fraction: float = MIN_COMPONENT_FRACTION,
    min_enhancing_voxels: int = MIN_ENHANCING_VOXELS,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Segmentation:
    """Segment a raw (4, Z, Y, X) stack into BraTS labels {0, 1, 2, 4} of shape (Z, Y, X).

    ``model`` is a torch network or an ONNX export (CPU only, no ``tta``). ``roi_size`` is a sliding window,
    ``None`` one pass over the brain box, and ``"auto"`` the model's own choice (:func:`default_window`);
    ``overlap`` ``None`` is the model's own (an export's metadata, else 0.25). Tumour components
    smaller than ``min_component_fraction`` of the largest are dropped (0 keeps all), and an enhancing tumour
    of fewer than ``min_enhancing_voxels`` voxels becomes NCR/NET (see :func:`labels_from_probabilities`).
    """
    start = time.perf_counter()
    onnx = isinstance(model, OnnxModel)
    if roi_size == AUTO:
        roi_size = default_window(model)
    if overlap is None:
        overlap = model.overlap if onnx else OVERLAP
    if onnx and tta:
        raise ValueError("Test-time flips run with the torch backend; load the model for torch to use them.")
    if onnx and str(device) not in ("auto", "cpu"):
        raise DeviceError(f"An ONNX model runs on the CPU, not {str(device).upper()}; use the torch backend there.")
    box = brain_box(image)
    crop = normalise(image[(slice(None), *box)])
    if onnx:
        probs_crop = predict_regions_onnx(model, crop, roi_size, overlap, progress, should_stop)
        spread_crop, fell_back, device_name = None, False, "cpu"
    else:
        import torch

        dev = device if isinstance(device, torch.device) else select_device(device)

        def run(d: torch.device):
            return predict_regions(model.to(d), crop, d, roi_size, overlap, tta, progress, should_stop)

        (probs_crop, spread_crop), fell_back = _run_with_cpu_fallback(run, dev)
        device_name = "cpu" if fell_back else dev.type
    probabilities = np.zeros((probs_crop.shape[0], *image.shape[1:]), dtype=np.float32)
    probabilities[(slice(None), *box)] = probs_crop
    uncertainty = None
    if spread_crop is not None:
        uncertainty = np.zeros(image.shape[1:], dtype=np.float32)
        uncertainty[box] = spread_crop
    brain = np.any(image != 0, axis=0)
    labels = labels_from_probabilities(probabilities, brain, threshold, min_component_fraction, min_enhancing_voxels)
    return Segmentation(
        labels=labels,
        probabilities=probabilities,
        uncertainty=uncertainty,
        device=device_name,
        seconds=time.perf_counter() - start,
        fell_back_to_cpu=fell_back,
        backend="onnx" if onnx else "torch",
    )
