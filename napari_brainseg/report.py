"""A one-page case report (PNG or PDF): what was segmented, how big it is, and who had the last word.

The page holds the case and model ids, whether the mask was corrected by hand (it differs from the
model's prediction), a table of volumes (WT, TC, ET, oedema, necrosis in mL), the enhancing tumour's
RANO bidimensional measure drawn on its axial slice (:mod:`measure`), and a montage of axial slices
through the tumour with the labels over FLAIR and T1ce. Drawing uses Matplotlib's Agg canvas only,
so it runs without a display and never touches napari's Qt event loop.

Example (a synthetic case):
    >>> from napari_brainseg.synthetic import synthetic_case
    >>> images, labels = synthetic_case(shape=(48, 56, 40))
    >>> summary = write_case_report("case.pdf", {"flair": images["flair"], "t1ce": images["t1ce"]}, labels,
    ...                             spacing=(1, 1, 1), case_id="Synthetic_001", model_id="brainseg")
    >>> open("case.pdf", "rb").read(4), summary["case_id"], summary["rano"]["product_mm2"] > 0
    (b'%PDF', 'Synthetic_001', True)
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .atomic import atomic_path
from .diff import diff_counts
from .inference import brain_box
from .io import MODALITY_TITLES
from .labels import ET, LABEL_COLORS, LABEL_NAMES, check_labels, region_volumes_ml
from .measure import AXIAL, RanoMeasure, rano_diameters

REPORT_FORMATS = (".png", ".pdf")
REPORT_MODALITIES = ("flair", "t1ce")
VOLUME_ROWS = (
    ("WT", "Whole tumour (WT)"),
    ("TC", "Tumour core (TC)"),
    ("ET", "Enhancing tumour (ET)"),
    ("oedema", "Oedema (ED)"),
    ("NCR/NET", "Necrosis / non-enhancing (NCR)"),
)
MONTAGE_SLICES = 5
_A4_INCHES = (8.27, 11.69)
_LABEL_CMAP = ListedColormap(["none"] + [LABEL_COLORS[label] for label in sorted(LABEL_NAMES)])


def montage_slices(seg: np.ndarray, count: int = MONTAGE_SLICES, include: int | None = None) -> list[int]:
    """``count`` axial slices evenly spread over the tumour (over all slices if there is none)."""
    tumour = np.flatnonzero(np.asarray(seg).any(axis=(1, 2)))
    first, last = (tumour[0], tumour[-1]) if tumour.size else (0, seg.shape[0] - 1)
    chosen = [int(z) for z in np.rint(np.linspace(first, last, count + 2)[1:-1])] if last > first else [int(first)]
    if include is not None and include not in chosen:
        chosen[int(np.argmin([abs(z - include) for z in chosen]))] = include
    return sorted(set(chosen))


def correction_state(seg: np.ndarray, prediction: np.ndarray | None, spacing: Sequence[float]) -> dict:
    """Whether ``seg`` differs from the prediction (None when there is no prediction to compare with)."""
    if prediction is None:
        return {"corrected": None, "changed_voxels": None, "changed_ml": None}
    counts = diff_counts(prediction, seg, spacing)
    changed = counts["changed_voxels"]
    return {"corrected": changed > 0, "changed_voxels": changed, "changed_ml": counts["changed_ml"]}


def _rano_summary(measure: RanoMeasure | None) -> dict | None:
    if measure is None:
        return None
    return {
        "slice": measure.slice_index,
        "longest_mm": round(measure.longest_mm, 1),
        "perpendicular_mm": round(measure.perpendicular_mm, 1),
        "product_mm2": round(measure.product_mm2, 1),
        "measurable": measure.measurable,
    }


def _text_lines(summary: dict) -> list[str]:
    if summary["corrected"] is None:
        correction = "Mask: origin unknown (no model prediction to compare with)"
    elif summary["corrected"]:
        correction = (
            f"Mask: corrected by hand ({summary['changed_voxels']} voxels, {summary['changed_ml']:.3g} mL "
            "changed from the model's prediction)"
        )
    else:
        correction = "Mask: model prediction, not corrected"
    rano = summary["rano"]
    if rano is None:
        rano_line = "RANO (enhancing tumour): no enhancing tumour to measure"
    else:
        rano_line = (
            f"RANO (enhancing tumour): {rano['longest_mm']:.1f} mm x {rano['perpendicular_mm']:.1f} mm = "
            f"{rano['product_mm2']:.0f} mm² on axial slice {rano['slice']}"
            f"{'' if rano['measurable'] else ' (below 10 mm: not measurable disease)'}"
        )
    return [
        f"Case: {summary['case_id']}",
        f"Model: {summary['model_id'] or 'unknown'}",
        correction,
        rano_line,
        f"Written: {summary['written']}",
    ]


def _window(image: np.ndarray) -> tuple[float, float]:
    """Display range of an MRI volume: 0.5th to 99.5th percentile of its non-zero voxels."""
    values = image[image != 0]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(max(high, low + 1e-6))


def _label_indices(seg2d: np.ndarray) -> np.ma.MaskedArray:
    """Label values as colormap indices (1, 2, 3 for NCR, ED, ET), background masked out."""
    index = np.searchsorted(sorted(LABEL_NAMES), seg2d) + 1
    return np.ma.masked_where(seg2d == 0, index)


@dataclass(frozen=True)
class _View:
    """How an axial slice of one modality is shown: grey-level window, in-plane crop, pixel aspect."""

    window: tuple[float, float]
    crop: tuple[slice, slice]
    aspect: float


def _draw_slice(ax, image2d, seg2d, view: _View, title: str, measure: RanoMeasure | None = None) -> None:
    rows, columns = view.crop
    ax.imshow(
        image2d[rows, columns],
        cmap="gray",
        vmin=view.window[0],
        vmax=view.window[1],
        interpolation="nearest",
        aspect=view.aspect,
    )
    ax.imshow(
        _label_indices(seg2d[rows, columns]),
        cmap=_LABEL_CMAP,
        vmin=-0.5,
        vmax=len(LABEL_NAMES) + 0.5,
        alpha=0.45,
        interpolation="nearest",
        aspect=view.aspect,
    )
    if measure is not None:
        for (r0, c0), (r1, c1) in (measure.longest_ends, measure.perpendicular_ends):
            ax.plot(
                [c0 - columns.start, c1 - columns.start],
                [r0 - rows.start, r1 - rows.start],
                color="#00e5ff",
                linewidth=1.2,
            )
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()


def _draw_page(
    figure: Figure,
    images: Mapping[str, np.ndarray],
    seg: np.ndarray,
    spacing: Sequence[float],
    summary: dict,
    measure: RanoMeasure | None,
) -> None:
    columns = len(summary["slices"])
    grid = figure.add_gridspec(4, max(columns, 2), height_ratios=[0.9, 2.4, 1.1, 1.1], hspace=0.35, wspace=0.05)
    header = figure.add_subplot(grid[0, :])
    header.set_axis_off()
    header.text(0, 1, "Brain tumour segmentation report", fontsize=14, weight="bold", va="top")
    header.text(0, 0.72, "\n".join(summary["text"]), fontsize=8.5, va="top", linespacing=1.6)

    crop = brain_box(np.stack([images[m] for m in REPORT_MODALITIES]))[1:]
    views = {m: _View(_window(images[m]), crop, spacing[1] / spacing[2]) for m in REPORT_MODALITIES}
    half = max(columns, 2) // 2
    rano_slice = measure.slice_index if measure is not None else summary["slices"][len(summary["slices"]) // 2]
    _draw_slice(
        figure.add_subplot(grid[1, :half]),
        images["t1ce"][rano_slice],
        seg[rano_slice],
        views["t1ce"],
        f"T1ce, axial slice {rano_slice}" + (" (RANO diameters)" if measure is not None else ""),
        measure,
    )

    table_ax = figure.add_subplot(grid[1, half:])
    table_ax.set_axis_off()
    rows = [[title, f"{summary['volumes_ml'][key]:.2f}"] for key, title in VOLUME_ROWS]
    table = table_ax.table(cellText=rows, colLabels=["Region", "Volume (mL)"], loc="center", colWidths=[0.75, 0.3])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.6)
    table_ax.legend(
        handles=[Patch(color=LABEL_COLORS[label], label=name) for label, name in LABEL_NAMES.items()],
        loc="lower center",
        fontsize=7,
        ncol=3,
        frameon=False,
    )

    for row, modality in enumerate(REPORT_MODALITIES, start=2):
        for column, z in enumerate(summary["slices"]):
            _draw_slice(
                figure.add_subplot(grid[row, column]),
                images[modality][z],
                seg[z],
                views[modality],
                f"{MODALITY_TITLES[modality]}, slice {z}",
            )


def _checked_target(path: str | Path, overwrite: bool) -> tuple[Path, str]:
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in REPORT_FORMATS:
        raise ValueError(
            f"A case report is written as PNG or PDF; {path.name} ends in {suffix or 'nothing'}. Name it .png or .pdf."
        )
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; choose another name or allow overwriting it.")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"The folder {path.parent} does not exist; create it or choose another.")
    return path, suffix[1:]


def write_case_report(
    path: str | Path,
    images: Mapping[str, np.ndarray],
    seg: np.ndarray,
    spacing: Sequence[float],
    case_id: str,
    model_id: str | None = None,
    prediction: np.ndarray | None = None,
    overwrite: bool = False,
) -> dict:
    """Write the case report to ``path`` (.png or .pdf) and return what it says as a dict.

    ``images`` maps "flair" and "t1ce" to display-space volumes of ``seg``'s shape; ``prediction``
    is the model's label map, to tell whether ``seg`` was corrected by hand.
    """
    target, fmt = _checked_target(path, overwrite)
    seg = np.asarray(seg)
    check_labels(seg)
    for modality in REPORT_MODALITIES:
        if modality not in images:
            raise ValueError(f"The report needs the {MODALITY_TITLES[modality]} image; it was not given.")
        if np.shape(images[modality]) != seg.shape:
            raise ValueError(
                f"The {MODALITY_TITLES[modality]} image has shape {np.shape(images[modality])} but the "
                f"labels have {seg.shape}; they belong to different cases."
            )
    measure = rano_diameters(seg == ET, spacing, axis=AXIAL)
    volumes = region_volumes_ml(seg, spacing)
    summary = {
        "path": str(target),
        "case_id": case_id,
        "model_id": model_id,
        "volumes_ml": {key: round(volumes[key], 2) for key, _ in VOLUME_ROWS},
        "rano": _rano_summary(measure),
        **correction_state(seg, prediction, spacing),
        "slices": montage_slices(seg, include=None if measure is None else measure.slice_index),
        "written": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    summary["text"] = _text_lines(summary)
    figure = Figure(figsize=_A4_INCHES)
    _draw_page(figure, {m: np.asarray(images[m]) for m in REPORT_MODALITIES}, seg, spacing, summary, measure)
    metadata = {"Title": f"Case report {case_id}", "Subject": "; ".join(summary["text"])}
    if fmt == "png":
        metadata = {"Title": metadata["Title"], "Description": metadata["Subject"]}
    with atomic_path(target) as temp:
        FigureCanvasAgg(figure).print_figure(temp, format=fmt, dpi=150, metadata=metadata)
    return summary
