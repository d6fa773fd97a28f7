"""The Keras model: configuration, image encoder, prompt encoder and mask decoder."""

from .config import SegmentAnythingModelConfig
from .sam import SegmentAnythingModel

__all__ = ["SegmentAnythingModel", "SegmentAnythingModelConfig"]
