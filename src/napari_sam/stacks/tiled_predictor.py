"""``TiledPredictor``: prompts on images larger than the model input, at native resolution.

Each slice is covered by the overlapping windows of a :class:`~napari_sam.stacks.tiling.Tiling`;
each window's embedding is stored (a record per tile per slice in the
:class:`~napari_sam.stacks.store.EmbeddingStore`, keyed by the tiling). The normalisation is
fitted once on the whole stack, never per tile. A prompt set is decoded on the window that holds
it farthest from its inner edges; when no window holds it, or the mask reaches an edge of the
window inside the image (the object is larger than the window allows), it is decoded again on a
window centred on the prompts and the mask, embedded on demand (and larger, at a coarser scale,
if needed). Masks come back in the slice's pixels: prompts may lie anywhere.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from ..masks import bounding_box
from ..predict.prompts import batch_prompts
from .contract import SlicePredictor
from .normalize import Normalization
from .stack_predictor import StackPredictor
from .store import MEMORY_BUDGET
from .tiling import TileView, Tiling, read_window
from .view import StackView

__all__ = ["TiledPredictor"]

_EDGE = 2  # a mask within this many pixels of a window edge inside the image is cut there


class TiledPredictor(SlicePredictor):
    """Predict masks from prompts anywhere on a large slice, from stored tile embeddings.

    The interface is :class:`~napari_sam.stacks.stack_predictor.StackPredictor`'s
    (``predict``, ``set_slice``/``__call__``, ``precompute``, ``invalidate``); masks are
    ``(…, Y, X)`` of the whole slice. :meth:`predict_window` gives one object's masks within the
    window it was decoded on, without full-size arrays.

    Parameters
    ----------
    model : SegmentAnythingModel
        The model.
    view : StackView or array-like or path
        The stack; anything else is wrapped as ``StackView(view, axes)``.
    tiling : Tiling
        The windows of a slice (see :func:`~napari_sam.stacks.tiling.plan_tiling`).
    channels, store, memory_budget, overwrite, axes, encoder
        As for :class:`~napari_sam.stacks.stack_predictor.StackPredictor`; the store holds one
        embedding per tile per slice.
    normalization : Normalization or FittedNormalization, optional
        Fitted on the whole stack (never per tile); default ``"auto"``.
    window_cache : int
        On-demand window embeddings kept in memory.
    """

    supports_mask_prompts = False
    embeds_per_prompt = True

    def __init__(
        self,
        model,
        view,
        tiling: Tiling,
        channels=None,
        normalization=None,
        store=None,
        memory_budget: int = MEMORY_BUDGET,
        overwrite: bool = False,
        axes: str | None = None,
        encoder=None,
        window_cache: int = 8,
    ):
        self.view = view if isinstance(view, StackView) else StackView(view, axes)
        if tuple(tiling.image_shape) != tuple(self.view.slice_shape):
            raise ValueError(
                f"tiling: made for slices of {tiling.image_shape}, the stack's are "
                f"{self.view.slice_shape}"
            )
        norm = normalization or Normalization()
        if isinstance(norm, Normalization):
            norm = norm.fit(self.view)  # the whole stack, once
        self.tiling = tiling
        self.tiles = TileView(self.view, tiling, pad_value=norm.pad_value)
        self._tiles = StackPredictor(
            model, self.tiles, channels, norm, store=store, memory_budget=memory_budget,
            overwrite=overwrite, encoder=encoder,
        )  # fmt: skip
        self.model, self.encoder = model, self._tiles.encoder
        self.predictor, self.store = self._tiles.predictor, self._tiles.store
        self._mask_size = model.mask_size(tuple(model.cfg.input_size))
        self.window_cache = int(window_cache)
        self._windows: OrderedDict = OrderedDict()
        self.index: tuple[int, ...] | None = None
        self.on_demand = 0  # windows embedded on demand so far

    @property
    def channels(self):
        """The resolved channel mapping."""
        return self._tiles.channels

    @property
    def normalization(self):
        """The normalisation fitted on the whole stack."""
        return self._tiles.normalization

    def __len__(self) -> int:
        return len(self.view)

    def tile_embedding(self, index, t: int) -> np.ndarray:
        """The stored (or now computed) embedding of window ``t`` of slice ``index``."""
        return self._tiles.get_embedding(self.tiles.flat(index, t))

    def tile_ready(self, index, t: int) -> bool:
        """Whether window ``t`` of slice ``index`` has its embedding in memory."""
        return self.store.in_memory(self.tiles.flat(index, t))

    def ready_tiles(self, index) -> np.ndarray:
        """``(n_tiles,)`` bool: which windows of slice ``index`` have an embedding in memory
        or recorded in the store (for showing which tiles are ready)."""
        first = self.tiles.flat(index, 0)
        have = np.fromiter(self.store.available(), np.int64)
        have = have[(have >= first) & (have < first + len(self.tiling))] - first
        out = np.zeros(len(self.tiling), bool)
        out[have] = True
        return out

    def warm_up(self) -> None:
        """Trace the encoder and both decoder graphs once (on tile 0 of the first slice), so
        that the first click costs one tile's embedding only."""
        point = np.array([[1.0, 1.0]], np.float32)
        for multimask in (True, False):
            self.predict_window((0,) * len(self.view.stack_shape), point,
                                np.ones(1, np.float32), None, multimask)  # fmt: skip

    def window_embedding(self, index, window) -> np.ndarray:
        """The embedding of any window ``(y0, y1, x0, x1)`` of a slice, embedded on demand."""
        key = (self.view.flat_index(index), tuple(int(v) for v in window))
        hit = self._windows.get(key)
        if hit is not None:
            self._windows.move_to_end(key)
            return hit
        image = read_window(self.view, index, window, self.tiles.pad_value)
        emb = self.encoder.encode(self.store.prepare(image)[None])[0]
        self.on_demand += 1
        self._windows[key] = emb
        while len(self._windows) > self.window_cache:
            self._windows.popitem(last=False)
        return emb

    def precompute(self, progress=None, cancel=None, batch_size: int = 1):
        """Embed every tile of every slice not yet stored (progress counts tiles)."""
        res = self._tiles.precompute(progress=progress, cancel=cancel, batch_size=batch_size)
        res.unit = "tile"
        return res

    def invalidate(self, index=None) -> None:
        """Forget in-memory embeddings (all slices, or one), e.g. after editing the data."""
        if index is None:
            self._tiles.invalidate()
        else:
            for t in range(len(self.tiling)):
                self._tiles.invalidate(self.tiles.flat(index, t))
        self._windows.clear()
        self.forget_guides(index)

    def release_slice(self) -> None:
        """Forget the current slice (see :meth:`StackPredictor.release_slice
        <napari_sam.stacks.stack_predictor.StackPredictor.release_slice>`)."""
        self.index = None
        self._tiles.release_slice()

    def set_slice(self, index) -> None:
        """Make slice ``index`` the one :meth:`__call__` prompts refer to."""
        self.index = self.view.index_tuple(index)

    def predict(self, index, **prompts):
        """``set_slice(index)`` then ``self(**prompts)``."""
        self.set_slice(index)
        return self(**prompts)

    def _centred(self, box, scale: float = 1.0) -> tuple[int, int, int, int]:
        """A window of (at least) the tile's shape centred on ``box``, inside the image."""
        (h, w), (th, tw), (hy, hx) = self.view.slice_shape, self.tiling.tile, self.tiling.halo
        bx0, by0, bx1, by1 = box
        k = max(1.0, scale, (by1 - by0 + 2 * hy) / th, (bx1 - bx0 + 2 * hx) / tw)
        sy, sx = math.ceil(th * k), math.ceil(tw * k)

        def start(lo, hi, size, length):
            s = round((lo + hi) / 2 - size / 2)
            return 0 if size >= length else min(max(s, 0), length - size)

        y0, x0 = start(by0, by1, sy, h), start(bx0, bx1, sx, w)
        return y0, y0 + sy, x0, x0 + sx

    def _cut(self, mask: np.ndarray, window) -> bool:
        """Whether ``mask`` (in window pixels) reaches a window edge inside the image."""
        y0, y1, x0, x1 = window
        h, w = self.view.slice_shape
        e = _EDGE
        return bool(
            (y0 > 0 and mask[:e].any())
            or (x0 > 0 and mask[:, :e].any())
            or (y1 < h and mask[-e:].any())
            or (x1 < w and mask[:, -e:].any())
        )

    def _decode(self, emb, window, pts, lbl, box, multimask_output, return_logits):
        y0, y1, x0, x1 = window
        self.predictor.set_embedding(emb, (y1 - y0, x1 - x0))
        off = np.array([x0, y0], np.float32)
        out = self.predictor(
            points=None if pts is None else (pts - off)[None],
            labels=None if lbl is None else lbl[None],
            boxes=None if box is None else (box - np.tile(off, 2))[None],
            multimask_output=multimask_output, return_logits=return_logits,
        )  # fmt: skip
        return tuple(a[0] for a in out)

    def predict_window(
        self, index, points=None, labels=None, boxes=None, multimask_output=True,
        return_logits=False, masks=None,
    ):  # fmt: skip
        """One object's masks, scores, logits and window (see
        :meth:`SlicePredictor.predict_window
        <napari_sam.stacks.contract.SlicePredictor.predict_window>`): decoded on the tile that
        holds the prompts farthest from its inner edges, else on a window centred on them, and
        again on a larger one while the mask reaches a window edge inside the image. Mask
        prompts are refused (``supports_mask_prompts`` is False)."""
        if masks is not None:
            raise ValueError("masks: mask prompts are not supported on a tiled image")
        pts = None if points is None else np.asarray(points, np.float32).reshape(-1, 2)
        lbl = None if labels is None else np.asarray(labels, np.float32).reshape(-1)
        box = None if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)[:1]
        batch_prompts(pts, lbl, box, None, self.view.slice_shape, self._mask_size)  # validates
        return self._predict_window(
            self.view.index_tuple(index), pts, lbl, box, multimask_output, return_logits
        )

    def _predict_window(self, index, pts, lbl, box, multimask_output, return_logits):
        """:meth:`predict_window` of checked prompts (``pts`` (M, 2) and ``lbl`` (M,), or
        None; ``box`` (1, 4) or None)."""
        corners = [a for a in (pts, None if box is None else box.reshape(-1, 2)) if a is not None]
        if not corners:
            raise ValueError("points, boxes: a tiled prediction needs a point or a box")
        xy = np.concatenate(corners)
        extent = (*xy.min(0), *xy.max(0))
        t, margin = self.tiling.best_tile(extent)
        if margin >= 0:
            window, emb = self.tiling.window(t), self.tile_embedding(index, t)
        else:
            window = self._centred(extent)
            emb = self.window_embedding(index, window)
        threshold = self.model.mask_threshold
        for attempt in range(3):
            masks, scores, logits = self._decode(
                emb, window, pts, lbl, box, multimask_output, return_logits
            )
            best = masks[int(np.argmax(scores))] if multimask_output else masks[0]
            best = best > threshold if return_logits else best
            if attempt == 2 or not self._cut(best, window):
                break
            y0, _, x0, _ = window
            if best.any():
                fx0, fy0, fx1, fy1 = bounding_box(best)  # in the window
                extent = (
                    min(extent[0], fx0 + x0), min(extent[1], fy0 + y0),
                    max(extent[2], fx1 + x0), max(extent[3], fy1 + y0),
                )  # fmt: skip
            wy0, wy1, wx0, wx1 = window
            grown = self._centred(extent, scale=((wy1 - wy0) / self.tiling.tile[0]) * 1.5)
            if grown == window:
                break
            window, emb = grown, self.window_embedding(index, grown)
        h, w = self.view.slice_shape
        y0, y1, x0, x1 = window
        decoded = (emb, (y1 - y0, x1 - x0))  # the size the window was decoded at
        y1, x1 = min(y1, h), min(x1, w)
        masks = masks[:, : y1 - y0, : x1 - x0]
        if not return_logits:
            clicks = None if pts is None else pts[lbl == 1]
            masks = self.redraw(index, masks, (y0, y1, x0, x1), None if box is None else box[0],
                                points=clicks, decoded=decoded)  # fmt: skip
        return masks, scores, logits, (y0, y1, x0, x1)

    def __call__(
        self, points=None, labels=None, boxes=None, masks=None, multimask_output=True,
        return_logits=False,
    ):  # fmt: skip
        """Masks for prompts on the current slice, as :meth:`StackPredictor.__call__
        <napari_sam.stacks.stack_predictor.StackPredictor.__call__>` but on a tiled slice.

        Mask prompts are not supported (they belong to one window).

        Raises
        ------
        RuntimeError
            If no slice was set.
        ValueError
            For bad prompts (as :class:`~napari_sam.SAMPredictor`), or mask prompts.
        """
        if self.index is None:
            raise RuntimeError("TiledPredictor: call set_slice(index) or predict(index, ...) first")
        size = self.view.slice_shape
        (pts, lbl, bxs, msk), squeeze = batch_prompts(
            points, labels, boxes, masks, size, self._mask_size
        )
        if msk.shape[1]:
            raise ValueError("masks: mask prompts are not supported on a tiled image")
        outs, scores, logits = [], [], []
        for n in range(len(pts)):
            m, s, lg, (y0, y1, x0, x1) = self._predict_window(
                self.index,
                pts[n] if pts.shape[1] else None, lbl[n] if pts.shape[1] else None,
                bxs[n] if bxs.shape[1] else None, multimask_output, return_logits,
            )  # fmt: skip
            fill = -1e4 if return_logits else False
            full = np.full((len(m), *size), fill, m.dtype)
            full[:, y0:y1, x0:x1] = m
            outs.append(full)
            scores.append(s)
            logits.append(lg)
        out, scores, logits = np.stack(outs), np.stack(scores), np.stack(logits)
        if squeeze:
            return out[0], scores[0], logits[0]
        return out, scores, logits

    def __repr__(self) -> str:
        return (
            f"TiledPredictor({self.view!r}, {self.tiling!r}, model={self.model.cfg.name!r}, "
            f"store={self.store.path})"
        )
