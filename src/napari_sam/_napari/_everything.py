"""The widget's "Segment everything": its worker bodies and slice order (no napari, no Qt).

A worker segments slices automatically with :func:`segment_slices` (the model's instance
decoder, micro-sam's AIS, else Meta's grid-prompt generator);
:func:`napari_sam.segment.instances.write_instances` writes each slice's objects into the
output labels on the Qt thread, giving an object the id of the object it overlaps on a
neighbouring slice, so that slice after slice builds 3-D objects (the slice-by-slice
counterpart of :func:`~napari_sam.segment.driver.segment_stack`'s linking).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

__all__ = ["segment_slices", "segmenter_for", "stack_indices"]


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
