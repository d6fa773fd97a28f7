"""Merge neighbouring objects whose union is convex: one nucleus the watershed cut in two.

An instance decoder's centre-distance map can have two minima in one elongated or textured
nucleus; the watershed then cuts it along a line right across it. Two nuclei that touch meet
at a concave neck instead, along a border shorter than either is wide, so their union is
less convex. :func:`merge_convex_neighbours` merges, greedily and most convex first, pairs of
objects whose union's solidity (its pixels over the pixel centres inside its convex hull) is
at least ``min_solidity`` and whose shared border is at least ``min_border`` times the square
root of the smaller one's area (a cut through a disc's centre: about 1.6, across an ellipse
of aspect ratio 2: about 1.1; nuclei touching: 0.3 to 0.8), as long
as the union is at most ``max_area_ratio`` times the median object area (a cluster of nuclei
is never one object).
"""

from __future__ import annotations

import numpy as np

from ..masks import solidity  # the measure, shared with the prompted masks' outline

__all__ = ["merge_convex_neighbours", "shared_borders", "solidity"]


def shared_borders(labels: np.ndarray) -> dict[tuple[int, int], int]:
    """``{(a, b): n}``: objects ``a < b`` of 2-D ``labels`` share ``n`` pixel edges."""
    pairs = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        m = (a != b) & (a > 0) & (b > 0)
        pairs.append(np.stack([np.minimum(a[m], b[m]), np.maximum(a[m], b[m])], 1))
    both, counts = np.unique(np.concatenate(pairs), axis=0, return_counts=True)
    return {(int(a), int(b)): int(n) for (a, b), n in zip(both, counts, strict=True)}


def merge_convex_neighbours(
    labels: np.ndarray, min_solidity: float, min_border: float = 0.0, max_area_ratio: float = 2.0
) -> np.ndarray:
    """Labels with neighbouring objects merged where their union is convex (see module doc).

    Parameters
    ----------
    labels : ndarray
        (H, W) integer labels, 0 background.
    min_solidity : float
        Merge a pair when its union's solidity is at least this (in (0, 1]; a digitally
        convex union scores 1, a cut with a ragged edge a little less).
    min_border : float
        ... and their shared border (pixel edges) is at least this times the square root of
        the smaller one's area.
    max_area_ratio : float
        Never make an object larger than this times the median object area.

    Returns
    -------
    ndarray
        The labels, same dtype, merged objects keeping the smaller id (ids not consecutive).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels: expected a 2-D label image, got {labels.ndim} dimensions")
    out = labels.copy()
    if not out.any():
        return out
    flat = out.ravel()
    order = np.argsort(flat, kind="stable")
    ids, starts, counts = np.unique(flat[order], return_index=True, return_counts=True)
    members = {int(i): order[s:s + c] for i, s, c in zip(ids, starts, counts, strict=True) if i}
    limit = max_area_ratio * float(np.median([m.size for m in members.values()]))
    width = out.shape[1]
    border = shared_borders(out)
    neighbours: dict[int, set[int]] = {i: set() for i in members}
    for a, b in border:
        neighbours[a].add(b)
        neighbours[b].add(a)

    def score(a, b):
        na, nb = members[a].size, members[b].size
        if na + nb > limit or border[(a, b)] < min_border * np.sqrt(min(na, nb)):
            return -1.0
        pix = np.concatenate([members[a], members[b]])
        return solidity(pix // width, pix % width)

    scores = {(a, b): score(a, b) for a in neighbours for b in neighbours[a] if a < b}
    while scores:
        (a, b), best = max(scores.items(), key=lambda kv: kv[1])
        if best < min_solidity:
            break
        flat[members[b]] = a
        members[a] = np.concatenate([members[a], members.pop(b)])
        for n in neighbours.pop(b):
            neighbours[n].discard(b)
            if n != a:
                ka, kb = (min(a, n), max(a, n)), (min(b, n), max(b, n))
                border[ka] = border.get(ka, 0) + border.pop(kb)
                neighbours[n].add(a)
                neighbours[a].add(n)
        neighbours[a].discard(b)
        scores = {k: v for k, v in scores.items() if a not in k and b not in k}
        for n in neighbours[a]:
            key = (min(a, n), max(a, n))
            scores[key] = score(*key)
    return out
