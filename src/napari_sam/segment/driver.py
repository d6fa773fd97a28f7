"""The stack driver: automatic segmentation of every slice of a stack, linked in 3-D.

Each slice's stored embedding (from a :class:`~napari_sam.stacks.stack_predictor.StackPredictor`)
goes to an :class:`~napari_sam.segment.automatic.AutomaticMaskGenerator`; the per-slice label
images are linked across slices by :mod:`napari_sam.segment.linking`.
"""

from __future__ import annotations

import numpy as np

from .automatic import AutomaticMaskGenerator, to_label_image
from .linking import drop_short_objects, link_slices, offset_ids
from .tiled import segment_tiled

__all__ = ["segment_slice", "segment_stack"]


def segment_slice(sp, index, generator, tile_progress=None, tiles=None) -> np.ndarray:
    """uint32 labels of every object of slice ``index`` of ``sp`` (a
    :class:`~napari_sam.stacks.contract.SlicePredictor`) with ``generator`` (an
    AutomaticMaskGenerator or an InstanceSegmenter); ``tile_progress(done, total)`` after each
    tile of a tiled slice (an untiled one: after each batch of grid prompts); ``tiles``: its
    tiles' results kept between runs (see :func:`~napari_sam.segment.tiled.segment_tiled`)."""
    if not isinstance(generator, AutomaticMaskGenerator):  # InstanceSegmenter (AIS)
        return generator.segment_slice(sp, index, progress=tile_progress)
    if sp.tiling is not None:  # grid prompts tile by tile, objects whole across borders
        return segment_tiled(sp, index, generator, progress=tile_progress, tiles=tiles)
    emb = sp.get_embedding(index)
    image = sp.store.prepare(sp.view.get_slice(index))
    records = generator.generate(image, embedding=emb, progress=tile_progress)
    return to_label_image(records, sp.view.slice_shape)


def segment_stack(stack_predictor, generator=None, link_3d: bool = True,
                  min_overlap: float = 0.3, metric: str = "iou", link_axis: str | None = None,
                  progress=None, cache=None, max_gap: int = 1, min_slices: int = 1,
                  tile_progress=None,
                  **generator_kwargs) -> np.ndarray:  # fmt: skip
    """Automatic segmentation of every slice of a stack, optionally linked into 3-D objects.

    Parameters
    ----------
    stack_predictor : StackPredictor or TiledPredictor
        The stack and its stored embeddings (each slice's embedding is reused; crops, if any,
        are encoded from the normalised slice). A :class:`~napari_sam.stacks.tiled_predictor.
        TiledPredictor` segments each slice tile by tile (:func:`~napari_sam.segment.tiled.
        segment_tiled`), objects whole across tile borders.
    generator : AutomaticMaskGenerator or InstanceSegmenter, optional
        Default: an AutomaticMaskGenerator sharing ``stack_predictor.predictor``, made with
        ``generator_kwargs``. An :class:`~napari_sam.segment.ais.InstanceSegmenter` segments
        each slice with its instance decoder (tiles: maps stitched, one watershed).
    link_3d : bool
        Link objects of neighbouring slices along ``link_axis`` (see
        :func:`~napari_sam.segment.linking.link_slices`); otherwise every object of every
        slice gets its own id.
    min_overlap, metric, max_gap
        Matching of objects between slices (see :func:`~napari_sam.segment.linking.match_labels`
        and :func:`~napari_sam.segment.linking.link_slices`).
    min_slices : int
        With ``link_3d``: drop linked objects present in fewer slices (isolated detections
        in a z-stack are mostly spurious; 1 keeps everything).
    link_axis : str, optional
        Slice axis to link along; default ``Z`` if present, else the last slice axis.
    progress : callable, optional
        ``progress(done, total)`` after each slice.
    tile_progress : callable, optional
        ``tile_progress(done, total)`` after each tile of a tiled slice.
    cache : object, optional
        Per-slice results kept between runs (e.g.
        :class:`napari_sam.segment.partial.PartialResults`):
        ``cache.get(n)`` returns the 2-D label image of slice ``n`` (its position in
        ``view.slice_indices``) computed earlier, or None; ``cache.put(n, labels)`` is called
        with each slice computed here, before linking. Slices it has are not computed again;
        ``cache.tiles_of(n)`` keeps the tiles of a tiled slice not finished (grid prompts).

    Returns
    -------
    ndarray
        ``uint32`` labels of shape ``stack_shape + (Y, X)`` (slice axes in the view's order).
    """
    sp = stack_predictor
    if generator is None:
        generator = AutomaticMaskGenerator(sp.predictor, **generator_kwargs)
    view = sp.view
    out = np.zeros((*view.stack_shape, *view.slice_shape), np.uint32)
    total = len(view)
    for n, index in enumerate(view.slice_indices):
        done = None if cache is None else cache.get(n)
        if done is None:
            tiles = None if cache is None else cache.tiles_of(n)
            out[index] = segment_slice(sp, index, generator, tile_progress, tiles)
            if cache is not None:
                cache.put(n, out[index])
        else:
            out[index] = done
        if progress is not None:
            progress(n + 1, total)
    sp.release_slice()  # the shared predictor was given the slices' embeddings directly
    axes = view.slice_axes
    if not link_3d or not axes:
        return offset_ids(out) if axes else out
    axis = link_axis or ("Z" if "Z" in axes else axes[-1])
    if axis not in axes:
        raise ValueError(f"link_axis: {axis!r} is not a slice axis of {axes!r}")
    k = axes.index(axis)
    moved = np.moveaxis(out, k, -3)  # (..., L, Y, X)
    linked = np.zeros(moved.shape, np.uint32)
    base = 0
    for idx in np.ndindex(*moved.shape[:-3]):
        part = drop_short_objects(link_slices(moved[idx], min_overlap, metric, max_gap), min_slices)
        linked[idx] = np.where(part > 0, part + base, 0)
        base += int(part.max(initial=0))
    return np.ascontiguousarray(np.moveaxis(linked, -3, k))
