"""The Keras model: configuration, image encoder, prompt encoder and mask decoder.

Importing it turns off TensorFlow's TF32 matrix mode (on by default on NVIDIA GPUs since
Ampere): in TF32, float32 matrix products keep 10 mantissa bits and SAM's masks drift from
Meta's. Call ``tf.config.experimental.enable_tensor_float_32_execution(True)`` afterwards to
trade that parity for speed, or use the bfloat16 encoder (``create_model(...,
dtype="bfloat16")``). It changes nothing on CPUs.
"""

import tensorflow as tf

from .config import SegmentAnythingModelConfig
from .sam import SegmentAnythingModel

tf.config.experimental.enable_tensor_float_32_execution(False)

__all__ = ["SegmentAnythingModel", "SegmentAnythingModelConfig"]
