"""Choose the post-processing on validation cases: thresholds, minor-component clean-up, nnU-Net's small-ET rule,
whole-tumour growth.

Each model segments each case once (default window, with its own options: a model that makes a second pass runs
twice, normalising the second time outside the tumour its first pass found at its own thresholds; with several
models their probabilities are averaged, as an ensemble would); every combination of the options below is then
applied to the probabilities and scored (Dice and HD95 for WT, TC and ET). The table lists the combinations best
first by mean Dice over the three regions; ``--json`` also keeps every case's scores. ``--cache DIR`` keeps each
model's probabilities (float16) so that another combination of models costs no inference. ``--thresholds`` tries
only the thresholds given; each ``--wt-growth THRESHOLD VOXELS`` adds a whole-tumour growth to the options (none
is always tried; see :func:`napari_brainseg.inference.grow_whole_tumour`).

    python benchmarks/postprocess.py --model bundled [PATH ...] --split training/splits/brats2018-v2.json \
        [--cache DIR] [--json OUT] [--thresholds WT TC ET ...] [--wt-growth THRESHOLD VOXELS ...]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from napari_brainseg.inference import check_growth, labels_from_probabilities, segment
from napari_brainseg.io import load_case
from napari_brainseg.model import load_model, resolve_model_path
from napari_brainseg.onnx_model import checkpoint_sha256
from napari_brainseg.training.data import discover_cases, read_split
from napari_brainseg.training.evaluate import mean_scores, region_scores

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brats2018"
THRESHOLDS = ((0.5, 0.5, 0.5), (0.4, 0.4, 0.4), (0.4, 0.5, 0.5), (0.3, 0.5, 0.5), (0.25, 0.5, 0.5), (0.2, 0.5, 0.5))
"""WT/TC/ET thresholds tried: one for every region, or a lower one for the whole tumour only."""
CLEANUPS = (0.0, 0.1, 0.3)
ET_MIN_VOXELS = (0, 500)


def probabilities(model_name: str, image: np.ndarray, case_id: str, cache: Path | None) -> np.ndarray:
    """The model's WT/TC/ET probabilities for a case, from ``cache`` when it holds them (kept by the checkpoint
    file's fingerprint: two runs' ``avg56.pt`` are different models)."""
    fingerprint = checkpoint_sha256(resolve_model_path(model_name))[:12]
    path = cache / f"{Path(model_name).stem}-{fingerprint}-{case_id}.npy" if cache else None
    if path is not None and path.exists():
        return np.load(path).astype(np.float32)
    model, info = load_model(model_name)
    probs = segment(image, model, device="cpu", **info.segment_options()).probabilities
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, probs.astype(np.float16))
    return probs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", nargs="+", default=["bundled"],
                        help="'bundled' or checkpoint paths; several are averaged as an ensemble")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of labelled BraTS cases")
    parser.add_argument("--split", default=None, help="split file whose val cases are used (default: the model's)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--cache", type=Path, default=None, help="folder keeping each model's probabilities")
    parser.add_argument("--json", type=Path, default=None, help="also write the table and per-case scores here")
    parser.add_argument("--thresholds", type=float, nargs=3, action="append", metavar=("WT", "TC", "ET"),
                        help="WT/TC/ET thresholds to try, again for more (default: the six of THRESHOLDS)")
    parser.add_argument("--wt-growth", type=float, nargs=2, action="append", default=[],
                        metavar=("THRESHOLD", "VOXELS"), help="a whole-tumour growth to try, again for more")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    _, info = load_model(args.model[0])
    wanted = set(read_split(args.split)["val"] if args.split else info.val_cases)
    cases = [c for c in discover_cases([args.data]) if c.case_id in wanted]
    if not cases:
        raise SystemExit(f"error: none of the validation cases are in {args.data}.")
    thresholds = [tuple(t) for t in args.thresholds] if args.thresholds else THRESHOLDS
    growths = [None, *(check_growth(g) for g in args.wt_growth)]
    grid = list(itertools.product(thresholds, CLEANUPS, ET_MIN_VOXELS, growths))
    rows: dict[tuple, list[dict]] = {key: [] for key in grid}
    for files in cases:
        case = load_case(files)
        probs = np.mean([probabilities(m, case.image, case.case_id, args.cache) for m in args.model], axis=0)
        brain = np.any(case.image != 0, axis=0)
        for key in grid:
            scores = region_scores(labels_from_probabilities(probs, brain, *key), case.seg, case.spacing)
            rows[key].append({"case": case.case_id, **scores})
        print(f"done {case.case_id}", file=sys.stderr, flush=True)

    summary = {key: mean_scores(v) for key, v in rows.items()}
    ranked = sorted(summary.items(), key=lambda kv: -np.mean([kv[1][f"Dice_{r}"] for r in ("WT", "TC", "ET")]))
    metrics = list(ranked[0][1])
    print(f"{' + '.join(args.model)} on {len(cases)} validation case(s)")
    print("WT/TC/ET thresholds cleanup et_min  wt_growth" + "".join(m.rjust(9) for m in metrics))
    for (threshold, cleanup, et_min, growth), values in ranked:
        print(f"{'/'.join(f'{t:.2f}' for t in threshold):>18} {cleanup:7.0%} {et_min:6d} "
              f"{'-' if growth is None else f'{growth[0]:.2f}/{growth[1]}':>10}"
              + "".join(f"{values[m]:9.3f}" for m in metrics))
    if args.json:
        table = [{"thresholds": list(k[0]), "cleanup": k[1], "et_min_voxels": k[2],
                  "wt_growth": None if k[3] is None else list(k[3]), **v, "per_case": rows[k]} for k, v in ranked]
        args.json.write_text(json.dumps({"models": args.model, "cases": [c.case_id for c in cases],
                                         "table": table}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
