"""The two-way transformer of SAM's mask decoder (tokens <-> image cross attention)."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from .layers import MLPBlock, dense, norm_layer_factory

# The decoder uses torch.nn.LayerNorm's default eps (1e-5), unlike the encoder (1e-6).
_decoder_norm = norm_layer_factory("layer_norm_eps_1e-5")


class DecoderAttention(keras.layers.Layer):
    """Attention with an optional downscaling of the embedding size after projection."""

    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1, **kwargs):
        super().__init__(**kwargs)
        internal = dim // downsample_rate
        if internal % num_heads:
            raise ValueError("num_heads must divide the internal attention dimension")
        self.num_heads = num_heads
        self.q_proj = dense(internal, dim, "q_proj")
        self.k_proj = dense(internal, dim, "k_proj")
        self.v_proj = dense(internal, dim, "v_proj")
        self.out_proj = dense(dim, internal, "out_proj")
        self.built = True

    def _heads(self, x):
        b, n = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(x, (b, n, self.num_heads, x.shape[-1] // self.num_heads))
        return tf.transpose(x, (0, 2, 1, 3))

    def call(self, q, k, v):
        q, k, v = (
            self._heads(self.q_proj(q)),
            self._heads(self.k_proj(k)),
            self._heads(self.v_proj(v)),
        )
        attn = tf.matmul(q, k, transpose_b=True) / math.sqrt(q.shape[-1])
        out = tf.matmul(tf.nn.softmax(attn, axis=-1), v)
        out = tf.transpose(out, (0, 2, 1, 3))
        b, n = tf.shape(out)[0], tf.shape(out)[1]
        return self.out_proj(tf.reshape(out, (b, n, out.shape[2] * out.shape[3])))


class TwoWayAttentionBlock(keras.layers.Layer):
    """Self attention of tokens, token->image, MLP, image->token cross attention."""

    def __init__(self, dim, num_heads, mlp_dim, skip_first_layer_pe=False, **kwargs):
        super().__init__(**kwargs)
        self.self_attn = DecoderAttention(dim, num_heads, name="self_attn")
        self.norm1 = _decoder_norm(dim, "norm1")
        self.cross_attn_token_to_image = DecoderAttention(
            dim, num_heads, 2, name="cross_attn_token_to_image"
        )
        self.norm2 = _decoder_norm(dim, "norm2")
        self.mlp = MLPBlock(dim, mlp_dim, tf.nn.relu, name="mlp")
        self.norm3 = _decoder_norm(dim, "norm3")
        self.norm4 = _decoder_norm(dim, "norm4")
        self.cross_attn_image_to_token = DecoderAttention(
            dim, num_heads, 2, name="cross_attn_image_to_token"
        )
        self.skip_first_layer_pe = skip_first_layer_pe
        self.built = True

    def call(self, queries, keys, query_pe, key_pe):
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(keras.layers.Layer):
    """Transformer decoder attending to an image with positional embeddings."""

    def __init__(self, depth: int, dim: int, num_heads: int, mlp_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [
            TwoWayAttentionBlock(dim, num_heads, mlp_dim, i == 0, name=f"layers_{i}")
            for i in range(depth)
        ]
        self.final_attn_token_to_image = DecoderAttention(
            dim, num_heads, 2, name="final_attn_token_to_image"
        )
        self.norm_final_attn = _decoder_norm(dim, "norm_final_attn")
        self.built = True

    def call(self, image_embedding, image_pe, point_embedding):
        """Image (B, HW, D) with positions (B or 1, HW, D) and tokens (B, T, D).

        Returns the processed tokens and image embedding.
        """
        queries, keys = point_embedding, image_embedding
        for block in self.blocks:
            queries, keys = block(queries, keys, point_embedding, image_pe)
        q, k = queries + point_embedding, keys + image_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
