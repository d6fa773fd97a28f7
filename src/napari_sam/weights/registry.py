"""Model registry: one :class:`ModelEntry` per named model, ``list_models`` and ``create_model``.

Importable without TensorFlow: the model class is imported by :func:`create_model` only.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..model.config import SegmentAnythingModelConfig
from .adapt import adapt_mean_std, adapt_state
from .download import (
    OFFICIAL_WEIGHTS,
    WeightsUnavailableError,
    cache_dir,
    fetch_weights,
    offline_advice,
    short_reason,
)
from .loading import load_state_dict, read_checkpoint
from .micro_sam import MICRO_SAM_MODELS

__all__ = [
    "TINY_NUCLEI_WEIGHTS",
    "ModelEntry",
    "auto_settings",
    "create_model",
    "list_models",
    "model_config",
    "model_entry",
    "pretrained_paths",
    "register_model",
    "weights_path",
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
    """

    name: str
    config: SegmentAnythingModelConfig
    weights: object = None
    auto: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    object_diameter: float | None = None
    decoder: object = None
    ais: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

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
    _REGISTRY[cfg.name] = ModelEntry(
        cfg.name, cfg, weights, settings or MappingProxyType({}),
        None if object_diameter is None else float(object_diameter), decoder, ais,
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


TINY_NUCLEI_WEIGHTS = pathlib.Path(__file__).parent / "data" / "sam_tiny_nuclei.npz"

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
)


# micro-sam's light- and electron-microscopy models: Meta's architectures, fine-tuned weights
# and an instance decoder each (weights/micro_sam.py). Their AMG thresholds are micro-sam's.
_MICRO_SAM_AMG = {
    "vit_b_lm": (0.65, 0.7),
    "vit_l_lm": (0.65, 0.73),
    "vit_b_em_organelles": (0.75, 0.75),
    "vit_l_em_organelles": (0.8, 0.8),
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


def _local(name: str, weights, what: str) -> pathlib.Path:
    if not pathlib.Path(weights).is_file():
        raise FileNotFoundError(
            f"the {what} of {name!r} should ship with the package at {weights}, but the "
            "file is missing: reinstall napari-sam or run scripts/train_tiny.py"
        )
    return pathlib.Path(weights)


def _fetch(name: str, files: dict, progress: bool) -> dict[str, pathlib.Path]:
    """Local paths of ``files`` ({what: WeightFile or path}); one message for all that fail."""
    paths, failed = {}, []
    for what, weights in files.items():
        if isinstance(weights, (str, os.PathLike)):
            paths[what] = _local(name, weights, what)
            continue
        try:
            paths[what] = fetch_weights(weights, progress=progress)
        except WeightsUnavailableError as err:
            failed.append((what, weights, err))
    if not failed:
        return paths
    if len(files) == 1:
        raise failed[0][2]
    cache = cache_dir()
    lines = [
        f"Could not download the {len(failed)} file(s) of {name!r} "
        f"({short_reason(failed[0][2].__cause__ or failed[0][2], 80)}). {offline_advice()} "
        "To use this one offline, give local files (--weights FILE --decoder FILE, "
        "create_model(name, pretrained=PATH, decoder=PATH)), or download these elsewhere and "
        "copy them to exactly:"
    ]
    for what, weights, _err in failed:
        lines.append(f"    {weights.url} ({what}, {weights.algorithm} {weights.sha256}) to:")
        lines.append(f"    {cache / weights.filename}")
    raise WeightsUnavailableError("\n".join(lines)) from failed[0][2]


def weights_path(name: str, progress: bool = True) -> pathlib.Path:
    """Local path of the pretrained weights of model ``name``, downloading them if needed."""
    entry = _REGISTRY.get(name)
    weights = None if entry is None else entry.weights
    if weights is None:
        raise ValueError(f"model {name!r} has no pretrained weights; pass a checkpoint path")
    return _fetch(name, {"weights": weights}, progress)["weights"]


def pretrained_paths(name: str, progress: bool = True) -> dict[str, pathlib.Path]:
    """Local paths of a model's pretrained files: ``{"weights": ..., "decoder": ...}``.

    ``"decoder"`` only for a model with an instance decoder (micro-sam's); both files are
    downloaded (once, with a progress bar) if needed. Offline, the message names each file
    that is missing and where to put it.
    """
    entry = model_entry(name)
    if entry.weights is None:
        raise ValueError(f"model {name!r} has no pretrained weights; pass a checkpoint path")
    files = {"weights": entry.weights}
    if entry.decoder is not None:
        files["decoder"] = entry.decoder
    return _fetch(name, files, progress)


def _read_decoder(path: pathlib.Path, embed_dim: int, required: bool):
    """The instance decoder in ``path`` (a decoder file, an export or a training checkpoint)."""
    from .decoder import load_decoder
    from .pth_reader import CheckpointError, read_pth_states

    if path.suffix.lower() == ".npz":
        state = read_checkpoint(path)
    else:
        # looking for a decoder beside the weights: leave the SAM tensors unread
        states = read_pth_states(path, ("model", "decoder") if required else ("decoder",))
        state = states.get("decoder")
        if state is None and required:
            state = states.get("model")  # a plain decoder file
    if state is None:
        if required:
            raise CheckpointError(f"{path}: holds no instance decoder")
        return None
    return load_decoder(state, source=str(path), embed_dim=embed_dim)


def _attach(model, decoder) -> None:
    # not a tracked sub-layer: the SAM model's weights, key map and saved files stay SAM's
    object.__setattr__(model, "instance_decoder", decoder)


def create_model(name: str, pretrained=False, in_channels: int = 3, **overrides):
    """Create a registered SAM model.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    pretrained : bool or path
        False: random initialisation. True: the official weights (downloaded once and
        cached; for micro-sam's models the instance decoder too). A path: a checkpoint file
        (Meta's ``.pth``, micro-sam's ``vit_b.pt``, an export with ``model_state`` and
        ``decoder_state``, a torch-em training checkpoint, or a converted ``.npz``).
    in_channels : int
        Number of input channels; pretrained weights of the layer at ``cfg.first_conv``
        are adapted (1 channel sums the RGB kernels, N channels tile them, scaled 3/N).
    **overrides
        Other :class:`SegmentAnythingModelConfig` fields, e.g. ``input_size`` (positional
        embeddings are resized) or ``fixed_input_size``; ``dtype="bfloat16"`` to run the
        image encoder in bfloat16 (see :meth:`SegmentAnythingModel.set_encoder_dtype`); and
        ``decoder=`` (None, False or a path), the instance-segmentation decoder set as
        ``model.instance_decoder``: a path to micro-sam's decoder file (or to a file with a
        ``decoder_state``); None: the model's own when ``pretrained=True``, the one inside a
        ``pretrained`` file that holds one; False: none.

    Returns
    -------
    SegmentAnythingModel
        With ``instance_decoder`` (an :class:`~napari_sam.model.instance_decoder.InstanceDecoder`
        or None).
    """
    from ..model.sam import SegmentAnythingModel  # TensorFlow: only when a model is built

    dtype = overrides.pop("dtype", "float32")
    decoder = overrides.pop("decoder", None)
    cfg = model_config(name, in_channels, **overrides)
    decoder_file = None if decoder in (None, False) else pathlib.Path(decoder)
    if decoder_file is not None and not decoder_file.is_file():
        raise FileNotFoundError(f"decoder: no such file {decoder_file}")
    model = SegmentAnythingModel(cfg)
    model.set_encoder_dtype(dtype)
    path = None
    if pretrained is True:
        paths = pretrained_paths(name)
        path = paths["weights"]
        if decoder is None:
            decoder_file = paths.get("decoder")
    elif pretrained not in (False, None):
        path = pathlib.Path(pretrained)
    # the decoder file is read first: a wrong one fails before a large encoder file is read
    given = None if decoder_file is None else _read_decoder(decoder_file, cfg.embed_dim, True)
    _attach(model, given)
    if path is None:
        return model
    state = adapt_state(read_checkpoint(path), cfg)
    load_state_dict(model, state, source=str(path))
    model.weights_source = str(path)
    if decoder is None and pretrained is not True and path.suffix.lower() != ".npz":
        _attach(model, _read_decoder(path, cfg.embed_dim, False))
    if model.instance_decoder is not None:
        model.decoder_source = str(decoder_file or path)
    return model
