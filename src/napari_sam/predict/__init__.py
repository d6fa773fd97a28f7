"""Prompted prediction on one image: resizing, prompt checks and :class:`SAMPredictor`.

The predictor needs TensorFlow; it is imported when first used.
"""

__all__ = ["ImageResizer", "SAMPredictor", "batch_prompts", "default_preprocessing"]

_LAZY = {
    "ImageResizer": "resizer",
    "batch_prompts": "prompts",
    "SAMPredictor": "predictor",
    "default_preprocessing": "predictor",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
