"""The settings of each command as frozen values: what the CLI parsed, or what Python gave.

The defaults here are the command line's defaults (:mod:`napari_sam.cli.options` reads them
from these classes), so a run from Python and one from the shell do the same.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from ..weights.defaults import CLI_MODEL

__all__ = ["EmbedSettings", "LabelSettings", "TrainSettings", "overrides_as_options"]


def overrides_as_options(overrides) -> tuple[str, ...]:
    """``{"input_size": [512, 512]}`` or ``["input_size=[512,512]"]`` -> ``("KEY=JSON", ...)``."""
    if not overrides:
        return ()
    if isinstance(overrides, dict):
        return tuple(f"{k}={json.dumps(v)}" for k, v in overrides.items())
    return tuple(overrides)


class _FromNamespace:
    @classmethod
    def from_namespace(cls, ns):
        """The settings from parsed ``argparse`` arguments (attributes named as the fields)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in vars(ns).items() if k in names}
        if "override" in values:
            values["override"] = overrides_as_options(values["override"])
        return cls(**values)

    def replace(self, **changes):
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class EmbedSettings(_FromNamespace):
    """``napari-sam embed``: precompute the embeddings of a stack into a store."""

    input: str
    out: str
    model: str
    weights: str | None = None
    override: tuple[str, ...] = ()
    axes: str | None = None
    channels: str | None = None
    normalization: str = "auto"
    batch_size: int = 1
    overwrite: bool = False
    scheduler: str | None = None
    tile: int | None = None
    halo: int | None = None
    diameter: float | str | None = None  # pixels, or "auto"
    no_tile: bool = False
    dtype: str = "auto"  # the image encoder's: auto, float32 or bfloat16


@dataclass(frozen=True)
class LabelSettings(_FromNamespace):
    """``napari-sam auto`` and ``napari-sam segment``: label images of one stack or many."""

    input: str
    out: str
    model: str = CLI_MODEL
    weights: str | None = None
    override: tuple[str, ...] = ()
    axes: str | None = None
    channels: str | None = None
    normalization: str = "auto"
    store: str | None = None
    overwrite: bool = False
    scheduler: str | None = None
    tile: int | None = None
    halo: int | None = None
    diameter: float | str | None = None  # pixels, or "auto"
    no_tile: bool = False
    dtype: str = "auto"  # the image encoder's: auto, float32 or bfloat16
    # segment
    prompts: str | None = None
    allow_other_model: bool = False  # replay a sidecar made with other weights
    sam_masks: bool = False  # prompted masks as SAM decodes them (no outline redrawing)
    decoder: str | None = None
    # auto
    method: str | None = None  # "ais" or "amg"; default: ais when the model has a decoder
    points_per_side: int = 32
    pred_iou_thresh: float | None = None
    stability_score_thresh: float | None = None
    min_overlap: float = 0.3
    max_gap: int = 1
    min_slices: int = 1
    no_link_3d: bool = False


@dataclass(frozen=True)
class TrainSettings(_FromNamespace):
    """``napari-sam train``: fine-tune a model on a stack and its instance labels."""

    images: str
    labels: str
    out: str
    model: str
    weights: str | None = None
    override: tuple[str, ...] = ()
    from_scratch: bool = False
    workdir: str | None = None
    axes: str | None = None
    channels: str | None = None
    normalization: str = "auto"
    steps: int = 1000
    batch_size: int = 2
    objects_per_image: int = 8
    learning_rate: float = 1e-4
    freeze_image_encoder: bool = False
    seed: int = 0
