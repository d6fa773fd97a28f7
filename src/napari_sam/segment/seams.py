"""No seams: labels of one object, decoded in parts on two tiles, merged into one.

A tile decodes only the grid points of its inner region, so an object on a tile border can be
seen from each side in part (a lobe from each tile) while a mask of the whole object was
proposed too but lost to a higher-scored part in the non-maximum suppression. Two touching
labels are merged when they were decoded on different tiles and a candidate mask (any mask
that passed the filters, before suppression) covers their union as a whole. Touching labels
decoded on one tile are never merged here (two nuclei side by side inside a tile stay two),
nor are labels no candidate covers together.
"""

from __future__ import annotations

import numpy as np

__all__ = ["merge_across_tiles", "touching_pairs"]

MIN_UNION_IOU = 0.85  # IoU of a candidate with the union of two labels to merge them


def touching_pairs(labels: np.ndarray) -> dict[tuple[int, int], int]:
    """``{(a, b): contact}`` of 4-connected neighbouring labels ``a < b`` (both > 0)."""
    pairs: dict[tuple[int, int], int] = {}
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        touch = (a != b) & (a > 0) & (b > 0)
        lo, hi = np.minimum(a[touch], b[touch]), np.maximum(a[touch], b[touch])
        keys, counts = np.unique(lo.astype(np.uint64) << 32 | hi, return_counts=True)
        for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
            key = (k >> 32, k & 0xFFFFFFFF)
            pairs[key] = pairs.get(key, 0) + c
    return pairs


def _iou(union, n_union, candidate, y0, x0) -> float:
    """IoU of ``candidate`` (a CroppedMask) with ``union`` (``n_union`` pixels), a mask of the
    box whose top left corner is ``(y0, x0)``."""
    h, w = candidate.mask.shape
    y1, x1 = y0 + union.shape[0], x0 + union.shape[1]
    cy0, cx0 = max(candidate.y0, y0), max(candidate.x0, x0)
    cy1, cx1 = min(candidate.y0 + h, y1), min(candidate.x0 + w, x1)
    inter = 0
    if cy0 < cy1 and cx0 < cx1:
        part = candidate.mask[cy0 - candidate.y0 : cy1 - candidate.y0,
                              cx0 - candidate.x0 : cx1 - candidate.x0]  # fmt: skip
        inter = int((part & union[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]).sum())
    total = n_union + candidate.area - inter
    return inter / total if total else 0.0


def _covered(union, n_union, candidates, y0, x0, min_iou) -> bool:
    """Whether one of ``candidates`` has an IoU of at least ``min_iou`` with ``union``.

    A candidate whose area is too far from the union's cannot (the IoU is at most the smaller
    area over the larger) and is not measured.
    """
    for c in candidates:
        small, large = min(c.area, n_union), max(c.area, n_union)
        if not large or small / large < min_iou:
            continue
        if _iou(union, n_union, c, y0, x0) >= min_iou:
            return True
    return False


def merge_across_tiles(labels: np.ndarray, painted: list, pool: list,
                       min_iou: float = MIN_UNION_IOU) -> np.ndarray:  # fmt: skip
    """Merge touching labels of different tiles that one candidate covers (see the module).

    Parameters
    ----------
    labels : ndarray
        ``uint32`` labels ``1..len(painted)``.
    painted : list of CroppedMask
        The mask each label was painted from (its ``origin`` is the tile it was decoded on).
    pool : list of CroppedMask
        Every candidate mask that passed the filters.
    min_iou : float
        IoU of a candidate with the union of the two labels needed to merge them.

    Returns
    -------
    ndarray
        The labels, merged ones sharing the lower id, renumbered ``1..K``.
    """
    if len(painted) < 2:
        return labels
    parent = np.arange(len(painted) + 1)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    boxes = np.array([m.box for m in pool]) if pool else np.zeros((0, 4))
    for (a, b), _ in sorted(touching_pairs(labels).items(), key=lambda kv: -kv[1]):
        ma, mb = painted[a - 1], painted[b - 1]
        if ma.origin == mb.origin or root(a) == root(b):
            continue
        y0, x0 = min(ma.y0, mb.y0), min(ma.x0, mb.x0)
        y1 = max(ma.y0 + ma.mask.shape[0], mb.y0 + mb.mask.shape[0])
        x1 = max(ma.x0 + ma.mask.shape[1], mb.x0 + mb.mask.shape[1])
        near = np.nonzero((boxes[:, 0] < x1) & (boxes[:, 2] >= x0)
                          & (boxes[:, 1] < y1) & (boxes[:, 3] >= y0))[0]  # fmt: skip
        if not len(near):
            continue
        box = labels[y0:y1, x0:x1]
        union = (box == a) | (box == b)
        if _covered(union, int(union.sum()), [pool[i] for i in near], y0, x0, min_iou):
            parent[root(b)] = root(a)
    roots = np.array([root(i) for i in range(len(parent))])
    if (roots == np.arange(len(parent))).all():
        return labels
    _, lut = np.unique(roots, return_inverse=True)  # 0 stays 0: the root of 0 is 0
    return lut.astype(np.uint32)[labels]
