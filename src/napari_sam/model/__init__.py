"""The Keras model: configuration, image encoder, prompt encoder and mask decoder.

Importing the model (``napari_sam.model.sam``, loaded on first use of
``SegmentAnythingModel``; the configuration needs no TensorFlow) turns off TensorFlow's
TF32 matrix mode (on by default on NVIDIA GPUs since Ampere): in TF32, float32 matrix
products keep 10 mantissa bits and SAM's masks drift from Meta's. Call
``tf.config.experimental.enable_tensor_float_32_execution(True)`` afterwards to trade that
parity for speed, or use the bfloat16 encoder (``create_model(..., dtype="bfloat16")``).
It changes nothing on CPUs.
"""

from .._tensorflow import lazy_exports
from .config import SegmentAnythingModelConfig, TinyViTModelConfig

__all__ = ["SegmentAnythingModel", "SegmentAnythingModelConfig", "TinyViTModelConfig"]


# The configuration is plain Python: the CLI checks model names and --override values
# with it before TensorFlow is imported. The model itself (and TensorFlow) loads on use.
__getattr__ = lazy_exports(__name__, {"SegmentAnythingModel": ".sam"})
