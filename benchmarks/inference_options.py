"""Cost and gain of the inference options on validation cases: window, test-time flips, component clean-up.

For each option the model segments every validation case (its checkpoint names them) on the CPU; the
table gives mean Dice and HD95 for WT, TC and ET and the mean inference time per case (loading excluded).

    python benchmarks/inference_options.py [--model bundled|PATH] [--data DIR] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from napari_brainseg.inference import segment
from napari_brainseg.io import load_case
from napari_brainseg.model import load_model
from training.data import discover_cases
from training.evaluate import mean_scores, region_scores

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brats2018"
OPTIONS = {
    "one pass over the brain box": {},
    "sliding window 96^3, overlap 0.25": {"roi_size": (96, 96, 96)},
    "sliding window 128^3, overlap 0.25": {"roi_size": (128, 128, 128)},
    "one pass + test-time flips": {"tta": True},
    "sliding 96^3 + test-time flips": {"roi_size": (96, 96, 96), "tta": True},
}
CLEANUPS = (0.0, 0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, info = load_model(args.model)
    cases = [c for c in discover_cases([args.data]) if c.case_id in set(info.val_cases)]
    if not cases:
        raise SystemExit(f"error: none of {info.model_id}'s validation cases are in {args.data}.")
    rows: dict[str, list[dict]] = {}
    for files in cases:
        case = load_case(files)
        for name, options in OPTIONS.items():
            for fraction in CLEANUPS:
                result = segment(case.image, model, device="cpu", min_component_fraction=fraction, **options)
                key = f"{name}, drop components < {fraction:.0%} of the largest" if fraction else name
                scores = region_scores(result.labels, case.seg, case.spacing)
                rows.setdefault(key, []).append({**scores, "seconds": result.seconds})
        print(f"done {case.case_id}", file=sys.stderr, flush=True)

    summary = {k: {**mean_scores(v), "seconds": float(np.mean([r["seconds"] for r in v]))} for k, v in rows.items()}
    metrics = list(next(iter(summary.values())))
    width = max(map(len, summary)) + 2
    print(f"{info.model_id} on {len(cases)} validation case(s), {args.threads} threads")
    print("option".ljust(width) + "".join(m.rjust(9) for m in metrics))
    for key, values in summary.items():
        print(key.ljust(width) + "".join(f"{values[m]:9.3f}" for m in metrics))
    if args.json:
        args.json.write_text(json.dumps({"model": info.model_id, "cases": [c.case_id for c in cases],
                                         "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
