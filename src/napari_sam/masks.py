"""Mask and label primitives shared by segmentation, training, evaluation and the plugin."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["bounding_box", "iou", "object_centre"]


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


def bounding_box(mask: np.ndarray) -> np.ndarray:
    """The box (x0, y0, x1, y1) of a mask, as SAM expects it."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)
