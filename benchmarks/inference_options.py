"""Cost and gain of the inference options: window, test-time flips, dropping minor tumour components.

For each option the model segments the validation cases its checkpoint names (or, with ``--subset
train``, some of its training cases: choose settings there, report them on validation) on the CPU; the
table gives mean Dice and HD95 for WT, TC and ET and the mean inference time per case (loading excluded).

    python benchmarks/inference_options.py [--model bundled|PATH] [--subset val|train] [--limit N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from napari_brainseg.inference import labels_from_probabilities, segment
from napari_brainseg.io import load_case
from napari_brainseg.model import load_model
from napari_brainseg.training.data import discover_cases
from napari_brainseg.training.evaluate import mean_scores, region_scores

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brats2018"
OPTIONS = {
    "one pass over the brain box": {"roi_size": None},
    "sliding window 96^3, overlap 0.25": {"roi_size": (96, 96, 96)},
    "sliding window 128^3, overlap 0.25": {"roi_size": (128, 128, 128)},
    "one pass + test-time flips": {"roi_size": None, "tta": True},
}
CLEANUPS = (0.0, 0.1, 0.3, 1.0)  # 1.0 keeps only the largest component


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--subset", choices=["val", "train"], default="val")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many cases")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, info = load_model(args.model)
    wanted = set(info.val_cases if args.subset == "val" else info.train_cases)
    cases = [c for c in discover_cases([args.data]) if c.case_id in wanted][: args.limit]
    if not cases:
        raise SystemExit(f"error: none of {info.model_id}'s {args.subset} cases are in {args.data}.")
    rows: dict[str, list[dict]] = {}
    for files in cases:
        case = load_case(files)
        brain = np.any(case.image != 0, axis=0)
        for name, options in OPTIONS.items():
            # the model's own clean-up decides which tumour a second pass leaves out; the others apply after
            result = segment(case.image, model, device="cpu", **info.segment_options(), **options)
            for fraction in CLEANUPS:
                labels = labels_from_probabilities(result.probabilities, brain, info.thresholds, fraction,
                                                   wt_growth=info.wt_growth)
                key = f"{name}, drop components < {fraction:.0%} of the largest" if fraction else name
                scores = region_scores(labels, case.seg, case.spacing)
                rows.setdefault(key, []).append({**scores, "seconds": result.seconds})
        print(f"done {case.case_id}", file=sys.stderr, flush=True)

    summary = {k: {**mean_scores(v), "seconds": float(np.mean([r["seconds"] for r in v]))} for k, v in rows.items()}
    metrics = list(next(iter(summary.values())))
    width = max(map(len, summary)) + 2
    print(f"{info.model_id} on {len(cases)} {args.subset} case(s), {args.threads} threads")
    print("option".ljust(width) + "".join(m.rjust(9) for m in metrics))
    for key, values in summary.items():
        print(key.ljust(width) + "".join(f"{values[m]:9.3f}" for m in metrics))
    if args.json:
        args.json.write_text(json.dumps({"model": info.model_id, "subset": args.subset, "cases": [c.case_id for c in cases],
                                         "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
