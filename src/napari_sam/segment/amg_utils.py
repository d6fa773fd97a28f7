"""Numpy helpers of automatic mask generation, ported from Meta's ``segment_anything.utils.amg``.

Point grids, crop boxes, stability scores, greedy box NMS (torchvision's semantics) and
small-region clean-up (scipy instead of OpenCV). Boxes of masks are
:func:`napari_sam.masks.mask_to_box`.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
from scipy import ndimage

__all__ = [
    "box_nms",
    "build_all_layer_point_grids",
    "build_point_grid",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "remove_small_regions",
    "stability_score",
]


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``(n**2, 2)`` points ``(x, y)`` evenly spaced in ``[0, 1]``, cell centres, x fastest."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list:
    """One grid per crop layer; layer ``i`` has ``int(n_per_side / scale_per_layer**i)`` a side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes ``[x0, y0, x1, y1]`` and their layer: the image, then ``(2**i)**2`` per layer.

    Neighbouring crops of layer ``i`` overlap by ``overlap_ratio * short side * 2 / 2**i``.
    """
    im_h, im_w = im_size
    short = min(im_h, im_w)
    boxes, layers = [[0, 0, im_w, im_h]], [0]

    def crop_len(orig_len, n_crops, overlap):
        return int(math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops))

    for i in range(n_layers):
        n = 2 ** (i + 1)
        overlap = int(overlap_ratio * short * (2 / n))
        cw, ch = crop_len(im_w, n, overlap), crop_len(im_h, n, overlap)
        x0s = [int((cw - overlap) * j) for j in range(n)]
        y0s = [int((ch - overlap) * j) for j in range(n)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + cw, im_w), min(y0 + ch, im_h)])
            layers.append(i + 1)
    return boxes, layers


def is_box_near_crop_edge(boxes: np.ndarray, crop_box, orig_box, atol: float = 20.0) -> np.ndarray:
    """Whether each box (crop coordinates) touches a crop edge that is not an image edge."""
    x0, y0 = crop_box[:2]
    boxes = (np.asarray(boxes) + np.array([x0, y0, x0, y0])).astype(np.float32)
    crop = np.asarray(crop_box, np.float32)[None]
    orig = np.asarray(orig_box, np.float32)[None]
    near_crop = np.abs(boxes - crop) <= atol
    near_image = np.abs(boxes - orig) <= atol
    return np.any(near_crop & ~near_image, axis=1)


def stability_score(logits: np.ndarray, threshold: float, offset: float) -> np.ndarray:
    """IoU of the masks ``logits > threshold + offset`` and ``logits > threshold - offset``."""
    inter = (logits > threshold + offset).sum(axis=(-2, -1), dtype=np.int64)
    union = (logits > threshold - offset).sum(axis=(-2, -1), dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (inter / union).astype(np.float32)


def filter_by_quality(logits, iou, pred_iou_thresh: float, stability_thresh: float,
                      threshold: float, offset: float):  # fmt: skip
    """Meta's mask filters: predicted IoU above ``pred_iou_thresh``, then a stability score
    of at least ``stability_thresh`` (a threshold of 0 keeps all).

    Returns
    -------
    keep : ndarray of bool
        ``(N,)`` the masks that pass both.
    stability : ndarray of float32
        ``(N,)`` stability scores (computed for the masks passing the IoU filter, else 0).
    """
    keep = iou > pred_iou_thresh if pred_iou_thresh > 0 else np.ones(len(iou), bool)
    stability = np.zeros(len(iou), np.float32)
    if keep.any():
        stability[keep] = stability_score(logits[keep], threshold, offset)
    if stability_thresh > 0:
        keep &= stability >= stability_thresh
    return keep, stability


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression with torchvision's semantics.

    Boxes ``[x0, y0, x1, y1]`` are visited by descending score (a stable sort, so ties keep
    their input order); a kept box suppresses every later box whose IoU with it is
    ``> iou_threshold``. Areas have no ``+1``; arithmetic is in float32.

    Returns
    -------
    ndarray
        Indices of the kept boxes, by descending score.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores)
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[pos + 1 :]
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[iou.astype(np.float64) > iou_threshold]] = True
    return np.asarray(keep, np.int64)


_EIGHT = np.ones((3, 3), bool)


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str
) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or drop islands (``"islands"``) below ``area_thresh``.

    Components are 8-connected, as in Meta's OpenCV version. With ``"islands"``, the largest
    island is kept if every island is small.

    Returns
    -------
    mask : ndarray
        The cleaned boolean mask.
    changed : bool
        Whether anything was changed.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode: expected 'holes' or 'islands', got {mode!r}")
    mask = np.asarray(mask, bool)
    holes = mode == "holes"
    working = mask ^ holes
    regions, n = ndimage.label(working, structure=_EIGHT)
    sizes = np.bincount(regions.ravel(), minlength=n + 1)[1:]
    small = np.flatnonzero(sizes < area_thresh) + 1
    if len(small) == 0:
        return mask, False
    if holes:
        return mask | np.isin(regions, small), True
    keep = np.setdiff1d(np.arange(1, n + 1), small)
    if len(keep) == 0:
        keep = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, keep), True
