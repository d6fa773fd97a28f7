#!/usr/bin/env bash
# Build the wheel and sdist, check their metadata, install the wheel ALONE (with its runtime
# requirements only) into a fresh virtual environment, and use it as a user would: the CLI
# segments an image with the shipped model, and napari's plugin discovery finds the plugin.
# Needs .venv (scripts/setup.sh --test) for the build tools.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m build -q --outdir "$work/dist" . >/dev/null
.venv/bin/python -m twine check --strict "$work"/dist/*
wheel=$(ls "$work"/dist/*.whl)
.venv/bin/python - "$wheel" <<'PY'
import sys, zipfile
from email.parser import Parser
names = zipfile.ZipFile(sys.argv[1]).namelist()
for need in ("napari_sam/napari.yaml", "napari_sam/weights/data/sam_tiny_nuclei.npz"):
    assert need in names, f"the wheel lacks {need}"
meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
msg = Parser().parsestr(zipfile.ZipFile(sys.argv[1]).read(meta).decode())
assert msg["Name"] == "napari-sam-tf", msg["Name"]
assert "Framework :: napari" in msg.get_all("Classifier")
runtime = [r for r in msg.get_all("Requires-Dist") if "extra ==" not in r]
bad = [r for r in runtime if r.split()[0].lower().startswith(
    ("torch", "segment-anything", "segment_anything", "pyqt", "pyside"))]
assert not bad, f"runtime requirements a user should not get: {bad}"
print(f"wheel: {len(names)} files, {len(runtime)} runtime requirements, none of torch/Qt")
PY
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q "$wheel"
cd "$work"
"$work/venv/bin/python" - <<'PY'
import numpy as np, tifffile
from napari_sam.train.synthetic import make_nuclei_2d
tifffile.imwrite("cells.tif", make_nuclei_2d((128, 128), seed=1)[0])
PY
"$work/venv/bin/python" -m napari_sam.demo  # the README's first command, on the wheel alone
"$work/venv/bin/napari-sam" auto cells.tif --out labels.tif --model sam_tiny_nuclei
"$work/venv/bin/python" - <<'PY'
import tifffile
labels = tifffile.imread("labels.tif")
assert labels.max() > 0, "no object segmented"
import npe2
pm = npe2.PluginManager.instance()
pm.discover()
assert pm.get_manifest("napari-sam-tf").display_name, "napari does not find the plugin"
print(f"installed wheel: auto found {labels.max()} objects; napari finds the plugin")
PY
