"""Per-case Dice and HD95 for WT, TC and ET with MONAI's metrics and the BraTS rules for empty regions.

BraTS scores a region that is empty in the ground truth as Dice 1 when the prediction is empty too
and 0 otherwise (MONAI's ``DiceMetric`` would give NaN); HD95 is 0 when both are empty and
:data:`HD95_EMPTY` (the volume diagonal BraTS uses) when only one is.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_brainseg.atomic import atomic_path, write_text_atomic
from napari_brainseg.inference import AUTO, segment
from napari_brainseg.io import CaseFiles, load_case
from napari_brainseg.jobs import Progress, ProgressCallback, ShouldStop, drive
from napari_brainseg.labels import REGION_NAMES, regions_from_labels

HD95_EMPTY = 373.13
EVALUATE_STAGE = "evaluate"


def region_scores(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """``{"Dice_WT": ..., "HD95_WT": ..., ...}`` for two label maps on the same grid."""
    from monai.metrics import compute_dice, compute_hausdorff_distance

    scores: dict[str, float] = {}
    pred_regions, true_regions = regions_from_labels(pred), regions_from_labels(truth)
    for name, p, t in zip(REGION_NAMES, pred_regions, true_regions):
        if not t.any() or not p.any():
            both_empty = not t.any() and not p.any()
            scores[f"Dice_{name}"] = 1.0 if both_empty else 0.0
            scores[f"HD95_{name}"] = 0.0 if both_empty else HD95_EMPTY
            continue
        pt = torch.from_numpy(p[None, None].astype(np.float32))
        tt = torch.from_numpy(t[None, None].astype(np.float32))
        scores[f"Dice_{name}"] = float(compute_dice(pt, tt, include_background=True))
        scores[f"HD95_{name}"] = float(
            compute_hausdorff_distance(pt, tt, include_background=True, percentile=95, spacing=list(spacing))
        )
    return scores


def mean_scores(rows: Sequence[dict]) -> dict[str, float]:
    """The mean of every numeric score over per-case rows."""
    keys = [k for k in rows[0] if k.startswith(("Dice_", "HD95_"))]
    return {k: float(np.mean([row[k] for row in rows])) for k in keys}


def score_case(
    model: torch.nn.Module,
    files: CaseFiles,
    device: str | torch.device = "cpu",
    tta: bool = False,
    roi_size: Sequence[int] | str | None = AUTO,
    **options: Any,
) -> dict:
    """Segment one case with ``options`` of :func:`~napari_brainseg.inference.segment` (the model's own:
    ``**info.segment_options()``) and score it against its expert labels: one row."""
    case = load_case(files)
    result = segment(case.image, model, device=device, tta=tta, roi_size=roi_size, **options)
    return {"case_id": case.case_id, **region_scores(result.labels, case.seg, case.spacing),
            "seconds": round(result.seconds, 2)}


def evaluate_steps(
    model: torch.nn.Module,
    cases: Sequence[CaseFiles],
    device: str | torch.device = "cpu",
    tta: bool = False,
    roi_size: Sequence[int] | str | None = AUTO,
    stage: str = EVALUATE_STAGE,
    **options: Any,
) -> Generator[Progress, None, list[dict]]:
    """Segment each case (``options`` as :func:`score_case`) and score it against its expert labels, yielding
    after each case (its id in ``note``); returns one row per case."""
    rows = []
    for i, files in enumerate(cases):
        rows.append(score_case(model, files, device, tta, roi_size, **options))
        yield Progress(stage, i + 1, len(cases), note=files.case_id)
    return rows


def evaluate_cases(
    model: torch.nn.Module,
    cases: Sequence[CaseFiles],
    progress: ProgressCallback | None = None,
    should_stop: ShouldStop | None = None,
    **options,
) -> list[dict]:
    """:func:`evaluate_steps` (``options``: its device, tta, roi_size and :func:`score_case`'s) run to its end by
    :func:`napari_brainseg.jobs.drive`."""
    return drive(evaluate_steps(model, cases, **options), progress, should_stop)


def compare_scores(base_rows: Sequence[dict], new_rows: Sequence[dict]) -> list[dict]:
    """Mean of every score for two models on the same cases: ``metric, base, new, change, worse``.

    Higher Dice and lower HD95 are better; a change too small to show at three decimals is no change.
    """
    base, new = mean_scores(base_rows), mean_scores(new_rows)
    rows = []
    for metric in base:
        change = round(new[metric] - base[metric], 3)
        worse = change < 0 if metric.startswith("Dice_") else change > 0
        rows.append({"metric": metric, "base": base[metric], "new": new[metric], "change": change, "worse": worse})
    return rows


def format_comparison(comparison: Sequence[dict], base_name: str, n_cases: int) -> str:
    """A before/after table of mean scores and a plain verdict on whether to keep the new model."""
    lines = [f"Mean over {n_cases} validation case(s)  (Dice: higher is better; HD95 in mm: lower is better)",
             f"{'metric':10}{'base':>10}{'new':>10}{'change':>10}"]
    lines += [f"{r['metric']:10}{r['base']:10.3f}{r['new']:10.3f}{r['change']:+10.3f}"
              + ("   worse" if r["worse"] else "") for r in comparison]
    worse = [r["metric"] for r in comparison if r["worse"]]
    if worse:
        lines.append(f"WORSE than the base on {', '.join(worse)}: keep the base model ({base_name}).")
    else:
        lines.append(f"Not worse than the base ({base_name}) on any score.")
    return "\n".join(lines)


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table of per-case scores and their mean."""
    keys = [k for k in rows[0] if k.startswith(("Dice_", "HD95_"))]
    width = max(len(r["case_id"]) for r in rows) + 2
    lines = ["case".ljust(width) + "".join(k.rjust(10) for k in keys)]
    lines += [r["case_id"].ljust(width) + "".join(f"{r[k]:10.3f}" for k in keys) for r in rows]
    mean = mean_scores(rows)
    lines.append("mean".ljust(width) + "".join(f"{mean[k]:10.3f}" for k in keys))
    return "\n".join(lines)


def write_report(rows: Sequence[dict], path: str | Path) -> Path:
    """Write rows (plus their mean) as CSV or JSON, chosen by the file's extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        write_text_atomic(path, json.dumps({"cases": list(rows), "mean": mean_scores(rows)}, indent=2) + "\n")
    elif path.suffix.lower() == ".csv":
        with atomic_path(path) as temp, temp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            writer.writerow({"case_id": "mean", **mean_scores(rows)})
    else:
        raise ValueError(f"Report {path.name} must end in .csv or .json.")
    return path
