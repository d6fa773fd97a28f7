"""Label arithmetic of stacks: objects of neighbouring slices matched and linked into 3-D.

Pure numpy on label images; the stack driver that segments every slice first is
:func:`napari_sam.segment.driver.segment_stack`.
"""

from __future__ import annotations

import numpy as np

from ..masks import label_overlaps

__all__ = ["drop_short_objects", "link_slices", "match_labels", "match_neighbours", "offset_ids"]


def match_labels(prev: np.ndarray, cur: np.ndarray, min_overlap: float = 0.3,
                 metric: str = "iou") -> dict[int, int]:  # fmt: skip
    """One-to-one matches ``{id in cur: id in prev}`` of two 2-D label images.

    Pairs are scored by ``metric``: ``"iou"`` (intersection over union) or ``"overlap"``
    (intersection over the smaller object), and matched greedily from the best score down;
    pairs scoring below ``min_overlap`` are not matched.

    Parameters
    ----------
    prev, cur : ndarray
        Label images of one shape (0 is background).
    min_overlap : float
        The lowest score that still matches.
    metric : {"iou", "overlap"}
        How a pair of objects is scored (counted by :func:`napari_sam.masks.label_overlaps`).

    Returns
    -------
    dict of int to int
        ``{id in cur: id in prev}`` for every matched object of ``cur``.
    """
    if metric not in ("iou", "overlap"):
        raise ValueError(f"metric: expected 'iou' or 'overlap', got {metric!r}")
    prev, cur = np.asarray(prev).ravel(), np.asarray(cur).ravel()
    if not ((prev > 0) & (cur > 0)).any():
        return {}
    overlaps = label_overlaps(cur, prev)
    pairs = overlaps.pairs
    score = overlaps.iou() if metric == "iou" else overlaps.overlap()
    out, used = {}, set()
    for j in np.argsort(-score, kind="stable"):
        c, p = int(pairs[0, j]), int(pairs[1, j])
        if score[j] < min_overlap:
            break
        if c not in out and p not in used:
            out[c] = p
            used.add(p)
    return out


def match_neighbours(cur: np.ndarray, neighbours, min_overlap: float = 0.3, metric: str = "iou",
                     exclude=()) -> dict[int, int]:  # fmt: skip
    """One-to-one matches ``{id in cur: id of a neighbour}`` of a 2-D label image against
    neighbouring label images, one after the other.

    Each neighbour in turn (e.g. the previous slice, then the next one) matches the objects of
    ``cur`` still unmatched (see :func:`match_labels`) against its objects whose ids are
    neither taken by an earlier match nor in ``exclude``, so each id is given at most once.

    Parameters
    ----------
    cur : ndarray
        The label image whose objects are matched (0 is background).
    neighbours : iterable of ndarray
        Label images of the shape of ``cur``, in order of preference.
    min_overlap, metric
        Matching of a pair of objects, see :func:`match_labels`.
    exclude : iterable of int
        Ids never given (e.g. ids already on the slice of ``cur``).

    Returns
    -------
    dict of int to int
        ``{id in cur: id in a neighbour}`` for every matched object of ``cur``.
    """
    cur = np.asarray(cur)
    out, taken = {}, {int(i) for i in exclude}
    for other in neighbours:
        other = np.asarray(other)
        free = (other > 0) & ~np.isin(other, list(taken))
        rest = (cur > 0) & ~np.isin(cur, list(out))
        if not (free & rest).any():
            continue
        found = match_labels(np.where(free, other, 0), np.where(rest, cur, 0), min_overlap, metric)
        out.update(found)
        taken.update(found.values())
    return out


def link_slices(
    labels: np.ndarray, min_overlap: float = 0.3, metric: str = "iou", max_gap: int = 1
) -> np.ndarray:
    """Relabel ``(Z, Y, X)`` per-slice labels into 3-D labels (``uint32``, ids consecutive).

    An object of slice ``z`` takes the id of the object of slice ``z - 1`` it matches (see
    :func:`match_labels`). Objects left unmatched may continue an object last seen up to
    ``max_gap`` slices further back (missed in the slices between, e.g. a dim slice); the
    rest get new ids. Labels 0 are background.

    Parameters
    ----------
    labels : ndarray
        ``(Z, Y, X)`` label images, each slice numbered on its own.
    min_overlap, metric
        Matching of objects between slices, see :func:`match_labels`.
    max_gap : int
        Slices an object may be missing from and still continue (0: neighbours only).

    Returns
    -------
    ndarray
        ``uint32`` labels of the same shape, ids ``1..K`` in order of first appearance.
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

    Parameters
    ----------
    labels : ndarray
        ``(Z, Y, X)`` 3-D labels (e.g. of :func:`link_slices`).
    min_slices : int
        The fewest slices an object must be present in (1 keeps everything).

    Returns
    -------
    ndarray
        The labels with the short objects set to 0 (``labels`` itself when nothing can go).
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


def offset_ids(labels: np.ndarray) -> np.ndarray:
    """Make per-slice ids unique over a stack: each slice's ids follow the previous slice's.

    Parameters
    ----------
    labels : ndarray
        ``(..., Y, X)`` label images, one per slice (ids of each start at 1).

    Returns
    -------
    ndarray
        ``uint32`` labels of the same shape, slices numbered one after the other.
    """
    out = np.zeros(labels.shape, np.uint32)
    base = 0
    flat = labels.reshape(-1, *labels.shape[-2:])
    res = out.reshape(flat.shape)
    for i, lab in enumerate(flat):
        res[i] = np.where(lab > 0, lab.astype(np.uint32) + base, 0)
        base += int(lab.max(initial=0))
    return out
