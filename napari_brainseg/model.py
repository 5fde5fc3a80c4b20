"""The segmentation network and its self-describing checkpoint format.

A checkpoint is one ``torch.save`` file holding a plain dict: the weights and everything needed to
use them (architecture and arguments, channel order, normalisation, output encoding, patch size,
training cases, metrics, version, lineage). :func:`load_model` rebuilds the network from that
description alone, and refuses any file that is not such a checkpoint. torch is imported only by the functions
that need it: the ONNX path reads a model's description without it.

Example:
    >>> model, info = load_model("bundled")
    >>> info.model_id, info.arch, info.channels
    ('brainseg-unet3d...', 'with-context', ['flair', 't1', 't1ce', 't2'])
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import atomic_path
from .io import MODALITIES
from .preprocess import Z_SCORE

if TYPE_CHECKING:
    from torch import nn

FORMAT = "napari-brainseg-checkpoint"
FORMAT_VERSION = 1
BUNDLED_PATH = Path(__file__).parent / "weights" / "brainseg_unet3d.pt"
BUNDLED = "bundled"
SEGMENTATION = "segmentation"
"""The kind of a model that segments a case from its images alone (what ``load_model`` loads)."""

DEFAULT_ARCH = "monai.UNet"
DEFAULT_ARCH_KWARGS: dict[str, Any] = {
    "spatial_dims": 3,
    "in_channels": len(MODALITIES),
    "out_channels": 3,
    "channels": [8, 16, 32, 64, 128],
    "strides": [2, 2, 2, 2],
    "num_res_units": 2,
    "norm": "instance",
    "dropout": 0.1,
}


OUTPUT = "sigmoid regions WT, TC, ET, each over its `thresholds` value; decoded ET->4, TC-ET->1, WT-TC->2"
"""How a network's output becomes labels."""
OUTPUT_BEFORE_THRESHOLDS = "sigmoid regions WT, TC, ET (threshold 0.5); decoded ET->4, TC-ET->1, WT-TC->2"
"""The same, as checkpoints written before per-region thresholds (v1.4.1) say it."""


class CheckpointError(ValueError):
    """A file that is not a usable napari-brainseg checkpoint."""


@dataclass
class ModelInfo:
    """Everything a checkpoint says about its model, apart from the weights."""

    model_id: str
    version: str = "0.0.0"
    arch: str = DEFAULT_ARCH
    arch_kwargs: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_ARCH_KWARGS))
    channels: list[str] = field(default_factory=lambda: list(MODALITIES))
    normalisation: str = Z_SCORE
    """How the input is normalised: a description in :data:`preprocess.NORMALISATIONS`."""
    output: str = OUTPUT
    thresholds: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    """The probability over which a voxel is in WT, TC and ET: 0.5 unless chosen on validation cases
    (``benchmarks/postprocess.py``; recorded by ``average`` or ``ensemble --thresholds``)."""
    second_pass: bool = False
    """Segment twice: the whole tumour the second time, its input normalised over the brain outside the tumour
    the first pass found (:data:`~napari_brainseg.inference.SECOND_PASS_STAGE`; ``average --second-pass``). A
    model whose ``normalisation`` leaves the tumour out segments twice anyway, every region the second time."""
    wt_growth: list[float] | None = None
    """Hysteresis for the whole tumour, ``[threshold, voxels]``: after thresholding and clean-up it grows into voxels
    of WT probability over ``threshold`` joined to it within ``voxels`` (:func:`~napari_brainseg.inference.
    grow_whole_tumour`; ``average --wt-growth``). ``None``: no growth."""
    scale: int = 1
    """The network reads each case this many times coarser along every axis (2: 2 mm voxels from BraTS's 1 mm;
    :mod:`~napari_brainseg.resample`) and its probabilities come back to the case's grid; ``patch_size`` is in
    its coarse voxels. 1: the case's own grid."""
    labels: dict[str, int] = field(default_factory=lambda: {"NCR/NET": 1, "oedema": 2, "enhancing": 4})
    orientation: str = "display axes (S, P, L): axis 0 inferior->superior"
    patch_size: list[int] = field(default_factory=lambda: [96, 96, 96])
    train_cases: list[str] = field(default_factory=list)
    val_cases: list[str] = field(default_factory=list)
    corrected_cases: list[str] = field(default_factory=list)
    parent: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    kind: str = SEGMENTATION
    """What the network does: ``segmentation``, or ``click-refinement`` (see :mod:`napari_brainseg.refine`)."""
    guidance: dict[str, Any] | None = None
    """For a click-refinement model: the guidance encoding its extra input channels expect."""

    def set_thresholds(self, thresholds: Sequence[float]) -> None:
        """Record region thresholds chosen on validation, and describe the output by them."""
        self.thresholds = [float(t) for t in thresholds]
        self.output = OUTPUT

    def set_wt_growth(self, wt_growth: Sequence[float]) -> None:
        """Record whole-tumour growth ``(threshold, voxels)`` chosen on validation, or none for an empty one."""
        from .inference import check_growth

        growth = check_growth(wt_growth) if len(wt_growth) else None
        self.wt_growth = None if growth is None else [growth[0], growth[1]]

    def segment_options(self) -> dict[str, Any]:
        """The model's own options of :func:`~napari_brainseg.inference.segment`: thresholds, normalisation, second
        pass, whole-tumour growth and scale."""
        return {"threshold": list(self.thresholds), "normalisation": self.normalisation,
                "second_pass": self.second_pass, "wt_growth": self.wt_growth, "scale": self.scale}

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in build_network(self).parameters())


SLICE_ARCH = "monai.UNet-2.5d"
ENSEMBLE_ARCH = "ensemble"
CONTEXT_ARCH = "with-context"
"""The ``arch`` of a model with a context network (:mod:`.context`)."""
ARCHITECTURES = {
    DEFAULT_ARCH: "MONAI UNet on 3-D patches (arch_kwargs: the UNet's arguments)",
    SLICE_ARCH: "MONAI 2-D UNet on axial slices, each with `context` neighbours on either side as channels",
    ENSEMBLE_ARCH: "networks whose probabilities are averaged (arch_kwargs: in_channels, out_channels, members, "
                   "each an arch and its arch_kwargs; optional weights, one per member and region, and core_gate, "
                   "the member whose own whole tumour bounds the core)",
    CONTEXT_ARCH: "a segmentation network and a coarse context network for the whole tumour (arch_kwargs: network, "
                  "an arch and its arch_kwargs; context, the context model's description; rule)",
}


def slice_arch_kwargs(context: int = 1) -> dict[str, Any]:
    """Default arguments of the 2.5-D network: a 2-D UNet seeing ``2 * context + 1`` slices of each modality."""
    return {**DEFAULT_ARCH_KWARGS, "spatial_dims": 2, "in_channels": len(MODALITIES) * (2 * context + 1),
            "channels": [16, 32, 64, 128, 256], "num_res_units": 1, "context": context}


def build_network(info: ModelInfo) -> nn.Module:
    """The (untrained) network that ``info`` describes."""
    if info.arch not in ARCHITECTURES:
        raise CheckpointError(
            f"Unknown architecture {info.arch!r}; this version of napari-brainseg knows "
            f"{', '.join(ARCHITECTURES)}. Update the plugin or retrain with it."
        )
    from monai.networks.nets import UNet

    from .ensemble_network import Ensemble
    from .slice_network import SliceNetwork

    kwargs = dict(info.arch_kwargs)
    if info.arch == CONTEXT_ARCH:
        from .context import context_info, context_rule, network_info
        from .context_network import WithContext

        context = context_info(info)
        return WithContext(build_network(network_info(info)), build_network(context), context, context_rule(info))
    if info.arch == ENSEMBLE_ARCH:
        shared = {key: kwargs[key] for key in ("in_channels", "out_channels")}
        return Ensemble([build_network(ModelInfo(model_id=info.model_id, arch=member["arch"],
                                                 arch_kwargs={**member["arch_kwargs"], **shared}))
                         for member in kwargs["members"]], kwargs.get("weights"), kwargs.get("core_gate"))
    for key in ("channels", "strides"):
        kwargs[key] = tuple(kwargs[key])
    if info.arch == SLICE_ARCH:
        context = kwargs.pop("context")
        return SliceNetwork(UNet(**kwargs), context)
    return UNet(**kwargs)


def save_checkpoint(path: str | Path, model: nn.Module, info: ModelInfo, half: bool = False) -> Path:
    """Write ``model`` and ``info`` atomically to ``path`` (fp16 weights when ``half``)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = model.module if hasattr(model, "module") else model
    state = {k: (v.half() if half and v.is_floating_point() else v).cpu() for k, v in module.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "info": asdict(info), "state_dict": state}
    with atomic_path(path) as temp:
        torch.save(payload, temp)
    return path


def resolve_model_path(model: str | Path) -> Path:
    """The checkpoint file for ``"bundled"`` or a path."""
    path = BUNDLED_PATH if str(model) == BUNDLED else Path(model).expanduser()
    if not path.is_file():
        if str(model) == BUNDLED:
            raise CheckpointError(f"The bundled weights {path} are missing; reinstall napari-brainseg.")
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    return path


def read_checkpoint(model: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, after checking that it is one of ours."""
    import torch

    path = resolve_model_path(model)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- torch raises many types for foreign or corrupt files
        raise CheckpointError(
            f"{path.name} is not a napari-brainseg checkpoint (it could not be read: {type(err).__name__}). "
            "Pick a .pt file written by `napari-brainseg train` or by the Retrain widget."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path.name} is a PyTorch file but not a napari-brainseg checkpoint (no '{FORMAT}' marker). "
            "Checkpoints from other tools need their own code; pick one written by `napari-brainseg train`."
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path.name} uses checkpoint format {payload['format_version']}, newer than this plugin's "
            f"{FORMAT_VERSION}; update napari-brainseg."
        )
    return payload


def info_from_dict(raw: dict[str, Any]) -> ModelInfo:
    """A :class:`ModelInfo` from its dict form, ignoring keys a newer version may have added."""
    known = {f for f in ModelInfo.__dataclass_fields__}
    return ModelInfo(**{k: v for k, v in raw.items() if k in known})


def load_model(model: str | Path = BUNDLED, kind: str = SEGMENTATION) -> tuple[nn.Module, ModelInfo]:
    """Rebuild the network a checkpoint of ``kind`` describes, load its weights, and return it in eval mode."""
    payload = read_checkpoint(model)
    info = info_from_dict(payload["info"])
    if info.kind != kind:
        raise CheckpointError(
            f"{resolve_model_path(model).name} is a {info.kind} model ({info.model_id}), not a {kind} model; "
            f"pick a {kind} checkpoint here."
        )
    network = build_network(info)
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(
            f"{resolve_model_path(model).name}: its weights do not fit the architecture it declares ({first})."
        ) from None
    return network.eval(), info


def __getattr__(name: str) -> Any:
    """``SliceNetwork`` still importable from here, without importing torch with this module."""
    if name == "SliceNetwork":
        from .slice_network import SliceNetwork

        return SliceNetwork
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
