"""The TinyViT image encoder of MobileSAM (and micro-sam's ``vit_t`` models), channels-last.

MobileSAM distilled SAM's ViT-H encoder into a 5.7 M-parameter TinyViT: a convolutional
stem (two stride-2 3 x 3 convolutions), a stage of MBConv blocks, three stages of window
attention blocks (attention with learned biases per relative offset, a depth-wise 3 x 3
"local" convolution, an MLP), patch merging between stages (the last one keeps 64 x 64 for a
1024 x 1024 input), then SAM's neck to ``(N, 64, 64, 256)``. Its prompt encoder and mask
decoder are SAM's own.

Every convolution of the body is followed by a BatchNorm, computed here with its running
statistics (inference). The layers are named after the checkpoint's modules
(``layers_1_blocks_0_attn`` for ``layers.1.blocks.0.attn``), channels-last throughout;
windows are padded with zeros *before* the attention's LayerNorm, as the reference does.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import tensorflow as tf

from .layers import act_layer_factory, conv, dense, layer_norm, norm_layer_factory

__all__ = ["TinyViTConfig", "TinyViTEncoder"]

gelu = act_layer_factory("gelu")  # exact (erf), as torch.nn.GELU


class TinyViTConfig:
    """The TinyViT of MobileSAM: widths, depths, heads and windows of its four stages."""

    embed_dims = (64, 128, 160, 320)
    depths = (2, 2, 6, 2)
    num_heads = (2, 4, 5, 10)
    window_sizes = (7, 7, 14, 7)
    mlp_ratio = 4.0
    mbconv_expand_ratio = 4.0
    bn_eps = 1e-5


class Conv2dBN(keras.layers.Layer):
    """A bias-free convolution then an inference BatchNorm (the reference's ``Conv2d_BN``:
    ``c`` and ``bn``); ``groups`` equal to the channels makes it depth-wise."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int = 1, stride: int = 1, pad: int = 0,
                 depthwise: bool = False, eps: float = 1e-5, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.stride, self.pad, self.depthwise, self.eps = stride, pad, depthwise, eps
        # stride 1 with a centred kernel: TensorFlow's "SAME" pads as torch does, without a
        # padded copy of the input (the 3 x 3 depth-wise convs run 1.7 x faster)
        self.same = stride == 1 and 2 * pad == kernel - 1
        shape = (kernel, kernel, in_dim, 1) if depthwise else (kernel, kernel, in_dim, out_dim)
        self.kernel = self.add_weight(shape, "glorot_uniform", name="kernel")
        self.gamma = self.add_weight((out_dim,), "ones", name="gamma")
        self.beta = self.add_weight((out_dim,), "zeros", name="beta")
        self.moving_mean = self.add_weight((out_dim,), "zeros", name="moving_mean",
                                           trainable=False)  # fmt: skip
        self.moving_variance = self.add_weight((out_dim,), "ones", name="moving_variance",
                                               trainable=False)  # fmt: skip
        self.built = True

    def folded(self, dtype):
        """The kernel and bias with the BatchNorm folded in (one pass over the output, not
        two), cast to ``dtype``."""
        scale = self.gamma * tf.math.rsqrt(self.moving_variance + self.eps)
        shift = tf.cast(self.beta - self.moving_mean * scale, dtype)
        if self.depthwise:
            return tf.cast(self.kernel * scale[None, None, :, None], dtype), shift
        return tf.cast(self.kernel * scale, dtype), shift

    def convolve(self, x, kernel):
        """The convolution alone (no bias) with a kernel from :meth:`folded`."""
        padding = "SAME" if self.same else "VALID"
        if self.pad and not self.same:  # stride 2: torch pads both sides, "SAME" would not
            p = self.pad
            x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
        s = [1, self.stride, self.stride, 1]
        if self.depthwise:
            return tf.nn.depthwise_conv2d(x, kernel, s, padding)
        return tf.nn.conv2d(x, kernel, s, padding)

    def call(self, x):
        kernel, shift = self.folded(x.dtype)
        return tf.nn.bias_add(self.convolve(x, kernel), shift)


# The elementwise work around the convolutions fused by XLA with the 1 x 1 convolutions (matrix
# products); the 3 x 3 ones stay TensorFlow's (XLA's are several times slower on a CPU).
@tf.function(jit_compile=True)
def _pointwise(x, kernel, bias, x_bias=None, residual=None, gelu_in=False, gelu_out=False):
    """``gelu?(gelu?(x + x_bias) . kernel + bias + residual)``, ``kernel`` 1 x 1."""
    if x_bias is not None:
        x = x + x_bias
    if gelu_in:
        x = gelu(x)
    shape = tf.concat([tf.shape(x)[:-1], tf.shape(kernel)[-1:]], 0)
    y = tf.reshape(tf.matmul(tf.reshape(x, (-1, x.shape[-1])), kernel[0, 0]) + bias, shape)
    if residual is not None:
        y = y + residual
    return gelu(y) if gelu_out else y


def _expand_depthwise(block, x):
    """``block.conv1`` (1 x 1, GELU) then ``block.conv2``'s depth-wise convolution without its
    bias; returns that, the bias (for the fused step after) and ``block.conv3`` folded."""
    (k1, b1), (k2, b2) = block.conv1.folded(x.dtype), block.conv2.folded(x.dtype)
    y = block.conv2.convolve(_pointwise(x, k1, b1, gelu_out=True), k2)
    return y, b2, block.conv3.folded(x.dtype)


@tf.function(jit_compile=True)
def _bias_gelu(x, bias):
    return gelu(x + bias)


class MBConv(keras.layers.Layer):
    """Inverted residual: 1 x 1 expand, 3 x 3 depth-wise, 1 x 1 project, residual, GELU."""

    def __init__(self, dim: int, expand: float, **kwargs):
        super().__init__(**kwargs)
        hidden = int(dim * expand)
        self.conv1 = Conv2dBN(dim, hidden, name="conv1")
        self.conv2 = Conv2dBN(hidden, hidden, 3, 1, 1, depthwise=True, name="conv2")
        self.conv3 = Conv2dBN(hidden, dim, name="conv3")
        self.built = True

    def call(self, x):
        y, b2, (k3, b3) = _expand_depthwise(self, x)
        return _pointwise(y, k3, b3, x_bias=b2, residual=x, gelu_in=True, gelu_out=True)


class PatchMerging(keras.layers.Layer):
    """1 x 1 conv, GELU, 3 x 3 depth-wise conv (stride 2, or 1 into a 320/448/576-wide last
    stage, as MobileSAM keeps 64 x 64), GELU, 1 x 1 conv."""

    def __init__(self, dim: int, out_dim: int, **kwargs):
        super().__init__(**kwargs)
        stride = 1 if out_dim in (320, 448, 576) else 2
        self.conv1 = Conv2dBN(dim, out_dim, name="conv1")
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, depthwise=True, name="conv2")
        self.conv3 = Conv2dBN(out_dim, out_dim, name="conv3")
        self.built = True

    def call(self, x):
        y, b2, (k3, b3) = _expand_depthwise(self, x)
        return _pointwise(y, k3, b3, x_bias=b2, gelu_in=True)


def _bias_index(window: int) -> tuple[int, np.ndarray]:
    """The number of distinct offsets ``(|dy|, |dx|)`` in a window and the ``(N, N)`` index
    of each query-key pair's offset, in the reference's order (``attention_bias_idxs``, a
    buffer the checkpoint does not hold)."""
    points = list(itertools.product(range(window), range(window)))
    offsets: dict = {}
    idxs = []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(offsets.setdefault(off, len(offsets)))
    n = len(points)
    return len(offsets), np.asarray(idxs, np.int32).reshape(n, n)


class WindowAttention(keras.layers.Layer):
    """LayerNorm, qkv (per head: key, key, value), softmax(q k^T * scale + bias) v, proj."""

    def __init__(self, dim: int, heads: int, window: int, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim**-0.5
        n_offsets, idxs = _bias_index(window)
        self.bias_index = tf.constant(idxs)
        self.norm = norm_layer_factory("layer_norm_eps_1e-5")(dim, "norm")
        self.qkv = dense(3 * dim, dim, "qkv")
        self.proj = dense(dim, dim, "proj")
        self.attention_biases = self.add_weight((heads, n_offsets), "zeros",
                                                name="attention_biases")  # fmt: skip
        self.built = True

    def call(self, x):  # (B, N, C) windows
        dt = x.dtype
        weights = [tf.cast(v, dt) for v in (self.qkv.kernel, self.qkv.bias, self.proj.kernel,
                                            self.proj.bias, self.attention_biases)]  # fmt: skip
        return _window_attention(x, *_norm_weights(self.norm), *weights, self.bias_index,
                                 self.heads, self.scale, self.norm.epsilon)  # fmt: skip


def _norm_weights(norm):
    return tf.cast(norm.gamma, tf.float32), tf.cast(norm.beta, tf.float32)


# The attention and the MLP of a block each compiled by XLA as one function of its weights
# (compiled once per stage's shapes): the elementwise work between the matrix products
# (layer norm, bias, softmax, GELU, the head split) fused; a sam_vit_t embedding about 15 %
# faster (docs/perf.md). Layer norm statistics in float32, as :class:`~.layers.LayerNorm`.
@tf.function(jit_compile=True)
def _window_attention(x, gamma, beta, w_qkv, b_qkv, w_proj, b_proj, biases, index, heads, scale,
                      eps):  # fmt: skip
    b, n, c = tf.shape(x)[0], tf.shape(x)[1], x.shape[-1]
    y = tf.cast(layer_norm(tf.cast(x, tf.float32), gamma, beta, eps), x.dtype)
    qkv = tf.reshape(tf.matmul(tf.reshape(y, (-1, c)), w_qkv) + b_qkv, (b, n, heads, -1))
    q, k, v = tf.split(tf.transpose(qkv, (0, 2, 1, 3)), 3, axis=-1)
    attn = tf.matmul(q, k, transpose_b=True) * tf.cast(scale, x.dtype)
    attn = attn + tf.gather(biases, index, axis=1)
    out = tf.transpose(tf.matmul(tf.nn.softmax(attn, axis=-1), v), (0, 2, 1, 3))
    return tf.reshape(tf.matmul(tf.reshape(out, (-1, c)), w_proj) + b_proj, (b, n, c))


@tf.function(jit_compile=True)
def _mlp(x, gamma, beta, w1, b1, w2, b2, eps):
    shape, c = tf.shape(x), x.shape[-1]
    y = tf.cast(layer_norm(tf.cast(tf.reshape(x, (-1, c)), tf.float32), gamma, beta, eps), x.dtype)
    return tf.reshape(tf.matmul(gelu(tf.matmul(y, w1) + b1), w2) + b2, shape)


class Mlp(keras.layers.Layer):
    """LayerNorm, fc1, GELU, fc2 (the reference's ``MLP``)."""

    def __init__(self, dim: int, hidden: int, **kwargs):
        super().__init__(**kwargs)
        self.norm = norm_layer_factory("layer_norm_eps_1e-5")(dim, "norm")
        self.fc1 = dense(hidden, dim, "fc1")
        self.fc2 = dense(dim, hidden, "fc2")
        self.built = True

    def call(self, x):
        weights = [tf.cast(v, x.dtype) for v in (self.fc1.kernel, self.fc1.bias, self.fc2.kernel,
                                                 self.fc2.bias)]  # fmt: skip
        return _mlp(x, *_norm_weights(self.norm), *weights, eps=self.norm.epsilon)


class TinyViTBlock(keras.layers.Layer):
    """Window attention (windows zero-padded to a multiple), residual; a depth-wise 3 x 3
    local convolution; MLP, residual. Input and output ``(B, H, W, C)``."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float, **kwargs):
        super().__init__(**kwargs)
        self.window = window
        self.attn = WindowAttention(dim, heads, window, name="attn")
        self.local_conv = Conv2dBN(dim, dim, 3, 1, 1, depthwise=True, name="local_conv")
        self.mlp = Mlp(dim, int(dim * mlp_ratio), name="mlp")
        self.built = True

    def call(self, x):
        _, h, w, c = x.shape
        ws = self.window
        pb, pr = (ws - h % ws) % ws, (ws - w % ws) % ws
        y = tf.pad(x, [[0, 0], [0, pb], [0, pr], [0, 0]]) if pb or pr else x
        nh, nw = (h + pb) // ws, (w + pr) // ws
        y = tf.reshape(y, (-1, nh, ws, nw, ws, c))
        y = tf.reshape(tf.transpose(y, (0, 1, 3, 2, 4, 5)), (-1, ws * ws, c))
        y = self.attn(y)
        y = tf.reshape(y, (-1, nh, nw, ws, ws, c))
        y = tf.reshape(tf.transpose(y, (0, 1, 3, 2, 4, 5)), (-1, nh * ws, nw * ws, c))
        x = x + y[:, :h, :w]
        x = self.local_conv(x)
        return x + self.mlp(x)


class TinyViTEncoder(keras.layers.Layer):
    """MobileSAM's image encoder: (N, H, W, C) preprocessed images -> (N, H/16, W/16, 256).

    Parameters
    ----------
    in_channels : int
        Channels of the input (3 for the published weights).
    out_dim : int
        Width of the neck's output (SAM's prompt embedding width, 256).
    config : TinyViTConfig, optional
        Widths, depths, heads and windows.
    """

    def __init__(self, in_channels: int = 3, out_dim: int = 256, config=None, **kwargs):
        super().__init__(**kwargs)
        cfg = config or TinyViTConfig()
        dims = cfg.embed_dims
        self.patch_embed_seq_0 = Conv2dBN(in_channels, dims[0] // 2, 3, 2, 1,
                                          name="patch_embed_seq_0")  # fmt: skip
        self.patch_embed_seq_2 = Conv2dBN(dims[0] // 2, dims[0], 3, 2, 1,
                                          name="patch_embed_seq_2")  # fmt: skip
        self.stages = []
        for i, depth in enumerate(cfg.depths):
            if i == 0:
                blocks = [MBConv(dims[0], cfg.mbconv_expand_ratio, name=f"layers_0_blocks_{j}")
                          for j in range(depth)]  # fmt: skip
            else:
                blocks = [TinyViTBlock(dims[i], cfg.num_heads[i], cfg.window_sizes[i],
                                       cfg.mlp_ratio, name=f"layers_{i}_blocks_{j}")
                          for j in range(depth)]  # fmt: skip
            down = None
            if i < len(cfg.depths) - 1:
                down = PatchMerging(dims[i], dims[i + 1], name=f"layers_{i}_downsample")
            self.stages.append((blocks, down))
        norm = norm_layer_factory("layer_norm_eps_1e-6")  # SAM's neck: LayerNorm2d
        self.neck_conv1 = conv(out_dim, dims[-1], 1, use_bias=False, name="neck_conv1")
        self.neck_norm1 = norm(out_dim, "neck_norm1")
        self.neck_conv2 = conv(out_dim, out_dim, 3, use_bias=False, padding="same",
                               name="neck_conv2")  # fmt: skip
        self.neck_norm2 = norm(out_dim, "neck_norm2")
        self.built = True

    def call(self, x):
        if x.shape[1] is None or x.shape[1] % 32 or x.shape[2] % 32:
            raise ValueError(f"images: height and width must be multiples of 32, got "
                             f"{tuple(x.shape[1:3])}")  # fmt: skip
        kernel, shift = self.patch_embed_seq_0.folded(x.dtype)
        x = _bias_gelu(self.patch_embed_seq_0.convolve(x, kernel), shift)
        x = self.patch_embed_seq_2(x)
        for blocks, down in self.stages:
            for block in blocks:
                x = block(x)
            if down is not None:
                x = down(x)
        x = self.neck_norm1(self.neck_conv1(x))
        return self.neck_norm2(self.neck_conv2(x))
