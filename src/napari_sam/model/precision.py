"""Whether this machine runs the bfloat16 image encoder at all, and whether it should.

``dtype="auto"`` (:func:`auto_dtype`) picks bfloat16 only where the hardware does it natively
(CPU flags ``avx512_bf16`` / ``amx_bf16``, or a GPU of compute capability 8.0 or later) and a
quick matrix product measures it faster than float32; float32 everywhere else. On a CPU
without native bfloat16 (AVX2 only) TensorFlow's bfloat16 matmuls run at the float32 rate
(80 against 82 GFLOP/s measured here): accuracy lost for nothing.

The environment variable ``NAPARI_SAM_DTYPE`` (``float32`` or ``bfloat16``) decides in
place of the detection, for every app at once (the test suite pins ``float32`` with it, so
that its reference comparisons hold on every CPU kind).
"""

from __future__ import annotations

import functools
import os
import time

__all__ = ["DTYPES", "ENV_VAR", "auto_dtype", "bfloat16_runs", "bfloat16_speedup", "cpu_flags",
           "native_bfloat16"]

NATIVE_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
DTYPES = ("auto", "float32", "bfloat16")
ENV_VAR = "NAPARI_SAM_DTYPE"
MIN_SPEEDUP = 1.2  # bfloat16 matmuls at least this much faster, or float32 is kept


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


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bfloat16() -> bool:
    """Whether the device TensorFlow computes on has native bfloat16 arithmetic."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return tuple(details.get("compute_capability", (0, 0))) >= (8, 0)
    return any(flag in cpu_flags() for flag in NATIVE_CPU_FLAGS)


@functools.cache
def bfloat16_speedup(n: int = 1024, repeats: int = 3) -> float:
    """float32 time over bfloat16 time of an ``n`` x ``n`` matrix product (best of
    ``repeats``, after a warm-up): above 1 where bfloat16 is faster."""
    import tensorflow as tf

    def best(dtype):
        a = tf.random.normal((n, n))
        a = tf.cast(a, dtype)
        tf.matmul(a, a).numpy()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            tf.matmul(a, a).numpy()
            times.append(time.perf_counter() - t0)
        return min(times)

    return best(tf.float32) / best(tf.bfloat16)


def auto_dtype() -> tuple[str, str]:
    """The encoder dtype ``"auto"`` stands for here, and one line saying why.

    Raises
    ------
    ValueError
        ``NAPARI_SAM_DTYPE`` is set to something other than float32, bfloat16 or auto.
    """
    forced = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if forced not in DTYPES:
        raise ValueError(f"{ENV_VAR}: expected float32, bfloat16 or auto, got {forced!r}")
    if forced != "auto":
        return forced, f"{forced}: set by {ENV_VAR}"
    return _detected_dtype()


@functools.cache
def _detected_dtype() -> tuple[str, str]:
    if not native_bfloat16():
        return "float32", ("float32: no native bfloat16 on this machine (CPU flags "
                           f"{' / '.join(NATIVE_CPU_FLAGS)}, or a GPU of compute capability "
                           ">= 8.0)")  # fmt: skip
    if not bfloat16_runs():
        return "float32", "float32: TensorFlow has no bfloat16 kernels here"
    speedup = bfloat16_speedup()
    if speedup < MIN_SPEEDUP:
        return "float32", f"float32: bfloat16 matrix products only {speedup:.2f} x faster here"
    return "bfloat16", f"bfloat16: native here, matrix products {speedup:.1f} x faster"
