#!/usr/bin/env bash
# Debian/Ubuntu, as root: what Qt and napari need on a machine without a desktop (CI, servers),
# including Xvfb, the virtual display the tests and screenshots run under.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y xvfb xauth libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 \
    libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 \
    libxcb-cursor0 libdbus-1-3 libfontconfig1
