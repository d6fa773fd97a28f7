"""``ModelEncoder``: a SAM image encoder behind the embedding store's encoder protocol.

The :class:`~napari_sam.stacks.store.EmbeddingStore` normalises a slice and maps its channels
(float32, values in ``[0, 255]``) and calls ``encoder.encode``; it keys every stored embedding on
``encoder.signature``. :class:`ModelEncoder` resizes and pads each slice exactly as
:meth:`SAMPredictor.preprocess_image <napari_sam.SAMPredictor.preprocess_image>` does and runs a
batch through the model's image encoder in one traced call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np

from ..predict.predictor import SAMPredictor, model_graphs
from .store_layout import package_version

__all__ = ["ModelEncoder", "weights_hash"]

_SIGNATURE_FORMAT = 1


def weights_hash(model) -> str:
    """BLAKE2b hash of every weight of ``model``: path, dtype, shape and raw bytes of each.

    Variables are taken in the model's fixed order (``model.weights``, the order the layers
    create them in; Keras paths are not unique), each prefixed with its position and path.
    """
    h = hashlib.blake2b(digest_size=20)
    for i, var in enumerate(model.weights):
        value = np.ascontiguousarray(var.numpy())
        h.update(f"{i}|{var.path}|{value.dtype.str}|{value.shape}|".encode())
        h.update(memoryview(value).cast("B"))
    return h.hexdigest()


class ModelEncoder:
    """Embeds batches of slices with the image encoder of a SAM model, for the store.

    Parameters
    ----------
    model : SegmentAnythingModel
        The model; only its image encoder runs here.
    batch_size : int, optional
        At most this many slices go through the model in one call; a larger batch passed to
        :meth:`encode` is split. ``None``: the whole batch in one call.
    preprocessing : callable, optional
        As for :class:`~napari_sam.SAMPredictor`; default ``(x - 255 mean) / (255 std)``.
    preprocessing_id : str, optional
        A name that identifies a custom ``preprocessing`` in :attr:`signature` (required with
        one: stored embeddings must never be reused across different preprocessings).

    Attributes
    ----------
    predictor : SAMPredictor
        The predictor whose :meth:`~napari_sam.SAMPredictor.preprocess_image` resizes and pads
        the slices (its prompt path can be used with these embeddings).
    embedding_shape : tuple of int
        ``(H'', W'', D)`` of one embedding.
    weights_hash : str
        :func:`weights_hash` of the model when the encoder was made (in :attr:`signature`).

    Notes
    -----
    :attr:`signature` hashes the weights once, when the encoder is created. Weights changed in
    place afterwards (training, ``load_weights``) are not seen: create a new encoder then.
    """

    def __init__(
        self,
        model,
        batch_size: int | None = 1,
        preprocessing: Callable | None = None,
        preprocessing_id: str | None = None,
    ):
        if preprocessing is not None and not preprocessing_id:
            raise ValueError(
                "preprocessing_id: a custom preprocessing needs a name for the store's "
                "signature, e.g. preprocessing_id='my-norm-v1'"
            )
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size: expected a positive integer or None, got {batch_size}")
        self.model = model
        self.batch_size = None if batch_size is None else int(batch_size)
        self.predictor = SAMPredictor(model, preprocessing)
        cfg = model.cfg
        self.input_size = tuple(int(s) for s in cfg.input_size)
        self.in_channels = int(cfg.in_channels)
        gh, gw = model.grid_size(self.input_size)
        self.embedding_shape = (int(gh), int(gw), int(cfg.embed_dim))
        # the model's one traced image encoder, shared with every SAMPredictor of it
        self._embed = model_graphs(model).embed
        self.signature = self._make_signature(preprocessing_id)

    def _make_signature(self, preprocessing_id: str | None) -> str:
        cfg = self.model.cfg
        config = json.dumps(cfg.to_dict(), sort_keys=True)
        config_hash = hashlib.blake2b(config.encode(), digest_size=8).hexdigest()
        if preprocessing_id is None:
            prep = "default(mean={},std={})".format(
                ",".join(repr(v) for v in cfg.mean), ",".join(repr(v) for v in cfg.std)
            )
        else:
            prep = f"custom({preprocessing_id})"
        h, w = self.input_size
        self.weights_hash = weights_hash(self.model)
        return (
            f"napari-sam-encoder/{_SIGNATURE_FORMAT}:model={cfg.name or '?'}"
            f":config={config_hash}:weights={self.weights_hash}:input={h}x{w}"
            f":in_channels={self.in_channels}:preprocessing={prep}"
            f":dtype={getattr(self.model, 'encoder_dtype', 'float32')}"
            f":napari-sam={package_version()}"
        )

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """Resize and pad ``(B, H, W, C)`` images to the model input ``(B, H_in, W_in, C)``."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != self.in_channels:
            raise ValueError(
                f"images: expected a (B, H, W, {self.in_channels}) batch, got shape {images.shape}"
            )
        out = np.empty((len(images), *self.input_size, self.in_channels), np.float32)
        for i, image in enumerate(images):
            out[i] = self.predictor.preprocess_image(image.astype(np.float32, copy=False))[0]
        return out

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Embeddings ``(B, H'', W'', D)`` float32 of ``(B, H, W, C)`` images in ``[0, 255]``.

        Each image is resized (longest side to the input size) and padded exactly as
        :meth:`SAMPredictor.preprocess_image <napari_sam.SAMPredictor.preprocess_image>` does
        for a float32 image, then the batch runs through one traced function (no retracing
        for other batch sizes).
        """
        x = self.preprocess(images)
        step = self.batch_size or max(1, len(x))
        parts = [self._embed(x[i : i + step]).numpy() for i in range(0, len(x), step)]
        if not parts:
            return np.zeros((0, *self.embedding_shape), np.float32)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def trace_count(self) -> int:
        """Number of graph traces of the model's image encoder so far (1 after the first call).

        The traced function is the model's (see
        :func:`~napari_sam.predict.predictor.model_graphs`), shared with its predictors.
        """
        return self._embed.experimental_get_tracing_count()

    def __repr__(self) -> str:
        return (
            f"ModelEncoder(model={self.model.cfg.name!r}, input_size={self.input_size}, "
            f"in_channels={self.in_channels}, embedding_shape={self.embedding_shape})"
        )
