"""Model registry: one :class:`ModelEntry` per named model (data), ``list_models`` and
``model_config``; :mod:`napari_sam.weights.factory` builds the models (``create_model``).

Importable without TensorFlow.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..model.config import SegmentAnythingModelConfig, TinyViTModelConfig
from .adapt import adapt_mean_std
from .download import (
    OFFICIAL_WEIGHTS,
)
from .micro_sam import MICRO_SAM_MODELS, MOBILE_SAM

__all__ = [
    "TINY_NUCLEI_DECODER",
    "TINY_NUCLEI_WEIGHTS",
    "ModelEntry",
    "auto_settings",
    "list_models",
    "model_config",
    "model_entry",
    "register_model",
]

# Automatic segmentation thresholds of Meta's SamAutomaticMaskGenerator.
META_AUTO_SETTINGS: Mapping[str, float] = MappingProxyType(
    {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}
)


@dataclass(frozen=True)
class ModelEntry:
    """Everything the registry knows of one model.

    Attributes
    ----------
    name : str
        The registered name (``config.name``).
    config : SegmentAnythingModelConfig
        The model's configuration (3 input channels; :func:`model_config` adapts it).
    weights : WeightFile or path or None
        The pretrained weights: a :class:`~napari_sam.weights.download.WeightFile` to
        download, a local file (e.g. shipped with the package), or None.
    auto : Mapping
        Automatic-segmentation thresholds that differ from Meta's (see :func:`auto_settings`).
    object_diameter : float or None
        The object diameter, in pixels of the model input, the model works best at (what
        ``diameter=`` / ``--diameter`` resamples images to); None where the model has no one
        size (Meta's models, trained on SA-1B's masks of every size: see docs/tiling.md).
    decoder : WeightFile or path or None
        The instance-segmentation decoder (micro-sam's models), or None.
    ais : Mapping
        The decoder's watershed settings (:class:`~napari_sam.segment.ais.AisSettings` fields)
        that differ from micro-sam's generic defaults.
    outline : Mapping
        How the apps redraw the model's prompted masks from the image
        (:class:`~napari_sam.predict.outline.OutlineSettings` fields); empty: SAM's masks,
        unchanged (Meta's and micro-sam's models).
    """

    name: str
    config: SegmentAnythingModelConfig
    weights: object = None
    auto: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    object_diameter: float | None = None
    decoder: object = None
    ais: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    outline: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def has_decoder(self) -> bool:
        """Whether the model has an instance-segmentation decoder (``auto --method ais``)."""
        return self.decoder is not None

    def auto_settings(self) -> dict:
        """Meta's automatic-segmentation thresholds, with this model's replacing them."""
        return {**META_AUTO_SETTINGS, **self.auto}


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    cfg: SegmentAnythingModelConfig,
    weights=None,
    auto=None,
    object_diameter=None,
    decoder=None,
    ais=None,
    outline=None,
) -> None:
    """Register a configuration under ``cfg.name``.

    Registering a name again replaces its configuration; its weights and thresholds are
    kept unless new ones are given.

    Parameters
    ----------
    cfg : SegmentAnythingModelConfig
        The configuration; ``cfg.name`` is the model's name.
    weights : WeightFile or path, optional
        A :class:`~napari_sam.weights.download.WeightFile` to download, or a path to a local
        file (e.g. shipped with the package).
    auto : dict, optional
        Automatic segmentation thresholds that differ from Meta's (see :func:`auto_settings`).
    object_diameter : float, optional
        The object diameter (pixels of the model input) the model works best at.
    decoder : WeightFile or path, optional
        The model's instance-segmentation decoder file.
    ais : dict, optional
        The decoder's watershed settings that differ from micro-sam's defaults.
    outline : dict, optional
        How the apps redraw the model's prompted masks from the image
        (:class:`~napari_sam.predict.outline.OutlineSettings` fields).
    """
    old = _REGISTRY.get(cfg.name)
    if weights is None and old is not None:
        weights = old.weights
    if object_diameter is None and old is not None:
        object_diameter = old.object_diameter
    if object_diameter is not None and not float(object_diameter) > 0:
        raise ValueError(f"object_diameter: expected a positive size, got {object_diameter}")
    settings = MappingProxyType(dict(auto)) if auto else (old.auto if old else None)
    if decoder is None and old is not None:
        decoder = old.decoder
    ais = MappingProxyType(dict(ais)) if ais else (old.ais if old else MappingProxyType({}))
    outline = (MappingProxyType(dict(outline)) if outline
               else (old.outline if old else MappingProxyType({})))  # fmt: skip
    _REGISTRY[cfg.name] = ModelEntry(
        cfg.name, cfg, weights, settings or MappingProxyType({}),
        None if object_diameter is None else float(object_diameter), decoder, ais, outline,
    )  # fmt: skip


def model_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` of a registered model.

    Raises
    ------
    ValueError
        If no model of that name is registered.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; available models: {', '.join(list_models())}"
        ) from None


def auto_settings(name: str) -> dict:
    """Recommended automatic-segmentation thresholds of a registered model.

    Meta's defaults (``pred_iou_thresh=0.88``, ``stability_score_thresh=0.95``) unless the
    model registered others (``sam_tiny_nuclei``'s predicted IoUs are lower: see
    docs/tiny-model.md for how they were chosen); Meta's for an unknown name.
    """
    entry = _REGISTRY.get(name)
    return entry.auto_settings() if entry is not None else dict(META_AUTO_SETTINGS)


def _vit(name, dim, depth, heads, global_idx) -> SegmentAnythingModelConfig:
    return SegmentAnythingModelConfig(
        name=name,
        url=OFFICIAL_WEIGHTS[name].url,
        encoder_embed_dim=dim,
        encoder_nb_blocks=depth,
        encoder_nb_heads=heads,
        encoder_global_attn_indices=global_idx,
    )


register_model(_vit("sam_vit_b", 768, 12, 12, (2, 5, 8, 11)), OFFICIAL_WEIGHTS["sam_vit_b"])
register_model(_vit("sam_vit_l", 1024, 24, 16, (5, 11, 17, 23)), OFFICIAL_WEIGHTS["sam_vit_l"])
register_model(_vit("sam_vit_h", 1280, 32, 16, (7, 15, 23, 31)), OFFICIAL_WEIGHTS["sam_vit_h"])

# MobileSAM: SAM's prompt encoder and mask decoder on a distilled TinyViT image encoder
# (model/tiny_vit.py), about a twentieth of ViT-B's compute
register_model(
    TinyViTModelConfig(name="sam_vit_t", url=MOBILE_SAM.url),
    MOBILE_SAM,
)


TINY_NUCLEI_WEIGHTS = pathlib.Path(__file__).parent / "data" / "sam_tiny_nuclei.npz"
# its instance decoder (3 levels: 8 x the 32 x 32 grid), trained on the frozen encoder
# (scripts/train_tiny_decoder.py); watershed settings chosen on tuning seeds only
# (scripts/tune_tiny_ais.py): docs/tiny-model.md
TINY_NUCLEI_DECODER = TINY_NUCLEI_WEIGHTS.with_name("sam_tiny_nuclei_decoder.npz")

# A small SAM trained by the project on synthetic fluorescence nuclei (scripts/train_tiny.py);
# its weights ship with the package, so it works offline.
register_model(
    SegmentAnythingModelConfig(
        name="sam_tiny_nuclei",
        input_size=(256, 256),
        encoder_patch_size=8,
        encoder_embed_dim=128,
        encoder_nb_blocks=4,
        encoder_nb_heads=4,
        encoder_global_attn_indices=(1, 3),
        encoder_window_size=8,
        embed_dim=128,
        decoder_nb_heads=4,
        decoder_mlp_channels=512,
        decoder_iou_hidden_dim=128,
    ),
    TINY_NUCLEI_WEIGHTS,
    auto={"pred_iou_thresh": 0.7, "stability_score_thresh": 0.9},
    # trained on nuclei 20 to 36 px across (radius_range (10, 18) of the generator) in its
    # 256 x 256 input: docs/tiny-model.md
    object_diameter=28.0,
    decoder=TINY_NUCLEI_DECODER,
    # chosen on tuning seeds of the first four styles (scripts/tune_tiny_ais.py --styles
    # default,dim_textured,elongated_crowded,low_range_haze --edge-level 0.5:0.7) for the
    # previous decoder, the merge of convex neighbours too; tuned again for the decoder
    # trained on all five styles (2026-12-07, --styles all), the same won: docs/tiny-model.md
    ais={"center_distance_threshold": 0.4, "boundary_distance_threshold": 0.5,
         "foreground_threshold": 0.6, "distance_smoothing": 0.0, "min_size": 25,
         "merge_solidity": 0.98, "merge_border": 1.0},  # fmt: skip
    # prompted masks redrawn at half maximum, where hand labels of nuclei sit (a click's at
    # the strongest edge within 0.4 to 0.6 of it), cut to their box, a click's most solid
    # candidates preferred, a click confined to the nucleus its decoder finds under it; the
    # bands, the solidity, the confining and the range's width chosen on tuning seeds 500 to
    # 519 of the five styles (scripts/tune_outline.py); the range itself, neutral there, on
    # the real DSB image's hand-drawn edges: docs/tiny-model.md
    outline={"level": 0.5, "level_range": 0.1, "inner": 1, "outer": 1, "min_solidity": 0.98,
             "instances": True},  # fmt: skip
)


# micro-sam's light- and electron-microscopy models: Meta's architectures, fine-tuned weights
# and an instance decoder each (weights/micro_sam.py). Their AMG thresholds are micro-sam's.
_MICRO_SAM_AMG = {
    "vit_b_lm": (0.65, 0.7),
    "vit_l_lm": (0.65, 0.73),
    "vit_b_em_organelles": (0.75, 0.75),
    "vit_l_em_organelles": (0.8, 0.8),
    "vit_t_lm": (0.6, 0.65),
    "vit_t_em_organelles": (0.75, 0.75),
}
for _m in MICRO_SAM_MODELS.values():
    _iou, _stability = _MICRO_SAM_AMG[_m.key]
    register_model(
        _REGISTRY[_m.sam].config.replace(name=_m.key, url=_m.encoder.url),
        _m.encoder,
        auto={"pred_iou_thresh": _iou, "stability_score_thresh": _stability},
        decoder=_m.decoder,
        ais=_m.ais,
    )


def list_models() -> list[str]:
    """Names of the registered models, e.g. ``["sam_vit_b", "sam_vit_h", "sam_vit_l"]``."""
    return sorted(_REGISTRY)


def model_config(name: str, in_channels: int = 3, **overrides) -> SegmentAnythingModelConfig:
    """The configuration of model ``name`` with ``in_channels`` and other fields replaced.

    ``mean`` and ``std`` follow the ``first_conv`` adaptation unless given explicitly.
    """
    base = model_entry(name).config
    if in_channels != base.in_channels:
        overrides.setdefault("mean", adapt_mean_std(base.mean, in_channels))
        overrides.setdefault("std", adapt_mean_std(base.std, in_channels))
    return base.replace(in_channels=int(in_channels), **overrides)
