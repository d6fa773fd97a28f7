"""The Segment Anything model: image encoder, prompt encoder and mask decoder together."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .config import SegmentAnythingModelConfig
from .image_encoder import ImageEncoder
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .tiny_vit import TinyViTEncoder

# float32 parity with Meta's model on GPUs (see napari_sam.model)
tf.config.experimental.enable_tensor_float_32_execution(False)


def upscale_logits(logits, size):
    """Bilinearly resize (N, K, h, w) logits to ``size`` (torch ``align_corners=False``)."""
    x = tf.transpose(logits, (0, 2, 3, 1))
    x = tf.image.resize(x, size, method="bilinear", antialias=False)
    return tf.transpose(x, (0, 3, 1, 2))


_QUARTERS = (0.125, 0.375, 0.625, 0.875)


def _upscale_x4(logits, threshold=None):
    # Output pixel 4i + 2 + r (r = 0..3) lies between inputs i and i + 1 at 1/8, 3/8, 5/8
    # and 7/8; with the edges repeated, every output row and column is one of four
    # weighted sums of two neighbours, written in place by a stack and a reshape.
    n, k, h, w = tf.unstack(tf.shape(logits))
    x = tf.pad(logits, [[0, 0], [0, 0], [1, 1], [1, 1]], mode="SYMMETRIC")
    a, b = x[:, :, :-1], x[:, :, 1:]
    rows = tf.stack([a + t * (b - a) for t in _QUARTERS], axis=3)  # (N, K, h+1, 4, w+2)
    rows = tf.reshape(rows, (n, k, 4 * h + 4, w + 2))[:, :, 2:-2]
    a, b = rows[..., :-1], rows[..., 1:]
    out = tf.stack([a + t * (b - a) for t in _QUARTERS], axis=-1)  # (N, K, 4h, w+1, 4)
    out = tf.reshape(out, (n, k, 4 * h, 4 * w + 4))[..., 2:-2]
    return out if threshold is None else out > threshold


# One fused loop instead of a dozen full-size passes: compiled once per (N, K, h, w).
_upscale_x4_compiled = tf.function(_upscale_x4, jit_compile=True, reduce_retracing=True)


def upscale_logits_x4(logits, threshold=None):
    """Bilinear 4x upscaling of (N, K, h, w) logits, as :func:`upscale_logits` to (4h, 4w).

    The same values (to float rounding) computed by XLA in one pass, three times faster
    than ``tf.image.resize`` on a CPU. With ``threshold``, returns the boolean
    ``upscaled > threshold`` without materialising the float image.
    """
    return _upscale_x4_compiled(logits, threshold)


def postprocess_logits(logits, input_size, mask_size, threshold: float, rescaled_size,
                       original_size, return_logits: bool):  # fmt: skip
    """Meta's ``postprocess_masks`` in a graph: (N, K, h', w') low-resolution logits to the
    original image, (N, K, H0, W0) logits or, without ``return_logits``, masks.

    Upscaled to the input size (a fused 4 x upscaling when that is 4 times the logits), cropped
    to the rescaled image, resized to the original size (skipped when the two are equal: an
    image whose longest side is the input size). The prompt graphs and the automatic
    segmentation's candidate graphs share it, so their masks are the same.
    """
    input_size = tuple(input_size)
    x4 = tuple(4 * int(s) for s in mask_size) == input_size
    same = tf.reduce_all(tf.equal(rescaled_size, original_size))

    def upscaled(thresholded):
        if x4:
            up = upscale_logits_x4(logits, threshold if thresholded else None)
        else:
            up = upscale_logits(logits, input_size)
            up = up > threshold if thresholded else up
        return up[:, :, : rescaled_size[0], : rescaled_size[1]]

    def resized():
        up = upscale_logits(upscaled(False), original_size)
        return up if return_logits else up > threshold

    return tf.cond(same, lambda: upscaled(not return_logits), resized)


@keras.saving.register_keras_serializable(package="napari_sam")
class SegmentAnythingModel(keras.Model):
    """Segment Anything: predicts masks from images and prompts.

    Parameters
    ----------
    cfg : SegmentAnythingModelConfig
        The model configuration.

    Notes
    -----
    Images are channels-last and already preprocessed (normalised and padded, see
    :class:`napari_sam.SAMPredictor`). All weights are created in the constructor, so a
    model is ready for loading weights without a forward pass.

    Attributes
    ----------
    instance_decoder : InstanceDecoder or None
        micro-sam's instance-segmentation decoder, set by
        :func:`~napari_sam.weights.create_model` (None: the model has none).
    """

    #: Set by :func:`~napari_sam.weights.create_model` (not a tracked sub-layer).
    instance_decoder = None
    dtype_reason = "float32: the default"  # why the encoder runs in its dtype

    def __init__(self, cfg: SegmentAnythingModelConfig | None = None, **kwargs):
        kwargs.setdefault("name", (cfg.name if cfg is not None and cfg.name else "sam"))
        super().__init__(**kwargs)
        self.cfg = cfg if cfg is not None else SegmentAnythingModelConfig()
        if self.cfg.encoder == "tiny_vit":
            self.image_encoder = TinyViTEncoder(self.cfg.in_channels, self.cfg.embed_dim,
                                                name="image_encoder")  # fmt: skip
        else:
            self.image_encoder = ImageEncoder(self.cfg, name="image_encoder")
        self.prompt_encoder = PromptEncoder(
            self.cfg.embed_dim, self.cfg.prompt_mask_hidden_dim, name="prompt_encoder"
        )
        self.mask_decoder = MaskDecoder(self.cfg, name="mask_decoder")
        self.built = True

    # ----------------------------------------------------------------- sizes
    def grid_size(self, input_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """Spatial size (H'', W'') of image embeddings for an input of size (H, W)."""
        h, w = input_size if input_size is not None else self.cfg.input_size
        p = self.cfg.encoder_patch_size
        return int(h) // p, int(w) // p

    def mask_size(self, input_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """Size (H', W') of low resolution masks for an input of size (H, W)."""
        gh, gw = self.grid_size(input_size)
        return 4 * gh, 4 * gw

    @property
    def mask_threshold(self) -> float:
        """Threshold for turning logit masks into boolean masks."""
        return self.cfg.mask_threshold

    @property
    def dummy_inputs(self) -> dict[str, tf.Tensor]:
        """Inputs of the correct shape for inference: one image, one point, one box."""
        h, w = self.cfg.input_size
        return {
            "images": tf.zeros((1, h, w, self.cfg.in_channels)),
            "points": tf.constant([[[w / 2, h / 2]]], tf.float32),
            "labels": tf.ones((1, 1), tf.float32),
            "boxes": tf.constant([[[w / 4, h / 4, 3 * w / 4, 3 * h / 4]]], tf.float32),
            "masks": tf.zeros((1, 0, *self.mask_size())),
        }

    # ------------------------------------------------------------- precision
    @property
    def encoder_dtype(self) -> str:
        """Compute dtype of the image encoder: ``"float32"`` (default) or ``"bfloat16"``."""
        return self.image_encoder.dtype_policy.compute_dtype

    def set_encoder_dtype(self, dtype: str) -> None:
        """Run the image encoder in ``"bfloat16"`` (faster on CPUs and GPUs that have it),
        ``"float32"``, or ``"auto"``: bfloat16 where the machine does it natively and faster,
        float32 otherwise (:func:`napari_sam.model.precision.auto_dtype`; the reason is kept
        in ``dtype_reason``).

        Weights stay float32 (Keras' ``mixed_bfloat16`` policy); layer norms and softmax
        statistics are computed in float32; embeddings are returned as float32. The prompt
        encoder and mask decoder always run in float32.
        """
        policies = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
        reason = f"{dtype}: as asked"
        if dtype == "auto":  # bfloat16 only where native and faster
            from .precision import auto_dtype

            dtype, reason = auto_dtype()
        if dtype not in policies:
            raise ValueError(f"dtype must be 'float32', 'bfloat16' or 'auto', got {dtype!r}")
        object.__setattr__(self, "dtype_reason", reason)  # plain data, not a tracked layer
        for layer in [self.image_encoder, *self.image_encoder._flatten_layers()]:
            layer.dtype_policy = policies[dtype]

    # ------------------------------------------------------------ components
    def embed_images(self, images, training: bool = False):
        """Image embeddings (N, H'', W'', D), float32, of preprocessed images (N, H, W, C)."""
        return tf.cast(self.image_encoder(images, training=training), tf.float32)

    def prepare_decoding(self, embeddings):
        """Prompt-independent decoder work on one image embedding (1, H'', W'', D).

        Computed once per image (a few milliseconds), it makes every later
        ``decode(..., prepared=...)`` without a mask prompt cheaper. Returns a dict of
        tensors.
        """
        grid = tuple(embeddings.shape[1:3])
        no_mask = tf.reshape(self.prompt_encoder.no_mask_embed, (1, 1, 1, -1))
        return self.mask_decoder.prepare(embeddings, self.prompt_encoder.dense_pe(grid), no_mask)

    def decode(self, embeddings, points, labels, boxes, masks, input_size, multimask_output,
               prepared=None):  # fmt: skip
        """Mask logits (N, K, H', W') and scores (N, K) from embeddings and prompts.

        ``embeddings`` is (1 or N, H'', W'', D); prompts are batched as in :meth:`call`
        (use zero-size arrays for absent prompts). ``prepared``, from
        :meth:`prepare_decoding` of a single embedding, is used instead of it; it holds
        only for prompts without a mask (M3 = 0).
        """
        grid = tuple(embeddings.shape[1:3])
        if prepared is not None:
            masks = masks[:, :0]  # statically empty: the dense embedding is prepared
        sparse, dense = self.prompt_encoder(
            points, labels, boxes, masks, image_size=input_size, grid=grid
        )
        image_pe = None if prepared is not None else self.prompt_encoder.dense_pe(grid)
        return self.mask_decoder(
            embeddings, image_pe, sparse, dense, multimask_output=multimask_output,
            prepared=prepared,
        )  # fmt: skip

    def call(self, inputs, training=False, multimask_output=False, return_logits=False):
        """Predict masks end-to-end from images and prompts.

        Parameters
        ----------
        inputs : dict
            ``images`` (N, H, W, C) preprocessed images; ``points`` (N, M1, 2) and
            ``labels`` (N, M1) point prompts in input pixel coordinates (x, y), label 1
            foreground, 0 background; ``boxes`` (N, M2, 4) as (left, top, right, bottom);
            ``masks`` (N, M3, H', W') mask logits with M3 in {0, 1}. Prompts may be absent.
        training : bool
            Training or inference phase.
        multimask_output : bool
            If True, return ``nb_multimask_outputs`` nested masks per prompt.
        return_logits : bool
            If True, the upscaled masks are not thresholded.

        Returns
        -------
        masks : Tensor
            (N, K, H, W) boolean masks (or logits with ``return_logits``).
        scores : Tensor
            (N, K) predicted mask quality.
        logits : Tensor
            (N, K, H', W') low resolution logits, usable as a mask prompt.
        """
        images = tf.convert_to_tensor(inputs["images"])
        n = tf.shape(images)[0]
        input_size = tuple(images.shape[1:3])
        prompts = _batched_prompts(inputs, n, self.mask_size(input_size))
        embeddings = self.embed_images(images, training=training)
        logits, scores = self.decode(embeddings, *prompts, input_size, multimask_output)
        masks = upscale_logits(logits, input_size)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, scores, logits

    # ``model.save("m.keras")`` / ``keras.saving.load_model``: the configuration as a dict;
    # the weights are restored by Keras from the layers built by ``__init__``.
    def get_config(self):
        return {"cfg": self.cfg.to_dict(), "name": self.name, "encoder_dtype": self.encoder_dtype}

    @classmethod
    def from_config(cls, config):
        model = cls(SegmentAnythingModelConfig.from_dict(config["cfg"]), name=config.get("name"))
        model.set_encoder_dtype(config.get("encoder_dtype", "float32"))
        return model


def _batched_prompts(inputs, n, mask_size):
    """Fill absent prompts with zero-size tensors so the graph has one signature."""

    def get(key, tail):
        value = inputs.get(key)
        if value is None:
            return tf.zeros(tf.concat([[n, 0], tail], axis=0), tf.float32)
        return tf.cast(tf.convert_to_tensor(value), tf.float32)

    points = get("points", [2])
    labels = inputs.get("labels")
    if labels is None:
        labels = tf.ones(tf.shape(points)[:2], tf.float32)
    labels = tf.cast(tf.convert_to_tensor(labels), tf.float32)
    return points, labels, get("boxes", [4]), get("masks", np.array(mask_size, np.int32))
