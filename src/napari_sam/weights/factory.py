"""The model factory: ``create_model`` and the local paths of a model's pretrained files.

The entries it builds from are data in :mod:`napari_sam.weights.registry` (timm's split of
``_registry`` and ``_factory``). Importable without TensorFlow: the model class is imported
by :func:`create_model` only.
"""

from __future__ import annotations

import os
import pathlib

from .adapt import adapt_state
from .download import (
    WeightsUnavailableError,
    cache_dir,
    fetch_weights,
    offline_advice,
    short_reason,
)
from .loading import load_state_dict, read_checkpoint
from .registry import list_models, model_config, model_entry

__all__ = ["create_model", "pretrained_paths", "weights_path"]


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
    entry = model_entry(name) if name in list_models() else None
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
        image encoder in bfloat16, ``dtype="auto"`` for bfloat16 only where the machine does
        it natively and faster (see :meth:`SegmentAnythingModel.set_encoder_dtype`); and
        ``decoder=`` (None, False or a path), the instance-segmentation decoder set as
        ``model.instance_decoder``: a path to micro-sam's decoder file (or to a file with a
        ``decoder_state``); None: the model's own when ``pretrained=True``, the one inside a
        ``pretrained`` file that holds one; False: none. ``config=``: the configuration
        :func:`model_config` made of ``name``, ``in_channels`` and the other overrides,
        used as it is (the other overrides are then left out).

    Returns
    -------
    SegmentAnythingModel
        With ``instance_decoder`` (an :class:`~napari_sam.model.instance_decoder.InstanceDecoder`
        or None).
    """
    from ..model.sam import SegmentAnythingModel  # TensorFlow: only when a model is built

    dtype = overrides.pop("dtype", "float32")
    decoder = overrides.pop("decoder", None)
    cfg = overrides.pop("config", None) or model_config(name, in_channels, **overrides)
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
