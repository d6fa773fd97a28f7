"""SAM's mask decoder: predicts mask logits and IoU scores from embeddings and prompts."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from .layers import MLP, built, embedding_init, gelu, layer_norm, norm_layer_factory
from .transformer import TwoWayTransformer


def _conv_transpose_2x2(filters: int, in_dim: int, name: str):
    layer = layers.Conv2DTranspose(filters, 2, strides=2, name=name)
    return built(layer, (None, None, None, in_dim))


def _as_matmul(conv):
    """A 2 x 2, stride 2 transposed convolution as a (in, 4 * out) matrix and its bias:
    every input pixel gives a 2 x 2 block of outputs, ordered (row, column, channel)."""
    kernel = tf.convert_to_tensor(conv.kernel)  # (2, 2, out, in)
    matrix = tf.reshape(tf.transpose(kernel, (3, 0, 1, 2)), (kernel.shape[3], -1))
    return matrix, tf.tile(tf.convert_to_tensor(conv.bias), [4])


# The elementwise work of the upscaling, fused by XLA (compiled once per shape).
@tf.function(jit_compile=True, reduce_retracing=True)
def _norm_gelu(x, gamma, beta, epsilon):
    return gelu(layer_norm(x, gamma, beta, epsilon))


@tf.function(jit_compile=True, reduce_retracing=True)
def _gelu(x):
    return gelu(x)


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
        iou_pred = self.iou_prediction_head(hs[:, 0, :])
        hyper_in = tf.stack(
            [mlp(hs[:, 1 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], axis=1
        )  # (N, T, D/8)
        # Selecting before the product keeps every token's (zero) gradient in training.
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        masks = self._masks(hyper_in[:, chosen], self._upscale(src), h, w)
        return masks, iou_pred[:, chosen]

    def _upscale(self, src):
        """The two transposed convolutions of (N, H'' W'', D) as matrix products.

        Returns (N, 16 H'' W'', D/8) features with the pixel shuffle left for
        :meth:`_masks` (done on the few mask channels instead of D/8): row
        ``(p, r1, c1, r2, c2)`` is output pixel ``(4 i + 2 r1 + r2, 4 j + 2 c1 + c2)`` of
        input pixel ``p = (i, j)``.
        """
        n, d = tf.shape(src)[0], src.shape[-1]
        w1, b1 = _as_matmul(self.upscale_conv1)
        w2, b2 = _as_matmul(self.upscale_conv2)
        norm = self.upscale_norm
        x = tf.matmul(tf.reshape(src, (-1, d)), w1) + b1  # (N P, 4 D/4)
        x = tf.reshape(x, (-1, d // 4))
        x = _norm_gelu(x, tf.convert_to_tensor(norm.gamma), tf.convert_to_tensor(norm.beta),
                       norm.epsilon)  # fmt: skip
        x = _gelu(tf.matmul(x, w2) + b2)  # (N P 4, 4 D/8)
        return tf.reshape(x, (n, -1, d // 8))

    @staticmethod
    def _masks(hyper_in, upscaled, h, w):
        """(N, K, 4 H'', 4 W'') masks from (N, K, C) weights and :meth:`_upscale` features."""
        n, k = tf.shape(hyper_in)[0], tf.shape(hyper_in)[1]
        masks = tf.matmul(hyper_in, upscaled, transpose_b=True)  # (N, K, 16 H'' W'')
        masks = tf.reshape(masks, (n, k, h, w, 2, 2, 2, 2))
        masks = tf.transpose(masks, (0, 1, 2, 4, 6, 3, 5, 7))
        return tf.reshape(masks, (n, k, 4 * h, 4 * w))
