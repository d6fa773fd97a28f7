"""Stacks: the slice view, channels, normalisation, the encoder, the embedding store, the
stack predictor and the tiling of large slices (with its tiled predictor).

``napari_sam.stacks`` keeps the names of the former module of that name (``StackView``,
``SLICE_AXES``, ``SliceIndexError``); the TensorFlow parts load when first used.
"""

from .view import SLICE_AXES, SliceIndexError, StackView

__all__ = [
    "SLICE_AXES",
    "ChannelSpec",
    "EmbeddingStore",
    "ModelEncoder",
    "Normalization",
    "SliceIndexError",
    "StackPredictor",
    "StackView",
    "TiledPredictor",
    "Tiling",
    "plan_tiling",
]

from .._tensorflow import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "ChannelSpec": ".channels",
    "Normalization": ".normalize",
    "EmbeddingStore": ".store",
    "ModelEncoder": ".encoder",
    "StackPredictor": ".stack_predictor",
    "TiledPredictor": ".tiled_predictor",
    "Tiling": ".tiling",
    "plan_tiling": ".tiling",
})  # fmt: skip
