"""Run a model on a case: device choice with CPU fallback, normalisation, brain crop, windowing.

The network sees the brain's bounding box only, normalised per channel over brain voxels
(:mod:`napari_brainseg.preprocess`), by a Gaussian-weighted sliding window (default: the training patch size)
or in one pass over the whole box (fastest, but less accurate for the bundled model). A torch model runs
through MONAI's ``sliding_window_inference`` on any device; an ONNX export
(:class:`~napari_brainseg.onnx_model.OnnxModel`) through the same window in numpy
(:mod:`napari_brainseg.window`) on the CPU, without importing torch or MONAI: this module imports torch only
when a torch model runs. Test-time flips (torch only)
average the sigmoid outputs of mirrored inputs; their spread is the voxel-wise uncertainty.

Segmenting is long work (see :mod:`napari_brainseg.jobs`): ``progress`` hears of every batch of
windows, and once ``should_stop()`` is true no further batch starts and
:class:`~napari_brainseg.jobs.Cancelled` is raised.

Example (a small synthetic case; a real one is ``load_case(folder).image``):
    >>> import numpy as np
    >>> from napari_brainseg.io import MODALITIES
    >>> from napari_brainseg.model import load_model
    >>> from napari_brainseg.synthetic import synthetic_case
    >>> images, _ = synthetic_case(shape=(48, 56, 40))
    >>> model, info = load_model("bundled")
    >>> result = segment(np.stack([images[m] for m in MODALITIES]), model, device="cpu")
    >>> result.labels.dtype, result.labels.shape, set(np.unique(result.labels).tolist()) <= {0, 1, 2, 4}
    (dtype('uint8'), (48, 56, 40), True)
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from .context import context_fires, whole_tumour_with_context
from .devices import DEVICES, DeviceError, available_devices, select_device
from .jobs import Cancelled, ProgressCallback, ShouldStop, counted
from .labels import BACKGROUND, ED, NCR, REGION_NAMES, labels_from_regions, minor_components, small_enhancing
from .onnx_model import OnnxModel
from .preprocess import BRAIN_MARGIN, TUMOUR_EXCLUDED, Z_SCORE, brain_box, normalise
from .resample import downsample, upsample
from .window import OVERLAP, count_windows, sliding_window

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [  # devices, Cancelled, brain_box, normalise and count_windows were defined here once; still importable
    "AUTO", "BRAIN_MARGIN", "DEVICES", "Cancelled", "DeviceError", "Segmentation", "available_devices", "brain_box",
    "count_windows", "default_window", "gate_core", "normalise", "predict_regions", "predict_regions_onnx", "segment",
    "select_device",
]

NET_MULTIPLE = 16
FLIP_AXES: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,))
WINDOW = (96, 96, 96)
"""Sliding window of 3-D models: the bundled model's training patch (see weights/MODEL_CARD.md for the choice)."""
WINDOW_BATCH = 2
"""Windows per network call. On the CPU (torch 2.13, 2 threads) a batch of two (or four) 96^3 windows costs
2.3x less per window than one window alone (``benchmarks/window_batch.py``)."""
AUTO = "auto"
"""``roi_size`` that lets the model decide: :data:`WINDOW` for a 3-D network, one pass for a slice network."""
SEGMENT_STAGE = "segment"
"""The stage of the :class:`~napari_brainseg.jobs.Progress` that segmenting reports."""
SECOND_PASS_STAGE = "segment again"
"""The stage of a model's second pass. A large tumour inflates a channel's brain statistics (the FLAIR standard
deviation by up to 1.9 times over the 29 BraTS 2018 cases), so that its oedema looks fainter than in training;
normalised over the brain outside the first pass's tumour, the second pass finds more of the whole tumour
(weights/MODEL_CARD.md, *Session 11*). A model trained on input normalised outside the tumour
(:data:`~.preprocess.TUMOUR_EXCLUDED`) takes every region from it."""
SECOND_PASS_MAX_SHARE = 0.5
"""No second pass when the first pass's tumour covers this share of the brain box's brain or more: too little
tumour-free brain is left to normalise over."""
MIN_COMPONENT_FRACTION = 0.3
"""Default clean-up: drop tumour components smaller than this share of the largest (chosen on validation with
``benchmarks/postprocess.py``; see weights/MODEL_CARD.md)."""
MIN_ENHANCING_VOXELS = 0
"""Default small-ET rule: an enhancing tumour of fewer voxels than this in all becomes NCR/NET (0: off)."""
Thresholds = float | Sequence[float]
"""A probability threshold for every region, or one each for WT, TC and ET (a model's own:
:attr:`~napari_brainseg.model.ModelInfo.thresholds`)."""
Growth = Sequence[float] | None
"""Hysteresis for the whole tumour: ``(threshold, voxels)``, or ``None`` for none (a model's own:
:attr:`~napari_brainseg.model.ModelInfo.wt_growth`). See :func:`grow_whole_tumour`."""


def region_thresholds(threshold: Thresholds) -> np.ndarray:
    """``threshold`` as a (3, 1, 1, 1) array that broadcasts over (3, Z, Y, X) WT/TC/ET probabilities."""
    values = np.asarray(threshold, dtype=np.float64).reshape(-1)
    if values.size not in (1, 3) or not ((values > 0) & (values < 1)).all():
        raise ValueError(f"Thresholds must be one probability, or one each for WT, TC and ET, each between 0 and 1 "
                         f"(exclusive); got {threshold!r}.")
    return np.broadcast_to(values, (3,)).reshape(3, 1, 1, 1).astype(np.float32)


def check_growth(growth: Growth) -> tuple[float, int] | None:
    """``growth`` as ``(threshold, voxels)``, once sure that it is usable (``None`` stays ``None``)."""
    if growth is None:
        return None
    values = tuple(growth)
    if len(values) != 2 or not 0 < values[0] < 1 or values[1] != int(values[1]) or values[1] < 1:
        raise ValueError(f"Whole-tumour growth is a probability between 0 and 1 (exclusive) and a whole number of "
                         f"voxels of at least 1, e.g. (0.1, 5); got {growth!r}.")
    return float(values[0]), int(values[1])


def grow_whole_tumour(labels: np.ndarray, wt_probability: np.ndarray, brain: np.ndarray, growth: Growth) -> np.ndarray:
    """``labels`` whose whole tumour grows, as oedema, into brain voxels of whole-tumour probability over the
    growth threshold, joined to it within the growth's ``voxels`` (hysteresis thresholding).

    The tumour grows only from what thresholding and clean-up kept, so the lower threshold finds more of the
    border of a tumour the model found too small without adding islands far from it
    (weights/MODEL_CARD.md, *Session 16*).
    """
    growth = check_growth(growth)
    tumour = labels != BACKGROUND
    if growth is None or not tumour.any():
        return labels
    threshold, voxels = growth
    box = tuple(slice(max(int(i.min()) - voxels, 0), int(i.max()) + voxels + 1) for i in np.nonzero(tumour))
    allowed = tumour[box] | ((wt_probability[box] > threshold) & brain[box])
    grown = ndimage.binary_dilation(tumour[box], iterations=voxels, mask=allowed)
    out = labels.copy()
    out[box][grown & ~tumour[box]] = ED
    return out


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
    should_stop: ShouldStop | None = None,
    stage: str = SEGMENT_STAGE,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean sigmoid WT/TC/ET probabilities for a normalised (C, Z, Y, X) crop, and their TTA spread.

    ``roi_size=None`` runs the whole crop in one pass (padded to a multiple of 16). ``progress`` sees a
    :class:`~napari_brainseg.jobs.Progress` (``stage``, windows done of all) after each batch
    of windows; once ``should_stop()`` is true no further batch runs and
    :class:`~napari_brainseg.jobs.Cancelled` is raised.
    """
    import torch
    from monai.inferers import sliding_window_inference

    flips = FLIP_AXES if tta else FLIP_AXES[:1]
    roi = list(roi_size) if roi_size else [_round_up(s) for s in image.shape[1:]]
    total = count_windows(image.shape[1:], roi, overlap) * len(flips)
    window = counted(model, stage, total, progress, should_stop, size=lambda batch: batch.shape[0])

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
    should_stop: ShouldStop | None = None,
    stage: str = SEGMENT_STAGE,
) -> np.ndarray:
    """:func:`predict_regions` for an ONNX export, on the CPU in numpy (no flips): WT/TC/ET probabilities."""
    from scipy.special import expit

    roi = list(roi_size) if roi_size else [_round_up(s) for s in image.shape[1:]]
    total = count_windows(image.shape[1:], roi, overlap)
    window = counted(model, stage, total, progress, should_stop, size=lambda batch: batch.shape[0])
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


def labels_from_probabilities(probabilities: np.ndarray, brain: np.ndarray, threshold: Thresholds = 0.5,
                              min_component_fraction: float = MIN_COMPONENT_FRACTION,
                              min_enhancing_voxels: int = MIN_ENHANCING_VOXELS, wt_growth: Growth = None) -> np.ndarray:
    """BraTS labels from (3, Z, Y, X) WT/TC/ET probabilities: threshold inside the brain, then the clean-ups.

    A region takes the voxels whose probability is above its threshold (:func:`region_thresholds`).

    Tumour components smaller than ``min_component_fraction`` of the largest are dropped (0 keeps all); then an
    enhancing tumour of fewer than ``min_enhancing_voxels`` voxels in all becomes NCR/NET (0: off). Last, with
    ``wt_growth``, the whole tumour grows into voxels of lower probability joined to it (:func:`grow_whole_tumour`).
    """
    labels = labels_from_regions((probabilities > region_thresholds(threshold)) & brain)
    if min_component_fraction > 0:
        labels[minor_components(labels, min_component_fraction)] = BACKGROUND
    if min_enhancing_voxels > 0:
        labels[small_enhancing(labels, min_enhancing_voxels)] = NCR
    return grow_whole_tumour(labels, probabilities[0], brain, wt_growth)


def gate_core(probabilities: np.ndarray, brain: np.ndarray, threshold: Thresholds = 0.5,
               min_component_fraction: float = MIN_COMPONENT_FRACTION) -> np.ndarray:
    """The (3, Z, Y, X) WT/TC/ET probabilities of a gated ensemble's (4, Z, Y, X) output, whose fourth channel is
    its gate member's own whole tumour: TC and ET are kept only in the tumour that the gate's whole tumour and the
    core give once thresholded and cleaned up (:func:`labels_from_probabilities`).

    So a core network's false core, which its own larger whole tumour drops as a minor component, stays dropped
    beside another network's smaller whole tumour (weights/MODEL_CARD.md, *Session 20*).
    """
    if probabilities.shape[0] != len(REGION_NAMES) + 1:
        raise ValueError(f"A gated ensemble writes WT, TC, ET and its gate's whole tumour, 4 channels; got "
                         f"{probabilities.shape[0]}.")
    own = labels_from_probabilities(probabilities[[3, 1, 2]], brain, threshold, min_component_fraction)
    gated = probabilities[: len(REGION_NAMES)].copy()
    gated[1:] *= own != BACKGROUND
    return gated


def segment(
    image: np.ndarray,
    model: nn.Module | OnnxModel,
    device: str | torch.device = "auto",
    roi_size: Sequence[int] | str | None = AUTO,
    overlap: float | None = None,
    tta: bool = False,
    threshold: Thresholds = 0.5,
    min_component_fraction: float = MIN_COMPONENT_FRACTION,
    min_enhancing_voxels: int = MIN_ENHANCING_VOXELS,
    progress: ProgressCallback | None = None,
    should_stop: ShouldStop | None = None,
    normalisation: str = Z_SCORE,
    second_pass: bool = False,
    wt_growth: Growth = None,
    scale: int = 1,
) -> Segmentation:
    """Segment a raw (4, Z, Y, X) stack into BraTS labels {0, 1, 2, 4} of shape (Z, Y, X).

    ``model`` is a torch network or an ONNX export (CPU only, no ``tta``). ``roi_size`` is a sliding window,
    ``None`` one pass over the brain box, and ``"auto"`` the model's own choice (:func:`default_window`);
    ``overlap`` ``None`` is the model's own (an export's metadata, else 0.25). ``threshold`` is one probability
    for every region or one each for WT, TC and ET: pass the model's own (``info.thresholds``). Tumour components
    smaller than ``min_component_fraction`` of the largest are dropped (0 keeps all), and an enhancing tumour
    of fewer than ``min_enhancing_voxels`` voxels becomes NCR/NET (see :func:`labels_from_probabilities`).
    ``progress`` and ``should_stop`` report and cancel by batches of windows (:func:`predict_regions`).
    ``normalisation`` is the model's own (``info.normalisation``, :mod:`.preprocess`). With ``second_pass`` (the
    model's ``info.second_pass``) the whole tumour comes from a second pass whose input is normalised over the
    brain outside the tumour the first pass found; TC and ET stay the first pass's (see :data:`SECOND_PASS_STAGE`).
    A model trained on input normalised outside the tumour (:data:`~.preprocess.TUMOUR_EXCLUDED`) runs that
    second pass whatever ``second_pass`` says, and takes every region from it. Either way there is no second pass
    when the first finds no tumour, or :data:`SECOND_PASS_MAX_SHARE` of the brain or more. ``wt_growth`` (the
    model's ``info.wt_growth``) grows the final whole tumour by hysteresis (:func:`grow_whole_tumour`). A model whose
    ``info.scale`` is over 1 reads the brain box that many times coarser (:func:`~.resample.downsample`), and its
    probabilities come back to the case's grid (:func:`~.resample.upsample`) before they are thresholded. A model
    with a context network (:mod:`.context`) also runs it once, and takes its whole tumour where its rule says. A
    gated ensemble's core is kept only inside its gate member's own tumour (:func:`gate_core`).
    """
    check_growth(wt_growth)
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
    raw = image[(slice(None), *box)]
    brain = np.any(image != 0, axis=0)
    fell_back, dev = False, None
    if not onnx:
        import torch

        dev = device if isinstance(device, torch.device) else select_device(device)

    def predict(crop: np.ndarray, stage: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The model's output probabilities for a normalised crop, and their spread over flips (``None`` without)."""
        nonlocal dev, fell_back
        if onnx:
            return predict_regions_onnx(model, crop, roi_size, overlap, progress, should_stop, stage), None

        def run(d: torch.device):
            return predict_regions(model.to(d), crop, d, roi_size, overlap, tta, progress, should_stop, stage)

        result, fell_back_now = _run_with_cpu_fallback(run, dev)
        if fell_back_now:
            dev, fell_back = torch.device("cpu"), True
        return result

    def infer(crop: np.ndarray, stage: str) -> tuple[np.ndarray, np.ndarray | None]:
        """WT/TC/ET probabilities of a normalised crop (a gated ensemble's core gated), and their spread."""
        probs, spread = predict(crop, stage)
        if probs.shape[0] > len(REGION_NAMES):
            probs = gate_core(probs, seen_brain, threshold, min_component_fraction)
        return probs, spread

    seen = downsample(raw, scale) if scale > 1 else raw
    seen_brain = np.any(seen != 0, axis=0)
    probs_crop, spread_crop = infer(normalise(seen, normalisation), SEGMENT_STAGE)
    every_region = normalisation in TUMOUR_EXCLUDED
    if second_pass or every_region:
        tumour = labels_from_probabilities(probs_crop, seen_brain, threshold, min_component_fraction) != BACKGROUND
        if tumour.any() and np.count_nonzero(tumour) < SECOND_PASS_MAX_SHARE * np.count_nonzero(seen_brain):
            again, again_spread = infer(normalise(seen, normalisation, exclude=tumour), SECOND_PASS_STAGE)
            taken = slice(None) if every_region else slice(0, 1)  # every region, or the whole tumour
            probs_crop[taken] = again[taken]
            if spread_crop is not None:  # flips disagree where the kept passes' do
                spread_crop = again_spread if every_region else np.maximum(spread_crop, again_spread)
    if scale > 1:
        probs_crop = upsample(probs_crop, scale, raw.shape[1:])
        spread_crop = None if spread_crop is None else upsample(spread_crop[None], scale, raw.shape[1:])[0]
    probabilities = np.zeros((probs_crop.shape[0], *image.shape[1:]), dtype=np.float32)
    probabilities[(slice(None), *box)] = probs_crop
    uncertainty = None
    if spread_crop is not None:
        uncertainty = np.zeros(image.shape[1:], dtype=np.float32)
        uncertainty[box] = spread_crop
    labels = labels_from_probabilities(probabilities, brain, threshold, min_component_fraction, min_enhancing_voxels,
                                       wt_growth)
    if getattr(model, "context_network", None) is not None:
        context = segment(image, model.context_network, dev if dev is not None else "cpu", tta=tta,
                          should_stop=should_stop, **model.context_info.segment_options())
        if context_fires(labels, context.labels, model.rule):
            probabilities = whole_tumour_with_context(probabilities, context.probabilities, model.rule)
            labels = labels_from_probabilities(probabilities, brain, threshold, min_component_fraction,
                                               min_enhancing_voxels, wt_growth)
    return Segmentation(
        labels=labels,
        probabilities=probabilities,
        uncertainty=uncertainty,
        device="cpu" if onnx else dev.type,
        seconds=time.perf_counter() - start,
        fell_back_to_cpu=fell_back,
        backend="onnx" if onnx else "torch",
    )
