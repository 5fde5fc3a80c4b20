"""How much hand work turns the model's mask into the expert's: clicks (``refine``) against slice repainting.

On each validation case the bundled model segments the case; then a simulated annotator corrects it:

* **clicks**: each new click goes to the voxel deepest inside the largest 3-D connected region where the
  labels disagree with the expert, carrying the expert's label there (``clicks.next_click``); all clicks so
  far go to ``refine``. Printed: WT/TC/ET Dice after 0, 1, 3, 5 and 10 clicks, clicks to reach WT Dice 0.90
  and 0.95 (">N" when N clicks did not), and the median seconds per click; then, for each kind of click (adds
  tumour, removes tumour, corrects a class inside the tumour), how many there were, how deep they lay in their
  error (the distance to the nearest voxel that already carries what they say) and how many whole-tumour voxels
  they made right and wrong (``click_outcome``).
* **slice repainting**: one action repaints a whole axial slice with the expert's labels (slices that are
  already right are skipped), until WT Dice 0.95, taking slices in the Review widget's uncertainty order
  (then any others, top to bottom), top to bottom, or worst first (an oracle). Printed: the share of the
  tumour's axial slices repainted.

Run from the repository root (a few minutes a case on 2 CPU threads)::

    OMP_NUM_THREADS=2 python benchmarks/click_effort.py [--model CLICK_CHECKPOINT] [--clicks 20] [--tta] [--oracle]

``--report A.json B.json ...`` prints one table, medians over all their cases, of runs saved with ``--json``
(say one per held-out fold, each with its own segmenter), without running anything.

``--oracle`` replaces the refinement by a perfect correction of the error region each click lands in, inside
region growing's window: the most a click that corrects only its own region in that window can do.

Without ``--tta`` the uncertainty order uses the single pass's own doubt, ``min(p, 1 - p)`` of each region's
probability (the Review widget uses the spread of test-time flips, 4x the segmentation time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_brainseg.clicks import Click, next_click  # noqa: E402
from napari_brainseg.inference import segment  # noqa: E402
from napari_brainseg.io import load_case  # noqa: E402
from napari_brainseg.labels import BACKGROUND, REGION_NAMES, region_dice  # noqa: E402
from napari_brainseg.model import ModelInfo, load_model, resolve_model_path  # noqa: E402
from napari_brainseg.onnx_model import checkpoint_sha256  # noqa: E402
from napari_brainseg.refine import GROWING_WINDOW, click_side, click_window, refine  # noqa: E402
from napari_brainseg.review import ReviewQueue, slice_scores  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "brats2018"
SPLIT = ROOT / "training" / "splits" / "brats2018-v2.json"
REPORTED_CLICKS = (0, 1, 3, 5, 10)
TARGETS = (0.90, 0.95)
REPAINT_TARGET = 0.95


def oracle_refine(labels: np.ndarray, truth: np.ndarray, brain: np.ndarray, click: Click) -> np.ndarray:
    """A perfect click: the error region it lands in takes the expert's labels inside region growing's window
    (the most a click that corrects only its own region there can do; a bound, not a method)."""
    wrong = (labels != truth) & brain
    components, _ = ndimage.label(wrong)
    box = click_window(click[:3], labels.shape, GROWING_WINDOW)
    fixed = labels.copy()
    region = components[box] == components[click[:3]]
    fixed[box][region] = truth[box][region]
    return fixed


def click_outcome(before: np.ndarray, after: np.ndarray, truth: np.ndarray, brain: np.ndarray, click: Click) -> dict:
    """What a click was and did to the whole tumour: its kind, its depth (voxels from the nearest voxel that already
    carries what it says, within region growing's window; None where the window holds none), and the voxels whose
    whole-tumour label it made right and made wrong."""
    z, y, x, label = click
    kind = "class" if (before[z, y, x] == BACKGROUND) == (label == BACKGROUND) else \
        "adds tumour" if label != BACKGROUND else "removes tumour"
    box = click_window(click[:3], before.shape, GROWING_WINDOW)
    local = (*(v - s.start for v, s in zip(click[:3], box)), label)
    side = click_side(before[box], brain[box], local)
    depth = None
    if kind != "class" and side.any():
        depth = float(ndimage.distance_transform_edt(~side)[local[:3]])
    changed = (before != BACKGROUND) != (after != BACKGROUND)
    now_right = (after != BACKGROUND) == (truth != BACKGROUND)
    return {"kind": kind, "depth": depth, "made_right": int(np.count_nonzero(changed & now_right)),
            "made_wrong": int(np.count_nonzero(changed & ~now_right))}


def click_session(image, start, truth, brain, n_clicks: int, model: str | None, oracle: bool = False) -> dict:
    """Dice after every click, the seconds each click took and what each did (:func:`click_outcome`)."""
    labels, clicks, history, seconds, outcomes = start, [], [region_dice(start, truth)], [], []
    for _ in range(n_clicks):
        click = next_click(labels, truth, brain)
        if click is None:
            history.append(history[-1])
            continue
        clicks.append(click)
        begin = time.perf_counter()
        refined = oracle_refine(labels, truth, brain, click) if oracle else refine(image, labels, clicks, model=model)
        seconds.append(time.perf_counter() - begin)
        outcomes.append(click_outcome(labels, refined, truth, brain, click))
        labels = refined
        history.append(region_dice(labels, truth))
    return {"dice": history, "seconds": seconds, "clicks": outcomes}


def repaint_actions(start: np.ndarray, truth: np.ndarray, order: list[int]) -> tuple[int, int]:
    """Slices repainted (taking them in ``order``, skipping right ones) until WT Dice reaches the target;
    and the tumour's axial slice count."""
    pred, true = start > 0, truth > 0
    axes = (1, 2)
    both, pred_n, true_n = (pred & true).sum(axis=axes), pred.sum(axis=axes), true.sum(axis=axes)
    wrong = (start != truth).any(axis=axes)
    tumour_slices = int((true_n > 0).sum())
    actions = 0
    for z in order:
        total = pred_n.sum() + true_n.sum()
        if total == 0 or 2 * both.sum() / total >= REPAINT_TARGET:
            break
        if not wrong[z]:
            continue
        both[z], pred_n[z], wrong[z] = true_n[z], true_n[z], False
        actions += 1
    return actions, tumour_slices


def slice_orders(start: np.ndarray, truth: np.ndarray, uncertainty: np.ndarray, brain: np.ndarray) -> dict:
    """The three orders of axial slices: uncertainty (Review queue, then the rest), top to bottom, worst first."""
    top_down = list(range(start.shape[0] - 1, -1, -1))
    queue = ReviewQueue(slice_scores(uncertainty, region=brain)).order
    wrong = ((start > 0) != (truth > 0)).sum(axis=(1, 2))
    return {
        "uncertainty": queue + [z for z in top_down if z not in set(queue)],
        "top-down": top_down,
        "oracle": [int(z) for z in np.argsort(-wrong, kind="stable")],
    }


def segmentation(image: np.ndarray, segmenter, info: ModelInfo, tta: bool,
                 cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The segmenter's labels (with its ``info``'s own options) and voxel doubt (kept in ``cache`` when given, for
    reruns)."""
    if cache is not None and cache.exists():
        saved = np.load(cache)
        return saved["labels"], saved["doubt"]
    result = segment(image, segmenter, "cpu", tta=tta, **info.segment_options())
    doubt = result.uncertainty if tta else np.minimum(result.probabilities, 1 - result.probabilities).max(axis=0)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, labels=result.labels, doubt=doubt.astype(np.float16))
    return result.labels, doubt


def run_case(case_dir: Path, segmenter, info: ModelInfo, n_clicks: int, model: str | None, tta: bool,
             cache: Path | None, oracle: bool = False) -> dict:
    case = load_case(case_dir)
    brain = np.any(case.image != 0, axis=0)
    labels, doubt = segmentation(case.image, segmenter, info, tta, cache)
    session = click_session(case.image, labels, case.seg, brain, n_clicks, model, oracle)
    repaint = {}
    for name, order in slice_orders(labels, case.seg, doubt.astype(np.float32), brain).items():
        actions, tumour_slices = repaint_actions(labels, case.seg, order)
        repaint[name] = actions / max(tumour_slices, 1)
    return {"case_id": case.case_id, **session, "repaint": repaint}


def clicks_to(history: list[dict], target: float) -> int | None:
    return next((k for k, scores in enumerate(history) if scores["WT"] >= target), None)


def _fmt_clicks(value: int | None, n_clicks: int) -> str:
    return f">{n_clicks}" if value is None else str(value)


def report(rows: list[dict], n_clicks: int) -> str:
    """A markdown table: one row per case and a median row."""
    shown = [k for k in REPORTED_CLICKS if k <= n_clicks]
    head = (["case"] + [f"WT/TC/ET @{k}" for k in shown] + [f"clicks to WT {t:.2f}" for t in TARGETS]
            + ["s/click", "repaint: uncertainty", "top-down", "oracle"])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]

    def line(name, at, to, secs, repaint):
        cells = [name] + ["/".join(f"{s[r]:.2f}" for r in REGION_NAMES) for s in at]
        cells += [_fmt_clicks(v, n_clicks) if not isinstance(v, str) else v for v in to]
        cells += [f"{secs:.2f}"] + [f"{100 * repaint[k]:.0f}%" for k in ("uncertainty", "top-down", "oracle")]
        lines.append("| " + " | ".join(cells) + " |")

    for row in rows:
        line(row["case_id"], [row["dice"][k] for k in shown], [clicks_to(row["dice"], t) for t in TARGETS],
             float(np.median(row["seconds"])) if row["seconds"] else 0.0, row["repaint"])
    medians = [{r: float(np.median([row["dice"][k][r] for row in rows])) for r in REGION_NAMES} for k in shown]
    to = []
    for t in TARGETS:
        counts = sorted(n_clicks + 1 if clicks_to(row["dice"], t) is None else clicks_to(row["dice"], t) for row in rows)
        middle = float(np.median(counts))
        to.append(f">{n_clicks}" if middle > n_clicks else f"{middle:g}")
    secs = float(np.median([s for row in rows for s in row["seconds"]] or [0.0]))
    repaint = {k: float(np.median([row["repaint"][k] for row in rows])) for k in ("uncertainty", "top-down", "oracle")}
    line("**median**", medians, to, secs, repaint)
    return "\n".join(lines)


def where_clicks_went(rows: list[dict]) -> str:
    """One line per kind of click over all cases: how many, their median depth, and the whole-tumour voxels they
    made right and wrong (runs saved before the benchmark recorded clicks are left out)."""
    outcomes = [o for row in rows for o in row.get("clicks", [])]
    lines = []
    for kind in ("adds tumour", "removes tumour", "class"):
        these = [o for o in outcomes if o["kind"] == kind]
        if not these:
            continue
        depths = [o["depth"] for o in these if o["depth"] is not None]
        right, wrong = sum(o["made_right"] for o in these), sum(o["made_wrong"] for o in these)
        gained = sum(o["made_right"] > o["made_wrong"] for o in these)
        depth = f"median depth {np.median(depths):.1f} voxels, " if depths else ""
        lines.append(f"- {kind}: {len(these)} clicks, {depth}whole-tumour voxels made right {right:,}, made wrong "
                     f"{wrong:,}; more right than wrong in {gained}")
    return "\n".join(["Where the clicks went:", *lines]) if lines else ""


def saved_report(paths: list[Path]) -> str:
    """:func:`report` over the cases of several ``--json`` files, cut to the fewest clicks any of them ran."""
    rows = [row for path in paths for row in json.loads(path.read_text())]
    if not rows:
        raise SystemExit("error: the --report files hold no cases.")
    n_clicks = min(len(row["dice"]) for row in rows) - 1
    rows = [{**row, "dice": row["dice"][: n_clicks + 1], "seconds": row["seconds"][:n_clicks],
             "clicks": row.get("clicks", [])[:n_clicks]} for row in rows]
    return "\n\n".join(filter(None, [report(rows, n_clicks), where_clicks_went(rows)]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--split", type=Path, default=SPLIT, help="a split JSON; its 'val' cases are used")
    parser.add_argument("--cases", nargs="*", default=None, help="case ids (default: the split's val list)")
    parser.add_argument("--segmenter", default="bundled", help="the model whose mask is corrected")
    parser.add_argument("--model", default=None, help="click-refinement checkpoint (default: region growing)")
    parser.add_argument("--oracle", action="store_true",
                        help="instead of refining, fix the error region each click lands in, inside the refinement "
                             "window (the bound for a click that corrects only its own region there)")
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tta", action="store_true", help="uncertainty order from test-time flips, as in Review")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder keeping each case's segmentation (by the segmenter's file), so that reruns only "
                             "click")
    parser.add_argument("--report", type=Path, nargs="+", default=None, metavar="JSON",
                        help="print the table of runs saved with --json, medians over all their cases, and stop")
    args = parser.parse_args(argv)
    if args.report:
        print(saved_report(args.report))
        return 0
    torch.set_num_threads(args.threads)
    segmenter, info = load_model(args.segmenter)
    cases = args.cases or json.loads(args.split.read_text())["val"]
    print(f"Segmenter {info.model_id} ({info.version}); refinement: {'oracle' if args.oracle else args.model or 'region growing'}; "
          f"{len(cases)} case(s), {args.clicks} clicks each, {args.threads} thread(s).", flush=True)
    seen = sorted(set(info.train_cases) & set(cases))
    if seen:
        print(f"Note: the segmenter was trained on {len(seen)} of these cases ({', '.join(seen)}): its masks start "
              "closer to the expert's than on new scans.", flush=True)
    fingerprint = checkpoint_sha256(resolve_model_path(args.segmenter))[:12]  # options differ, id and version may not
    rows = []
    for case_id in cases:
        cache = args.cache / f"{info.model_id}-{info.version}-{fingerprint}-{case_id}{'-tta' if args.tta else ''}.npz" \
            if args.cache else None
        rows.append(run_case(args.data / case_id, segmenter, info, args.clicks, args.model, args.tta, cache,
                             args.oracle))
        row = rows[-1]
        print(f"{case_id}: WT {row['dice'][0]['WT']:.3f} -> {row['dice'][-1]['WT']:.3f} after {args.clicks} clicks",
              flush=True)
    print(report(rows, args.clicks))
    print(where_clicks_went(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
