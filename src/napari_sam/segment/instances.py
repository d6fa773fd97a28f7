"""Writing one slice's automatically found objects into a label image, as the napari
widget's "Segment everything" does and ``napari-sam segment`` replays it: an object takes the
id of the object it overlaps on a neighbouring slice (slice after slice builds 3-D objects),
slivers around kept objects are left out, one assignment per slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["DEFAULT_MIN_AREA", "min_object_area", "neighbour_indices", "write_instances"]

DEFAULT_MIN_AREA = 16  # pixels: the smallest object added for a model without an object size


def min_object_area(name: str) -> int:
    """The smallest object "Segment everything" adds for registered model ``name``: a quarter
    of the area of its typical object (a disc of its ``object_diameter``), else
    :data:`DEFAULT_MIN_AREA`."""
    import math

    from ..weights import list_models, model_entry

    diameter = model_entry(name).object_diameter if name in list_models() else None
    if diameter is None:
        return DEFAULT_MIN_AREA
    return int(math.pi * diameter**2 / 16)


def neighbour_indices(index, axis: int, shape: Sequence[int]) -> list[tuple]:
    """The slices before and after slice ``index`` along slice axis ``axis`` (clipped to
    the slice axes), those inside ``shape`` only: previous first."""
    index = tuple(int(i) for i in index)
    if not index:
        return []
    axis = min(axis, len(index) - 1)
    out = []
    for step in (-1, 1):
        k = index[axis] + step
        if 0 <= k < shape[axis]:
            out.append(index[:axis] + (k,) + index[axis + 1 :])
    return out


def write_instances(labels, index, instances, overwrite: bool, setitem=None, axis: int | None = 0,
                    min_overlap: float = 0.3, metric: str = "iou", min_area: int = 0,
                    max_covered: float = 0.5) -> list[int]:  # fmt: skip
    """Write a slice's ``instances`` into ``labels`` in one assignment, linked to the objects
    of the neighbouring slices.

    An instance takes the id of the object it matches on the slice before ``index`` along
    slice axis ``axis``, else on the slice after (one-to-one, see
    :func:`napari_sam.segment.linking.match_neighbours`); an id still on this slice after the
    write (a kept object) is never taken. The other instances get new ids after the largest
    label of ``labels``. Pixels of existing labels are kept unless ``overwrite``; then an
    instance of which more than ``max_covered`` lies over existing labels, or whose free part
    is smaller than ``min_area`` pixels, is left out (a rim around a committed object, not an
    object).

    Parameters
    ----------
    labels : array-like
        The labels (e.g. a Labels layer's ``data``): slice axes, then Y, X.
    index : tuple of int
        The slice, over the slice axes.
    instances : ndarray
        ``(Y, X)`` labels of the slice's objects (0 background), e.g. of :func:`segment_slices`.
    overwrite : bool
        Overwrite pixels of other labels.
    setitem : callable, optional
        ``setitem(key, values)`` doing the write (a Labels layer's ``data_setitem``: one undo
        step); default ``labels[key] = values``.
    axis : int, optional
        Slice axis to link along (clipped to the slice axes); ``None``: every instance gets
        a new id.
    min_overlap, metric
        Matching of an instance and an object, see
        :func:`napari_sam.segment.linking.match_labels`.
    min_area : int
        Without ``overwrite``: the smallest free part an instance needs to be written (e.g.
        :func:`min_object_area`).
    max_covered : float
        Without ``overwrite``: the largest share of an instance that may lie over existing
        labels.

    Returns
    -------
    list of int
        The ids written, sorted.

    Raises
    ------
    ValueError
        When a new id does not fit the dtype of ``labels`` (nothing is written).
    """
    from .linking import match_neighbours

    instances, index = np.asarray(instances), tuple(int(i) for i in index)
    plane = np.asarray(labels[index])
    inside = instances > 0
    write = inside & ((plane == 0) | overwrite)
    if not overwrite and inside.any():  # slivers: mostly covered, or too small once free
        ids, area = np.unique(instances[inside], return_counts=True)
        free = np.bincount(instances[write], minlength=int(ids[-1]) + 1)[ids]
        drop = ids[(free < min_area) | (free < (1 - max_covered) * area)]
        if len(drop):
            write &= ~np.isin(instances, drop)
    ids = np.unique(instances[write])
    if not len(ids):
        return []
    matches = {}
    if axis is not None and index:
        kept = np.unique(plane[~write])
        near = [np.asarray(labels[n]) for n in neighbour_indices(index, axis, labels.shape)]
        cur = np.where(np.isin(instances, ids), instances, 0)
        matches = match_neighbours(cur, near, min_overlap, metric, exclude=kept[kept > 0])
    new = [int(i) for i in ids if int(i) not in matches]
    first = int(np.max(labels)) + 1
    dtype = np.dtype(getattr(labels, "dtype", np.int32))
    if new and dtype.kind in "iu" and first + len(new) - 1 > np.iinfo(dtype).max:
        raise ValueError(
            f"output labels: label {first + len(new) - 1} does not fit the layer's {dtype} data; "
            "choose a Labels layer of a larger integer type"
        )
    lut = np.zeros(int(ids[-1]) + 1, np.int64)
    lut[list(matches)] = list(matches.values())
    lut[new] = np.arange(first, first + len(new))
    rows, cols = np.nonzero(write)
    values = lut[instances[rows, cols]].astype(plane.dtype)
    full = tuple(np.full(len(rows), i) for i in index) + (rows, cols)
    if setitem is None:
        labels[full] = values
    else:
        setitem(full, values)
    return sorted(int(v) for v in np.unique(values))
