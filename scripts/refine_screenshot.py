"""Remake docs/refine.png: a real validation case segmented by the bundled model, then corrected by a few clicks
of the click benchmark's simulated annotator, placed through the *Refine with clicks* widget in a real viewer.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/refine_screenshot.py \
        [--case ../shared/data/brats2018/Brats18_2013_20_1] [--clicks 3] [--model CLICK_CHECKPOINT]

Each click goes where ``benchmarks/click_effort.py`` puts it (the deepest voxel of the largest region where the
labels disagree with the expert's), carrying the expert's label; the widget refines in the background. The
picture shows the slice of the last click, the clicks as points and the expert's labels as contours.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CASE = REPO.parent / "shared" / "data" / "brats2018" / "Brats18_2013_20_1"
PLUGIN = "napari-brainseg"


def wait_for(widget, app) -> None:
    """Let the viewer run until the widget's background job has ended."""
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.02)
    app.processEvents()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", type=Path, default=CASE, help="a BraTS case folder with its expert labels")
    parser.add_argument("--clicks", type=int, default=3)
    parser.add_argument("--model", type=Path, default=None, help="a click-network checkpoint (default: the widget's)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "refine.png")
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_brainseg.clicks import next_click
    from napari_brainseg.demo import save_screenshot
    from napari_brainseg.io import load_case
    from napari_brainseg.labels import mask_dice

    case = load_case(args.case)
    brain = np.any(case.image != 0, axis=0)
    viewer = napari.Viewer(title="napari-brainseg: clicks correcting a segmentation")
    viewer.window.resize(1600, 1000)
    app = QApplication.instance()
    viewer.open(str(args.case), plugin=PLUGIN)
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment", tabify=True)
    _, refine = viewer.window.add_plugin_dock_widget(PLUGIN, "Refine with clicks", tabify=True)
    segment.run()
    wait_for(segment, app)
    labels = segment.result_layer
    if args.model is not None:
        refine.checkpoint.value = args.model
    refine.layer.value = labels
    print(f"{case.case_id}: WT Dice {mask_dice(labels.data > 0, case.seg > 0):.3f} as segmented")
    click = None
    for number in range(1, args.clicks + 1):
        click = next_click(np.asarray(labels.data), case.seg, brain)
        if click is None:
            break
        viewer.dims.set_point(0, labels.data_to_world(click[:3])[0])
        if not refine.add_click(labels.data_to_world(click[:3]), label=click[3]):
            print(refine.status.value)
            return 1
        wait_for(refine, app)
        print(f"click {number} {click}: WT Dice {mask_dice(labels.data > 0, case.seg > 0):.3f} ({refine.status.value})")
    viewer.layers.selection.active = labels
    viewer.reset_view()
    save_screenshot(viewer, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
