"""SAM's mask decoder: predicts mask logits and IoU scores from embeddings and prompts."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from .layers import MLP, built, embedding_init, gelu, norm_layer_factory
from .transformer import TwoWayTransformer


def _conv_transpose_2x2(filters: int, in_dim: int, name: str):
    layer = layers.Conv2DTranspose(filters, 2, strides=2, name=name)
    return built(layer, (None, None, None, in_dim))


class MaskDecoder(keras.layers.Layer):
    """Predicts (N, K, H', W') mask logits and (N, K) IoU scores.

    Parameters
    ----------
    cfg : SegmentAnythingModelConfig
        Uses ``embed_dim``, ``nb_multimask_outputs`` and the ``decoder_*`` fields.
    """

    def __init__(self, cfg, **kwargs):
        super().__init__(**kwargs)
        dim = cfg.embed_dim
        self.num_mask_tokens = cfg.nb_multimask_outputs + 1
        self.transformer = TwoWayTransformer(
            cfg.decoder_nb_blocks, dim, cfg.decoder_nb_heads, cfg.decoder_mlp_channels,
            name="transformer",
        )  # fmt: skip
        self.iou_token = self.add_weight((1, dim), embedding_init(), name="iou_token")
        self.mask_tokens = self.add_weight(
            (self.num_mask_tokens, dim), embedding_init(), name="mask_tokens"
        )
        self.upscale_conv1 = _conv_transpose_2x2(dim // 4, dim, "upscale_conv1")
        self.upscale_norm = norm_layer_factory("layer_norm_eps_1e-6")(dim // 4, "upscale_norm")
        self.upscale_conv2 = _conv_transpose_2x2(dim // 8, dim // 4, "upscale_conv2")
        self.output_hypernetworks_mlps = [
            MLP(dim, dim, dim // 8, 3, name=f"output_hypernetworks_mlps_{i}")
            for i in range(self.num_mask_tokens)
        ]
        self.iou_prediction_head = MLP(
            dim, cfg.decoder_iou_hidden_dim, self.num_mask_tokens, cfg.decoder_iou_head_depth,
            name="iou_prediction_head",
        )  # fmt: skip
        self.built = True

    def prepare(self, image_embeddings, image_pe, dense):
        """Prompt-independent work on one image, for ``call(..., prepared=...)``.

        Parameters
        ----------
        image_embeddings : Tensor
            (1, H'', W'', D) embedding of one image.
        image_pe : Tensor
            (H'', W'', D) positional encoding of the embedding grid.
        dense : Tensor
            (1, 1 or H'', 1 or W'', D) dense prompt embedding shared by all prompts (the
            prompt encoder's ``no_mask_embed`` when there is no mask prompt).

        Returns
        -------
        dict of Tensor
            The first transformer block's image-side projections and the positions.
        """
        _, h, w, d = image_embeddings.shape
        src = tf.reshape(image_embeddings + dense, (1, h * w, d))
        prepared = self.transformer.prepare(src, tf.reshape(image_pe, (1, h * w, d)))
        prepared["pos"] = image_pe[None]
        return prepared

    def call(self, image_embeddings, image_pe, sparse, dense, multimask_output: bool,
             prepared=None):  # fmt: skip
        """Decode masks.

        Parameters
        ----------
        image_embeddings : Tensor
            (1 or N, H'', W'', D); a single embedding is shared by all N prompts.
        image_pe : Tensor
            (H'', W'', D) positional encoding of the embedding grid.
        sparse, dense : Tensor
            (N, M, D) and (N, H'', W'', D) prompt embeddings.
        multimask_output : bool
            Return the ``nb_multimask_outputs`` masks instead of the single one.
        prepared : dict of Tensor, optional
            :meth:`prepare` of the one image all N prompts share, with the same dense
            embedding; ``image_embeddings``, ``image_pe`` and ``dense`` are then not used.
            Same result, less work per prompt.
        """
        n = tf.shape(sparse)[0]
        if prepared is not None:
            image_pe = prepared["pos"][0]
        h, w, d = image_pe.shape
        output_tokens = tf.concat([self.iou_token, self.mask_tokens], axis=0)
        output_tokens = tf.broadcast_to(output_tokens[None], (n, self.num_mask_tokens + 1, d))
        tokens = tf.concat([output_tokens, sparse], axis=1)
        pos = tf.reshape(image_pe, (1, h * w, d))
        if prepared is None:
            src = tf.reshape(image_embeddings + dense, (n, h * w, d))
        else:
            src = prepared["keys"]
        hs, src = self.transformer(
            src, pos, tokens, prepared=prepared, num_outputs=self.num_mask_tokens + 1
        )
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        src = tf.reshape(src, (n, h, w, d))
        upscaled = gelu(self.upscale_norm(self.upscale_conv1(src)))
        upscaled = gelu(self.upscale_conv2(upscaled))  # (N, 4H'', 4W'', D/8)
        hyper_in = tf.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            axis=1,
        )  # (N, T, D/8)
        masks = tf.einsum("ntc,nhwc->nthw", hyper_in, upscaled)
        iou_pred = self.iou_prediction_head(iou_token_out)
        if multimask_output:
            return masks[:, 1:], iou_pred[:, 1:]
        return masks[:, :1], iou_pred[:, :1]
