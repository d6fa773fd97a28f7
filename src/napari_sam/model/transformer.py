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

    def _split_kernel(self, layer):
        """A projection's kernel (D, H * d) as (D, H, d)."""
        kernel = tf.convert_to_tensor(layer.kernel)
        return tf.reshape(kernel, (kernel.shape[0], self.num_heads, -1))

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

    def tokens_to_image(self, q, k, v):
        """``call`` for a few queries (tokens) over many keys (image); same result.

        The key and value projections are applied to the few queries and attended outputs
        rather than to every image position: ``q W_k^T k^T`` instead of ``q (k W_k)^T`` and
        ``(a v) W_v`` instead of ``a (v W_v)``. The key bias adds the same value to every
        logit of a query and cancels in the softmax; the value bias passes through because
        the attention weights sum to one. About half the multiply-adds of ``call`` when the
        image is much longer than the token sequence.
        """
        b, t, heads = tf.shape(q)[0], tf.shape(q)[1], self.num_heads
        qh = self._heads(self.q_proj(q))  # (B, H, T, d)
        d = qh.shape[-1]
        wk = self._split_kernel(self.k_proj)  # (D, H, d)
        qk = tf.einsum("bhtd,chd->bhtc", qh, wk)  # (B, H, T, D)
        qk = tf.reshape(qk, (b, heads * t, wk.shape[0]))
        attn = tf.matmul(qk, k, transpose_b=True) / math.sqrt(d)  # (B, H * T, N)
        ctx = tf.matmul(tf.nn.softmax(attn, axis=-1), v)  # (B, H * T, D)
        ctx = tf.reshape(ctx, (b, heads, t, wk.shape[0]))
        out = tf.einsum("bhtc,chd->bthd", ctx, self._split_kernel(self.v_proj))
        out = tf.reshape(out, (b, t, heads * d)) + self.v_proj.bias
        return self.out_proj(out)

    def project_image(self, keys, values):
        """Image-side projections for :meth:`tokens_to_image_prepared`: keys (B, H, d, N)
        and values (B, H, N, d), biases included."""
        kh = tf.transpose(self._heads(self.k_proj(keys)), (0, 1, 3, 2))
        return kh, self._heads(self.v_proj(values))

    def tokens_to_image_prepared(self, q, keys_t, values):
        """``call`` with the image keys and values already projected (:meth:`project_image`).

        ``keys_t`` (1 or B, H, d, N) and ``values`` (1 or B, H, N, d) are shared by a batch
        of token queries ``q`` (B, T, D): per head, a (T, d) by (d, N) product instead of
        projecting the image for every prompt.
        """
        b, t = tf.shape(q)[0], tf.shape(q)[1]
        qh = self._heads(self.q_proj(q))  # (B, H, T, d)
        attn = tf.matmul(qh, keys_t) / math.sqrt(qh.shape[-1])  # (B, H, T, N)
        out = tf.transpose(tf.matmul(tf.nn.softmax(attn, axis=-1), values), (0, 2, 1, 3))
        return self.out_proj(tf.reshape(out, (b, t, self.num_heads * qh.shape[-1])))

    def image_to_tokens_prepared(self, queries, k, v):
        """``image_to_tokens`` with the image queries already projected (``q_proj``).

        ``queries`` (1 or B, N, H * d); ``k`` and ``v`` (B, T, D) tokens. The per-head
        products are one (N, H * d) by (H * d, H * T) product with a block-diagonal
        right-hand side.
        """
        b, t, heads = tf.shape(k)[0], tf.shape(k)[1], self.num_heads
        kh = self._heads(self.k_proj(k))  # (B, H, T, d)
        vh = self._heads(self.v_proj(v))
        d = kh.shape[-1]
        eye = tf.eye(heads, dtype=kh.dtype)
        block = tf.einsum("bhtj,hg->bhjgt", kh, eye)  # zero unless h == g
        block = tf.reshape(block, (b, heads * d, heads * t))
        attn = tf.matmul(queries, block) / math.sqrt(d)  # (B, N, H * T)
        n = tf.shape(attn)[1]
        attn = tf.reshape(tf.nn.softmax(tf.reshape(attn, (b, n, heads, t))), (b, n, heads * t))
        wo = tf.reshape(tf.convert_to_tensor(self.out_proj.kernel), (heads, d, -1))
        values = tf.reshape(tf.einsum("bhtd,hde->bhte", vh, wo), (b, heads * t, wo.shape[-1]))
        return tf.matmul(attn, values) + self.out_proj.bias  # (B, N, D)

    def image_to_tokens(self, q, k, v):
        """``call`` for many queries (image) over a few keys (tokens); same result.

        The query projection is folded into the projected keys (``q W_q k^T``) and the
        output projection into the projected values (``a (v W_o)``), so nothing of width
        ``D`` is projected per image position. About half the multiply-adds of ``call``.
        """
        b, n, t, heads = tf.shape(q)[0], tf.shape(q)[1], tf.shape(k)[1], self.num_heads
        kh = self._heads(self.k_proj(k))  # (B, H, T, d)
        vh = self._heads(self.v_proj(v))
        d = kh.shape[-1]
        wq = self._split_kernel(self.q_proj)  # (D, H, d)
        fold = tf.reshape(tf.einsum("chd,bhtd->bcht", wq, kh), (b, wq.shape[0], heads * t))
        bias = tf.einsum("hd,bhtd->bht", tf.reshape(self.q_proj.bias, (heads, d)), kh)
        attn = tf.matmul(q, fold) + tf.reshape(bias, (b, 1, heads * t))  # (B, N, H * T)
        attn = tf.reshape(attn / math.sqrt(d), (b, n, heads, t))
        attn = tf.reshape(tf.nn.softmax(attn, axis=-1), (b, n, heads * t))
        wo = tf.reshape(tf.convert_to_tensor(self.out_proj.kernel), (heads, d, -1))
        values = tf.reshape(tf.einsum("bhtd,hde->bhte", vh, wo), (b, heads * t, wo.shape[-1]))
        return tf.matmul(attn, values) + self.out_proj.bias  # (B, N, D)


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

    def prepare(self, keys, key_pe):
        """The image-side projections of this block's two cross attentions.

        They depend only on the block's input image ``keys`` (1, N, D) and positions, so
        for the first block they are computed once per image and shared by every prompt
        (see :meth:`call`'s ``prepared``).
        """
        k = keys + key_pe
        keys_t, values = self.cross_attn_token_to_image.project_image(k, keys)
        queries = self.cross_attn_image_to_token.q_proj(k)  # (1, N, H * d)
        return {"keys": keys, "t2i_keys": keys_t, "t2i_values": values, "i2t_queries": queries}

    def call(self, queries, keys, query_pe, key_pe, prepared=None):
        """One block; with ``prepared`` (from :meth:`prepare`), ``keys`` is ignored and the
        prepared image (shared by the batch of token ``queries``) is used: same result."""
        if prepared is not None:
            return self._call_prepared(queries, query_pe, prepared)
        queries = self._self_attention(queries, query_pe)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image.tokens_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token.image_to_tokens(k, q, queries))
        return queries, keys

    def _self_attention(self, queries, query_pe):
        if self.skip_first_layer_pe:
            return self.norm1(self.self_attn(queries, queries, queries))
        q = queries + query_pe
        return self.norm1(queries + self.self_attn(q, q, queries))

    def _call_prepared(self, queries, query_pe, prepared):
        queries = self._self_attention(queries, query_pe)
        t2i = self.cross_attn_token_to_image.tokens_to_image_prepared(
            queries + query_pe, prepared["t2i_keys"], prepared["t2i_values"]
        )
        queries = self.norm2(queries + t2i)
        queries = self.norm3(queries + self.mlp(queries))
        i2t = self.cross_attn_image_to_token.image_to_tokens_prepared(
            prepared["i2t_queries"], queries + query_pe, queries
        )
        return queries, self.norm4(prepared["keys"] + i2t)


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

    def prepare(self, image_embedding, image_pe):
        """Prompt-independent work on one image (1, HW, D), positions (1, HW, D): the first
        block's image-side projections, for ``call(..., prepared=...)``."""
        return self.blocks[0].prepare(image_embedding, image_pe)

    def call(self, image_embedding, image_pe, point_embedding, prepared=None, num_outputs=None):
        """Image (B, HW, D) with positions (B or 1, HW, D) and tokens (B, T, D).

        Returns the processed tokens and image embedding. With ``prepared`` (from
        :meth:`prepare` on one image), ``image_embedding`` is not used: the first block
        reuses the prepared projections for the whole batch of tokens. With
        ``num_outputs``, only the first ``num_outputs`` tokens are returned, and the final
        attention is computed for those alone (the others would be discarded).
        """
        queries, keys = point_embedding, image_embedding
        for i, block in enumerate(self.blocks):
            queries, keys = block(
                queries, keys, point_embedding, image_pe, prepared if i == 0 else None
            )
        if num_outputs is not None:
            queries, point_embedding = queries[:, :num_outputs], point_embedding[:, :num_outputs]
        q, k = queries + point_embedding, keys + image_pe
        attn = self.final_attn_token_to_image.tokens_to_image(q, k, keys)
        queries = self.norm_final_attn(queries + attn)
        return queries, keys
