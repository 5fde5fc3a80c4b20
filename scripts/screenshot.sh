#!/usr/bin/env bash
# Remake docs/screenshot.png: the demo (the synthetic sample segmented by the bundled model, every widget
# docked) in a 1600x1000 window under Xvfb. Run it whenever the model or the widgets change.
# Extra arguments go to the demo, e.g. --model my_model.pt or --case CASE_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
xvfb-run -a -s "-screen 0 1600x1000x24" "$PYTHON" -m napari_brainseg.demo --screenshot docs/screenshot.png "$@"
