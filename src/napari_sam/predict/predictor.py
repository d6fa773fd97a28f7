"""``SAMPredictor``: set an image once, then predict masks for many prompts quickly."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from ..model.sam import postprocess_logits
from .prompts import batch_prompts
from .resizer import ImageResizer
from .shared import shared_graph

__all__ = ["ModelGraphs", "SAMPredictor", "default_preprocessing", "model_graphs"]


def default_preprocessing(cfg) -> Callable[[np.ndarray], np.ndarray]:
    """``(x - 255 * mean) / (255 * std)`` for images with values in [0, 255]."""
    mean = (np.asarray(cfg.mean, np.float64) * 255).astype(np.float32)
    std = (np.asarray(cfg.std, np.float64) * 255).astype(np.float32)
    return lambda x: (np.asarray(x, np.float32) - mean) / std


class ModelGraphs(NamedTuple):
    """The traced functions of one model (see :func:`model_graphs`)."""

    embed: Callable
    """``embed(images (B, H_in, W_in, C) float32) -> (B, H'', W'', D)``: the image encoder."""
    prepare: Callable
    """``prepare(embedding (1, H'', W'', D))``: the prompt-independent part of decoding."""
    decode: dict
    """``{(multimask_output, return_logits): decode(...)}``: the prompt path."""


_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_graphs(model) -> ModelGraphs:
    """The embedding and decoding graphs of ``model``, traced once and shared.

    Every :class:`SAMPredictor` and :class:`~napari_sam.stacks.encoder.ModelEncoder` of a
    model uses these, and every model of the same structure (class, configuration, encoder
    dtype, variables) runs the same graphs with its own weights
    (:func:`~napari_sam.predict.shared.shared_graph`): each is traced once per structure and
    process. The signatures have dynamic batch and prompt sizes, so a different number of
    images, points, boxes or objects, or another image size, never retraces.

    Parameters
    ----------
    model : SegmentAnythingModel
        The model (kept weakly: the graphs go with it).

    Returns
    -------
    ModelGraphs
        ``embed``, ``prepare`` and the ``decode`` variants.
    """
    if model in _GRAPHS:
        return _GRAPHS[model]
    cfg = model.cfg
    input_size = tuple(cfg.input_size)
    gh, gw = model.grid_size(input_size)
    mh, mw = model.mask_size(input_size)
    f32 = tf.float32
    embed = shared_graph(
        model, "embed", lambda m, images: m.embed_images(images),
        [tf.TensorSpec((None, *input_size, cfg.in_channels), f32)],
    )  # fmt: skip
    prepare = shared_graph(
        model, "prepare", lambda m, embeddings: m.prepare_decoding(embeddings),
        [tf.TensorSpec((1, gh, gw, cfg.embed_dim), f32)],
    )  # fmt: skip
    prepared_spec = tf.nest.map_structure(
        lambda t: tf.TensorSpec(t.shape, t.dtype),
        prepare.get_concrete_function().structured_outputs,
    )
    signature = [
        tf.TensorSpec((None, gh, gw, cfg.embed_dim), f32),  # embeddings
        prepared_spec,  # model.prepare_decoding(embeddings)
        tf.TensorSpec((None, None, 2), f32),  # points
        tf.TensorSpec((None, None), f32),  # labels
        tf.TensorSpec((None, None, 4), f32),  # boxes
        tf.TensorSpec((None, None, mh, mw), f32),  # masks
        tf.TensorSpec((2,), tf.int32),  # rescaled size
        tf.TensorSpec((2,), tf.int32),  # original size
    ]

    def graph(multimask_output, return_logits):
        def decode(
            m, embeddings, prepared, points, labels, boxes, masks, rescaled_size, original_size
        ):
            def general():
                return m.decode(
                    embeddings, points, labels, boxes, masks, input_size, multimask_output
                )

            def without_mask_prompt():
                return m.decode(
                    embeddings, points, labels, boxes, masks, input_size, multimask_output,
                    prepared=prepared,
                )  # fmt: skip

            logits, scores = tf.cond(tf.shape(masks)[1] > 0, general, without_mask_prompt)
            out = postprocess_logits(logits, input_size, (mh, mw), float(m.mask_threshold),
                                     rescaled_size, original_size, return_logits)  # fmt: skip
            return out, scores, logits

        name = f"decode-{int(multimask_output)}{int(return_logits)}"
        return shared_graph(model, name, decode, signature)

    variants = [(m, r) for m in (False, True) for r in (False, True)]
    _GRAPHS[model] = ModelGraphs(embed, prepare, {v: graph(*v) for v in variants})
    return _GRAPHS[model]


class SAMPredictor:
    """User-friendly interface to the Segment Anything model.

    Computes the image embedding once in :meth:`set_image`; :meth:`__call__` then predicts
    masks for prompts in a fraction of the time. Inputs and outputs are numpy arrays.

    Parameters
    ----------
    model : SegmentAnythingModel
        The model used for mask prediction.
    preprocessing : callable, optional
        Maps an (H, W, C) float image with values in [0, 255] to model input values. By
        default ``(x - 255 * mean) / (255 * std)`` with the model configuration's values.
    """

    def __init__(self, model, preprocessing: Callable | None = None):
        self.model = model
        cfg = model.cfg
        self._default_preprocessing = preprocessing is None
        self.preprocessing = preprocessing or default_preprocessing(cfg)
        self.input_size = tuple(cfg.input_size)
        self._embed, self._prepare, self._decode = model_graphs(model)
        self.clear_image()

    @property
    def prepared(self):
        """The prompt-independent decoder tensors of the current embedding (None unset)."""
        return self._prepared

    @property
    def is_image_set(self) -> bool:
        """Whether an image (or embedding) is set."""
        return self.embedding is not None

    def clear_image(self) -> None:
        """Unset the image and forget the embedding."""
        self.embedding = None
        self._prepared = None
        self.resizer = None
        self.original_size = None

    def preprocess_image(self, image: np.ndarray) -> tuple[np.ndarray, ImageResizer]:
        """Resize, normalise and pad an (H0, W0, C) image to the model input (H, W, C).

        Returns the model input and the :class:`ImageResizer` that maps back.

        Raises
        ------
        ValueError
            If the image has the wrong shape, is not numeric, or contains NaN or infinite
            values (they would make the whole embedding NaN).
        """
        image = np.asarray(image)
        if image.ndim == 2 and self.model.cfg.in_channels == 1:
            image = image[..., None]
        c = self.model.cfg.in_channels
        if image.ndim != 3 or image.shape[-1] != c or min(image.shape[:2]) == 0:
            raise ValueError(f"image must be an (H, W, {c}) array, got shape {image.shape}")
        if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
            raise ValueError(f"image must be numeric, got dtype {image.dtype}")
        if image.dtype.kind in "fc" and not np.isfinite(image).all():
            bad = int(image.size - np.count_nonzero(np.isfinite(image)))
            raise ValueError(
                f"image: contains NaN or infinite values ({bad} of {image.size}); SAM would "
                "return a NaN embedding. Replace them (e.g. np.nan_to_num) or use napari_sam's "
                "Normalization, which maps NaN to 0"
            )
        resizer = ImageResizer(image.shape[:2], self.input_size)
        x = self.preprocessing(resizer.scale_image(image).astype(np.float32))
        return resizer.pad_image(np.asarray(x, np.float32)), resizer

    def set_image(self, image: np.ndarray) -> None:
        """Compute and store the embedding of an (H, W, C) image with values in [0, 255].

        The image can be any size; it is resized and padded to the model input size.
        Values are used as they are (as Meta's ``SamPredictor`` does): a float image with all
        values in ``[0, 1]`` (and not all zero) gets a :class:`UserWarning`, since SAM then
        sees a nearly black image and predicts empty masks; multiply it by 255 or use
        :class:`~napari_sam.stacks.normalize.Normalization`. No warning is given with a custom
        ``preprocessing``.

        Parameters
        ----------
        image : ndarray
            (H, W, C) image, or (H, W) for a one-channel model, values in ``[0, 255]``.

        Raises
        ------
        ValueError
            As :meth:`preprocess_image`, e.g. for an image with NaN or infinite values.
        """
        image = np.asarray(image)
        x, resizer = self.preprocess_image(image)  # validates: finite from here on
        if (
            self._default_preprocessing
            and image.dtype.kind == "f"
            and 0 < image.max() <= 1.0
            and image.min() >= 0
        ):
            warnings.warn(
                "image: float values in [0, 1]; SAMPredictor expects [0, 255] — multiply by "
                "255 or use napari_sam's Normalization",
                UserWarning,
                stacklevel=2,
            )
        self.set_embedding(self._embed(x[None]).numpy(), resizer.src_size)

    def set_embedding(self, embedding: np.ndarray, original_size: tuple[int, int]) -> None:
        """Use a precomputed embedding (H'', W'', D) or (1, H'', W'', D) of an image."""
        embedding = np.asarray(embedding, np.float32)
        if embedding.ndim == 3:
            embedding = embedding[None]
        expected = (*self.model.grid_size(self.input_size), self.model.cfg.embed_dim)
        if embedding.shape[1:] != expected or embedding.shape[0] != 1:
            raise ValueError(f"embedding must have shape {expected}, got {embedding.shape}")
        self.resizer = ImageResizer(tuple(original_size), self.input_size)
        self.original_size = self.resizer.src_size
        self.embedding = tf.constant(embedding)
        self._prepared = self._prepare(self.embedding)

    def preprocess_masks(self, mask: np.ndarray) -> np.ndarray:
        """Map mask logits (M, H0, W0) or (N, M, H0, W0) to the model's (…, H', W')."""
        if self.resizer is None:
            raise RuntimeError("set an image with set_image() before preprocess_masks()")
        mask = np.asarray(mask, np.float32)
        if mask.ndim not in (3, 4) or mask.shape[-2:] != tuple(self.original_size):
            raise ValueError(
                f"mask must be (M, H0, W0) or (N, M, H0, W0) with (H0, W0) = "
                f"{tuple(self.original_size)}, got {mask.shape}"
            )
        flat = mask.reshape(-1, *mask.shape[-2:])
        x = self.resizer.pad_image(self.resizer.scale_image(flat, channels_last=False), False)
        x = ImageResizer.scale_to_size(x, self.model.mask_size(self.input_size), False)
        return x.reshape(*mask.shape[:-2], *x.shape[-2:])

    def __call__(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        masks: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ):
        """Predict masks for the given prompts; an image must have been set.

        Parameters
        ----------
        points : ndarray, optional
            (M1, 2) point prompts (x, y) in original image pixels, or (N, M1, 2) batched.
        labels : ndarray, optional
            (M1,) or (N, M1) point labels: 1 foreground, 0 background (no other values).
        boxes : ndarray, optional
            (M2, 4) boxes (left, top, right, bottom) in original pixels, or (N, M2, 4),
            with left <= right and top <= bottom.
            Unbatched, several boxes are several objects: the result gets a leading
            object axis of length M2 (points and masks are shared by all boxes).
        masks : ndarray, optional
            (M3, H', W') low resolution mask logits (e.g. a previous ``logits`` output),
            or (N, M3, H', W'); M3 in {0, 1} per object.
        multimask_output : bool
            Return ``nb_multimask_outputs`` masks instead of one.
        return_logits : bool
            Do not threshold the masks.

        Returns
        -------
        masks : ndarray
            (K, H0, W0) boolean masks, or (N, K, H0, W0) for batched or multi-box prompts.
        scores : ndarray
            (K,) or (N, K) predicted IoU.
        logits : ndarray
            (K, H', W') or (N, K, H', W') low resolution logits.
        """
        if not self.is_image_set:
            raise RuntimeError("set an image with set_image() before predicting masks")
        mask_size = self.model.mask_size(self.input_size)
        prompts, squeeze = batch_prompts(
            points, labels, boxes, masks, self.original_size, mask_size
        )
        pts, lbl, bxs, msk = prompts
        pts = self.resizer.scale_points(pts).astype(np.float32)
        bxs = self.resizer.scale_boxes(bxs).astype(np.float32)
        decode = self._decode[bool(multimask_output), bool(return_logits)]
        out, scores, logits = decode(
            self.embedding, self._prepared, pts, lbl, bxs, msk,
            np.asarray(self.resizer.rescaled_size, np.int32),
            np.asarray(self.original_size, np.int32),
        )  # fmt: skip
        out, scores, logits = out.numpy(), scores.numpy(), logits.numpy()
        if squeeze:
            return out[0], scores[0], logits[0]
        return out, scores, logits

    def trace_count(self) -> int:
        """Number of graph traces of the model's prompt path so far (shared by predictors)."""
        return sum(f.experimental_get_tracing_count() for f in self._decode.values())
