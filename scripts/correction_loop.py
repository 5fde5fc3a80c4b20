"""Close the loop on real cases without a GUI: segment, export "corrections", fine-tune, compare.

The expert labels of each case stand in for an annotator's corrections of the model's prediction: the
case is segmented with the base model and exported, through the same code as the Export widget, with
the expert mask as the corrected labels and the prediction as what the model proposed. Then
``napari-brainseg finetune`` fine-tunes the base on those corrections (mixed with the original
training cases) and reports base vs new on validation cases used by neither.

    python scripts/correction_loop.py --cases Brats18_CBICA_ALU_1 Brats18_CBICA_AQN_1 Brats18_2013_11_1 \\
        --val Brats18_CBICA_AMH_1 Brats18_CBICA_ASE_1 Brats18_TCIA01_378_1 --work /tmp/loop
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from napari_brainseg.export import export_correction
from napari_brainseg.inference import segment
from napari_brainseg.io import find_case, load_case
from napari_brainseg.model import load_model

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brats2018"


def export_expert_corrections(cases: list[str], data: Path, dataset: Path, base: str) -> None:
    """Segment each case with ``base`` and export its expert mask as the correction of that prediction."""
    model, info = load_model(base)
    for case_id in cases:
        case = load_case(find_case(data / case_id))
        prediction = segment(case.image, model, device="cpu", **info.segment_options()).labels
        result = export_correction(dataset, case.files, case.geometry, case.seg, prediction, info.model_id, info.version)
        changes = json.loads(result.sidecar_path.read_text()).get("corrections_vs_prediction", {})
        print(f"exported {case_id} as {result.folder} ({changes.get('changed_voxels', '?')} voxels corrected)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", required=True, help="case ids whose expert masks act as corrections")
    parser.add_argument("--val", nargs="+", required=True, help="case ids to compare base and new models on")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--base", default="bundled")
    parser.add_argument("--work", type=Path, required=True, help="folder for the corrections dataset and the run")
    parser.add_argument("--max-steps", type=int, default=200)
    args = parser.parse_args()

    overlap = set(args.cases) & set(args.val)
    if overlap:
        parser.error(f"{sorted(overlap)} cannot be both corrected and validation cases.")
    dataset = args.work / "corrections"
    export_expert_corrections(args.cases, args.data, dataset, args.base)
    split = args.work / "val_split.json"
    split.write_text(json.dumps({"train": [], "val": args.val}, indent=2) + "\n")
    command = [sys.executable, "-m", "napari_brainseg", "finetune", "--base", args.base, "--data", str(dataset),
               str(args.data), "--out", str(args.work / "run"), "--val-split", str(split),
               "--max-steps", str(args.max_steps), "--device", "cpu"]
    print("$", " ".join(command), flush=True)
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
