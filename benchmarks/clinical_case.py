"""The raw clinical case end to end: ``napari-brainseg predict --prepare`` timed, then scored against the references.

Reports wall time, CPU time (user + system, all threads) and peak memory of the whole run, the brain-mask Dice
against the reference mask (on the prepared case's grid) and the whole-tumour, tumour-core and enhancing-tumour
Dice against the reference labels mapped to the native T1ce grid (the README's NiftyReg affine, nearest
neighbour). The references come from an automatic pipeline (BrainLes + five BraTS 2020 models), not an expert.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/clinical_case.py
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/clinical_case.py --template BRATS_CASE_DIR  # the atlas frame
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
RAW = REPO.parent / "shared" / "data" / "clinical" / "TCGA-FG-6692"
SEQUENCES = {"t1ce": "t1c", "t1": "t1", "t2": "t2", "flair": "flair"}


def reference_on(grid: nib.Nifti1Image, atlas_file: Path, grid_to_native_t1ce: np.ndarray, raw: Path) -> np.ndarray:
    """An atlas-grid reference sampled (nearest) on ``grid``."""
    from napari_brainseg.cases.geometry import sample_nearest

    atlas_to_t1ce = np.loadtxt(raw / "affine_ref-atlas_flo-t1c.txt")
    to_atlas = np.linalg.inv(atlas_to_t1ce) @ grid_to_native_t1ce
    return sample_nearest(nib.load(atlas_file), grid.shape, grid.affine, to_atlas)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=RAW, help="the raw case folder")
    parser.add_argument("--template", help="passed on to predict --prepare")
    parser.add_argument("--model", default="bundled")
    args = parser.parse_args()

    from napari_brainseg.__main__ import main as cli
    from napari_brainseg.cases.prepare import read_record
    from napari_brainseg.labels import mask_dice, regions_from_labels

    out = Path(tempfile.mkdtemp(prefix="clinical-"))
    argv = ["predict", "--prepare", *[f"{k}={args.raw / v}.nii.gz" for k, v in SEQUENCES.items()],
            "--output-dir", str(out), "--model", args.model, "--device", "cpu"]
    if args.template:
        argv += ["--template", args.template]
    print("napari-brainseg " + " ".join(argv), file=sys.stderr)
    start, cpu_start = time.perf_counter(), time.process_time()
    status = cli(argv)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    if status:
        return status
    folder = out / "TCGA-FG-6692"
    record = read_record(folder)
    case_to_native = np.linalg.inv(np.array(record["native_to_case_ras"]))
    mask = nib.load(folder / record["files"]["brain_mask"])
    ref_mask = reference_on(mask, args.raw / "reference_brain_mask_atlas.nii.gz", case_to_native, args.raw)
    t1c = nib.load(args.raw / "t1c.nii.gz")
    found = regions_from_labels(np.asarray(nib.load(folder / "TCGA-FG-6692_seg_native.nii.gz").dataobj))
    reference = regions_from_labels(reference_on(t1c, args.raw / "reference_labels_atlas.nii.gz", np.eye(4), args.raw))
    scores = {name: mask_dice(found[i], reference[i]) for i, name in enumerate(("WT", "TC", "ET"))}
    voxel_ml = float(np.prod(t1c.header.get_zooms()[:3])) / 1000
    print(f"frame: {'template ' + args.template if args.template else 'T1ce'}")
    print(f"whole run: {wall:.1f} s wall, {cpu:.1f} s CPU (all threads), peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
    print(f"brain-mask Dice vs reference (prepared grid): {mask_dice(np.asarray(mask.dataobj) > 0, ref_mask > 0):.4f}")
    print("native T1ce grid, Dice vs reference: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    print(f"WT volume: found {found[0].sum() * voxel_ml:.1f} ml, reference {reference[0].sum() * voxel_ml:.1f} ml")
    steps = {s["step"]: s.get("seconds") for s in record["steps"]}
    steps |= {f"register {m}": r["seconds"] for m, r in record["steps"][0]["results"].items()}
    print("step seconds: " + ", ".join(f"{k} {v}" for k, v in steps.items() if v is not None))
    print(f"outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
