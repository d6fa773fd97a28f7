#!/usr/bin/env bash
# Set up napari-sam on a fresh Debian machine: system packages for a headless napari
# (Xvfb + Mesa), a virtual environment in .venv and the package (what the demo, the CLI and
# the plugin need). With --test: also the test tools and the third-party references (torch,
# Meta's segment-anything, torch-em, PyQt6 for the GUI tests, the wheel builder).
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
TEST=0
for arg in "$@"; do
  case "$arg" in
    --test) TEST=1 ;;
    *) echo "usage: bash scripts/setup.sh [--test]" >&2; exit 2 ;;
  esac
done

APT_PACKAGES="xvfb xauth libgl1 libglx-mesa0 libgl1-mesa-dri libegl1 libopengl0 libdbus-1-3
libfontconfig1 libglib2.0-0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0
libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0
libxcb-xinerama0 x11-utils"
missing=""
for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "Installing system packages:" $missing
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$TEST" = 0 ]; then
  .venv/bin/python -m pip install -q -e .
  exit 0
fi
.venv/bin/python -m pip install -q -e ".[test]"
# test-only references for micro-sam's instance decoder (tests/torch_em_ref.py) and embedding
# stores (tests/test_microsam_embeddings.py): installed without their dependencies, which pull
# torchvision (no CPU build here) and a training stack never used
.venv/bin/python -m pip install -q --no-deps torch-em==0.10.9 python-elf==0.9.2 micro_sam==1.8.10
# the reference for MobileSAM's TinyViT encoder (tests/test_tiny_vit.py), likewise
.venv/bin/python -m pip install -q --no-deps ultralytics==8.4.190
