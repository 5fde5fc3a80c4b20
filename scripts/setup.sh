#!/usr/bin/env bash
# Create .venv with napari-brainseg (editable) and its clinical extra (DICOM, registration, brain extraction),
# napari + PyQt6 and the test tools.
# torch comes first and pinned: an unpinned torch would pull a multi-GB CUDA build.
# Run again, it only checks: it installs nothing when .venv already holds this checkout's install of the
# current pyproject.toml (a stamp records it) and everything imports; otherwise it installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
TORCH="torch==2.13.0"
STAMP=.venv/.napari-brainseg-setup
WANTED="$TORCH $PWD $(sha256sum pyproject.toml | cut -d' ' -f1)"

if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANTED" ] \
    && .venv/bin/python -c "import torch, napari, pytest, pytestqt, napari_brainseg, SimpleITK, deepbet" 2>/dev/null; then
    echo "setup.sh: .venv is already set up for $PWD; nothing to install."
    exit 0
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install "$TORCH"
.venv/bin/python -m pip install -e ".[testing,clinical]"
echo "$WANTED" > "$STAMP"
