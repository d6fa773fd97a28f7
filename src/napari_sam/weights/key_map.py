"""Explicit map from Meta's checkpoint keys to the Keras model's variables.

Every entry names one PyTorch key, the Keras variable it fills and how the array is
rearranged. :func:`load_state_dict` checks that every key is used and every variable
filled, and validates all shapes before assigning anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _linear(w):  # torch (out, in) -> keras (in, out)
    return w.T


def _conv(w):  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
    return w.transpose(2, 3, 1, 0)


def _conv_transpose(w):  # torch (in, out, kh, kw) -> keras (kh, kw, out, in)
    return w.transpose(2, 3, 1, 0)


def _same(w):
    return w


def _depthwise(w):  # torch (C, 1, kh, kw) -> keras depth-wise (kh, kw, C, 1)
    return w.transpose(2, 3, 0, 1)


def _depthwise_inverse(w):  # keras (kh, kw, C, 1) -> torch (C, 1, kh, kw)
    return w.transpose(2, 3, 0, 1)


def _conv_inverse(w):  # keras (kh, kw, in, out) -> torch (out, in, kh, kw); also transposed
    return w.transpose(3, 2, 0, 1)


_INVERSE = {_linear: _linear, _conv: _conv_inverse, _conv_transpose: _conv_inverse, _same: _same,
            _depthwise: _depthwise_inverse}


@dataclass(frozen=True)
class KeyMapEntry:
    """One checkpoint key, the variable it fills and the array transformation."""

    key: str
    variable: object
    transform: Callable[[np.ndarray], np.ndarray]

    def export(self) -> np.ndarray:
        """The variable's value in the checkpoint's (PyTorch) layout."""
        value = np.asarray(self.variable.numpy())
        return _INVERSE[self.transform](value)


def _entries_for(prefix, layer, kind):
    """Entries for a Keras layer corresponding to a torch module of the given kind."""
    if kind == "linear" or kind == "conv" or kind == "conv_transpose":
        fn = {"linear": _linear, "conv": _conv, "conv_transpose": _conv_transpose}[kind]
        out = [KeyMapEntry(f"{prefix}.weight", layer.kernel, fn)]
        if layer.use_bias:
            out.append(KeyMapEntry(f"{prefix}.bias", layer.bias, _same))
        return out
    if kind == "norm":
        return [
            KeyMapEntry(f"{prefix}.weight", layer.gamma, _same),
            KeyMapEntry(f"{prefix}.bias", layer.beta, _same),
        ]
    raise ValueError(kind)


def layer_entries(prefix: str, layer, kind: str) -> list[KeyMapEntry]:
    """Entries of a Keras ``layer`` standing for the torch module ``prefix`` of ``kind``:
    ``"linear"``, ``"conv"``, ``"conv_transpose"`` (kernel, and bias if any) or ``"norm"``."""
    return _entries_for(prefix, layer, kind)


def kernel_entry(key: str, variable, depthwise: bool = False) -> KeyMapEntry:
    """A convolution kernel (torch layout in the checkpoint), depth-wise or not."""
    return KeyMapEntry(key, variable, _depthwise if depthwise else _conv)


def plain_entry(key: str, variable) -> KeyMapEntry:
    """An entry whose array is used as it is (embeddings, norm statistics)."""
    return KeyMapEntry(key, variable, _same)


def _attention(prefix, attn):
    return [
        e
        for name in ("q_proj", "k_proj", "v_proj", "out_proj")
        for e in _entries_for(f"{prefix}.{name}", getattr(attn, name), "linear")
    ]


def _mlp(prefix, mlp):
    return [
        e
        for i, layer in enumerate(mlp.mlp_layers)
        for e in _entries_for(f"{prefix}.layers.{i}", layer, "linear")
    ]


def image_encoder_entries(enc, prefix="image_encoder"):
    """Key map of :class:`~napari_sam.model.image_encoder.ImageEncoder`."""
    out = _entries_for(f"{prefix}.patch_embed.proj", enc.patch_embed.proj, "conv")
    out.append(KeyMapEntry(f"{prefix}.pos_embed", enc.pos_embed, _same))
    for i, blk in enumerate(enc.blocks):
        p = f"{prefix}.blocks.{i}"
        out += _entries_for(f"{p}.norm1", blk.norm1, "norm")
        out += _entries_for(f"{p}.attn.qkv", blk.attn.qkv, "linear")
        out += _entries_for(f"{p}.attn.proj", blk.attn.proj, "linear")
        out.append(KeyMapEntry(f"{p}.attn.rel_pos_h", blk.attn.rel_pos_h, _same))
        out.append(KeyMapEntry(f"{p}.attn.rel_pos_w", blk.attn.rel_pos_w, _same))
        out += _entries_for(f"{p}.norm2", blk.norm2, "norm")
        out += _entries_for(f"{p}.mlp.lin1", blk.mlp.lin1, "linear")
        out += _entries_for(f"{p}.mlp.lin2", blk.mlp.lin2, "linear")
    out += _entries_for(f"{prefix}.neck.0", enc.neck_conv1, "conv")
    out += _entries_for(f"{prefix}.neck.1", enc.neck_norm1, "norm")
    out += _entries_for(f"{prefix}.neck.2", enc.neck_conv2, "conv")
    out += _entries_for(f"{prefix}.neck.3", enc.neck_norm2, "norm")
    return out


def prompt_encoder_entries(pe, prefix="prompt_encoder"):
    """Key map of :class:`~napari_sam.model.prompt_encoder.PromptEncoder`."""
    g = pe.pe_layer.positional_encoding_gaussian_matrix
    out = [KeyMapEntry(f"{prefix}.pe_layer.positional_encoding_gaussian_matrix", g, _same)]
    for i, w in enumerate(pe.point_embeddings):
        out.append(KeyMapEntry(f"{prefix}.point_embeddings.{i}.weight", w, _same))
    out.append(KeyMapEntry(f"{prefix}.not_a_point_embed.weight", pe.not_a_point_embed, _same))
    out.append(KeyMapEntry(f"{prefix}.no_mask_embed.weight", pe.no_mask_embed, _same))
    for idx, layer, kind in (
        (0, pe.mask_conv1, "conv"),
        (1, pe.mask_norm1, "norm"),
        (3, pe.mask_conv2, "conv"),
        (4, pe.mask_norm2, "norm"),
        (6, pe.mask_conv3, "conv"),
    ):
        out += _entries_for(f"{prefix}.mask_downscaling.{idx}", layer, kind)
    return out


def mask_decoder_entries(md, prefix="mask_decoder"):
    """Key map of :class:`~napari_sam.model.mask_decoder.MaskDecoder`."""
    out = []
    t = md.transformer
    for i, blk in enumerate(t.blocks):
        p = f"{prefix}.transformer.layers.{i}"
        out += _attention(f"{p}.self_attn", blk.self_attn)
        out += _entries_for(f"{p}.norm1", blk.norm1, "norm")
        out += _attention(f"{p}.cross_attn_token_to_image", blk.cross_attn_token_to_image)
        out += _entries_for(f"{p}.norm2", blk.norm2, "norm")
        out += _entries_for(f"{p}.mlp.lin1", blk.mlp.lin1, "linear")
        out += _entries_for(f"{p}.mlp.lin2", blk.mlp.lin2, "linear")
        out += _entries_for(f"{p}.norm3", blk.norm3, "norm")
        out += _entries_for(f"{p}.norm4", blk.norm4, "norm")
        out += _attention(f"{p}.cross_attn_image_to_token", blk.cross_attn_image_to_token)
    out += _attention(
        f"{prefix}.transformer.final_attn_token_to_image", t.final_attn_token_to_image
    )
    out += _entries_for(f"{prefix}.transformer.norm_final_attn", t.norm_final_attn, "norm")
    out.append(KeyMapEntry(f"{prefix}.iou_token.weight", md.iou_token, _same))
    out.append(KeyMapEntry(f"{prefix}.mask_tokens.weight", md.mask_tokens, _same))
    out += _entries_for(f"{prefix}.output_upscaling.0", md.upscale_conv1, "conv_transpose")
    out += _entries_for(f"{prefix}.output_upscaling.1", md.upscale_norm, "norm")
    out += _entries_for(f"{prefix}.output_upscaling.3", md.upscale_conv2, "conv_transpose")
    for i, mlp in enumerate(md.output_hypernetworks_mlps):
        out += _mlp(f"{prefix}.output_hypernetworks_mlps.{i}", mlp)
    out += _mlp(f"{prefix}.iou_prediction_head", md.iou_prediction_head)
    return out


# ---------------------------------------------------------------- TinyViT (MobileSAM, vit_t)
# Checkpoint keys under ``image_encoder.``: ``patch_embed.seq.{0,2}``, ``layers.N.blocks.M.*``,
# ``layers.N.downsample.*``, ``neck.{0..3}``; each ``Conv2d_BN`` holds ``c.weight`` and
# ``bn.{weight,bias,running_mean,running_var,num_batches_tracked}``. The attention's
# ``attention_bias_idxs`` is a non-persistent buffer (the model rebuilds it).

#: Checkpoint keys of a TinyViT encoder that SAM does not use.
UNUSED = re.compile(r"(^|\.)(norm_head|head)\.|\.num_batches_tracked$")


def _conv_bn(prefix: str, layer) -> list[KeyMapEntry]:
    return [
        kernel_entry(f"{prefix}.c.weight", layer.kernel, layer.depthwise),
        plain_entry(f"{prefix}.bn.weight", layer.gamma),
        plain_entry(f"{prefix}.bn.bias", layer.beta),
        plain_entry(f"{prefix}.bn.running_mean", layer.moving_mean),
        plain_entry(f"{prefix}.bn.running_var", layer.moving_variance),
    ]


def tiny_vit_entries(enc, prefix: str = "image_encoder") -> list[KeyMapEntry]:
    """Key map of :class:`~napari_sam.model.tiny_vit.TinyViTEncoder`."""
    out = _conv_bn(f"{prefix}.patch_embed.seq.0", enc.patch_embed_seq_0)
    out += _conv_bn(f"{prefix}.patch_embed.seq.2", enc.patch_embed_seq_2)
    for i, (blocks, down) in enumerate(enc.stages):
        for j, blk in enumerate(blocks):
            p = f"{prefix}.layers.{i}.blocks.{j}"
            if i == 0:  # MBConv
                for name in ("conv1", "conv2", "conv3"):
                    out += _conv_bn(f"{p}.{name}", getattr(blk, name))
                continue
            out += _entries_for(f"{p}.attn.norm", blk.attn.norm, "norm")
            out += _entries_for(f"{p}.attn.qkv", blk.attn.qkv, "linear")
            out += _entries_for(f"{p}.attn.proj", blk.attn.proj, "linear")
            out.append(plain_entry(f"{p}.attn.attention_biases", blk.attn.attention_biases))
            out += _conv_bn(f"{p}.local_conv", blk.local_conv)
            out += _entries_for(f"{p}.mlp.norm", blk.mlp.norm, "norm")
            out += _entries_for(f"{p}.mlp.fc1", blk.mlp.fc1, "linear")
            out += _entries_for(f"{p}.mlp.fc2", blk.mlp.fc2, "linear")
        if down is not None:
            for name in ("conv1", "conv2", "conv3"):
                out += _conv_bn(f"{prefix}.layers.{i}.downsample.{name}", getattr(down, name))
    out += _entries_for(f"{prefix}.neck.0", enc.neck_conv1, "conv")
    out += _entries_for(f"{prefix}.neck.1", enc.neck_norm1, "norm")
    out += _entries_for(f"{prefix}.neck.2", enc.neck_conv2, "conv")
    out += _entries_for(f"{prefix}.neck.3", enc.neck_norm2, "norm")
    return out


def sam_key_map(model) -> list[KeyMapEntry]:
    """The complete key map of a :class:`~napari_sam.SegmentAnythingModel`."""
    if model.cfg.encoder == "tiny_vit":
        out = tiny_vit_entries(model.image_encoder)
    else:
        out = image_encoder_entries(model.image_encoder)
    out += prompt_encoder_entries(model.prompt_encoder)
    out += mask_decoder_entries(model.mask_decoder)
    return out


def first_conv_key(first_conv: str) -> str:
    """Checkpoint key of the kernel of the layer at path ``first_conv`` (``a/b/c``)."""
    return first_conv.replace("/", ".") + ".weight"


def export_state_dict(model) -> dict[str, np.ndarray]:
    """All weights of ``model`` under Meta's key names and layouts (the inverse of loading)."""
    return {e.key: e.export() for e in sam_key_map(model)}
