"""Prompted prediction on one image: resizing, prompt checks and :class:`SAMPredictor`.

The predictor needs TensorFlow; it is imported when first used.
"""

__all__ = ["ImageResizer", "SAMPredictor", "batch_prompts", "default_preprocessing"]

from .._tensorflow import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "ImageResizer": ".resizer",
    "batch_prompts": ".prompts",
    "SAMPredictor": ".predictor",
    "default_preprocessing": ".predictor",
})  # fmt: skip
