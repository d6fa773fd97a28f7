"""``napari-sam train`` end to end (a few steps of a tiny model) and its bad-input errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import tifffile

from napari_sam.model import SegmentAnythingModel
from napari_sam.train.synthetic import make_nuclei_3d
from napari_sam.weights import create_model, model_config
from napari_sam.weights.key_map import export_state_dict

from small_configs import TINY

OVERRIDES = [f"--override={k}={json.dumps(v)}" for k, v in TINY.items()]


def run(*args, cwd):
    cmd = [sys.executable, "-m", "napari_sam.cli", "train", *map(str, args), *OVERRIDES]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_train_writes_weights_that_load_and_changed(tmp_path):
    image, labels = make_nuclei_3d((3, 48, 64), seed=5, n_nuclei=6)
    tifffile.imwrite(tmp_path / "img.tif", image, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "lab.tif", labels.astype(np.uint16))
    init = export_state_dict(SegmentAnythingModel(model_config("sam_tiny_nuclei", **TINY)))
    np.savez(tmp_path / "init.npz", **init)
    res = run(
        "img.tif", "lab.tif", "--model", "sam_tiny_nuclei", "--weights", "init.npz",
        "--out", "out.npz", "--steps", 1, "--batch-size", 1, "--objects-per-image", 2,
        "--learning-rate", 1e-3, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    # one step is enough to change the weights (test_training.py trains for longer; every
    # step of the subprocess costs a trace of the training graph)
    assert "trained (1 step(s)" in res.stderr
    trained = export_state_dict(
        create_model("sam_tiny_nuclei", pretrained=tmp_path / "out.npz", **TINY)
    )
    changed = [k for k in init if not np.array_equal(init[k], trained[k])]
    assert len(changed) > len(init) // 2
    assert (tmp_path / "out.run" / "checkpoints").is_dir()  # resumable
    assert not list(tmp_path.glob("*.part.npz"))


def test_bad_inputs_are_one_line_errors(tmp_path):
    image, labels = make_nuclei_3d((2, 32, 32), seed=1, n_nuclei=3)
    tifffile.imwrite(tmp_path / "img.tif", image, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "small.tif", labels[:, :16].astype(np.uint16))
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros_like(labels, np.uint16))
    cases = [
        (("missing.tif", "small.tif", "--out", "o.npz"), "INPUT"),
        (("img.tif", "nolabels.tif", "--out", "o.npz"), "LABELS"),
        (("img.tif", "small.tif", "--out", "o.npz"), "does not fit"),
        (("img.tif", "small.tif", "--out", "o.txt"), "--out"),
        (("img.tif", "small.tif", "--out", "o.npz", "--steps", 0), "--steps"),
    ]
    for args, expected in cases:
        res = run(*args, "--model", "sam_tiny_nuclei", "--from-scratch", cwd=tmp_path)
        assert res.returncode == 2, (args, res.stderr[-2000:])
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, res.stderr)
    assert not (tmp_path / "o.npz").exists()
