"""Validation and batching of point, box and mask prompts (numpy, no TensorFlow)."""

from __future__ import annotations

import numpy as np


def _array(value, name, ndims, last=None):
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim not in ndims or (last is not None and arr.shape[-1] != last):
        want = " or ".join(f"{d}-D" for d in ndims)
        tail = f" with last axis {last}" if last is not None else ""
        raise ValueError(f"{name} must be a {want} array{tail}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_inside(coords, name, size):
    h, w = size
    x, y = coords[..., 0::2], coords[..., 1::2]
    if coords.size and (x.min() < 0 or y.min() < 0 or x.max() > w or y.max() > h):
        raise ValueError(
            f"{name} lie outside the image: coordinates must be x in [0, {w}] and "
            f"y in [0, {h}] (x = column, y = row), got x in [{x.min():g}, {x.max():g}], "
            f"y in [{y.min():g}, {y.max():g}]"
        )


def batch_prompts(points, labels, boxes, masks, image_size, mask_size):
    """Bring prompts to the batched form ``(N, M1, 2), (N, M1), (N, M2, 4), (N, M3, H', W')``.

    Returns the four arrays and whether the caller gave one unbatched object (so the
    leading axis of the results should be removed).

    Raises
    ------
    ValueError
        For arrays of the wrong shape, NaN or infinite values, labels other than 1
        (foreground) and 0 (background), inverted boxes (``x1 < x0`` or ``y1 < y0``), or
        points and boxes outside the image.
    """
    batched = any(
        v is not None and np.ndim(v) == d for v, d in ((points, 3), (boxes, 3), (masks, 4))
    )
    if points is not None and labels is None:
        raise ValueError("labels are required with points (1 = foreground, 0 = background)")
    if points is None and labels is not None:
        raise ValueError("labels were given without points")
    pts = None if points is None else _array(points, "points", (3,) if batched else (2,), 2)
    bxs = None if boxes is None else _array(boxes, "boxes", (3,) if batched else (2,), 4)
    msk = None if masks is None else _array(masks, "masks", (4,) if batched else (3,))
    lbl = None if labels is None else _array(labels, "labels", (2,) if batched else (1,))
    if pts is not None and lbl.shape != pts.shape[:-1]:
        raise ValueError(f"labels must have shape {pts.shape[:-1]}, got {lbl.shape}")
    if lbl is not None and not np.isin(lbl, (0.0, 1.0)).all():
        bad = np.unique(lbl[~np.isin(lbl, (0.0, 1.0))])
        shown = ", ".join(f"{v:g}" for v in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise ValueError(f"labels must be 1 (foreground) or 0 (background), got {shown}")
    if bxs is not None and bxs.size:
        inverted = (bxs[..., 2] < bxs[..., 0]) | (bxs[..., 3] < bxs[..., 1])
        if inverted.any():
            first = bxs[inverted][0]
            raise ValueError(
                "boxes must be (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1, got "
                f"{int(inverted.sum())} inverted, e.g. [{', '.join(f'{v:g}' for v in first)}]"
            )
    if msk is not None and msk.shape[-2:] != tuple(mask_size):
        raise ValueError(
            f"masks must be low resolution logits of size {tuple(mask_size)} (H', W'), "
            f"got {msk.shape[-2:]}; use preprocess_masks() for full-size masks"
        )
    for arr, name in ((pts, "points"), (bxs, "boxes")):
        if arr is not None:
            _check_inside(arr, name, image_size)
    if not batched:
        n_obj = max([1] + [len(a) for a in (bxs, msk) if a is not None])
        for arr, name in ((bxs, "boxes"), (msk, "masks")):
            if arr is not None and len(arr) not in (0, 1, n_obj):
                raise ValueError(f"got {len(arr)} {name} for {n_obj} objects")
        squeeze = n_obj == 1
        pts = None if pts is None else np.broadcast_to(pts, (n_obj, *pts.shape))
        lbl = None if lbl is None else np.broadcast_to(lbl, (n_obj, *lbl.shape))
        bxs = None if bxs is None else _per_object(bxs, n_obj)
        msk = None if msk is None else _per_object(msk, n_obj)
    else:
        squeeze = False
    sizes = {len(a) for a in (pts, bxs, msk) if a is not None}
    if len(sizes) > 1:
        raise ValueError(f"batched prompts disagree on the batch size N: {sorted(sizes)}")
    n = sizes.pop() if sizes else 1
    if msk is not None and msk.shape[1] > 1:
        raise ValueError(f"at most one mask prompt per object, got masks of shape {msk.shape}")
    pts = np.zeros((n, 0, 2), np.float32) if pts is None else pts
    lbl = np.zeros((n, 0), np.float32) if lbl is None else lbl
    bxs = np.zeros((n, 0, 4), np.float32) if bxs is None else bxs
    msk = np.zeros((n, 0, *mask_size), np.float32) if msk is None else msk
    return (pts, lbl, bxs, msk), squeeze


def _per_object(arr, n_obj):
    """(M, ...) with M in {0, 1, n_obj} -> (n_obj, M_per_object, ...)."""
    if len(arr) == n_obj and n_obj > 1:
        return arr[:, None]
    return np.broadcast_to(arr, (n_obj, *arr.shape))
