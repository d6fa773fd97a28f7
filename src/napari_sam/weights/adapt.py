"""Adapting checkpoints to other configurations: input channels and input size.

These work on state dicts in Meta's (PyTorch) layout, before the key map is applied.
"""

from __future__ import annotations

import math

import numpy as np

from ..model.interpolate import resize_pos_embed, resize_rel_pos


def adapt_input_conv(weight: np.ndarray, in_channels: int) -> np.ndarray:
    """Adapt a first-convolution kernel (out, 3, kh, kw) to ``in_channels`` inputs.

    One channel sums the RGB kernels; N channels tile the RGB kernels and scale them by
    ``3 / N`` (timm's ``adapt_input_conv``). For 1 channel and for multiples of 3, an image
    with the same value in every channel gives exactly the response of the RGB kernel; for
    other N it differs.
    """
    src = weight.shape[1]
    if in_channels == src:
        return weight
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if in_channels == 1:
        return weight.sum(axis=1, keepdims=True)
    reps = math.ceil(in_channels / src)
    tiled = np.tile(weight, (1, reps, 1, 1))[:, :in_channels]
    return (tiled * (src / in_channels)).astype(weight.dtype)


def adapt_mean_std(values: tuple[float, ...], in_channels: int) -> tuple[float, ...]:
    """Adapt per-channel ``mean`` or ``std`` the same way as :func:`adapt_input_conv`.

    One channel takes the average; N channels cycle through the given values.
    """
    if in_channels == len(values):
        return tuple(values)
    if in_channels == 1:
        return (float(np.mean(values)),)
    return tuple(float(values[i % len(values)]) for i in range(in_channels))


def adapt_state(state: dict[str, np.ndarray], cfg) -> dict[str, np.ndarray]:
    """Return ``state`` adapted to ``cfg``: first-conv channels, pos_embed and rel-pos sizes.

    Parameters
    ----------
    state : dict
        Checkpoint arrays by Meta's key names.
    cfg : SegmentAnythingModelConfig
        Target configuration.
    """
    from .key_map import first_conv_key

    state = dict(state)
    if cfg.encoder == "tiny_vit":  # the classifier head and BatchNorm counters SAM never uses
        from .key_map import UNUSED

        state = {k: v for k, v in state.items()
                 if not (k.startswith("image_encoder.") and UNUSED.search(k))}  # fmt: skip
    key = first_conv_key(cfg.first_conv)
    # Only an RGB kernel is adapted; any other mismatch is reported when loading.
    if key in state and state[key].ndim == 4 and state[key].shape[1] == 3:
        state[key] = adapt_input_conv(state[key], cfg.in_channels)
    grid = tuple(s // cfg.encoder_patch_size for s in cfg.input_size)
    pos_key = "image_encoder.pos_embed"
    if pos_key in state and state[pos_key].ndim == 4:
        state[pos_key] = resize_pos_embed(state[pos_key], grid)
    for i in cfg.encoder_global_attn_indices:
        for axis, size in (("h", grid[0]), ("w", grid[1])):
            k = f"image_encoder.blocks.{i}.attn.rel_pos_{axis}"
            if k in state and state[k].ndim == 2:
                state[k] = resize_rel_pos(state[k], 2 * size - 1)
    return state
