"""micro-sam's embedding zarr stores, read only: prompts on embeddings micro-sam computed.

micro-sam (``micro_sam.util.precompute_image_embeddings``, 1.8) writes a zarr group with an
array ``features``, ``(1, 256, 64, 64)`` for an image or ``(Z, 1, 256, 64, 64)`` for a stack
(slices not computed yet are all zeros), and the attributes ``input_size``, ``original_size``,
``data_signature`` (SHA-1 of the image's bytes), ``model_type``, ``model_name``, ``tile_shape``,
``halo`` and ``micro_sam_version``. A tiled store has a group ``features`` instead (one array
per tile), which is not read here.

The store is opened read-only and never written: its files stay micro-sam's.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

__all__ = ["MicroSamEmbeddings", "micro_sam_signature"]


def micro_sam_signature(image) -> str:
    """The ``data_signature`` micro-sam records for ``image``: SHA-1 of its bytes."""
    return hashlib.sha1(np.ascontiguousarray(np.asarray(image)).tobytes()).hexdigest()


class MicroSamEmbeddings:
    """Image embeddings from a micro-sam zarr store.

    Parameters
    ----------
    path : str or os.PathLike
        The zarr folder micro-sam wrote (``embedding_path`` / ``save_path``).
    image : ndarray, optional
        The image or stack the embeddings are of, exactly as given to micro-sam: checked
        against the store's ``data_signature``.
    model : str, optional
        The model the caller decodes with (e.g. ``"vit_b_lm"``): checked against the store's
        ``model_name`` (or ``model_type``).

    Raises
    ------
    ValueError
        ``"<path>: ..."``: not a micro-sam embedding store, tiled, of another image or model,
        or without a valid ``input_size`` / ``original_size``.
    """

    def __init__(self, path, image=None, model: str | None = None):
        import zarr

        self.path = os.fspath(path)
        try:
            group = zarr.open_group(self.path, mode="r")
        except Exception as err:  # zarr raises several kinds for a missing or foreign folder
            raise ValueError(f"{self.path}: not a zarr store ({type(err).__name__})") from None
        attrs = dict(group.attrs)
        if "input_size" not in attrs or "features" not in group:
            raise ValueError(f"{self.path}: not a micro-sam embedding store (no features or "
                             "input_size)")  # fmt: skip
        if attrs.get("tile_shape") is not None or attrs["input_size"] is None:
            raise ValueError(
                f"{self.path}: a tiled micro-sam store (tile_shape {attrs.get('tile_shape')}); "
                "only untiled stores are read"
            )
        features = group["features"]
        if features.ndim not in (4, 5) or features.shape[-3] != 256 or (
                features.ndim == 4 and features.shape[0] != 1):  # fmt: skip
            raise ValueError(f"{self.path}: features of shape {features.shape}; expected "
                             "(1, 256, h, w) or (Z, 1, 256, h, w)")  # fmt: skip
        stored = attrs.get("model_name") or attrs.get("model_type")
        if model is not None and stored != model:
            raise ValueError(f"{self.path}: embeddings of model {stored!r}, not {model!r}")
        signature = attrs.get("data_signature")
        if image is not None and signature != micro_sam_signature(image):
            raise ValueError(f"{self.path}: embeddings of another image (data_signature "
                             f"{signature!r} differs from the image's)")  # fmt: skip
        self._features = features
        self.model = stored
        self.input_size = self._size(attrs, "input_size")
        self.original_size = self._size(attrs, "original_size")
        self.is_stack = features.ndim == 5
        self.version = attrs.get("micro_sam_version")

    def _size(self, attrs: dict, name: str) -> tuple[int, int]:
        value = attrs.get(name)
        try:
            size = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            size = ()
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"{self.path}: the attribute {name} is {value!r}; expected the "
                             "(height, width) micro-sam records")  # fmt: skip
        return size

    def __len__(self) -> int:
        """Slices in the store (1 for an image)."""
        return int(self._features.shape[0]) if self.is_stack else 1

    def get(self, index: int = 0) -> np.ndarray | None:
        """Slice ``index``'s embedding as ``(1, h, w, 256)`` float32 (this package's layout),
        or None where micro-sam has not computed it yet (all zeros).

        Raises ValueError when the stored values are not all finite (a damaged store)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.path}: slice {index} of {len(self)}")
        raw = np.asarray(self._features[index] if self.is_stack else self._features[:])
        if not np.any(raw):
            return None
        if not np.isfinite(raw).all():
            raise ValueError(f"{self.path}: slice {index}'s embedding holds NaN or infinite "
                             "values (a damaged store); compute it again")  # fmt: skip
        return np.ascontiguousarray(raw.transpose(0, 2, 3, 1), dtype=np.float32)

    def set_on(self, predictor, index: int = 0) -> None:
        """Give ``predictor`` (a :class:`~napari_sam.predict.predictor.SAMPredictor`) slice
        ``index``'s embedding; prompts are then in the original image's pixels.

        Raises ValueError when the slice is not computed, or when the predictor would resize the
        image to another input size than micro-sam did.
        """
        from ..predict.resizer import ImageResizer

        embedding = self.get(index)
        if embedding is None:
            raise ValueError(f"{self.path}: slice {index} has no embedding yet")
        resized = ImageResizer(self.original_size, predictor.input_size).rescaled_size
        if tuple(resized) != self.input_size:
            raise ValueError(
                f"{self.path}: micro-sam resized the image to {self.input_size}, this model to "
                f"{tuple(resized)}: a model of another input size"
            )
        predictor.set_embedding(embedding, self.original_size)
