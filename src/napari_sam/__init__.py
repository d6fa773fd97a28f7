"""napari-sam: Meta's Segment Anything Model in TensorFlow/Keras 3, for microscopy.

The core (this package without ``_napari``) never imports napari or Qt.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-sam-tf")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

_LAZY = {
    "SegmentAnythingModel": "napari_sam.model",
    "SegmentAnythingModelConfig": "napari_sam.model",
    "SAMPredictor": "napari_sam.predict.predictor",
    "ImageResizer": "napari_sam.predict.resizer",
    "StackPredictor": "napari_sam.stacks.stack_predictor",
    "TiledPredictor": "napari_sam.stacks.tiled_predictor",
    "Tiling": "napari_sam.stacks.tiling",
    "plan_tiling": "napari_sam.stacks.tiling",
    "AutomaticMaskGenerator": "napari_sam.segment.automatic",
    "create_model": "napari_sam.weights",
    "list_models": "napari_sam.weights",
}

__all__ = ["__version__", *_LAZY]

from . import _compat  # noqa: E402  (the module names of 0.1, for one release)
from ._tensorflow import lazy_exports, set_tensorflow_defaults  # noqa: E402

_compat.install()
set_tensorflow_defaults()


def __dir__():
    # help(napari_sam) and tab completion list the API, which __getattr__ loads on first use
    return sorted(set(globals()) | set(__all__))


# TensorFlow takes seconds to import: load it only when the model API is used, so that
# napari can read the plugin manifest and the CLI can print --help quickly.
__getattr__ = lazy_exports(__name__, _LAZY)
