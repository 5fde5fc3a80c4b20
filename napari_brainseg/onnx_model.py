"""A checkpoint's ONNX export, run by ONNX Runtime on the CPU without importing torch or MONAI.

The export of ``model.pt`` is ``model.onnx`` beside it (the bundled model ships both), or, where that folder
cannot be written, a file in the user data folder named by the checkpoint's fingerprint. Its metadata
(ONNX ``metadata_props``) say all the CPU path needs: the checkpoint's :class:`~napari_brainseg.model.ModelInfo`
(channel order, normalisation, output decoding, labels, model id, version), the sliding window and overlap,
the weights' precision, and the SHA-256 of the checkpoint file it was made from, so that an export that
does not belong to its checkpoint is refused. A checkpoint without an export is exported once, with torch
(:mod:`napari_brainseg.onnx_export`).

Usage (not run as a doctest: it needs real data or writes files)::

    model = load_onnx_model("bundled")
    model.info.model_id, model.window, model.precision
    ('brainseg-unet3d16-brats2018', (96, 96, 96), 'fp16')
    logits = model(batch_of_windows)  # (B, 4, 96, 96, 96) float32 -> (B, 3, 96, 96, 96); 4 for a gated ensemble
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .model import CONTEXT_ARCH, CheckpointError, ModelInfo, info_from_dict, resolve_model_path

FORMAT = "napari-brainseg-onnx"
FORMAT_VERSION = 1
SUFFIX = ".onnx"
PRECISIONS = ("fp32", "fp16", "int8")
"""fp32; fp16 weights (computed in fp32); int8 weights and activations (ONNX Runtime dynamic quantization)."""
SHIPPED_PRECISION = "fp16"
"""The precision of the bundled export and the default of ``napari-brainseg export-onnx``: the smallest and
fastest whose validation Dice stays within 0.005 of fp32 (``benchmarks/precision.py``, weights/MODEL_CARD.md).
Exports made on first use of a checkpoint are fp32."""
INPUT, OUTPUT = "image", "logits"


class OnnxModelError(CheckpointError):
    """An ONNX export that is missing, unreadable, not ours, or not made from the checkpoint beside it."""


def checkpoint_sha256(path: str | Path) -> str:
    """The fingerprint that ties an export to its checkpoint: the SHA-256 of the checkpoint file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def onnx_path_beside(checkpoint: str | Path) -> Path:
    """Where the export of ``checkpoint`` lies when its folder can be written: ``model.pt`` -> ``model.onnx``."""
    return Path(checkpoint).with_suffix(SUFFIX)


def cache_dir() -> Path:
    """The user data folder for exports of checkpoints in folders that cannot be written."""
    import platformdirs

    return platformdirs.user_data_path("napari-brainseg") / "onnx"


def cached_onnx_path(fingerprint: str) -> Path:
    """The export of the checkpoint with this fingerprint, in :func:`cache_dir`."""
    return cache_dir() / f"{fingerprint[:32]}{SUFFIX}"


def metadata(info: ModelInfo, fingerprint: str, precision: str, window: Any, overlap: float) -> dict[str, str]:
    """The ``metadata_props`` of an export (all strings, JSON where structured)."""
    from dataclasses import asdict

    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "checkpoint_sha256": fingerprint,
        "model_id": info.model_id,
        "version": info.version,
        "model_info": json.dumps(asdict(info)),
        "precision": precision,
        "window": json.dumps(list(window) if window else None),
        "overlap": str(overlap),
        "blend": "gaussian, sigma 0.125 x window",
        "input": f"{INPUT}: (batch, channels in model_info.channels order, z, y, x) float32, normalised",
        "output": f"{OUTPUT}: (batch, 3, z, y, x) float32, or 4 channels for a gated ensemble (model_info.arch_kwargs "
                  "core_gate; the 4th is its gate's whole tumour); sigmoid -> model_info.output",
    }


@dataclass
class OnnxModel:
    """An export opened for inference: call it on a (B, C, Z, Y, X) float32 batch to get (B, 3, Z, Y, X) logits
    (4 channels for a gated ensemble: :func:`~napari_brainseg.inference.gate_core`)."""

    path: Path
    info: ModelInfo
    precision: str
    window: tuple[int, ...] | None
    overlap: float
    session: Any = field(repr=False)
    context_network: OnnxModel | None = None
    """The context network's export, for a model with one (:mod:`~napari_brainseg.context`)."""

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    @property
    def context_info(self) -> ModelInfo:
        from .context import context_info

        return context_info(self.info)

    @property
    def rule(self):
        from .context import context_rule

        return context_rule(self.info)


def context_onnx_path(path: str | Path) -> Path:
    """Where the context network of the export at ``path`` lies: ``model.onnx`` -> ``model.context.onnx``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.context{SUFFIX}")


def _threads() -> int:
    """ONNX Runtime's intra-op threads: ``OMP_NUM_THREADS`` when set (as torch does), else its own default."""
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "0")), 0)
    except ValueError:
        return 0


def open_onnx(path: str | Path, fingerprint: str | None = None, with_context: bool = True) -> OnnxModel:
    """Open an export; refuse a file that is not ours, is newer than this plugin, or (given the checkpoint's
    ``fingerprint``) was made from another checkpoint. An export of a model with a context network opens its
    context's export too, unless ``with_context`` is false."""
    import onnxruntime as ort

    path = Path(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads()
    # no memory arena: a model with a context network runs two sessions, and their arenas together took predict
    # from 0.8 to 1.06 GB peak; without them it stays at 0.8 GB, as fast (weights/MODEL_CARD.md, *Session 17*)
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 -- onnxruntime raises its own types for unreadable files
        raise OnnxModelError(
            f"{path} is not a readable ONNX model ({str(err).splitlines()[0][:200]}). Delete it; it is "
            "exported again from its checkpoint (or run `napari-brainseg export-onnx CHECKPOINT`)."
        ) from None
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("format") != FORMAT:
        raise OnnxModelError(
            f"{path.name} is an ONNX model but not a napari-brainseg export (no '{FORMAT}' marker); "
            "make one with `napari-brainseg export-onnx CHECKPOINT`."
        )
    if int(meta.get("format_version", "0")) > FORMAT_VERSION:
        raise OnnxModelError(
            f"{path.name} uses export format {meta['format_version']}, newer than this plugin's {FORMAT_VERSION}; "
            "update napari-brainseg."
        )
    if fingerprint is not None and meta.get("checkpoint_sha256") != fingerprint:
        raise OnnxModelError(
            f"{path} was not exported from the checkpoint beside it (fingerprint "
            f"{meta.get('checkpoint_sha256', 'none')[:12]}, checkpoint {fingerprint[:12]}): the checkpoint changed "
            "after the export. Export it again with `napari-brainseg export-onnx CHECKPOINT`, or delete the "
            ".onnx file."
        )
    window = json.loads(meta["window"])
    info = info_from_dict(json.loads(meta["model_info"]))
    context = None
    if info.arch == CONTEXT_ARCH and with_context:
        if not context_onnx_path(path).is_file():
            raise OnnxModelError(
                f"{path.name} is the export of a model with a context network, but {context_onnx_path(path).name} is "
                "missing beside it. Export it again with `napari-brainseg export-onnx CHECKPOINT`, or delete "
                f"{path.name}."
            )
        context = open_onnx(context_onnx_path(path), meta.get("checkpoint_sha256"))
    return OnnxModel(
        path=path,
        info=info,
        precision=meta["precision"],
        window=tuple(window) if window else None,
        overlap=float(meta["overlap"]),
        session=session,
        context_network=context,
    )


def find_onnx(checkpoint: str | Path) -> tuple[Path | None, str]:
    """The existing export of a checkpoint (beside it, else in the cache) or ``None``, and its fingerprint."""
    fingerprint = checkpoint_sha256(checkpoint)
    for candidate in (onnx_path_beside(checkpoint), cached_onnx_path(fingerprint)):
        if candidate.is_file():
            return candidate, fingerprint
    return None, fingerprint


def load_onnx_model(model: str | Path = "bundled") -> OnnxModel:
    """The export of ``"bundled"`` or a checkpoint path, opened and checked; exported once (with torch) if absent.

    Raises :class:`OnnxModelError` with a message for people when there is no usable export and none can be
    made; the torch backend can still run the checkpoint then.
    """
    checkpoint = resolve_model_path(model)
    path, fingerprint = find_onnx(checkpoint)
    if path is None:
        path = _export_once(checkpoint)
    return open_onnx(path, fingerprint)


def _export_once(checkpoint: Path) -> Path:
    """Export a checkpoint that has none: beside it where its folder can be written, else in the cache."""
    try:
        from .onnx_export import export_onnx
    except ImportError as err:
        raise OnnxModelError(
            f"{checkpoint.name} has no ONNX export and one cannot be made here ({err}); "
            "install torch and onnx, or run it with the torch backend."
        ) from None
    try:
        try:
            return export_onnx(checkpoint, onnx_path_beside(checkpoint))[0]
        except OSError:  # e.g. a read-only install or a shared model folder
            return export_onnx(checkpoint, cached_onnx_path(checkpoint_sha256(checkpoint)))[0]
    except OnnxModelError:
        raise
    except Exception as err:  # noqa: BLE001 -- the exporter fails in many ways on networks it cannot trace
        raise OnnxModelError(
            f"{checkpoint.name} could not be exported to ONNX ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else 'no details'}); it runs with the torch backend."
        ) from None
