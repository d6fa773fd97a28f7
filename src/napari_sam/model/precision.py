"""Whether this machine can run the bfloat16 image encoder at all."""

from __future__ import annotations

import functools

__all__ = ["bfloat16_runs"]


@functools.cache
def bfloat16_runs() -> bool:
    """Whether TensorFlow runs a bfloat16 convolution and matrix product here.

    Some CPU set-ups have no bfloat16 kernel for them (for example oneDNN limited to AVX2
    with ``ONEDNN_MAX_CPU_ISA=AVX2`` on a CPU that TensorFlow still takes for a bfloat16
    one): the bfloat16 encoder then fails with "could not create a primitive descriptor".
    """
    import tensorflow as tf

    try:
        x = tf.ones((1, 16, 16, 3), tf.bfloat16)
        k = tf.ones((8, 8, 3, 4), tf.bfloat16)
        y = tf.nn.conv2d(x, k, strides=8, padding="VALID")
        tf.matmul(tf.reshape(y, (1, -1)), tf.ones((16, 2), tf.bfloat16)).numpy()
    except (tf.errors.OpError, RuntimeError):
        return False
    return True
