"""What a person changed: the voxel-wise difference between the model's prediction and the corrected labels.

Both label maps are uint8 BraTS labels {0, 1, 2, 4} on the same (display) grid. Per label, a voxel is
*added* when the correction gives it that label and the prediction did not, and *removed* when the
prediction gave it that label and the correction does not; a voxel moved from oedema to enhancing is
removed from oedema and added to enhancing. :func:`diff_map` codes each voxel for display.

Example:
    >>> import numpy as np
    >>> prediction = np.array([0, 2, 2, 4], dtype=np.uint8)
    >>> corrected = np.array([2, 2, 0, 1], dtype=np.uint8)
    >>> diff_map(prediction, corrected).tolist()
    [1, 0, 2, 3]
    >>> diff_counts(prediction, corrected, spacing=(1.0, 1.0, 1.0))["oedema"]["added_voxels"]
    1
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .labels import BACKGROUND, ET, LABEL_NAMES, check_labels, voxel_volume_ml

UNCHANGED, ADDED, REMOVED, RELABELLED = 0, 1, 2, 3
DIFF_NAMES: dict[int, str] = {ADDED: "added", REMOVED: "removed", RELABELLED: "relabelled"}
"""Codes of :func:`diff_map`: tumour drawn on background, tumour erased, one tumour label changed to another."""
DIFF_COLORS: dict[int | None, str] = {
    None: "transparent",
    UNCHANGED: "transparent",
    ADDED: "#00e5ff",
    REMOVED: "#ff00ff",
    RELABELLED: "#ffffff",
}

_N = ET + 1  # label values index a (_N, _N) confusion matrix


def _checked(prediction: np.ndarray, corrected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction, corrected = np.asarray(prediction), np.asarray(corrected)
    if prediction.shape != corrected.shape:
        raise ValueError(
            f"The prediction {prediction.shape} and the corrected labels {corrected.shape} differ in shape; "
            "compare two label maps of the same case."
        )
    check_labels(prediction)
    check_labels(corrected)
    return prediction.astype(np.uint8, copy=False), corrected.astype(np.uint8, copy=False)


def confusion(prediction: np.ndarray, corrected: np.ndarray) -> np.ndarray:
    """Voxel counts ``[predicted label, corrected label]`` as a (5, 5) int64 matrix."""
    prediction, corrected = _checked(prediction, corrected)
    pairs = prediction.ravel().astype(np.intp) * _N + corrected.ravel()
    return np.bincount(pairs, minlength=_N * _N).reshape(_N, _N)


def diff_map(prediction: np.ndarray, corrected: np.ndarray) -> np.ndarray:
    """A uint8 map of :data:`DIFF_NAMES` codes: 0 unchanged, 1 added, 2 removed, 3 relabelled."""
    prediction, corrected = _checked(prediction, corrected)
    out = np.full(prediction.shape, UNCHANGED, dtype=np.uint8)
    changed = prediction != corrected
    out[changed & (prediction == BACKGROUND)] = ADDED
    out[changed & (corrected == BACKGROUND)] = REMOVED
    out[changed & (prediction != BACKGROUND) & (corrected != BACKGROUND)] = RELABELLED
    return out


def diff_counts(prediction: np.ndarray, corrected: np.ndarray, spacing: Sequence[float]) -> dict:
    """JSON-ready counts: per label name, voxels and mL added and removed; and the total changed."""
    matrix = confusion(prediction, corrected)
    per_voxel = voxel_volume_ml(spacing)
    counts: dict = {}
    for label, name in LABEL_NAMES.items():
        added = int(matrix[:, label].sum() - matrix[label, label])
        removed = int(matrix[label, :].sum() - matrix[label, label])
        counts[name] = {
            "label": label,
            "added_voxels": added,
            "removed_voxels": removed,
            "added_ml": round(added * per_voxel, 4),
            "removed_ml": round(removed * per_voxel, 4),
        }
    changed = int(matrix.sum() - np.trace(matrix))
    counts["changed_voxels"] = changed
    counts["changed_ml"] = round(changed * per_voxel, 4)
    return counts
