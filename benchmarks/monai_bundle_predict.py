"""The MONAI model zoo's ``brats_mri_segmentation`` inference pipeline, as a script to time against ours.

Same network and configuration as the bundle's ``inference.json``: SegResNet(blocks_down=[1, 2, 2, 4],
blocks_up=[1, 1, 1], init_filters=16, in_channels=4, out_channels=3, dropout_prob=0.2); LoadImaged,
EnsureChannelFirstd, Orientationd RAS, Spacingd 1 mm, NormalizeIntensityd(nonzero, channel_wise);
sliding-window inference with roi (240, 240, 160), sw_batch_size 1, overlap 0.5; sigmoid and threshold 0.5.
The weights are random (nothing can be downloaded here): the time and memory do not depend on their values.
The TC/WT/ET masks are decoded to BraTS labels and written with nibabel on the oriented grid.

Usage::

    python benchmarks/monai_bundle_predict.py CASE_DIR --output-dir OUT [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MODALITY_SUFFIXES = ("_flair", "_t1", "_t1ce", "_t2")  # the order our model uses too


def case_images(case_dir: Path) -> tuple[str, list[str]]:
    """The case id and its four BraTS 2018-named modality files."""
    flair = next(case_dir.glob("*_flair.nii*"), None)
    if flair is None:
        raise SystemExit(f"error: no <id>_flair.nii.gz in {case_dir}")
    case_id = flair.name.split("_flair")[0]
    ext = flair.name[len(case_id) + len("_flair"):]
    return case_id, [str(case_dir / f"{case_id}{suffix}{ext}") for suffix in MODALITY_SUFFIXES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", type=Path, help="a BraTS 2018-named case folder")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import nibabel as nib
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import SegResNet
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        EnsureTyped,
        LoadImaged,
        NormalizeIntensityd,
        Orientationd,
        Spacingd,
    )

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    case_id, images = case_images(args.case)
    preprocess = Compose(
        [
            LoadImaged(keys="image"),
            EnsureChannelFirstd(keys="image"),
            Orientationd(keys="image", axcodes="RAS"),
            Spacingd(keys="image", pixdim=(1.0, 1.0, 1.0), mode="bilinear"),
            NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True),
            EnsureTyped(keys="image"),
        ]
    )
    image = preprocess({"image": images})["image"]
    model = SegResNet(
        blocks_down=[1, 2, 2, 4], blocks_up=[1, 1, 1], init_filters=16, in_channels=4, out_channels=3, dropout_prob=0.2
    ).eval()
    with torch.inference_mode():
        logits = sliding_window_inference(image[None], (240, 240, 160), 1, model, overlap=0.5)
    tc, wt, et = (torch.sigmoid(logits[0]) > 0.5).numpy()  # the bundle's channel order
    labels = np.zeros(wt.shape, dtype=np.uint8)
    labels[wt], labels[tc], labels[et] = 2, 1, 4
    args.output_dir.mkdir(parents=True, exist_ok=True)
    output = args.output_dir / f"{case_id}_seg.nii.gz"
    nib.save(nib.Nifti1Image(labels, np.asarray(image.affine)), str(output))
    print(f"wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
