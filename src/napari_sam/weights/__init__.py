"""Weights: registry, download and cache, safe checkpoint reading, key map, adaptation."""

from .download import OFFICIAL_WEIGHTS, WeightFile, WeightsUnavailableError, cache_dir
from .factory import create_model
from .loading import load_state_dict, read_checkpoint
from .pth_reader import CheckpointError, read_pth
from .registry import (
    ModelEntry,
    auto_settings,
    list_models,
    model_config,
    model_entry,
    register_model,
)

__all__ = [
    "OFFICIAL_WEIGHTS",
    "CheckpointError",
    "ModelEntry",
    "WeightFile",
    "WeightsUnavailableError",
    "auto_settings",
    "cache_dir",
    "create_model",
    "list_models",
    "load_state_dict",
    "model_config",
    "model_entry",
    "read_checkpoint",
    "read_pth",
    "register_model",
]
