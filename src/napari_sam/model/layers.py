"""Small building blocks shared by the encoder, prompt encoder and decoder."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


# torch.nn.Embedding and SAM's random Fourier features start from N(0, 1); Keras'
# "random_normal" has a standard deviation of 0.05, which leaves the positional encoding
# almost constant and makes training from scratch fail to localise prompts.
def embedding_init():
    """A fresh N(0, 1) initializer (a shared instance would give every weight the same values)."""
    return keras.initializers.RandomNormal(stddev=1.0)


_NORM_LAYERS = {"layer_norm": 1e-5, "layer_norm_eps_1e-5": 1e-5, "layer_norm_eps_1e-6": 1e-6}


def norm_layer_factory(name: str):
    """Return a constructor ``f(name=...)`` of the normalisation layer called ``name``.

    Known names: ``layer_norm`` (eps 1e-5), ``layer_norm_eps_1e-5``, ``layer_norm_eps_1e-6``.
    """
    if name not in _NORM_LAYERS:
        raise ValueError(f"unknown norm layer {name!r}; expected one of {sorted(_NORM_LAYERS)}")
    eps = _NORM_LAYERS[name]

    def make(dim: int, name: str) -> layers.LayerNormalization:
        return built(LayerNorm(epsilon=eps, name=name), (None, dim))

    return make


class LayerNorm(layers.LayerNormalization):
    """``LayerNormalization`` over the last axis, computed in two passes.

    Same variables and result as Keras' layer (``torch.nn.LayerNorm``), about a third
    faster on CPU: the mean, the centred values, then their mean square.
    """

    def __init__(self, epsilon: float, name: str | None = None, **kwargs):
        if kwargs.get("axis", -1) != -1:
            raise ValueError("LayerNorm normalises the last axis only")
        super().__init__(epsilon=epsilon, name=name, **kwargs)

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs)
        dtype = x.dtype
        if dtype != tf.float32:  # statistics in float32 (bfloat16 mode)
            x = tf.cast(x, tf.float32)
        gamma, beta = (
            None if v is None else tf.cast(v, tf.float32) for v in (self.gamma, self.beta)
        )
        return tf.cast(layer_norm(x, gamma, beta, self.epsilon), dtype)


def layer_norm(x, gamma, beta, epsilon: float):
    """Layer normalisation of the last axis in two passes (the mean, then the mean square of
    the centred values); ``gamma`` and ``beta`` may be None."""
    centred = x - tf.reduce_mean(x, axis=-1, keepdims=True)
    var = tf.reduce_mean(tf.square(centred), axis=-1, keepdims=True)
    scale = tf.math.rsqrt(var + epsilon)
    if gamma is not None:
        scale = scale * gamma
    out = centred * scale
    return out if beta is None else out + beta


_SQRT_HALF = 0.7071067811865476


def gelu(x):
    """Exact (erf) GELU, as ``torch.nn.GELU()``; ``keras.ops.gelu`` defaults to tanh.

    Written out as ``x / 2 * (1 + erf(x / sqrt(2)))``: the same function as
    ``tf.nn.gelu(x, approximate=False)``, nearly twice as fast on CPU.
    """
    return 0.5 * x * (1.0 + tf.math.erf(x * _SQRT_HALF))


def gelu_tanh(x):
    """Tanh approximation of GELU."""
    return tf.nn.gelu(x, approximate=True)


_ACTIVATIONS = {"gelu": gelu, "gelu_tanh": gelu_tanh, "relu": tf.nn.relu}


def act_layer_factory(name: str):
    """Return the activation function called ``name`` (``gelu`` is exact, erf-based)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def built(layer, input_shape):
    """Build ``layer`` for ``input_shape`` now, so its weights exist before any call."""
    layer.build(input_shape)
    return layer


def dense(units: int, in_dim: int, name: str, use_bias: bool = True) -> layers.Dense:
    """A built ``Dense`` layer (the equivalent of ``torch.nn.Linear(in_dim, units)``)."""
    return built(layers.Dense(units, use_bias=use_bias, name=name), (None, in_dim))


def conv(filters, in_dim, kernel, stride=1, name="conv", use_bias=True, padding="valid"):
    """A built channels-last ``Conv2D`` (the equivalent of ``torch.nn.Conv2d``)."""
    layer = layers.Conv2D(
        filters, kernel, strides=stride, padding=padding, use_bias=use_bias, name=name
    )
    return built(layer, (None, None, None, in_dim))


class MLPBlock(keras.layers.Layer):
    """Two linear layers with an activation in between (``lin1``, ``act``, ``lin2``)."""

    def __init__(self, dim: int, hidden_dim: int, act=gelu, drop_rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.lin1 = dense(hidden_dim, dim, "lin1")
        self.lin2 = dense(dim, hidden_dim, "lin2")
        self.act = act
        self.drop = layers.Dropout(drop_rate) if drop_rate > 0 else None
        self.built = True

    def call(self, x, training=False):
        x = self.act(self.lin1(x))
        if self.drop is not None:
            x = self.drop(x, training=training)
        x = self.lin2(x)
        if self.drop is not None:
            x = self.drop(x, training=training)
        return x


class MLP(keras.layers.Layer):
    """``num_layers`` linear layers with ReLU in between (Meta's ``MLP`` in the decoder)."""

    def __init__(self, in_dim, hidden_dim, out_dim, num_layers, sigmoid_output=False, **kwargs):
        super().__init__(**kwargs)
        dims_in = [in_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [out_dim]
        self.mlp_layers = [
            dense(o, i, f"layers_{k}")
            for k, (i, o) in enumerate(zip(dims_in, dims_out, strict=True))
        ]
        self.sigmoid_output = sigmoid_output
        self.built = True

    def call(self, x):
        for k, layer in enumerate(self.mlp_layers):
            x = layer(x)
            if k < len(self.mlp_layers) - 1:
                x = tf.nn.relu(x)
        return tf.sigmoid(x) if self.sigmoid_output else x


class DropPath(keras.layers.Layer):
    """Stochastic depth: drop the whole residual branch per sample while training."""

    def __init__(self, rate: float, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.built = True

    def call(self, x, training=False):
        if not training or self.rate <= 0:
            return x
        keep = 1.0 - self.rate
        shape = tf.concat([tf.shape(x)[:1], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0)
        mask = tf.floor(keep + tf.random.uniform(shape, dtype=x.dtype))
        return x / keep * mask
