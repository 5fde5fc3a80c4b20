"""Export a checkpoint to ONNX (with torch), at a chosen precision, checked to agree with the checkpoint.

``torch.onnx.export`` (the TorchScript exporter, opset 18; it needs the ``onnx`` package, not ``onnxscript``)
with the batch and the three spatial axes left free; then, for ``fp16``, the weights stored as float16 and
cast back to float32 where used (ONNX Runtime folds the casts when it loads the file: half the file, the same
speed), or, for ``int8``, ONNX Runtime's dynamic quantization of the convolutions. The metadata are those of
:func:`napari_brainseg.onnx_model.metadata`. Before the file is put in place, the export and the checkpoint
run on the same random input and must agree within :data:`TOLERANCE`.

Usage (not run as a doctest: it needs real data or writes files)::

    export_onnx("bundled", precision="fp16")
    (PosixPath('.../napari_brainseg/weights/brainseg_unet3d.onnx'), 2.2e-05)
"""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_path
from .context_network import WithContext
from .inference import default_window
from .model import ModelInfo, load_model, resolve_model_path
from .onnx_model import (
    INPUT,
    OUTPUT,
    PRECISIONS,
    OnnxModel,
    OnnxModelError,
    checkpoint_sha256,
    context_onnx_path,
    metadata,
    onnx_path_beside,
    open_onnx,
)
from .slice_network import SliceNetwork
from .window import OVERLAP

OPSET = 18
TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2, "int8": 0.25}
"""Largest difference in any output probability between export and checkpoint on the check's random input."""
CHECK_SHAPE_ONE_PASS = (32, 64, 64)
"""Spatial shape of the check's input for a model without a sliding window (multiples of 16)."""


def to_onnx(model: torch.nn.Module, example_shape: tuple[int, ...]):
    """The fp32 ``onnx.ModelProto`` of ``model``, batch and spatial axes free."""
    import onnx

    free = {0: "batch", 2: "z", 3: "y", 4: "x"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes, none actionable here
        torch.onnx.export(
            model.eval(), (torch.zeros(example_shape),), buffer, dynamo=False, opset_version=OPSET,
            input_names=[INPUT], output_names=[OUTPUT], dynamic_axes={INPUT: free, OUTPUT: free},
        )
    return onnx.load_from_string(buffer.getvalue())


def fp16_weights(proto):
    """The same graph with every float32 weight stored as float16 and cast to float32 where it is used."""
    from onnx import TensorProto, helper, numpy_helper

    casts = []
    for tensor in proto.graph.initializer:
        if tensor.data_type != TensorProto.FLOAT:
            continue
        name = tensor.name
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), f"{name}__fp16"))
        casts.append(helper.make_node("Cast", [f"{name}__fp16"], [name], to=TensorProto.FLOAT))
    nodes = [*casts, *proto.graph.node]
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return proto


def int8_weights(proto):
    """ONNX Runtime's dynamic quantization of the convolutions (uint8 weights, activations quantized per call)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        onnx.save(proto, source)
        quantize_dynamic(source, target, weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv"])
        return onnx.load(target)


def largest_difference(model: torch.nn.Module, exported: OnnxModel, shape: tuple[int, ...]) -> float:
    """The largest difference in output probability between the two on one seeded random input."""
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    with torch.inference_mode():
        expected = torch.sigmoid(model(torch.from_numpy(x))).numpy()
    got = 1.0 / (1.0 + np.exp(-exported(x).astype(np.float64)))
    return float(np.abs(got - expected).max())


def export_network(
    model: torch.nn.Module, info: ModelInfo, out: str | Path, fingerprint: str, precision: str = "fp32"
) -> tuple[Path, float]:
    """Write ``model`` as an ONNX export at ``out`` with its metadata, replacing a file there only once the new
    export has been checked to agree with ``model``; returns its path and :func:`largest_difference`. A model with
    a context network writes the context's export first, beside it (:func:`~.onnx_model.context_onnx_path`)."""
    import onnx

    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    if isinstance(model, SliceNetwork):
        raise OnnxModelError(
            f"{info.model_id} is a 2.5-D slice network, which cannot be exported to ONNX (its loop over slices "
            "depends on the input's shape); it runs with the torch backend."
        )
    out = Path(out)
    if isinstance(model, WithContext):  # the context network first: the main export says the pair is complete
        export_network(model.context_network, model.context_info, context_onnx_path(out), fingerprint, precision)
    window = default_window(model)
    shape = (1, len(info.channels), *(window or CHECK_SHAPE_ONE_PASS))
    proto = to_onnx(model, shape)
    if precision == "fp16":
        proto = fp16_weights(proto)
    elif precision == "int8":
        proto = int8_weights(proto)
    onnx.helper.set_model_props(proto, metadata(info, fingerprint, precision, window, OVERLAP))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as temp:
        onnx.save(proto, temp)
        difference = largest_difference(model, open_onnx(temp, fingerprint, with_context=False), shape)
        if difference > TOLERANCE[precision]:
            raise OnnxModelError(
                f"The {precision} ONNX export of {info.model_id} disagrees with the model (probabilities differ "
                f"by up to {difference:.3g} on a random input, more than {TOLERANCE[precision]}); it was not written."
            )
    return out, difference


def export_onnx(
    checkpoint: str | Path = "bundled", out: str | Path | None = None, precision: str = "fp32"
) -> tuple[Path, float]:
    """Export a checkpoint (``"bundled"`` or a path) to ``out``, by default beside it (``.pt`` -> ``.onnx``), with
    its fingerprint; see :func:`export_network`."""
    source = resolve_model_path(checkpoint)
    model, info = load_model(source)
    out = out if out is not None else onnx_path_beside(source)
    return export_network(model, info, out, checkpoint_sha256(source), precision)
