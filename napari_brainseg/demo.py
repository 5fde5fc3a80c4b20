"""The demo: napari with the plugin's widgets docked and the synthetic sample case, segmented.

Run it with::

    .venv/bin/python -m napari_brainseg.demo                      # the bundled model
    .venv/bin/python -m napari_brainseg.demo --model my_model.pt  # any napari-brainseg checkpoint
    .venv/bin/python -m napari_brainseg.demo --screenshot docs/screenshot.png  # save a picture, then quit
                                                                   # (scripts/screenshot.sh does it under Xvfb)
    .venv/bin/python -m napari_brainseg.demo --case ../shared/data/brats2018/Brats18_CBICA_AQN_1  # a real case
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._widgets.segment import SegmentWidget

if TYPE_CHECKING:
    import napari

PLUGIN = "napari-brainseg"
SAMPLE = "synthetic_glioma"
WIDGETS = ("Load case", "Segment", "Edit labels", "Refine with clicks", "Export corrections", "Review and report",
           "Retrain", "Prepare study")
WINDOW_SIZE = (1600, 1000)


def open_demo(
    viewer: napari.viewer.Viewer, model: str | Path | None = None, case: str | Path | None = None
) -> SegmentWidget:
    """Open the sample (or ``case``), dock the widgets (Segment in front) and start segmenting with ``model``."""
    if case is None:
        viewer.open_sample(PLUGIN, SAMPLE)
    else:
        viewer.open(str(case), plugin=PLUGIN)
    docked = {name: viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True) for name in WIDGETS}
    segment_dock, segment_widget = docked["Segment"]
    segment_dock.raise_()
    if model is not None:
        segment_widget.checkpoint.value = Path(model)
    show_when_segmented(viewer)
    segment_widget.run()
    return segment_widget


def show_when_segmented(viewer: napari.viewer.Viewer) -> None:
    """Once a segmentation layer is added (whenever the run ends), move the slider to its largest tumour, once."""
    from napari.layers import Labels

    def on_inserted(event) -> None:
        layer = event.value
        if isinstance(layer, Labels) and layer.name.endswith(" segmentation"):
            viewer.layers.events.inserted.disconnect(on_inserted)
            show_largest_tumour_slice(viewer, layer)

    viewer.layers.events.inserted.connect(on_inserted)


def show_largest_tumour_slice(viewer: napari.viewer.Viewer, layer: napari.layers.Labels) -> None:
    """Move the axial slider to the slice where the segmented tumour is largest."""
    if not np.any(layer.data):
        return
    z = int(np.argmax(np.count_nonzero(layer.data, axis=(1, 2))))
    viewer.dims.set_point(0, layer.data_to_world((z, 0, 0))[0])


def save_screenshot(viewer: napari.viewer.Viewer, path: Path, note: str = "") -> None:
    """Save a picture of the whole window to ``path`` (its folder made if needed), say so, and close the viewer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False)
    print(f"{note}\nScreenshot saved to {path}" if note else f"Screenshot saved to {path}")
    viewer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_brainseg.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="checkpoint to segment with (default: the first model listed)")
    parser.add_argument("--case", type=Path, help="a BraTS case folder to open instead of the synthetic sample")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the window once segmented, then quit")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtCore import QTimer

    viewer = napari.Viewer(title="napari-brainseg demo")
    viewer.window.resize(*WINDOW_SIZE)
    widget = open_demo(viewer, args.model, args.case)
    if widget.worker is None:  # could not start: no model, or no case
        print(widget.status.value, file=sys.stderr)
        viewer.close()
        return 1
    if args.screenshot:

        def shoot() -> None:
            save_screenshot(viewer, args.screenshot, widget.status.value)

        widget.worker.finished.connect(lambda: QTimer.singleShot(1000, shoot))
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
