"""Import Meta's reference ``segment_anything`` package in tests, with or without torchvision.

``segment_anything`` imports torchvision in two places only:

* ``utils/transforms.py``: ``from torchvision.transforms.functional import resize, to_pil_image``
* ``automatic_mask_generator.py``: ``from torchvision.ops.boxes import batched_nms, box_area``

torchvision has no CPU wheel installable next to the pinned torch here, so when it cannot be
imported, :func:`import_segment_anything` installs a tiny shim module tree in ``sys.modules`` that
reproduces exactly what torchvision does for the calls SAM makes (and nothing more), then imports
the real package. When torchvision *is* importable the shim is never installed.

This is a test-only helper; it is not part of the ``napari_sam`` package.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types

import numpy as np
import torch
from PIL import Image

__all__ = ["batched_nms", "box_area", "import_segment_anything", "resize", "to_pil_image"]


# --- torchvision.transforms.functional ------------------------------------------------------


def to_pil_image(pic, mode=None):
    """``torchvision.transforms.functional.to_pil_image`` for HWC (or HW) ``uint8`` ndarrays.

    torchvision: a 2-D array gets a channel axis; 1 channel -> squeezed ``"L"``, 2 -> ``"LA"``,
    3 -> ``"RGB"``, 4 -> ``"RGBA"``, more than 4 -> error; then ``Image.fromarray``. SAM only
    passes ``uint8`` HWC RGB arrays, so other dtypes and tensors are rejected here.
    """
    if mode is not None or not isinstance(pic, np.ndarray) or pic.dtype != np.uint8:
        raise NotImplementedError("torchvision shim: only uint8 ndarrays without mode")
    if pic.ndim == 2:
        pic = pic[:, :, None]
    if pic.ndim != 3 or pic.shape[-1] > 4:
        raise ValueError(f"pic should be 2/3 dimensional with <= 4 channels, got {pic.shape}")
    if pic.shape[-1] == 1:
        pic = pic[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(pic))  # infers L / LA / RGB / RGBA


def resize(img, size, interpolation=Image.Resampling.BILINEAR, max_size=None, antialias=True):
    """``torchvision.transforms.functional.resize`` for PIL images and an explicit ``[h, w]``.

    torchvision (``functional.resize`` -> ``_functional_pil.resize``) for a PIL input and a
    2-element size returns ``img`` unchanged when the size already matches, otherwise
    ``img.resize(tuple(size[::-1]), pil_interpolation)``; BILINEAR maps to PIL's BILINEAR, which
    antialiases when downscaling (the ``antialias`` flag is ignored for PIL images).
    """
    if not isinstance(img, Image.Image) or max_size is not None:
        raise NotImplementedError("torchvision shim: only PIL images without max_size")
    if len(size) != 2:
        raise NotImplementedError("torchvision shim: size must be [h, w]")
    h, w = (int(s) for s in size)
    if (img.height, img.width) == (h, w):
        return img
    return img.resize((w, h), int(interpolation))


# --- torchvision.ops.boxes ------------------------------------------------------------------


def _upcast(t: torch.Tensor) -> torch.Tensor:
    # torchvision.ops.boxes._upcast: protects from overflow in multiplications.
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``torchvision.ops.box_area`` for ``(N, 4)`` boxes as ``x0, y0, x1, y1``."""
    boxes = _upcast(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS with the semantics of torchvision's CPU kernel (``nms_kernel.cpp``).

    Boxes are visited by score, sorted descending with a *stable* sort; a kept box suppresses
    every later box whose IoU with it is ``> iou_threshold``. Areas have no ``+1``; arithmetic is
    in the boxes' dtype and the IoU is compared to the threshold as a double, as in C++.
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    order = torch.sort(scores, stable=True, descending=True)[1]
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for pos in range(len(order)):
        i = order[pos]
        if suppressed[i]:
            continue
        keep.append(int(i))
        rest = order[pos + 1 :]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[iou.double() > iou_threshold]] = True
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)


def batched_nms(boxes, scores, idxs, iou_threshold):
    """``torchvision.ops.batched_nms`` via the per-category coordinate-offset trick.

    torchvision uses this path on CPU up to 4000 box coordinates and a per-category loop above
    that; both give the same kept set in descending-score order.
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)


# --- installation ---------------------------------------------------------------------------


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name, "Test-only torchvision shim (tests/reference.py).")
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
    mod.__dict__.update(attrs)
    return mod


def _install_torchvision_shim() -> None:
    functional = _module(
        "torchvision.transforms.functional", resize=resize, to_pil_image=to_pil_image
    )
    boxes = _module("torchvision.ops.boxes", batched_nms=batched_nms, box_area=box_area, nms=nms)
    transforms = _module("torchvision.transforms", functional=functional)
    ops = _module("torchvision.ops", boxes=boxes, batched_nms=batched_nms, box_area=box_area)
    root = _module("torchvision", transforms=transforms, ops=ops, __shim__=True)
    for mod in (root, transforms, functional, ops, boxes):
        sys.modules[mod.__name__] = mod


def import_segment_anything():
    """Import and return Meta's ``segment_anything``, shimming torchvision if it is missing."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        _install_torchvision_shim()
    return importlib.import_module("segment_anything")
