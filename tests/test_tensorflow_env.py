"""TensorFlow's oneDNN rewrites stay off unless the user turns them on.

On CPUs with AVX-512 VNNI/BF16 or AMX TensorFlow turns them on by itself, and oneDNN's
reference kernel then takes many minutes for micro-sam's decoder convolutions (docs/perf.md).
TensorFlow reads the variable when it is imported, so importing napari_sam must set it first.
"""

import os
import subprocess
import sys

import pytest

# TensorFlow is imported only where the answer needs it (seconds each)
PROBES = {
    None: ("import os, napari_sam.model\n"
           "from tensorflow.python.util import _pywrap_util_port as port\n"
           "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], port.IsMklEnabled())\n", "0 False"),
    "1": ("import os, sys, napari_sam\n"
          "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], 'tensorflow' in sys.modules)\n", "1 False"),
}  # fmt: skip


@pytest.mark.parametrize("given", PROBES)
def test_onednn_is_off_unless_the_user_sets_it(given):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    code, expected = PROBES[given]
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=True)  # fmt: skip
    assert out.stdout.split("\n")[-2] == expected
