"""The ViT image encoder of SAM (Meta's ``ImageEncoderViT``), channels-last."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from .interpolate import bicubic_matrix, linear_matrix
from .layers import DropPath, MLPBlock, act_layer_factory, conv, dense, norm_layer_factory


def _rel_pos_index(size: int) -> np.ndarray:
    """Indices into a (2 * size - 1)-row table giving ``R[q, k] = table[q - k + size - 1]``."""
    coords = np.arange(size)
    return (coords[:, None] - coords[None, :] + size - 1).astype(np.int32)


class Attention(keras.layers.Layer):
    """Multi-head attention with decomposed relative position embeddings."""

    def __init__(self, dim, num_heads, qkv_bias, rel_pos_size, attn_drop=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = dense(3 * dim, dim, "qkv", use_bias=qkv_bias)
        self.proj = dense(dim, dim, "proj")
        self.attn_drop = layers.Dropout(attn_drop) if attn_drop > 0 else None
        h, w = rel_pos_size
        self.rel_pos_h = self.add_weight((2 * h - 1, self.head_dim), "zeros", name="rel_pos_h")
        self.rel_pos_w = self.add_weight((2 * w - 1, self.head_dim), "zeros", name="rel_pos_w")
        self.built = True

    def _rel_table(self, table, size):
        length = 2 * size - 1
        if table.shape[0] != length:  # Meta's get_rel_pos: linear interpolation on the fly
            table = tf.constant(linear_matrix(table.shape[0], length), table.dtype) @ table
        return tf.gather(table, _rel_pos_index(size))  # (size, size, head_dim)

    def call(self, x, training=False):
        """Attention over all positions of (B, H, W, C) inputs."""
        _, h, w, c = x.shape
        b = tf.shape(x)[0]
        qkv = tf.reshape(self.qkv(x), (b, h * w, 3, self.num_heads, self.head_dim))
        qkv = tf.transpose(qkv, (2, 0, 3, 1, 4))  # (3, B, heads, HW, hd)
        out = self.attend(qkv[0], qkv[1], qkv[2], (h, w), training)
        out = tf.reshape(tf.transpose(out, (0, 2, 1, 3)), (b, h, w, c))
        return self.proj(out)

    def attend(self, q, k, v, size, training=False):
        """Attention of projected (B, heads, H * W, hd) queries, keys and values on an
        (H, W) grid, with the relative position terms; returns (B, heads, H * W, hd)."""
        (h, w), nh, hd = size, self.num_heads, self.head_dim
        b = tf.shape(q)[0]
        rel_h, rel_w = self._rel_table(self.rel_pos_h, h), self._rel_table(self.rel_pos_w, w)
        rows = _query_block_rows(h, w, nh)
        if rows < h and not (training and self.attn_drop is not None):
            return _blocked_attention(q * self.scale, k, v, q, rel_h, rel_w, rows)
        attn = tf.matmul(q * self.scale, k, transpose_b=True)  # (B, heads, HW, HW)
        r_q = tf.reshape(q, (b, nh, h, w, hd))
        rel_h = tf.einsum("bnhwc,hkc->bnhwk", r_q, rel_h)
        rel_w = tf.einsum("bnhwc,wkc->bnhwk", r_q, rel_w)
        attn = tf.reshape(attn, (b, nh, h, w, h, w))
        attn = attn + rel_h[:, :, :, :, :, None] + rel_w[:, :, :, :, None, :]
        attn = tf.nn.softmax(tf.reshape(attn, (b, nh, h * w, h * w)), axis=-1)
        if self.attn_drop is not None:
            attn = self.attn_drop(attn, training=training)
        return tf.matmul(attn, v)  # (B, heads, HW, hd)

    def windowed(self, x, window_size: int, training=False):
        """Attention within non-overlapping windows of (B, H, W, C) inputs.

        The same result as Meta's: zero-pad H and W to multiples of ``window_size``,
        attend within each window (padding included, unmasked), crop. But only the real
        positions are projected: the padding's keys and values are those of a zero input,
        the ``qkv`` bias; the padding's outputs are cropped before ``proj``. For a 64 x 64
        grid in 14 x 14 windows that is 16 % fewer tokens through both projections. The
        window split and the head split are one transpose.
        """
        _, h, w, c = x.shape
        b, ws, nh, hd = tf.shape(x)[0], window_size, self.num_heads, self.head_dim
        pad_h, pad_w = (-h) % ws, (-w) % ws
        hp, wp = h + pad_h, w + pad_w
        if pad_h or pad_w:
            # x W, zero-padded, plus the bias: what the layer gives for the padded input.
            # (A padding-shaped bias tensor would not depend on x: TensorFlow would compute
            # those of all blocks up front and hold them, 2 GB for sam_vit_h.)
            kernel = tf.cast(self.qkv.kernel, x.dtype)
            qkv = tf.reshape(tf.matmul(tf.reshape(x, (-1, c)), kernel), (b, h, w, 3 * c))
            qkv = tf.pad(qkv, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
            if self.qkv.use_bias:
                qkv = qkv + tf.cast(self.qkv.bias, x.dtype)
        else:
            qkv = self.qkv(x)
        qkv = tf.reshape(qkv, (b, hp // ws, ws, wp // ws, ws, 3, nh, hd))
        qkv = tf.transpose(qkv, (5, 0, 1, 3, 6, 2, 4, 7))  # 3, B, rows, cols, heads, ws, ws, hd
        qkv = tf.reshape(qkv, (3, -1, nh, ws * ws, hd))
        out = self.attend(qkv[0], qkv[1], qkv[2], (ws, ws), training)  # (B * nW, heads, ...)
        out = tf.reshape(out, (b, hp // ws, wp // ws, nh, ws, ws, hd))
        out = tf.reshape(tf.transpose(out, (0, 1, 4, 2, 5, 3, 6)), (b, hp, wp, c))
        if pad_h or pad_w:
            out = out[:, :h, :w]
        return self.proj(out)


# Global attention materialises (heads, HW, HW) logits per image: 768 MiB for sam_vit_b,
# 1 GiB for sam_vit_l/h at 1024 x 1024, several copies at once. From _BLOCKING_ABOVE bytes
# on, it is computed a block of queries of one head at a time, each block's logits at most
# _BLOCK_BYTES: the same result with a fraction of the peak memory. (On a 2-core CPU the
# blocked loop was 3 % slower for sam_vit_b, so smaller models keep the one-shot form.)
_BLOCKING_ABOVE = 2**30 - 1
_BLOCK_BYTES = 8 * 2**20


def _query_block_rows(h: int, w: int, heads: int = 1) -> int:
    """Grid rows per block of queries (a divisor of ``h``; ``h`` means no blocking)."""
    if heads * (h * w) ** 2 * 4 <= _BLOCKING_ABOVE:
        return h
    fits = [r for r in range(1, h + 1) if h % r == 0 and r * w * h * w * 4 <= _BLOCK_BYTES]
    return max(fits) if fits else 1


def _blocked_attention(q_scaled, k, v, q, rel_h, rel_w, rows):
    """Global attention with relative positions, one head and ``rows`` grid rows at a time.

    The same result as materialising the (B, heads, HW, HW) logits, computed block by block
    in a loop: for a 64 x 64 grid the full logits are hundreds of MB per image, written and
    read five times (product, position terms, softmax, product), while a block fits in the
    cache. Faster on CPU and a fraction of the peak memory.
    """
    b, nh = tf.shape(q)[0], tf.shape(q)[1]
    h, w, hd = rel_h.shape[0], rel_w.shape[0], q.shape[-1]
    nb = h // rows
    qs = tf.reshape(q_scaled, (-1, nb, rows * w, hd))
    qr = tf.reshape(q, (-1, nb, rows, w, hd))
    km, vm = tf.reshape(k, (-1, h * w, hd)), tf.reshape(v, (-1, h * w, hd))
    rel_h = tf.reshape(rel_h, (nb, rows, h, hd))

    def block(i):
        m, j = i // nb, i % nb
        logits = tf.matmul(qs[m, j], km[m], transpose_b=True)  # (rows * w, HW)
        pos_h = tf.einsum("hwc,hkc->hwk", qr[m, j], rel_h[j])  # (rows, w, h)
        pos_w = tf.einsum("hwc,wkc->hwk", qr[m, j], rel_w)  # (rows, w, w)
        logits = tf.reshape(logits, (rows, w, h, w)) + pos_h[..., None] + pos_w[:, :, None, :]
        attn = tf.nn.softmax(tf.reshape(logits, (rows * w, h * w)), axis=-1)
        return tf.matmul(attn, vm[m])  # (rows * w, hd)

    out = tf.map_fn(
        block, tf.range(b * nh * nb), parallel_iterations=1,
        fn_output_signature=tf.TensorSpec((rows * w, hd), q.dtype),
    )  # fmt: skip
    return tf.reshape(out, (b, nh, h * w, hd))


class Block(keras.layers.Layer):
    """Transformer block with window or global attention."""

    def __init__(self, cfg, index: int, grid: tuple[int, int], drop_path: float, **kwargs):
        super().__init__(**kwargs)
        dim = cfg.encoder_embed_dim
        norm = norm_layer_factory(cfg.encoder_norm_layer)
        is_global = index in cfg.encoder_global_attn_indices
        self.window_size = 0 if is_global else cfg.encoder_window_size
        rel_size = grid if is_global else (self.window_size, self.window_size)
        self.norm1 = norm(dim, "norm1")
        self.attn = Attention(
            dim, cfg.encoder_nb_heads, cfg.encoder_qkv_bias, rel_size,
            attn_drop=cfg.encoder_attn_drop_rate, name="attn",
        )  # fmt: skip
        self.norm2 = norm(dim, "norm2")
        act = act_layer_factory(cfg.encoder_act_layer)
        hidden = int(dim * cfg.encoder_mlp_ratio)
        self.mlp = MLPBlock(dim, hidden, act, drop_rate=cfg.encoder_drop_rate, name="mlp")
        self.drop_path = DropPath(drop_path) if drop_path > 0 else None
        self.proj_drop = layers.Dropout(cfg.encoder_drop_rate) if cfg.encoder_drop_rate else None
        self.built = True

    def _residual(self, x, training):
        if self.proj_drop is not None:
            x = self.proj_drop(x, training=training)
        return self.drop_path(x, training=training) if self.drop_path is not None else x

    def call(self, x, training=False):
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            x = self.attn.windowed(x, self.window_size, training=training)
        else:
            x = self.attn(x, training=training)
        x = shortcut + self._residual(x, training)
        return x + self._residual(self.mlp(self.norm2(x), training=training), training)


class PatchEmbed(keras.layers.Layer):
    """Image to patch embedding: a convolution with kernel size and stride ``patch_size``."""

    def __init__(self, patch_size: int, in_channels: int, embed_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.proj = conv(embed_dim, in_channels, patch_size, patch_size, name="proj")
        self.built = True

    def call(self, x):
        return self.proj(x)


class ImageEncoder(keras.layers.Layer):
    """SAM's ViT image encoder: (N, H, W, C) preprocessed images -> (N, H'', W'', D)."""

    def __init__(self, cfg, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        self.grid = tuple(s // cfg.encoder_patch_size for s in cfg.input_size)
        dim = cfg.encoder_embed_dim
        self.patch_embed = PatchEmbed(
            cfg.encoder_patch_size, cfg.in_channels, dim, name="patch_embed"
        )
        self.pos_embed = self.add_weight((1, *self.grid, dim), "zeros", name="pos_embed")
        rates = np.linspace(0, cfg.encoder_drop_path_rate, cfg.encoder_nb_blocks)
        self.blocks = [
            Block(cfg, i, self.grid, float(rates[i]), name=f"blocks_{i}")
            for i in range(cfg.encoder_nb_blocks)
        ]
        norm = norm_layer_factory("layer_norm_eps_1e-6")  # LayerNorm2d in the neck
        self.neck_conv1 = conv(cfg.embed_dim, dim, 1, use_bias=False, name="neck_conv1")
        self.neck_norm1 = norm(cfg.embed_dim, "neck_norm1")
        self.neck_conv2 = conv(
            cfg.embed_dim, cfg.embed_dim, 3, use_bias=False, padding="same", name="neck_conv2"
        )
        self.neck_norm2 = norm(cfg.embed_dim, "neck_norm2")
        self.built = True

    def check_input(self, shape) -> None:
        """Raise a clear error if an input of ``shape`` (N, H, W, C) cannot be encoded."""
        if len(shape) != 4 or shape[-1] != self.cfg.in_channels:
            raise ValueError(
                f"images must have shape (N, H, W, {self.cfg.in_channels}), got {tuple(shape)}"
            )
        h, w, p = shape[1], shape[2], self.cfg.encoder_patch_size
        if self.cfg.fixed_input_size and (h, w) != tuple(self.cfg.input_size):
            raise ValueError(
                f"images must be {tuple(self.cfg.input_size)} (fixed_input_size=True), got {(h, w)}"
            )
        if h is None or w is None or h % p or w % p:
            raise ValueError(f"image height and width must be multiples of {p}, got {(h, w)}")

    def _pos_embed(self, grid):
        if tuple(grid) == self.grid:
            return self.pos_embed
        ah = tf.constant(bicubic_matrix(self.grid[0], grid[0]), self.pos_embed.dtype)
        aw = tf.constant(bicubic_matrix(self.grid[1], grid[1]), self.pos_embed.dtype)
        return tf.einsum("ih,bhwc,jw->bijc", ah, self.pos_embed, aw)

    def call(self, x, training=False):
        self.check_input(x.shape)
        x = self.patch_embed(x)
        x = x + self._pos_embed(x.shape[1:3])
        for block in self.blocks:
            x = block(x, training=training)
        x = self.neck_norm1(self.neck_conv1(x))
        return self.neck_norm2(self.neck_conv2(x))
