"""The plugin's napari layers: how a case and a segmentation look, and what their metadata carries.

The reader, the sample data and the widgets all build layers here, so that every layer looks the same
however it was opened, and so that the widgets can find a case's modalities, geometry and files again:

* four gray image layers named ``FLAIR``, ``T1``, ``T1ce``, ``T2`` (only FLAIR visible), scaled to the voxel
  spacing in mm, contrast set from brain-voxel percentiles;
* a uint8 Labels layer per label map, in the fixed BraTS colours of :data:`labels.LABEL_COLORS`: the case's
  labels from file are ``<case> reference labels`` (drawn as outlines once a segmentation lies over them),
  a model's output is ``<case> segmentation``;
* axes named by :data:`AXIS_LABELS` (inferior-superior, anterior-posterior, right-left), so napari's slider
  says which way it walks.

Each layer's ``metadata[METADATA_KEY]`` holds the case id, :class:`~io.CaseFiles` and :class:`~io.Geometry`
(and, for a prediction, a copy of the model's output and the model's id and version).
Layers opened by another reader are recognised by name (``flair``, ``t2f``, ``Brats18_X_t1ce``, ...).

Example (``napari_brainseg._widgets.add_layers(viewer, layers)`` shows them):
    >>> from napari_brainseg.io import load_case
    >>> from napari_brainseg.synthetic import write_synthetic_case
    >>> layers = case_layers(load_case(write_synthetic_case("Synthetic_001", "Synthetic_001", shape=(48, 56, 40))))
    >>> [(kwargs["name"], kind) for _, kwargs, kind in layers if kind == "image"]
    [('FLAIR', 'image'), ('T1', 'image'), ('T1ce', 'image'), ('T2', 'image')]
    >>> [kind for _, _, kind in layers].count("labels"), layers[-1][0].dtype
    (1, dtype('uint8'))
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .io import DISPLAY_AXCODES, MODALITIES, MODALITY_TITLES, BratsInputError, CaseFiles, Geometry, LoadedCase
from .labels import LABEL_COLORS, LABEL_NAMES

if TYPE_CHECKING:
    from collections.abc import Iterable

    import napari.layers

METADATA_KEY = "brainseg"
CORRECTIONS_ROLE = "corrections"
OVERLAY_ROLES = frozenset({CORRECTIONS_ROLE})
"""Roles of read-only layers drawn over a label map: not label maps themselves, so not offered for editing."""
REFERENCE_ROLE = "reference"
REFERENCE_CONTOUR = 2
"""Outline width (pixels) of a case's labels from file once a segmentation is shown over them."""
_OPPOSITE = {"S": "I", "I": "S", "A": "P", "P": "A", "L": "R", "R": "L"}
AXIS_LABELS = tuple(f"{_OPPOSITE[code]}-{code}" for code in DISPLAY_AXCODES)
"""Names of the display axes (from -> to), shown on napari's sliders: ``("I-S", "A-P", "R-L")``."""
CONTRAST_PERCENTILES = (0.5, 99.5)
LABELS_OPACITY = 0.6
VISIBLE_MODALITY = "flair"
_PERCENTILE_SAMPLE = 1_000_000

MODALITY_ALIASES: dict[str, tuple[str, ...]] = {
    "flair": ("flair", "t2f"),
    "t1": ("t1", "t1n"),
    "t1ce": ("t1ce", "t1c", "t1gd"),
    "t2": ("t2", "t2w"),
}
"""Layer-name tokens that mean each modality (BraTS 2018-2021, BraTS 2023+, common spellings)."""

_ALIAS_TO_MODALITY = {alias: m for m, aliases in MODALITY_ALIASES.items() for alias in aliases}
_NAPARI_COPY_SUFFIX = re.compile(r"\s*\[\d+\]$")
_NIFTI_SUFFIX = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s_\-.]+")

LayerDataTuple = tuple[Any, dict[str, Any], str]


@dataclass(frozen=True)
class CaseContext:
    """What the plugin knows about the case that a set of layers shows."""

    case_id: str
    spacing: tuple[float, float, float]
    files: CaseFiles | None = None
    geometry: Geometry | None = None
    translate: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def of(cls, case: LoadedCase) -> CaseContext:
        return cls(case.case_id, case.spacing, case.files, case.geometry)

    def metadata(self, **extra: Any) -> dict[str, Any]:
        """A layer's metadata dict for this case, with ``extra`` entries."""
        return {METADATA_KEY: {"case_id": self.case_id, "files": self.files, "geometry": self.geometry, **extra}}


def contrast_limits(volume: np.ndarray) -> tuple[float, float]:
    """Display range from the brain (non-zero) voxels' percentiles, robust to a few bright voxels."""
    brain = volume[volume != 0]
    if brain.size == 0:
        return 0.0, 1.0
    brain = brain[:: max(1, brain.size // _PERCENTILE_SAMPLE)]
    low, high = (float(v) for v in np.percentile(brain, CONTRAST_PERCENTILES))
    return (low, high) if high > low else (low, low + 1.0)


def image_layer_data(volume: np.ndarray, modality: str, context: CaseContext) -> LayerDataTuple:
    """One gray modality layer named by its title (FLAIR, T1, T1ce, T2)."""
    files = context.files
    kwargs = {
        "name": MODALITY_TITLES[modality],
        "scale": context.spacing,
        "translate": context.translate,
        "axis_labels": AXIS_LABELS,
        "colormap": "gray",
        "contrast_limits": contrast_limits(volume),
        "blending": "translucent_no_depth",
        "visible": modality == VISIBLE_MODALITY,
        "metadata": context.metadata(modality=modality, path=files.images[modality] if files else None),
    }
    return volume, kwargs, "image"


def labels_layer_data(seg: np.ndarray, name: str, context: CaseContext, **metadata: Any) -> LayerDataTuple:
    """A uint8 Labels layer in the BraTS colours; hovering a voxel shows its class name."""
    kwargs = {
        "name": name,
        "scale": context.spacing,
        "translate": context.translate,
        "axis_labels": AXIS_LABELS,
        "colormap": label_colormap(),
        "opacity": LABELS_OPACITY,
        "features": {"index": [0, *LABEL_NAMES], "class": ["background", *LABEL_NAMES.values()]},
        "metadata": context.metadata(**metadata),
    }
    return np.asarray(seg, dtype=np.uint8), kwargs, "labels"


def label_colormap():
    """napari's colormap for the fixed BraTS label colours."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict=LABEL_COLORS)


def case_layers(case: LoadedCase, show_labels: bool = True) -> list[LayerDataTuple]:
    """The four modality layers of a case, and its label map from file if it has one."""
    context = CaseContext.of(case)
    layers = [image_layer_data(case.image[i], m, context) for i, m in enumerate(MODALITIES)]
    if case.seg is not None:
        data, kwargs, kind = labels_layer_data(
            case.seg, f"{case.case_id} reference labels", context, role=REFERENCE_ROLE, path=case.files.seg
        )
        layers.append((data, {**kwargs, "visible": show_labels}, kind))
    return layers


def prediction_layer_data(
    labels: np.ndarray, context: CaseContext, model_id: str, model_version: str
) -> LayerDataTuple:
    """The Labels layer for a model's segmentation, remembering the original prediction and model."""
    labels = np.asarray(labels, dtype=np.uint8)
    return labels_layer_data(
        labels,
        f"{context.case_id} segmentation",
        context,
        role="prediction",
        prediction=labels.copy(),
        model_id=model_id,
        model_version=model_version,
    )


def uncertainty_layer_data(uncertainty: np.ndarray, context: CaseContext) -> LayerDataTuple:
    """The test-time-augmentation spread as a heat map over the image."""
    kwargs = {
        "name": f"{context.case_id} uncertainty",
        "scale": context.spacing,
        "translate": context.translate,
        "axis_labels": AXIS_LABELS,
        "colormap": "inferno",
        "contrast_limits": (0.0, max(float(uncertainty.max()), 1e-3)),
        "blending": "additive",
        "opacity": 0.7,
        "metadata": context.metadata(role="uncertainty"),
    }
    return uncertainty, kwargs, "image"


def show_as_reference(layers: Iterable[napari.layers.Layer], case_id: str) -> list[napari.layers.Labels]:
    """Draw ``case_id``'s labels from file as outlines (under a segmentation they then read as the reference)."""
    from napari.layers import Labels

    found = [
        layer for layer in layers
        if isinstance(layer, Labels) and brainseg_metadata(layer).get("role") == REFERENCE_ROLE
        and brainseg_metadata(layer).get("case_id") == case_id
    ]
    for layer in found:
        layer.contour = REFERENCE_CONTOUR
    return found


def brainseg_metadata(layer: napari.layers.Layer) -> dict[str, Any]:
    """The plugin's metadata of a layer (empty for layers the plugin did not make)."""
    return layer.metadata.get(METADATA_KEY) or {}


def is_overlay(layer: napari.layers.Layer) -> bool:
    """Whether ``layer`` is one of the plugin's read-only overlays (see :data:`OVERLAY_ROLES`)."""
    return brainseg_metadata(layer).get("role") in OVERLAY_ROLES


def _name_tokens(name: str) -> list[str]:
    name = _NIFTI_SUFFIX.sub("", _NAPARI_COPY_SUFFIX.sub("", name.strip()))
    return [t for t in _SEPARATORS.split(name) if t]


def modality_from_name(name: str) -> str | None:
    """The modality a layer name stands for: ``"FLAIR"``, ``"t2f"``, ``"Brats18_X_t1ce"`` ..."""
    tokens = _name_tokens(name)
    return _ALIAS_TO_MODALITY.get(tokens[-1].lower()) if tokens else None


def _case_key(layer: napari.layers.Layer) -> str:
    meta = brainseg_metadata(layer)
    if "case_id" in meta:
        return meta["case_id"]
    return "_".join(_name_tokens(layer.name)[:-1])


def modality_of(layer: napari.layers.Layer) -> str | None:
    """The modality an image layer shows, from the plugin's metadata or else from its name."""
    from napari.layers import Image

    if not isinstance(layer, Image) or layer.rgb:
        return None
    meta = brainseg_metadata(layer)
    if "modality" in meta:
        return meta["modality"]
    if meta:
        return None  # one of ours that is not a modality (e.g. an uncertainty map)
    return modality_from_name(layer.name)


def find_modality_layers(
    layers: Iterable[napari.layers.Layer], prefer: napari.layers.Layer | None = None
) -> dict[str, napari.layers.Image]:
    """The modality layers of one case, keyed by modality (missing modalities are absent).

    When layers of several cases are open, the case of ``prefer`` (e.g. the selected layer) wins if
    complete, else the most recently added complete case, else the most complete one.
    """
    groups: dict[str, dict[str, napari.layers.Image]] = {}
    for layer in reversed(list(layers)):  # most recently added first
        modality = modality_of(layer)
        if modality is not None:
            groups.setdefault(_case_key(layer), {}).setdefault(modality, layer)
    if not groups:
        return {}
    if prefer is not None and modality_of(prefer) is not None:
        preferred = groups.get(_case_key(prefer), {})
        if len(preferred) == len(MODALITIES):
            return preferred
    return max(groups.values(), key=len)  # max keeps the first (most recent) of equally complete cases


def stack_modalities(found: dict[str, napari.layers.Image]) -> np.ndarray:
    """The (4, Z, Y, X) float32 stack in :data:`io.MODALITIES` order, or a message saying what is wrong."""
    missing = [MODALITY_TITLES[m] for m in MODALITIES if m not in found]
    if missing:
        have = ", ".join(f"{MODALITY_TITLES[m]} ('{layer.name}')" for m, layer in found.items())
        raise BratsInputError(
            f"No image layer for {', '.join(missing)}. Segmenting needs FLAIR, T1, T1ce and T2 "
            f"(found {have or 'none'}); open the case with Load case, or name the layers FLAIR, T1, T1ce, T2."
        )
    volumes = [np.asarray(found[m].data, dtype=np.float32) for m in MODALITIES]
    for m, volume in zip(MODALITIES, volumes):
        if volume.ndim != 3:
            raise BratsInputError(f"Layer '{found[m].name}' is {volume.ndim}-D; each modality must be one 3-D volume.")
    shapes = {found[m].name: v.shape for m, v in zip(MODALITIES, volumes)}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise BratsInputError(
            f"The modality layers differ in shape ({listed}); they must be co-registered on one voxel grid."
        )
    return np.stack(volumes)


def case_context(found: dict[str, napari.layers.Image]) -> CaseContext:
    """The case that a set of modality layers shows (geometry and files only if the plugin opened them)."""
    reference = found[MODALITIES[0]] if MODALITIES[0] in found else next(iter(found.values()))
    meta = brainseg_metadata(reference)
    case_id = meta.get("case_id") or _case_key(reference) or "case"
    return CaseContext(
        case_id=case_id,
        spacing=tuple(float(s) for s in reference.scale[-3:]),
        files=meta.get("files"),
        geometry=meta.get("geometry"),
        translate=tuple(float(t) for t in reference.translate[-3:]),
    )
