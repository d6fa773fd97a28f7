"""The widget's "Segment everything": worker bodies and the linked write (no napari, no Qt).

A worker segments slices automatically with :func:`segment_slices` (the model's instance
decoder, micro-sam's AIS, else Meta's grid-prompt generator); :func:`write_instances` writes
each slice's objects into the output labels on the Qt thread, giving an object the id of the
object it overlaps on a neighbouring slice, so that slice after slice builds 3-D objects
(the slice-by-slice counterpart of :func:`~napari_sam.segment.driver.segment_stack`'s linking).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

__all__ = ["min_object_area", "neighbour_indices", "segment_slices", "segmenter_for",
           "stack_indices", "write_instances"]  # fmt: skip

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


def segmenter_for(sp):
    """The automatic segmenter of ``sp``'s model (:func:`napari_sam.segment.factory.
    make_segmenter`): its instance decoder (micro-sam's models) with the model's watershed
    settings, else Meta's grid-prompt generator with the model's thresholds."""
    from ..segment import factory

    return factory.make_segmenter(sp.model, sp.predictor)


class Cancelled(Exception):
    """Cancel was pressed while a slice was being segmented."""


def _segment(sp, index, segmenter, progress=None) -> np.ndarray:
    from ..segment.driver import segment_slice

    try:
        return segment_slice(sp, tuple(index), segmenter, progress)
    finally:
        sp.release_slice()  # the shared predictor was given the slice's embedding directly


def _segment_in_helper(sp, index, segmenter, cancel, every: float):
    """Segment one slice in a helper thread (a generator): yield ``("progress", done,
    total)`` at most every ``every`` seconds (tiles, or batches of grid prompts), return the
    labels, or None once ``cancel()`` stopped it between two steps."""
    from ._tiles import in_helper_thread

    def run(progress):
        def checked(done, total):
            if cancel is not None and cancel():
                raise Cancelled
            progress(done, total)

        try:
            return _segment(sp, index, segmenter, checked)
        except Cancelled:
            return None

    relay = in_helper_thread(run, every, "napari-sam-segment")
    while True:
        try:
            done, total = next(relay)
        except StopIteration as stop:
            return stop.value
        yield ("progress", done, total)


def segment_slices(session, indices: Sequence, cancel: Callable[[], bool] | None = None,
                   every: float = 0.2) -> Iterator[tuple]:  # fmt: skip
    """A worker's body: segment slices one by one (a generator).

    Each slice is segmented in a helper thread whose steps (tiles, or batches of grid
    prompts) are passed on, and ``cancel()`` is asked after each: a long slice stops within
    one step.

    Yields
    ------
    ("progress", done, total) or (index, labels)
        The steps of the slice in progress (at most every ``every`` seconds); each slice and
        the uint32 labels of its objects (numbered from 1 on each slice).

    Returns
    -------
    int
        Number of slices segmented (fewer than ``len(indices)`` if ``cancel()`` became true).
    """
    segmenter = segmenter_for(session.sp)
    for n, index in enumerate(indices):
        if cancel is not None and cancel():
            return n
        labels = yield from _segment_in_helper(session.sp, index, segmenter, cancel, every)
        if labels is None:
            return n
        yield tuple(index), labels
    return len(indices)


def stack_indices(shape: Sequence[int], n_slice_dims: int, axis: int = 0, limits=None) -> list:
    """The slices of labels of ``shape`` (``n_slice_dims`` slice axes, then Y, X) whose
    position along slice axis ``axis`` is in the inclusive range ``limits``, in order (each
    slice after its neighbour before it along any axis). No slice axis: ``[()]``."""
    if n_slice_dims == 0:
        return [()]
    axis = min(axis, n_slice_dims - 1)
    lo, hi = limits if limits is not None else (0, shape[axis] - 1)
    return [i for i in np.ndindex(*shape[:n_slice_dims]) if lo <= i[axis] <= hi]


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
    from ..segment.linking import match_neighbours

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
