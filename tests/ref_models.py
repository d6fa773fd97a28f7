"""Meta's reference SAM built from a napari-sam config, with every tensor perturbed.

Test-only: uses torch and ``segment_anything`` (imported through ``reference.py``).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from reference import import_segment_anything


def build_reference(cfg, seed: int = 0):
    """A reference ``Sam`` with the architecture of ``cfg`` and perturbed random weights.

    The default init leaves ``pos_embed`` and the relative position tables at zero (and
    LayerNorms at 1/0), which would hide bugs there; every tensor gets random noise.
    """
    sa = import_segment_anything()
    m = sa.modeling
    torch.manual_seed(seed)
    grid = cfg.input_size[0] // cfg.encoder_patch_size
    assert cfg.input_size[0] == cfg.input_size[1], "Meta's encoder is square"
    encoder = m.ImageEncoderViT(
        depth=cfg.encoder_nb_blocks,
        embed_dim=cfg.encoder_embed_dim,
        img_size=cfg.input_size[0],
        mlp_ratio=cfg.encoder_mlp_ratio,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=cfg.encoder_nb_heads,
        patch_size=cfg.encoder_patch_size,
        qkv_bias=cfg.encoder_qkv_bias,
        use_rel_pos=True,
        global_attn_indexes=cfg.encoder_global_attn_indices,
        window_size=cfg.encoder_window_size,
        out_chans=cfg.embed_dim,
    )
    sam = m.Sam(
        image_encoder=encoder,
        prompt_encoder=m.PromptEncoder(
            embed_dim=cfg.embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=tuple(cfg.input_size),
            mask_in_chans=cfg.prompt_mask_hidden_dim,
        ),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=cfg.nb_multimask_outputs,
            transformer=m.TwoWayTransformer(
                depth=cfg.decoder_nb_blocks,
                embedding_dim=cfg.embed_dim,
                mlp_dim=cfg.decoder_mlp_channels,
                num_heads=cfg.decoder_nb_heads,
            ),
            transformer_dim=cfg.embed_dim,
            iou_head_depth=cfg.decoder_iou_head_depth,
            iou_head_hidden_dim=cfg.decoder_iou_hidden_dim,
        ),
        pixel_mean=[255 * v for v in cfg.mean],
        pixel_std=[255 * v for v in cfg.std],
    )
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, tensor in sam.state_dict().items():
            noise = torch.randn(tensor.shape, generator=gen, dtype=tensor.dtype)
            scale = 0.5 if ("norm" in name or "neck.1" in name or "neck.3" in name) else 0.05
            if name.endswith("pos_embed") or "rel_pos" in name:
                scale = 0.5
            tensor.add_(scale * noise)
    return sam.eval()


def follow_regions(sam):
    """Make ``sam``'s masks follow image regions (in place; returns it): no position
    embeddings in the encoder and no sub-pixel pattern in the decoder's upscaling (each
    transposed-convolution kernel the same at every offset), so that random weights give local
    masks, and the automatic segmentation's filters and NMS have work."""
    with torch.no_grad():
        for name, tensor in sam.state_dict().items():
            if "pos_embed" in name or "rel_pos" in name:
                tensor.zero_()
        for i in (0, 3):
            w = sam.mask_decoder.output_upscaling[i].weight
            w.copy_(w.mean(dim=(2, 3), keepdim=True).expand_as(w))
    return sam


def save_like_official(sam, path) -> None:
    """Save the state dict exactly as Meta's official ``.pth`` files are saved."""
    torch.save(sam.state_dict(), path)


def reference_predictor(sam):
    """Meta's ``SamPredictor`` around ``sam``."""
    return import_segment_anything().SamPredictor(sam)


def relative_error(a, b) -> float:
    """max |a - b| / max |b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
