"""Mask and label primitives shared by segmentation, training, evaluation and the plugin.

Boxes of masks (:func:`mask_to_box`, :func:`bounding_box`), the IoU of two masks
(:func:`iou`), an object's centre (:func:`object_centre`) and the overlaps of the objects of
two label images (:func:`label_overlaps`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

__all__ = ["LabelOverlaps", "bounding_box", "iou", "label_overlaps", "mask_to_box", "object_centre",
           "solidity"]  # fmt: skip


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def object_centre(mask: np.ndarray) -> tuple[float, float]:
    """The pixel (x, y) deepest inside a mask (maximum of the distance transform).

    Unlike the centroid it always lies inside the object, also for non-convex shapes.
    """
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(np.argmax(dist), dist.shape)
    return float(x), float(y)


def mask_to_box(masks: np.ndarray) -> np.ndarray:
    """Boxes ``[x0, y0, x1, y1]`` (inclusive pixel edges) of boolean masks.

    Parameters
    ----------
    masks : ndarray
        ``(..., H, W)`` masks (any leading axes).

    Returns
    -------
    ndarray
        ``(..., 4)`` int64 boxes; ``[0, 0, 0, 0]`` for an empty mask.
    """
    masks = np.asarray(masks, bool)
    rows, cols = masks.any(axis=-1), masks.any(axis=-2)
    h, w = masks.shape[-2:]

    def edges(hit, n):
        first = np.where(hit.any(-1), hit.argmax(-1), 0)
        last = np.where(hit.any(-1), n - 1 - hit[..., ::-1].argmax(-1), 0)
        return first, last

    top, bottom = edges(rows, h)
    left, right = edges(cols, w)
    return np.stack([left, top, right, bottom], axis=-1).astype(np.int64)


def bounding_box(mask: np.ndarray) -> np.ndarray:
    """The box (x0, y0, x1, y1) of one mask, as SAM expects it (float32).

    Raises
    ------
    ValueError
        If the mask is empty.
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ValueError("bounding_box: the mask is empty")
    return mask_to_box(mask).astype(np.float32)


@dataclass(frozen=True)
class LabelOverlaps:
    """The overlapping object pairs of two label images ``a`` and ``b`` (0 is background).

    Attributes
    ----------
    pairs : ndarray
        ``(2, K)`` ids ``(id in a, id in b)`` of every pair sharing a pixel, in lexicographic
        order.
    intersection : ndarray
        ``(K,)`` pixels each pair shares.
    ids_a, sizes_a, ids_b, sizes_b : ndarray
        The sorted object ids of each image and their sizes in pixels.
    """

    pairs: np.ndarray
    intersection: np.ndarray
    ids_a: np.ndarray
    sizes_a: np.ndarray
    ids_b: np.ndarray
    sizes_b: np.ndarray

    @property
    def area_a(self) -> np.ndarray:
        """``(K,)`` size of each pair's object of ``a``."""
        return self.sizes_a[np.searchsorted(self.ids_a, self.pairs[0])]

    @property
    def area_b(self) -> np.ndarray:
        """``(K,)`` size of each pair's object of ``b``."""
        return self.sizes_b[np.searchsorted(self.ids_b, self.pairs[1])]

    def iou(self) -> np.ndarray:
        """``(K,)`` intersection over union of each pair."""
        return self.intersection / (self.area_a + self.area_b - self.intersection)

    def overlap(self) -> np.ndarray:
        """``(K,)`` intersection over the smaller object of each pair."""
        return self.intersection / np.minimum(self.area_a, self.area_b)


def label_overlaps(a: np.ndarray, b: np.ndarray) -> LabelOverlaps:
    """Count the pixels shared by every pair of objects of two label images.

    Parameters
    ----------
    a, b : ndarray
        Label images of one shape (any dimension); ids > 0 are objects.

    Returns
    -------
    LabelOverlaps
        Pairs, intersections and object sizes.
    """
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    both = (a > 0) & (b > 0)
    pairs, inter = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
    ids_a, sizes_a = np.unique(a[a > 0], return_counts=True)
    ids_b, sizes_b = np.unique(b[b > 0], return_counts=True)
    return LabelOverlaps(pairs, inter, ids_a, sizes_a, ids_b, sizes_b)


def solidity(ys: np.ndarray, xs: np.ndarray) -> float:
    """Pixels of a 2-D region (its pixel coordinates) over the pixels of its convex hull.

    The hull's pixels are the pixel centres in or on the convex hull of the region's pixel
    centres, counted exactly with Pick's theorem, so a digitally convex region (a digital disc,
    a rectangle) has solidity 1 whatever its size.
    """
    n = ys.size
    if n < 3:
        return 1.0
    points = np.stack([xs, ys], 1).astype(np.float64)
    try:
        hull = ConvexHull(points)
    except QhullError:  # all on one line: convex
        return 1.0
    corners = points[hull.vertices].astype(np.int64)
    edges = np.abs(np.roll(corners, -1, axis=0) - corners)
    on_boundary = int(np.gcd(edges[:, 0], edges[:, 1]).sum())
    inside_or_on = hull.volume + on_boundary / 2 + 1  # Pick: A = I + B/2 - 1
    return float(min(1.0, n / inside_or_on))
