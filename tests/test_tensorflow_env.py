"""TensorFlow's settings that importing napari_sam makes, unless the user made them.

- oneDNN's rewrites stay off: on CPUs with AVX-512 VNNI/BF16 or AMX TensorFlow turns them on
  by itself, and oneDNN's reference kernel then takes many minutes for micro-sam's decoder
  convolutions (docs/perf.md).
- The CPU allocator is TensorFlow's pooling (BFC) one: the default one page-faults every
  large tensor anew (docs/perf.md). Only the pooling allocator keeps statistics, which is how
  the probe tells them apart.

TensorFlow reads both variables when it is imported, so importing napari_sam must set them
first.
"""

import os
import subprocess
import sys

import pytest

_STATS = ("import tensorflow as tf\n"
          "tf.ones((64, 64)) + 1\n"
          "try:\n"
          "    tf.config.experimental.get_memory_info('CPU:0')\n"
          "    pooled = True\n"
          "except ValueError:\n"
          "    pooled = False\n")  # fmt: skip
NAMES = ("TF_ENABLE_ONEDNN_OPTS", "TF_CPU_ALLOCATOR_USE_BFC")
# TensorFlow is imported only where the answer needs it (seconds each)
PROBES = {
    "unset": ({}, "import os, napari_sam.model\n" + _STATS +
              "from tensorflow.python.util import _pywrap_util_port as port\n"
              "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], port.IsMklEnabled(), pooled)\n",
              "0 False True"),
    "set by the user": ({"TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPU_ALLOCATOR_USE_BFC": "false"},
                        "import os, sys, napari_sam\n"
                        "print(os.environ['TF_ENABLE_ONEDNN_OPTS'],"
                        " os.environ['TF_CPU_ALLOCATOR_USE_BFC'], 'tensorflow' in sys.modules)\n",
                        "1 false False"),
    "TensorFlow imported first": ({}, _STATS + "import napari_sam\nprint(pooled)\n", "False"),
}  # fmt: skip


@pytest.mark.parametrize("case", PROBES)
def test_tensorflow_settings_unless_the_user_made_them(case):
    given, code, expected = PROBES[case]
    env = {k: v for k, v in os.environ.items() if k not in NAMES} | given
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=True)  # fmt: skip
    assert out.stdout.split("\n")[-2] == expected
