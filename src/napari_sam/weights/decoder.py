"""micro-sam's instance decoder: its configuration read from a checkpoint, key map and loading.

A decoder checkpoint is the state of torch-em's UNETR without its encoder (micro-sam's
``vit_b_decoder.pt``, or the ``decoder_state`` of an export or a training checkpoint). Its
widths are read from the tensors' shapes and the kind of each up-sampler from its keys
(``<module>.block.*``: transposed convolution; ``<module>.conv.*``: bilinear + 1 x 1 conv).
"""

from __future__ import annotations

import numpy as np

from .key_map import KeyMapEntry, layer_entries, plain_entry
from .pth_reader import CheckpointError

__all__ = ["decoder_config", "decoder_key_map", "export_decoder_state", "load_decoder"]

_BN_COUNT = "num_batches_tracked"  # a BatchNorm buffer that inference does not use


def _depth(state: dict) -> int:
    """Levels of the UNETR in ``state``: its side-branch blocks ``deconv1``, ``deconv2``..."""
    depth = 0
    while any(k.startswith(f"deconv{depth + 1}.") for k in state):
        depth += 1
    return depth


def _upsampler_kinds(state: dict, source: str, depth: int) -> tuple[str, ...]:
    from ..model.instance_decoder import upsamplers

    transpose = []
    for module in upsamplers(depth):
        has_block = f"{module}.block.weight" in state
        has_conv = f"{module}.conv.weight" in state
        if has_block == has_conv:
            what = "both" if has_block else "neither"
            raise CheckpointError(
                f"{source}: not a micro-sam instance decoder: up-sampler {module!r} has {what} "
                f"'{module}.block.weight' and '{module}.conv.weight'"
            )
        if has_block:
            transpose.append(module)
    return tuple(transpose)


def decoder_config(state: dict[str, np.ndarray], source: str = "decoder", embed_dim=None):
    """The :class:`~napari_sam.model.instance_decoder.DecoderConfig` of a decoder checkpoint.

    Parameters
    ----------
    state : dict of str to ndarray
        The decoder's state (torch-em's UNETR keys without ``encoder.``).
    source : str
        The file, for error messages.
    embed_dim : int, optional
        The embedding width of the SAM model the decoder is used with; a decoder of another
        width is refused.

    Raises
    ------
    CheckpointError
        If the state is not a micro-sam decoder, or is one for another embedding width.
    """
    from ..model.instance_decoder import DecoderConfig

    for key in ("base.block.1.weight", "out_conv.weight"):
        if key not in state or np.ndim(state[key]) != 4:
            raise CheckpointError(
                f"{source}: not a micro-sam instance decoder (no 4-d tensor {key!r}); "
                "expected a file such as vit_b_decoder.pt"
            )
    out_channels, initial = (int(n) for n in state["out_conv.weight"].shape[:2])
    base_out, width = (int(n) for n in state["base.block.1.weight"].shape[:2])
    depth = _depth(state)
    if depth < 2 or base_out != 2 ** (depth - 1) * initial:
        raise CheckpointError(
            f"{source}: inconsistent decoder widths: base.block.1 has {base_out} output "
            f"channels, out_conv {initial} inputs and {depth} levels (expected "
            f"{2 ** max(depth - 1, 0)} x and at least 2 levels)"
        )
    if embed_dim is not None and width != int(embed_dim):
        raise CheckpointError(
            f"{source}: the decoder is for image embeddings of {width} channels, but the model's "
            f"have {int(embed_dim)}: a decoder of another model"
        )
    kinds = _upsampler_kinds(state, source, depth)
    return DecoderConfig(width, initial, out_channels, kinds, depth)


def _conv_entries(prefix, layer, transpose=False):
    return layer_entries(prefix, layer, "conv_transpose" if transpose else "conv")


def _upsampler_entries(prefix, up):
    name = "block" if up.transpose else "conv"
    return _conv_entries(f"{prefix}.{name}", up.proj, up.transpose)


def _conv_block_entries(prefix, block):
    return _conv_entries(f"{prefix}.block.1", block.conv1) + _conv_entries(
        f"{prefix}.block.4", block.conv2
    )


def decoder_key_map(decoder) -> list[KeyMapEntry]:
    """Key map of an :class:`~napari_sam.model.instance_decoder.InstanceDecoder`."""
    out = []
    for i, block in enumerate(decoder.deconv, start=1):
        p = f"deconv{i}.block"
        out += _upsampler_entries(f"{p}.0", block.up)
        out += _conv_entries(f"{p}.1.block", block.conv)
        norm = block.norm
        out += [
            plain_entry(f"{p}.2.weight", norm.gamma),
            plain_entry(f"{p}.2.bias", norm.beta),
            plain_entry(f"{p}.2.running_mean", norm.moving_mean),
            plain_entry(f"{p}.2.running_var", norm.moving_variance),
        ]
    out += _conv_block_entries("base", decoder.base)
    for i, (sampler, block) in enumerate(zip(decoder.samplers, decoder.blocks, strict=True)):
        out += _upsampler_entries(f"decoder.samplers.{i}", sampler)
        out += _conv_block_entries(f"decoder.blocks.{i}", block)
    out += _upsampler_entries("deconv_out", decoder.deconv_out)
    out += _conv_block_entries("decoder_head", decoder.decoder_head)
    out += _conv_entries("out_conv", decoder.out_conv)
    return out


def export_decoder_state(decoder) -> dict[str, np.ndarray]:
    """The decoder's weights under torch-em's key names and layouts (the inverse of loading)."""
    return {e.key: e.export() for e in decoder_key_map(decoder)}


def load_decoder(state: dict[str, np.ndarray], source: str = "decoder", embed_dim=None):
    """Build an :class:`~napari_sam.model.instance_decoder.InstanceDecoder` from its state.

    Every key, shape and value is checked before anything is assigned (as for SAM's
    checkpoints); BatchNorm's ``num_batches_tracked`` counters are accepted and unused.

    Raises
    ------
    CheckpointError
        Names ``source`` and what does not match.
    """
    from ..model.instance_decoder import InstanceDecoder
    from .loading import load_state_dict

    config = decoder_config(state, source, embed_dim)
    decoder = InstanceDecoder(config)
    used = {k: v for k, v in state.items() if not k.endswith("." + _BN_COUNT)}
    load_state_dict(decoder, used, source=source, entries=decoder_key_map(decoder))
    return decoder
