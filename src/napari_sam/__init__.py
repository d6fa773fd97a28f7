"""napari-sam: Meta's Segment Anything Model in TensorFlow/Keras 3, for microscopy.

The core (this package without ``_napari``) never imports napari or Qt.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-sam")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

_LAZY = {
    "SegmentAnythingModel": "napari_sam.model",
    "SegmentAnythingModelConfig": "napari_sam.model",
    "SAMPredictor": "napari_sam.predictor",
    "ImageResizer": "napari_sam.resizer",
    "StackPredictor": "napari_sam.stack_predictor",
    "AutomaticMaskGenerator": "napari_sam.automatic",
    "create_model": "napari_sam.weights",
    "list_models": "napari_sam.weights",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    # TensorFlow takes seconds to import: load it only when the model API is used, so that
    # napari can read the plugin manifest and the CLI can print --help quickly.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'napari_sam' has no attribute {name!r}")
