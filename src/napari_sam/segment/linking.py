"""Automatic segmentation of stacks, slice by slice, with objects linked across slices in 3-D."""

from __future__ import annotations

import numpy as np

__all__ = ["drop_short_objects", "link_slices", "match_labels", "segment_stack"]


def match_labels(prev: np.ndarray, cur: np.ndarray, min_overlap: float = 0.3,
                 metric: str = "iou") -> dict[int, int]:  # fmt: skip
    """One-to-one matches ``{id in cur: id in prev}`` of two 2-D label images.

    Pairs are scored by ``metric``: ``"iou"`` (intersection over union) or ``"overlap"``
    (intersection over the smaller object), and matched greedily from the best score down;
    pairs scoring below ``min_overlap`` are not matched.
    """
    if metric not in ("iou", "overlap"):
        raise ValueError(f"metric: expected 'iou' or 'overlap', got {metric!r}")
    prev, cur = np.asarray(prev).ravel(), np.asarray(cur).ravel()
    both = (prev > 0) & (cur > 0)
    if not both.any():
        return {}
    pairs, inter = np.unique(np.stack([cur[both], prev[both]]), axis=1, return_counts=True)
    ids_c, area_c = np.unique(cur[cur > 0], return_counts=True)
    ids_p, area_p = np.unique(prev[prev > 0], return_counts=True)
    ac = area_c[np.searchsorted(ids_c, pairs[0])]
    ap = area_p[np.searchsorted(ids_p, pairs[1])]
    if metric == "iou":
        score = inter / (ac + ap - inter)
    else:
        score = inter / np.minimum(ac, ap)
    out, used = {}, set()
    for j in np.argsort(-score, kind="stable"):
        c, p = int(pairs[0, j]), int(pairs[1, j])
        if score[j] < min_overlap:
            break
        if c not in out and p not in used:
            out[c] = p
            used.add(p)
    return out


def link_slices(
    labels: np.ndarray, min_overlap: float = 0.3, metric: str = "iou", max_gap: int = 1
) -> np.ndarray:
    """Relabel ``(Z, Y, X)`` per-slice labels into 3-D labels (``uint32``, ids consecutive).

    An object of slice ``z`` takes the id of the object of slice ``z - 1`` it matches (see
    :func:`match_labels`). Objects left unmatched may continue an object last seen up to
    ``max_gap`` slices further back (missed in the slices between, e.g. a dim slice); the
    rest get new ids. Labels 0 are background.
    """
    if max_gap < 0:
        raise ValueError(f"max_gap: expected a number >= 0, got {max_gap}")
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.uint32)
    next_id = 1
    for z in range(len(labels)):
        cur = labels[z]
        ids = np.unique(cur[cur > 0])
        matches = match_labels(out[z - 1], cur, min_overlap, metric) if z else {}
        seen = set(np.unique(out[z - 1]).tolist()) if z else set()
        for back in range(2, max_gap + 2):
            if z - back < 0 or len(matches) == len(ids):
                break
            older = out[z - back]
            ended = np.isin(older, list(seen), invert=True) & (older > 0)
            rest = np.where(np.isin(cur, list(matches), invert=True), cur, 0)
            for c, p in match_labels(np.where(ended, older, 0), rest, min_overlap, metric).items():
                matches[c] = p
            seen |= set(np.unique(older).tolist())
        lut = np.zeros(int(cur.max(initial=0)) + 1, np.uint32)
        for i in ids:
            i = int(i)
            if i in matches:
                lut[i] = matches[i]
            else:
                lut[i], next_id = next_id, next_id + 1
        out[z] = lut[cur]
    return out


def drop_short_objects(labels: np.ndarray, min_slices: int) -> np.ndarray:
    """Remove objects of ``(Z, Y, X)`` labels present in fewer than ``min_slices`` slices.

    The remaining ids are renumbered ``1..K`` in order.
    """
    if min_slices < 1:
        raise ValueError(f"min_slices: expected a number >= 1, got {min_slices}")
    n = int(labels.max(initial=0))
    if min_slices == 1 or n == 0:
        return labels
    present = np.zeros((len(labels), n + 1), bool)
    for z, lab in enumerate(labels):
        present[z, np.unique(lab)] = True
    keep = present.sum(axis=0) >= min_slices
    keep[0] = False
    lut = np.zeros(n + 1, np.uint32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return lut[labels]


def _offset_ids(labels: np.ndarray) -> np.ndarray:
    """Make per-slice ids unique over the stack (slices numbered one after the other)."""
    out = np.zeros(labels.shape, np.uint32)
    base = 0
    flat = labels.reshape(-1, *labels.shape[-2:])
    res = out.reshape(flat.shape)
    for i, lab in enumerate(flat):
        res[i] = np.where(lab > 0, lab.astype(np.uint32) + base, 0)
        base += int(lab.max(initial=0))
    return out


def segment_stack(stack_predictor, generator=None, link_3d: bool = True,
                  min_overlap: float = 0.3, metric: str = "iou", link_axis: str | None = None,
                  progress=None, cache=None, max_gap: int = 1, min_slices: int = 1,
                  **generator_kwargs) -> np.ndarray:  # fmt: skip
    """Automatic segmentation of every slice of a stack, optionally linked into 3-D objects.

    Parameters
    ----------
    stack_predictor : StackPredictor
        The stack and its stored embeddings (each slice's embedding is reused; crops, if any,
        are encoded from the normalised slice).
    generator : AutomaticMaskGenerator, optional
        Default: one sharing ``stack_predictor.predictor``, made with ``generator_kwargs``.
    link_3d : bool
        Link objects of neighbouring slices along ``link_axis`` (see :func:`link_slices`);
        otherwise every object of every slice gets its own id.
    min_overlap, metric, max_gap
        Matching of objects between slices (see :func:`match_labels` and
        :func:`link_slices`).
    min_slices : int
        With ``link_3d``: drop linked objects present in fewer slices (isolated detections
        in a z-stack are mostly spurious; 1 keeps everything).
    link_axis : str, optional
        Slice axis to link along; default ``Z`` if present, else the last slice axis.
    progress : callable, optional
        ``progress(done, total)`` after each slice.
    cache : object, optional
        Per-slice results kept between runs (e.g.
        :class:`napari_sam.segment.partial.PartialResults`):
        ``cache.get(n)`` returns the 2-D label image of slice ``n`` (its position in
        ``view.slice_indices``) computed earlier, or None; ``cache.put(n, labels)`` is called
        with each slice computed here, before linking. Slices it has are not computed again.

    Returns
    -------
    ndarray
        ``uint32`` labels of shape ``stack_shape + (Y, X)`` (slice axes in the view's order).
    """
    from .automatic import AutomaticMaskGenerator, to_label_image

    sp = stack_predictor
    if generator is None:
        generator = AutomaticMaskGenerator(sp.predictor, **generator_kwargs)
    view = sp.view
    out = np.zeros((*view.stack_shape, *view.slice_shape), np.uint32)
    total = len(view)
    for n, index in enumerate(view.slice_indices):
        done = None if cache is None else cache.get(n)
        if done is None:
            emb = sp.get_embedding(index)
            image = sp.store.prepare(view.get_slice(index))
            records = generator.generate(image, embedding=emb)
            out[index] = to_label_image(records, view.slice_shape)
            if cache is not None:
                cache.put(n, out[index])
        else:
            out[index] = done
        if progress is not None:
            progress(n + 1, total)
    sp.index = sp._embedding = sp._tensor = None  # the shared predictor was used directly
    axes = view.slice_axes
    if not link_3d or not axes:
        return _offset_ids(out) if axes else out
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
