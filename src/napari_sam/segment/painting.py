"""Writing objects into a label image as the napari widget commits them: one assignment per
commit, other labels kept unless asked, a refined object replaced. ``napari-sam segment``
replays a widget's record with the same function, so both give the same labels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["write_objects"]


def write_objects(labels, index, masks, ids, overwrite: bool, clear_id: int | None = None,
                  setitem: Callable | None = None, window=None) -> int:  # fmt: skip
    """Write 2-D ``masks`` of slice ``index`` of ``labels`` with ``ids`` in one assignment.

    Pixels that already hold another label are kept unless ``overwrite``; ``clear_id`` (a
    refined object) is removed from the slice where its new mask does not reach.

    Parameters
    ----------
    labels : array-like
        The labels (e.g. a Labels layer's ``data``); read, and written unless ``setitem``.
    index : tuple of int
        The slice, over the leading (slice) axes.
    masks, ids : sequence
        Boolean (H, W) masks and their label values.
    overwrite : bool
        Overwrite pixels of other labels.
    clear_id : int, optional
        Label replaced by the (single) mask.
    setitem : callable, optional
        ``setitem(key, values)`` doing the write (a Labels layer's ``data_setitem``, which
        makes it one undo step); default ``labels[key] = values``.
    window : tuple of int, optional
        ``(y0, y1, x0, x1)``: the masks cover only that part of the slice, and only it is
        read and written (``clear_id`` is then removed within the window only).

    Returns
    -------
    int
        Number of pixels written.
    """
    y0, y1, x0, x1 = window if window is not None else (0, None, 0, None)
    plane = np.asarray(labels[(*tuple(index), slice(y0, y1), slice(x0, x1))])
    value = np.zeros(plane.shape, plane.dtype)
    claimed = np.zeros(plane.shape, bool)
    for mask, i in zip(masks, ids, strict=True):
        free = mask & ~claimed & ((plane == 0) | (plane == i) | overwrite)
        if clear_id is not None:
            free |= mask & ~claimed & (plane == clear_id)
        value[free] = i
        claimed |= free
    change = claimed | ((plane == clear_id) if clear_id is not None else False)
    rows, cols = np.nonzero(change)
    if not len(rows):
        return 0
    full = tuple(np.full(len(rows), i) for i in index) + (rows + y0, cols + x0)
    if setitem is None:
        labels[full] = value[rows, cols]
    else:
        setitem(full, value[rows, cols])
    return len(rows)
