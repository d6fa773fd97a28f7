"""Following one object through a stack, slice after slice, on any
:class:`~napari_sam.stacks.contract.SlicePredictor` (tiled or not): the core of the widget's
"Propagate", usable from scripts and notebooks.

A *window* is ``(y0, y1, x0, x1)`` in slice pixels; a windowed mask covers only that part of
the slice (a tiled predictor decodes one object on one window, so a 16384 x 16384 slice never
needs a full-size array per step). ``None`` for a window means the whole slice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ..masks import bounding_box, iou, mask_to_box, object_centre

__all__ = ["crop_to_object", "full_window", "place", "placed_iou", "propagate",
           "propagation_prompts", "refine_prompts", "slice_window",
           "union_window"]  # fmt: skip


def full_window(mask: np.ndarray, window) -> tuple[int, int, int, int]:
    """``window``, or the whole of ``mask`` when ``window`` is None."""
    return tuple(window) if window is not None else (0, mask.shape[-2], 0, mask.shape[-1])


def slice_window(window, slice_shape):
    """``window`` as a tuple, or None where it is the whole slice of ``slice_shape``."""
    h, w = slice_shape
    return None if tuple(window) == (0, h, 0, w) else tuple(window)


def union_window(windows) -> tuple[int, int, int, int]:
    """The smallest window holding every one of ``windows``."""
    ws = np.asarray(list(windows)).reshape(-1, 4)
    return int(ws[:, 0].min()), int(ws[:, 1].max()), int(ws[:, 2].min()), int(ws[:, 3].max())


def place(mask: np.ndarray, window, into) -> np.ndarray:
    """``mask`` (covering ``window``) within the larger window ``into``, zero elsewhere."""
    y0, y1, x0, x1 = full_window(mask, window)
    Y0, Y1, X0, X1 = into
    out = np.zeros((*mask.shape[:-2], Y1 - Y0, X1 - X0), mask.dtype)
    out[..., y0 - Y0 : y1 - Y0, x0 - X0 : x1 - X0] = mask
    return out


def placed_iou(a: np.ndarray, wa, b: np.ndarray, wb) -> float:
    """The IoU of two windowed masks (each in its own window)."""
    if wa is None and wb is None:
        return iou(a, b)
    u = union_window([full_window(a, wa), full_window(b, wb)])
    return iou(place(a, wa, u), place(b, wb, u))


def crop_to_object(mask: np.ndarray):
    """``(mask cropped to its object's box, that window)``; an empty mask is returned whole
    with the window None."""
    if not mask.any():
        return mask, None
    x0, y0, x1, y1 = (int(v) for v in mask_to_box(mask))
    return mask[y0 : y1 + 1, x0 : x1 + 1], (y0, y1 + 1, x0, x1 + 1)


def propagation_prompts(mask: np.ndarray, window=None):
    """Prompts for the next slice from an object's mask on this one: ``(points, labels, box)``
    in slice pixels (``mask`` covers ``window``).

    The box of the mask plus a positive point deepest inside it. SAM decodes a mask prompt
    alone poorly (it is trained as a refinement input), while a box and a centre point track
    a slowly changing object well and let it shrink or grow.
    """
    x, y = object_centre(mask)
    points, box = np.array([[x, y]], np.float32), bounding_box(mask)
    if window is not None:
        off = np.array([window[2], window[0]], np.float32)  # x, y
        points, box = points + off, box + np.tile(off, 2)
    return points, np.ones(1, np.float32), box


def refine_prompts(sp, index, mask: np.ndarray, points=None, labels=None):
    """The prompts refining an object whose mask on slice ``index`` is ``mask``: its box, a
    point deepest inside, then ``points`` / ``labels`` (the user's clicks), and where ``sp``
    takes mask prompts (untiled) the mask itself as low-resolution logits. Used by the
    widget's Refine and by ``napari-sam segment`` replaying it, so both give the same mask.

    Returns
    -------
    points (M, 2), labels (M,), box (4,), mask_logits (1, H', W') or None
    """
    pts, lbl, box = propagation_prompts(mask)
    if points is not None and len(points):
        pts = np.concatenate([pts, np.asarray(points, np.float32).reshape(-1, 2)])
        lbl = np.concatenate([lbl, np.asarray(labels, np.float32).reshape(-1)])
    logits = None
    if sp.supports_mask_prompts:
        sp.set_slice(tuple(index))
        logits = sp.predictor.preprocess_masks(np.where(mask, 8.0, -8.0)[None])
    return pts, lbl, box, logits


def propagate(
    sp,
    index,
    mask: np.ndarray,
    axis: int = -1,
    stop_iou: float = 0.5,
    limits: tuple[int, int] | None = None,
    min_area: int = 4,
    cancel: Callable[[], bool] | None = None,
) -> Iterator[tuple[tuple[int, ...], np.ndarray, tuple | None]]:
    """Follow an object from slice ``index`` through its neighbours along one slice axis.

    Each slice is prompted with :func:`propagation_prompts` of the previous slice's mask;
    a direction stops when the new mask is smaller than ``min_area`` pixels, its IoU with
    the previous mask is below ``stop_iou``, the end of ``limits`` (inclusive) or of the
    stack is reached, or ``cancel()`` is true.

    Parameters
    ----------
    sp : SlicePredictor
        The stack's predictor (tiled or not).
    index : tuple of int
        The slice the object is on (over the slice axes).
    mask : ndarray
        ``(Y, X)`` bool: the object on that slice.

    Yields
    ------
    index, mask, window
        Slice index (tuple over the slice axes), the object's mask there and the window
        ``(y0, y1, x0, x1)`` it covers (``None``: the whole slice).
    """
    index = tuple(int(i) for i in index)
    axis = axis % len(index)
    size = sp.view.stack_shape[axis]
    lo, hi = limits if limits is not None else (0, size - 1)
    lo, hi = max(0, lo), min(size - 1, hi)
    first, first_window = crop_to_object(np.asarray(mask, bool))
    for step in (1, -1):
        prev, window, pos = first, first_window, index[axis] + step
        while lo <= pos <= hi and prev.sum() >= min_area:
            if cancel is not None and cancel():
                return
            here = index[:axis] + (pos,) + index[axis + 1 :]
            masks, scores, _, got = sp.predict_window(here, *propagation_prompts(prev, window),
                                                      multimask_output=False)  # fmt: skip
            new = masks[int(np.argmax(scores))]
            got = slice_window(got, sp.view.slice_shape)
            if new.sum() < min_area or placed_iou(new, got, prev, window) < stop_iou:
                break
            yield here, new, got
            prev, window, pos = new, got, pos + step
