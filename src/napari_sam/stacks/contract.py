"""The contract every predictor of a stack keeps, tiled or not, and the one factory of them.

A slice is seen through *windows*: a tiled slice through the overlapping windows of its
:class:`~napari_sam.stacks.tiling.Tiling`, an untiled one through a single window, the whole
slice. Each window has an embedding and an *inner region*; the inner regions partition the
slice. Whoever segments, embeds or shows a stack (``segment/``, ``batch/``, the napari widget)
uses :class:`SlicePredictor` and never asks which kind it holds: ``windows``, ``window(t)``,
``inner(t)``, ``tile_embedding(index, t)``, ``ready_tiles(index)`` and ``predict_window`` mean
the same for both. :func:`napari_sam.stacks.factory.make_predictor` is the one place that
picks the kind.
"""

from __future__ import annotations

import abc
from collections import OrderedDict
from typing import Protocol

import numpy as np

__all__ = ["InstanceGuide", "SlicePredictor", "units_of"]

_GUIDES_KEPT = 8  # windows whose instance labels a predictor keeps (the last ones clicked)


class InstanceGuide(Protocol):
    """The objects a model's instance decoder finds in one window, by which a click's masks
    are confined (:attr:`SlicePredictor.guide`, :func:`~napari_sam.predict.outline.confine_masks`;
    :class:`napari_sam.segment.ais.DecoderGuide` is the one the apps use)."""

    def __call__(self, embedding: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """``shape`` uint32 labels (0: background) of the window of ``shape`` (its pixels,
        as decoded) that ``embedding`` is the embedding of."""


def units_of(tiling) -> tuple[str, int]:
    """What embedding a stack with ``tiling`` counts, and how many per slice: ``("slice", 1)``
    untiled (``tiling`` None), else ``("tile", len(tiling))``."""
    return ("slice", 1) if tiling is None else ("tile", len(tiling))


class SlicePredictor(abc.ABC):
    """What a predictor of a stack offers (see the module).

    Attributes
    ----------
    model : SegmentAnythingModel
        The model.
    view : StackView
        The stack.
    encoder : ModelEncoder
        Embeds slices or windows.
    predictor : SAMPredictor
        The decoder, given one embedding at a time.
    store : EmbeddingStore
        The embeddings, one record per window per slice.
    tiling : Tiling or None
        The windows of a slice; None: one window, the whole slice.
    outline : OutlineSettings or None
        How prompted masks are redrawn from the image (the model's registered settings, set by
        :func:`~napari_sam.stacks.factory.make_predictor`; see
        :mod:`napari_sam.predict.outline`); None: SAM's masks, unchanged.
    guide : InstanceGuide or None
        The model's instance decoder, where :attr:`outline` confines clicks by its objects
        (``outline.instances``; set by the factory); None: not confined.
    """

    tiling = None
    outline = None
    guide = None
    _guided = None  # OrderedDict (slice, window) -> labels, made on first use
    #: Whether :meth:`predict_window` takes low-resolution mask logits as a prompt (a tiled
    #: slice does not: the logits belong to one window).
    supports_mask_prompts = True
    #: Whether the windows a prediction needs follow from its prompts (a tiled slice: the
    #: tiles under them, embedded as the prompts come), rather than being the whole slice,
    #: embedded before any prompt (then decoding an embedded slice reads nothing: quick
    #: enough for a GUI thread).
    embeds_per_prompt = False

    @property
    def unit(self) -> str:
        """``"slice"`` or ``"tile"``: what :meth:`precompute` counts."""
        return units_of(self.tiling)[0]

    @property
    def windows(self) -> int:
        """Windows per slice (1 untiled)."""
        return units_of(self.tiling)[1]

    @property
    def window_shape(self) -> tuple[int, int]:
        """``(h, w)`` of every window (the tile, or the whole slice)."""
        return tuple(self.view.slice_shape) if self.tiling is None else tuple(self.tiling.tile)

    def window(self, t: int) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of window ``t`` in slice pixels (may reach past a small slice)."""
        if self.tiling is not None:
            return self.tiling.window(t)
        self._check_window(t)
        h, w = self.view.slice_shape
        return 0, h, 0, w

    def inner(self, t: int) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of the part of the slice window ``t`` owns."""
        if self.tiling is not None:
            return self.tiling.inner(t)
        return self.window(t)

    @property
    @abc.abstractmethod
    def channels(self):
        """The resolved :class:`~napari_sam.stacks.channels.ChannelSpec`."""

    @property
    @abc.abstractmethod
    def normalization(self):
        """The :class:`~napari_sam.stacks.normalize.FittedNormalization` of the stack."""

    def outline_image(self, index, window) -> np.ndarray:
        """``(y1 - y0, x1 - x0)`` float32: the part ``window`` (clipped to the slice) of slice
        ``index`` as the model reads it (normalised, its channels mapped), averaged over
        channels: what :attr:`outline` redraws masks from."""
        y0, y1, x0, x1 = window
        region = self.view.get_region(index, slice(y0, y1), slice(x0, x1))
        return self.channels.apply(self.normalization.apply(region)).mean(-1)

    def redraw(self, index, masks: np.ndarray, window, box=None, image=None, points=None,
               decoded=None) -> np.ndarray:  # fmt: skip
        """``masks`` ``(K, y1 - y0, x1 - x0)`` bool of ``window`` redrawn as :attr:`outline`
        says (unchanged where it is None); ``box`` (x0, y0, x1, y1) in slice pixels;
        ``image``: :meth:`outline_image` of the window, when the caller has it already.

        A click without a box (``points``: its positive points (M, 2), x, y in slice pixels)
        is confined by the objects :attr:`guide` finds (:meth:`clicked_objects`,
        :func:`~napari_sam.predict.outline.confine_masks`), where :attr:`outline` says so
        (``instances``) and every positive point is on one; ``decoded``: the embedding that
        decoded the masks and the ``(h, w)`` it decoded them at.
        """
        if self.outline is None or not masks.size:
            return masks
        from ..predict.outline import confine_masks, redraw_masks

        y0, _, x0, _ = window
        if box is not None:
            box = np.asarray(box, np.float32).reshape(4) - np.array([x0, y0, x0, y0], np.float32)
        image = self.outline_image(index, window) if image is None else image
        out = redraw_masks(image, masks, self.outline, box)
        if box is None and points is not None and decoded is not None:
            found = self.clicked_objects(index, window, decoded, points, masks.shape[-2:])
            if found is not None:
                out = confine_masks(image, out, *found, self.outline)
        return out

    def clicked_objects(self, index, window, decoded, points, size):
        """The objects :attr:`guide` finds in ``window`` (y0, y1, x0, x1) of slice
        ``index``, from ``decoded`` (its embedding and the ``(h, w)`` it is decoded at):
        ``(labels, ids)``, the window's labels cut to ``size`` (kept for the last few windows)
        and the ids under ``points`` ((M, 2) x, y in slice pixels); None where clicks are not
        confined, or a point is on none."""
        points = np.asarray(points, np.float32).reshape(-1, 2)
        if self.guide is None or not self.outline.instances or not len(points):
            return None
        y0, _, x0, _ = window
        embedding, decoded_size = decoded
        key = (self.view.index_tuple(index), (y0, x0, *decoded_size))
        if self._guided is None:
            self._guided = OrderedDict()
        cache = self._guided
        if key not in cache:
            labels = self.guide(embedding, tuple(decoded_size))
            cache[key] = labels[: size[0], : size[1]]
            while len(cache) > _GUIDES_KEPT:
                cache.popitem(last=False)
        cache.move_to_end(key)
        labels = cache[key]
        h, w = labels.shape
        rows = np.clip(np.round(points[:, 1] - y0).astype(int), 0, h - 1)
        cols = np.clip(np.round(points[:, 0] - x0).astype(int), 0, w - 1)
        ids = labels[rows, cols]
        if not ids.all():
            return None
        return labels, np.unique(ids)

    def forget_guides(self, index=None) -> None:
        """Forget the instance labels kept for :meth:`clicked_objects` (all, or a slice's)."""
        cache = self._guided
        if not cache:
            return
        if index is None:
            cache.clear()
            return
        index = self.view.index_tuple(index)
        for key in [k for k in cache if k[0] == index]:
            del cache[key]

    def best_candidate(self, masks: np.ndarray, scores: np.ndarray) -> int:
        """Which of a click's candidate ``masks`` (K, h, w) the apps take: the highest
        predicted IoU, or as :attr:`outline` prefers (its ``min_solidity``: see
        :func:`~napari_sam.predict.outline.preferred_candidate`)."""
        if self.outline is None:
            return int(np.argmax(scores))
        from ..predict.outline import preferred_candidate

        return preferred_candidate(masks, scores, self.outline.min_solidity)

    def _check_window(self, t: int) -> None:
        if not 0 <= int(t) < self.windows:
            raise IndexError(f"window {t} of {self.windows}")

    def __len__(self) -> int:
        return len(self.view)

    def has_embedding(self, index) -> bool:
        """Whether every window of slice ``index`` has an embedding ready: in memory when
        decoding the slice must read nothing (untiled), else in memory or in the store."""
        return bool(self.ready_tiles(index).all())

    def warm_up(self) -> None:  # noqa: B027 (optional: a kind with nothing to trace keeps it)
        """Trace what the first prediction would otherwise trace (nothing by default)."""

    @abc.abstractmethod
    def tile_embedding(self, index, t: int) -> np.ndarray:
        """The embedding of window ``t`` of slice ``index`` (stored, or computed now)."""

    @abc.abstractmethod
    def ready_tiles(self, index) -> np.ndarray:
        """``(windows,)`` bool: which windows of slice ``index`` have an embedding in memory
        or recorded in the store."""

    @abc.abstractmethod
    def predict_window(self, index, points=None, labels=None, boxes=None,
                       multimask_output: bool = True, return_logits: bool = False,
                       masks=None):  # fmt: skip
        """Masks of one object within the window they were decoded on.

        Parameters
        ----------
        index : int or tuple of int
            The slice.
        points : ndarray, optional
            ``(M, 2)`` points (x, y) in slice pixels.
        labels : ndarray, optional
            ``(M,)`` 1 foreground, 0 background.
        boxes : ndarray, optional
            ``(4,)`` or ``(1, 4)`` box (x0, y0, x1, y1) in slice pixels.
        multimask_output, return_logits
            As for :meth:`SAMPredictor.__call__ <napari_sam.SAMPredictor.__call__>`.
        masks : ndarray, optional
            ``(1, H', W')`` low-resolution logits of the object, where
            :attr:`supports_mask_prompts`.

        Returns
        -------
        masks : ndarray
            ``(K, y1 - y0, x1 - x0)`` masks (or logits) of the window part inside the slice.
        scores : ndarray
            ``(K,)`` predicted IoU.
        logits : ndarray
            ``(K, H', W')`` low-resolution logits of the window.
        window : tuple of int
            ``(y0, y1, x0, x1)`` in slice pixels (clipped to the slice; the whole slice when
            it is not tiled).
        """

    @abc.abstractmethod
    def predict(self, index, **prompts):
        """Masks, scores, logits of prompts on slice ``index`` (``(…, Y, X)`` of the slice)."""

    @abc.abstractmethod
    def set_slice(self, index) -> None:
        """Make slice ``index`` the one ``__call__``'s prompts refer to."""

    @abc.abstractmethod
    def release_slice(self) -> None:
        """Forget the current slice (after the shared predictor was given other embeddings)."""

    @abc.abstractmethod
    def precompute(self, progress=None, cancel=None, batch_size: int = 1):
        """Embed every window of every slice not yet stored; a ``PrecomputeResult``."""

    @abc.abstractmethod
    def invalidate(self, index=None) -> None:
        """Forget in-memory embeddings (all slices, or one)."""
