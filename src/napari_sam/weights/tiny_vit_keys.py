"""Key map of the TinyViT image encoder (MobileSAM's ``mobile_sam.pt``, micro-sam's ``vit_t``).

Checkpoint keys under ``image_encoder.``: ``patch_embed.seq.{0,2}``, ``layers.N.blocks.M.*``,
``layers.N.downsample.*``, ``neck.{0..3}``; each ``Conv2d_BN`` holds ``c.weight`` and
``bn.{weight,bias,running_mean,running_var,num_batches_tracked}``. The attention's
``attention_bias_idxs`` is a non-persistent buffer (rebuilt by the model); ``norm_head`` and
``head`` (the classifier TinyViT was pre-trained with) and ``num_batches_tracked`` are not
used by SAM: :data:`UNUSED` matches them.
"""

from __future__ import annotations

import re

from .key_map import KeyMapEntry, kernel_entry, layer_entries, plain_entry

__all__ = ["UNUSED", "tiny_vit_entries"]

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
            out += layer_entries(f"{p}.attn.norm", blk.attn.norm, "norm")
            out += layer_entries(f"{p}.attn.qkv", blk.attn.qkv, "linear")
            out += layer_entries(f"{p}.attn.proj", blk.attn.proj, "linear")
            out.append(plain_entry(f"{p}.attn.attention_biases", blk.attn.attention_biases))
            out += _conv_bn(f"{p}.local_conv", blk.local_conv)
            out += layer_entries(f"{p}.mlp.norm", blk.mlp.norm, "norm")
            out += layer_entries(f"{p}.mlp.fc1", blk.mlp.fc1, "linear")
            out += layer_entries(f"{p}.mlp.fc2", blk.mlp.fc2, "linear")
        if down is not None:
            for name in ("conv1", "conv2", "conv3"):
                out += _conv_bn(f"{prefix}.layers.{i}.downsample.{name}", getattr(down, name))
    out += layer_entries(f"{prefix}.neck.0", enc.neck_conv1, "conv")
    out += layer_entries(f"{prefix}.neck.1", enc.neck_norm1, "norm")
    out += layer_entries(f"{prefix}.neck.2", enc.neck_conv2, "conv")
    out += layer_entries(f"{prefix}.neck.3", enc.neck_norm2, "norm")
    return out
