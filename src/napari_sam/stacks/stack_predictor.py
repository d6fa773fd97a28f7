"""``StackPredictor``: SAM prompts on any slice of an N-D stack, with cached embeddings.

Each slice's embedding comes from an :class:`~napari_sam.stacks.store.EmbeddingStore`
(memory, then disk, else computed on demand by a :class:`~napari_sam.stacks.encoder.ModelEncoder`);
prompts are decoded by a :class:`~napari_sam.SAMPredictor` given that embedding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .channels import ChannelSpec
from .contract import SlicePredictor
from .encoder import ModelEncoder
from .store import MEMORY_BUDGET, EmbeddingStore, PrecomputeResult
from .tiling import TileView
from .view import StackView

__all__ = ["StackPredictor", "check_channels"]


def _positive_points(points, labels, n_objects: int, single: bool) -> list:
    """Each object's foreground points ((M, 2) x, y, or None) of SAM-style prompts: ``points``
    (M, 2) of one object (``single``) or (N, M, 2) of ``n_objects``, ``labels`` 1 where a point
    is foreground."""
    if points is None or labels is None:
        return [None] * n_objects
    pts = np.asarray(points, np.float32)
    lbl = np.asarray(labels)
    if single:
        pts, lbl = pts.reshape(1, -1, 2), lbl.reshape(1, -1)
    pts, lbl = pts.reshape(n_objects, -1, 2), lbl.reshape(n_objects, -1)
    return [p[lb == 1] for p, lb in zip(pts, lbl, strict=True)]


def check_channels(channels: ChannelSpec, n_channels: int, in_channels: int) -> ChannelSpec:
    """Resolve ``channels`` for a stack with ``n_channels`` and check it fits the model.

    Raises
    ------
    ValueError
        If a channel index is out of range, or the mapping gives another number of channels
        than the model's ``in_channels`` (``adapt`` needs ``in_channels == C``; ``rgb`` and
        ``single`` need a 3-channel model).
    """
    channels = channels.resolve(n_channels)
    out = channels.out_channels(n_channels)
    if out != in_channels:
        if channels.mode == "adapt":
            hint = f"create the model with in_channels={n_channels}"
        else:
            hint = "use a 3-channel model, or ChannelSpec('adapt') with a matching model"
        raise ValueError(
            f"channels: mode {channels.mode!r} gives {out} channel(s) for this "
            f"{n_channels}-channel stack but the model takes in_channels={in_channels}; {hint}"
        )
    return channels


class StackPredictor(SlicePredictor):
    """Predict masks from prompts on any slice of a stack, reusing stored embeddings.

    Parameters
    ----------
    model : SegmentAnythingModel
        The model (its image encoder makes the embeddings, its decoder the masks).
    view : StackView or array-like or path
        The stack; anything else is wrapped as ``StackView(view, axes)``.
    channels : ChannelSpec, optional
        How slice channels become model channels; default
        :meth:`ChannelSpec.default_for <napari_sam.stacks.channels.ChannelSpec.default_for>`.
    normalization : Normalization or FittedNormalization, optional
        Intensity mapping to ``[0, 255]``, fitted on the whole stack; default ``"auto"``.
    store : None, str, os.PathLike or EmbeddingStore
        ``None``: embeddings in memory only. A path: an on-disk store there (reused when it
        was made with the same model, weights and settings). A store: used as it is.
    memory_budget : int
        Bytes of embeddings kept in memory (for a store created here).
    overwrite : bool
        Discard an on-disk store made with other settings instead of raising
        :class:`~napari_sam.stacks.store.StoreMismatchError`.
    axes : str, optional
        Axes of ``view`` when it is not a :class:`StackView` yet.
    preprocessing, preprocessing_id
        A custom model preprocessing and its name, see
        :class:`~napari_sam.stacks.encoder.ModelEncoder`.
    encoder : ModelEncoder, optional
        An encoder of ``model`` to reuse, e.g. ``other.encoder`` of a predictor on another
        stack: its traced functions (encoder and prompt decoder) are shared instead of traced
        again. Predictors sharing one encoder must not be used from several threads at once.

    Raises
    ------
    ValueError
        If the channel mapping does not fit the model (see :func:`check_channels`).
    StoreMismatchError
        If the on-disk store differs in any ingredient and ``overwrite`` is False.

    Examples
    --------
    >>> sp = StackPredictor(model, StackView(data, "ZYX"), store="emb.zarr")  # doctest: +SKIP
    >>> masks, scores, logits = sp.predict(3, points=[[40, 30]], labels=[1])  # doctest: +SKIP
    """

    def __init__(
        self,
        model,
        view,
        channels: ChannelSpec | None = None,
        normalization=None,
        store=None,
        memory_budget: int = MEMORY_BUDGET,
        overwrite: bool = False,
        axes: str | None = None,
        preprocessing: Callable | None = None,
        preprocessing_id: str | None = None,
        encoder: ModelEncoder | None = None,
    ):
        self.view = view if isinstance(view, (StackView, TileView)) else StackView(view, axes)
        channels = channels or ChannelSpec.default_for(self.view.n_channels)
        channels = check_channels(channels, self.view.n_channels, model.cfg.in_channels)
        if encoder is None:
            encoder = ModelEncoder(
                model, preprocessing=preprocessing, preprocessing_id=preprocessing_id
            )
        elif encoder.model is not model or preprocessing is not None:
            raise ValueError(
                "encoder: must be a ModelEncoder of this model (its preprocessing is used)"
            )
        self.encoder = encoder
        self.predictor = encoder.predictor
        if not isinstance(store, EmbeddingStore):
            store = EmbeddingStore(store, memory_budget=memory_budget, overwrite=overwrite)
        self.store = store.bind(self.view, self.encoder, channels, normalization)
        self.model = model
        self.index: tuple[int, ...] | None = None
        self._embedding = self._tensor = None

    @property
    def channels(self) -> ChannelSpec:
        """The resolved channel mapping."""
        return self.store.channels

    @property
    def normalization(self):
        """The fitted normalisation (:class:`~napari_sam.stacks.normalize.FittedNormalization`)."""
        return self.store.normalization

    def get_embedding(self, index) -> np.ndarray:
        """The ``(H'', W'', D)`` embedding of slice ``index`` (stored, or computed now)."""
        return self.store.get(index)

    def tile_embedding(self, index, t: int = 0) -> np.ndarray:
        """The embedding of the one window (``t`` = 0) of slice ``index``: :meth:`get_embedding`."""
        self._check_window(t)
        return self.store.get(index)

    def has_embedding(self, index) -> bool:
        """Whether slice ``index``'s embedding is in memory (decoding it then reads nothing)."""
        return self.store.in_memory(index)

    def ready_tiles(self, index) -> np.ndarray:
        """``(1,)`` bool: whether slice ``index`` has an embedding in memory or in the store."""
        flat = self.view.flat_index(index)
        return np.array([self.store.in_memory(flat) or flat in self.store.available()])

    def predict_window(self, index, points=None, labels=None, boxes=None,
                       multimask_output: bool = True, return_logits: bool = False,
                       masks=None):  # fmt: skip
        """One object's masks, scores, logits and window ``(0, H, 0, W)``: the whole slice
        (see :meth:`SlicePredictor.predict_window
        <napari_sam.stacks.contract.SlicePredictor.predict_window>`)."""
        pts = None if points is None else np.asarray(points, np.float32).reshape(-1, 2)
        lbl = None if labels is None else np.asarray(labels, np.float32).reshape(-1)
        box = None if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)[:1]
        masks, scores, logits = self.predict(
            index,
            points=None if pts is None else pts[None],  # batched: one object
            labels=None if lbl is None else lbl[None],
            boxes=None if box is None else box[None],
            masks=None if masks is None else np.asarray(masks, np.float32)[None],
            multimask_output=multimask_output, return_logits=return_logits,
        )  # fmt: skip
        return masks[0], scores[0], logits[0], self.window(0)

    def set_slice(self, index) -> None:
        """Make slice ``index`` (flat number or index tuple) the one prompts refer to.

        Its embedding is taken from the store, computed first if needed.

        Raises
        ------
        SliceIndexError
            If ``index`` is out of range.
        """
        index = self.view.index_tuple(index)
        emb = self.store.get(index)
        if emb is not self._embedding or index != self.index:
            self._embedding, self.index = emb, index
            self._activate(force=True)

    def _activate(self, force: bool = False) -> None:
        """Give the (possibly shared) SAMPredictor this predictor's current embedding."""
        if force or self.predictor.embedding is not self._tensor:
            self.predictor.set_embedding(self._embedding, self.view.slice_shape)
            self._tensor = self.predictor.embedding

    def release_slice(self) -> None:
        """Forget the current slice (the next prompts need :meth:`set_slice` again).

        Call it after giving the shared :attr:`predictor` other embeddings directly (as
        :func:`~napari_sam.segment.driver.segment_stack` does), so that this predictor never
        takes the predictor's embedding for its own.
        """
        self.index = self._embedding = self._tensor = None

    def __call__(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        masks: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ):
        """Masks for prompts on the current slice (see :meth:`set_slice`).

        Parameters and results are exactly those of :meth:`SAMPredictor.__call__
        <napari_sam.SAMPredictor.__call__>`, in the slice's pixel coordinates
        (``Y``, ``X`` of the stack).

        Raises
        ------
        RuntimeError
            If no slice was set.
        """
        if self.index is None:
            raise RuntimeError("StackPredictor: call set_slice(index) or predict(index, ...) first")
        self._activate()
        out = self.predictor(points, labels, boxes, masks, multimask_output, return_logits)
        if self.outline is None or return_logits:
            return out
        masks, scores, logits = out
        window = self.window(0)
        box = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
        single = masks.ndim == 3
        objects = masks[None] if single else masks  # one object, or a batch
        clicks = _positive_points(points, labels, len(objects), single)
        image = self.outline_image(self.index, window)  # read once for every object
        decoded = (self._embedding, tuple(self.view.slice_shape))
        redrawn = np.stack([
            self.redraw(self.index, m, window, box[n] if n < len(box) else None, image,
                        clicks[n], decoded)
            for n, m in enumerate(objects)
        ])  # fmt: skip
        return (redrawn[0] if single else redrawn), scores, logits

    def predict(self, index, **prompts):
        """``set_slice(index)`` then ``self(**prompts)``: masks, scores, logits of that slice."""
        self.set_slice(index)
        return self(**prompts)

    def precompute(self, progress=None, cancel=None, batch_size: int = 1) -> PrecomputeResult:
        """Embed every slice not yet stored (see :meth:`EmbeddingStore.precompute
        <napari_sam.stacks.store.EmbeddingStore.precompute>`).

        Parameters
        ----------
        progress : callable, optional
            ``progress(done, total)``, e.g. a :class:`~napari_sam.stacks.store.TqdmProgress`.
        cancel : threading.Event or callable, optional
            Checked between batches; stops early when set.
        batch_size : int
            Slices per encoder call.

        Returns
        -------
        PrecomputeResult
            Numbers of slices computed and reused.
        """
        self.encoder.batch_size = max(1, int(batch_size))
        return self.store.precompute(batch_size=batch_size, progress=progress, cancel=cancel)

    def invalidate(self, index=None) -> None:
        """Forget in-memory embeddings (all, or one slice), e.g. after editing data in place.

        The next use re-reads the slice and checks its content against the stored record.
        """
        self.store.invalidate(index)
        self.forget_guides(index)
        if index is None or (self.index is not None and self.view.index_tuple(index) == self.index):
            self.release_slice()

    def __repr__(self) -> str:
        return (
            f"StackPredictor({self.view!r}, model={self.model.cfg.name!r}, "
            f"channels={self.channels.signature()!r}, store={self.store.path})"
        )
