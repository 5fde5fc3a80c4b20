#!/usr/bin/env bash
# Create .venv with napari-brainseg (editable), napari + PyQt6 and the test tools.
# torch comes first and pinned: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install "torch==2.13.0"
.venv/bin/python -m pip install -e ".[testing]"
