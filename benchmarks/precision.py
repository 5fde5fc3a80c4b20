"""A model's ONNX export at reduced precision, measured: file size, seconds per case, validation Dice per region.

Each precision (fp32; fp16 weights; int8, ONNX Runtime's dynamic quantization) is exported to a temporary
folder with :func:`napari_brainseg.onnx_export.export_onnx` and run by ONNX Runtime on the CPU over the
validation cases of a split, as ``napari-brainseg evaluate --backend onnx`` runs them; the torch backend runs
the same cases once for reference. Per precision it prints the file size, the median seconds per case (the
segmentation, not the loading), the mean Dice of WT, TC and ET, the change from fp32, and the share of voxels
labelled as torch labels them (lowest case). The variant to ship is the smallest of the fastest (within 5%)
whose mean Dice stays within 0.005 of fp32 on every region.

Usage::

    python benchmarks/precision.py [--model bundled] [--split training/splits/brats2018-v2.json]
        [--data ../shared/data/brats2018] [--threads 2] [--precisions fp32 fp16 int8] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DICE_MARGIN = 0.005
SPEED_MARGIN = 1.05
REGIONS = ("WT", "TC", "ET")


def choose(rows: dict[str, dict]) -> str:
    """The variant to ship: Dice within :data:`DICE_MARGIN` of fp32 on every region, then fastest, then smallest."""
    base = rows["fp32"]["dice"]
    fine = {p: r for p, r in rows.items() if all(abs(r["dice"][k] - base[k]) <= DICE_MARGIN for k in REGIONS)}
    fastest = min(r["seconds_median"] for r in fine.values())
    quick = {p: r for p, r in fine.items() if r["seconds_median"] <= SPEED_MARGIN * fastest}
    return min(quick, key=lambda p: quick[p]["size_mb"])


def markdown(rows: dict[str, dict], ship: str, n_cases: int) -> str:
    """The table for the model card."""
    lines = [
        f"| ONNX export | file (MB) | s / case | Dice WT | Dice TC | Dice ET | max change from fp32 | "
        f"voxels as torch (lowest of {n_cases}) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = rows["fp32"]["dice"]
    for precision, r in rows.items():
        change = max(abs(r["dice"][k] - base[k]) for k in REGIONS)
        name = f"**{precision}** (shipped)" if precision == ship else precision
        lines.append(
            f"| {name} | {r['size_mb']:.2f} | {r['seconds_median']:.2f} | "
            + " | ".join(f"{r['dice'][k]:.4f}" for k in REGIONS)
            + f" | {change:.4f} | {100 * r['agreement_min']:.3f}% |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled", help="'bundled', a registered name or a checkpoint path")
    parser.add_argument("--split", default=str(REPO_ROOT / "training" / "splits" / "brats2018-v2.json"))
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data" / "brats2018"))
    parser.add_argument("--threads", type=int, default=2, help="threads of ONNX Runtime and torch")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "int8"])
    parser.add_argument("--json", type=Path, default=None, help="also save the results here")
    args = parser.parse_args(argv)
    if "fp32" not in args.precisions:
        parser.error("fp32 is the reference; keep it in --precisions")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by ONNX Runtime sessions (and torch, below)

    import numpy as np
    import torch

    from napari_brainseg.inference import segment
    from napari_brainseg.io import load_case
    from napari_brainseg.model import load_model
    from napari_brainseg.onnx_export import export_onnx
    from napari_brainseg.onnx_model import open_onnx
    from napari_brainseg.registry import resolve_model
    from napari_brainseg.training.data import discover_cases, read_split
    from napari_brainseg.training.evaluate import region_scores

    torch.set_num_threads(args.threads)
    checkpoint = resolve_model(args.model)
    wanted = set(read_split(args.split)["val"])
    cases = [c for c in discover_cases([args.data]) if c.case_id in wanted]
    if not cases:
        raise SystemExit(f"error: none of the validation cases of {args.split} is in {args.data}")
    network, info = load_model(checkpoint)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        exported = {}
        for precision in args.precisions:
            path, _ = export_onnx(checkpoint, Path(folder) / f"{precision}.onnx", precision=precision)
            exported[precision] = open_onnx(path)
            rows[precision] = {"size_mb": path.stat().st_size / 1e6, "seconds": [], "scores": [], "agreement": []}
            print(f"exported {precision}: {rows[precision]['size_mb']:.2f} MB", file=sys.stderr)
        for i, files in enumerate(cases, start=1):
            case = load_case(files)
            reference = segment(case.image, network, device="cpu", **info.segment_options()).labels
            for precision, model in exported.items():
                result = segment(case.image, model, device="cpu", **info.segment_options())
                row = rows[precision]
                row["seconds"].append(result.seconds)
                row["scores"].append(region_scores(result.labels, case.seg, case.spacing))
                row["agreement"].append(float(np.mean(result.labels == reference)))
                print(f"[{i}/{len(cases)}] {case.case_id} {precision}: {result.seconds:.2f} s, "
                      f"{100 * row['agreement'][-1]:.3f}% of voxels as torch", file=sys.stderr)
    for row in rows.values():
        row["seconds_median"] = statistics.median(row["seconds"])
        row["dice"] = {k: float(np.mean([s[f"Dice_{k}"] for s in row["scores"]])) for k in REGIONS}
        row["agreement_min"] = min(row["agreement"])
    ship = choose(rows)
    print(f"{info.model_id} version {info.version}, {len(cases)} validation cases of {Path(args.split).name}, "
          f"{args.threads} threads")
    print(markdown(rows, ship, len(cases)))
    print(f"ship: {ship}  (napari-brainseg export-onnx --precision {ship})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(checkpoint), "model_id": info.model_id,
                                         "version": info.version, "threads": args.threads,
                                         "cases": [c.case_id for c in cases], "ship": ship, "rows": rows},
                                        indent=2, default=str) + "\n")
        print(f"saved {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
