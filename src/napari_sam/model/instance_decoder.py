"""micro-sam's instance-segmentation decoder (torch-em's UNETR without encoder skips) in Keras.

From a SAM image embedding (B, 64, 64, E) it predicts three maps at the model input size
(B, 1024, 1024, 3), after a sigmoid: foreground probability, distance to the object centre and
distance to the object boundary (both scaled to [0, 1]). The layers follow
``torch_em.model.unetr.UNETR(use_skip_connection=False)`` as micro-sam builds it
(``micro_sam.instance_segmentation.get_unetr``):

- ``base``: a conv block on the embedding (InstanceNorm without affine parameters, 3 x 3 conv,
  ReLU, twice);
- ``deconv1..4``: a side branch of four up-sampling blocks (up-sampler, 3 x 3 conv, BatchNorm,
  ReLU), from the embedding to the full input size;
- ``decoder``: three stages, each an up-sampler and a conv block on the concatenation with the
  side branch's output, whose channels are cropped at the centre to the stage's width (as
  torch-em's ``Decoder._crop`` does, on channels as well as space);
- ``deconv_out`` (an up-sampler), ``decoder_head`` (a conv block on the concatenation with the
  last side output), ``out_conv`` (1 x 1) and a sigmoid.

``depth`` counts the side branch's blocks (4 in micro-sam: output 16 x the embedding grid); the
project's ``sam_tiny_nuclei`` decoder has 3 (8 x, as its patch size 8).

An up-sampler is either a 2 x 2 transposed convolution with stride 2 (torch-em's
``SingleDeconv2DBlock``, checkpoint keys ``<module>.block.*``) or bilinear x 2 interpolation
followed by a 1 x 1 convolution (``Upsampler2d``, keys ``<module>.conv.*``): which one depends on
the torch-em version that trained the decoder, so it is chosen per module
(:class:`DecoderConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

__all__ = ["UPSAMPLERS", "DecoderConfig", "InstanceDecoder", "upsamplers"]


def upsamplers(depth: int = 4) -> tuple[str, ...]:
    """The modules of a UNETR of ``depth`` levels that are up-samplers (their kind is read from
    the checkpoint)."""
    return (
        *(f"deconv{i}.block.0" for i in range(1, depth + 1)),
        *(f"decoder.samplers.{i}" for i in range(depth - 1)),
        "deconv_out",
    )


UPSAMPLERS = upsamplers(4)  # micro-sam's
_EPS = 1e-5  # torch's BatchNorm2d and InstanceNorm2d


@dataclass(frozen=True)
class DecoderConfig:
    """Widths and up-sampler kinds of an instance decoder.

    Attributes
    ----------
    embed_dim : int
        Channels of the image embedding (256 for SAM).
    initial_features : int
        Channels of the finest level; the levels have ``initial_features * 2**i`` (64 in
        micro-sam: 512, 256, 128, 64).
    out_channels : int
        Output maps (3: foreground, centre and boundary distances).
    conv_transpose : tuple of str
        The modules of :func:`upsamplers` that are transposed convolutions; the others are
        bilinear x 2 + 1 x 1 convolution.
    depth : int
        Levels (side-branch blocks): the output is ``2**depth`` x the embedding grid.
    """

    embed_dim: int = 256
    initial_features: int = 64
    out_channels: int = 3
    conv_transpose: tuple[str, ...] = ()
    depth: int = 4

    @property
    def features(self) -> tuple[int, ...]:
        """Channels of the levels, coarsest first (micro-sam: 8 f, 4 f, 2 f, f)."""
        f = self.initial_features
        return tuple(f * 2 ** (self.depth - 1 - i) for i in range(self.depth))


def _conv(filters, kernel, name):
    return keras.layers.Conv2D(filters, kernel, padding="same", name=name)


class _Upsampler(keras.layers.Layer):
    """x 2: a 2 x 2 transposed convolution, or bilinear interpolation and a 1 x 1 conv."""

    def __init__(self, filters: int, transpose: bool, **kwargs):
        super().__init__(**kwargs)
        self.transpose = bool(transpose)
        if self.transpose:
            self.proj = keras.layers.Conv2DTranspose(filters, 2, strides=2, name="block")
        else:
            self.proj = keras.layers.Conv2D(filters, 1, name="conv")

    def call(self, x):
        if self.transpose:
            return self.proj(x)
        h, w = x.shape[1], x.shape[2]
        # half-pixel centres, edges clamped: torch's interpolate(align_corners=False)
        x = tf.image.resize(x, (2 * h, 2 * w), method="bilinear")
        return self.proj(x)


def _spatial_mean(x):
    return tf.reduce_mean(tf.reduce_mean(x, axis=2, keepdims=True), axis=1, keepdims=True)


class _ConvBlock(keras.layers.Layer):
    """torch-em's ConvBlock2d: (InstanceNorm, 3 x 3 conv, ReLU) twice."""

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = _conv(filters, 3, "block_1")
        self.conv2 = _conv(filters, 3, "block_4")

    @staticmethod
    def _instance_norm(x):
        # Means over rows, then over their means: a float32 sum over all of a 512 x 512 map at
        # once (tf.nn.moments) loses about 1e-5 of the variance, and the loss compounds through
        # the blocks (1e-3 at the output against 2e-6 this way).
        mean = _spatial_mean(x)
        centred = x - mean
        return centred * tf.math.rsqrt(_spatial_mean(tf.square(centred)) + _EPS)

    def call(self, x):
        x = tf.nn.relu(self.conv1(self._instance_norm(x)))
        return tf.nn.relu(self.conv2(self._instance_norm(x)))


class _DeconvBlock(keras.layers.Layer):
    """torch-em's Deconv2DBlock: up-sampler, 3 x 3 conv, BatchNorm (running statistics), ReLU."""

    def __init__(self, filters: int, transpose: bool, **kwargs):
        super().__init__(**kwargs)
        self.up = _Upsampler(filters, transpose, name="block_0")
        self.conv = _conv(filters, 3, "block_1")
        self.norm = keras.layers.BatchNormalization(epsilon=_EPS, name="block_2")

    def call(self, x):
        return tf.nn.relu(self.norm(self.conv(self.up(x)), training=False))


def _crop_channels(x, channels: int):
    start = (x.shape[-1] - channels) // 2
    return x[..., start : start + channels]


class InstanceDecoder(keras.Model):
    """The decoder: image embeddings (B, h, w, E) to three maps (B, s h, s w, 3) in [0, 1],
    ``s = 2**config.depth`` (16 for micro-sam's).

    Parameters
    ----------
    config : DecoderConfig
        Widths and up-sampler kinds (:func:`napari_sam.weights.decoder_config` reads them from
        a checkpoint).
    """

    def __init__(self, config: DecoderConfig = DecoderConfig(), **kwargs):
        kwargs.setdefault("name", "instance_decoder")
        super().__init__(**kwargs)
        self.config = config
        widths = config.features
        t = set(config.conv_transpose)
        self.deconv = [
            _DeconvBlock(width, f"deconv{i}.block.0" in t, name=f"deconv{i}")
            for i, width in enumerate(widths, start=1)
        ]
        self.base = _ConvBlock(widths[0], name="base")
        self.samplers = [
            _Upsampler(width, f"decoder.samplers.{i}" in t, name=f"decoder_samplers_{i}")
            for i, width in enumerate(widths[1:])
        ]
        self.blocks = [
            _ConvBlock(width, name=f"decoder_blocks_{i}") for i, width in enumerate(widths[1:])
        ]
        self.deconv_out = _Upsampler(widths[-1], "deconv_out" in t, name="deconv_out")
        self.decoder_head = _ConvBlock(widths[-1], name="decoder_head")
        self.out_conv = keras.layers.Conv2D(config.out_channels, 1, name="out_conv")
        self.build((None, 64, 64, config.embed_dim))

    def build(self, input_shape):
        if self.built:
            return
        super().build(input_shape)
        self(tf.zeros((1, 4, 4, self.config.embed_dim)))

    def call(self, embedding):
        z = [embedding]
        for block in self.deconv:  # micro-sam's z9, z6, z3, z0
            z.append(block(z[-1]))
        x = self.base(embedding)
        for sampler, block, side in zip(self.samplers, self.blocks, z[1:-1], strict=True):
            x = sampler(x)
            x = block(tf.concat([x, _crop_channels(side, x.shape[-1])], axis=-1))
        x = self.deconv_out(x)
        x = self.decoder_head(tf.concat([x, z[-1]], axis=-1))
        return tf.sigmoid(self.out_conv(x))
