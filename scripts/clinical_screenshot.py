"""Remake docs/clinical.png: the raw clinical case segmented by ``predict --prepare``, shown on its native T1ce.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/clinical_screenshot.py [--case OUT/TCGA-FG-6692]

Without ``--case`` it first runs ``napari-brainseg predict --prepare`` on ../shared/data/clinical/TCGA-FG-6692.
The picture is taken through the Prepare study widget's *Show on the native T1ce*.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
RAW = REPO.parent / "shared" / "data" / "clinical" / "TCGA-FG-6692"
SEQUENCES = {"t1ce": "t1c", "t1": "t1", "t2": "t2", "flair": "flair"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, help="a folder written by predict --prepare (default: make one)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "clinical.png")
    args = parser.parse_args()

    from napari_brainseg.__main__ import main as cli

    case_dir = args.case
    if case_dir is None:
        out = Path(tempfile.mkdtemp(prefix="clinical-"))
        inputs = [f"{k}={RAW / v}.nii.gz" for k, v in SEQUENCES.items()]
        if cli(["predict", "--prepare", *inputs, "--output-dir", str(out)]):
            return 1
        case_dir = out / RAW.name

    import napari

    from napari_brainseg.cases.prepare import PreparedCase
    from napari_brainseg.demo import save_screenshot
    from napari_brainseg.io import load_case
    from napari_brainseg.layers import case_layers

    viewer = napari.Viewer(title="napari-brainseg: a raw clinical case")
    viewer.window.resize(1600, 1000)
    _, widget = viewer.window.add_plugin_dock_widget("napari-brainseg", "Prepare study")
    widget.prepared = PreparedCase.open(case_dir)
    for data, kwargs, kind in case_layers(load_case(widget.prepared.files)):
        viewer.add_layer(napari.layers.Layer.create(data, kwargs, kind))
    viewer.layers[-1].name = f"{widget.prepared.files.case_id} segmentation"  # predict's labels, read from file
    widget.labels.value = viewer.layers[-1]
    widget.show_native()
    labels = viewer.layers[-1]
    components, _ = ndimage.label(labels.data > 0)
    largest = components == np.argmax(np.bincount(components[components > 0]))
    z = int(np.argmax(np.count_nonzero(largest, axis=(1, 2))))  # the largest tumour's widest slice
    viewer.dims.set_point(0, labels.data_to_world((z, 0, 0))[0])
    viewer.reset_view()
    save_screenshot(viewer, args.out, widget.status.value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
