"""Aspect-preserving resizing and padding of images, prompts and masks (``ImageResizer``).

For a square ``dst_size`` the resizing reproduces Meta's
``segment_anything.utils.transforms.ResizeLongestSide`` bit for bit (target size, ``uint8``
image resampling, point and box scaling), and :meth:`ImageResizer.postprocess_mask` reproduces the
crop and resize part of ``Sam.postprocess_masks``.
"""

from __future__ import annotations

import numbers

import numpy as np
from PIL import Image

__all__ = ["ImageResizer", "resize_bilinear"]

_BILINEAR = Image.Resampling.BILINEAR  # what torchvision's resize uses for PIL images in Meta's SAM


def _check_size(size, name: str) -> tuple[int, int]:
    """Validate ``size`` as two positive ints ``(height, width)``."""
    ok = not isinstance(size, (str, bytes)) and hasattr(size, "__len__") and len(size) == 2
    ok = ok and all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in size
    )
    if not ok:
        raise ValueError(f"{name} must be two positive ints (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def _as_image(image, name: str, channels_last: bool, size: tuple[int, int] | None) -> np.ndarray:
    """Convert ``image`` to numpy and check its rank and, if ``size`` is given, spatial size."""
    image = np.asarray(image)
    layout = "(H, W, C) or (N, H, W, C)" if channels_last else "(C, H, W) or (N, C, H, W)"
    if image.ndim not in (3, 4):
        raise ValueError(f"{name} must be 3-D or 4-D {layout}, got shape {image.shape}")
    hw = tuple(image.shape[-3:-1] if channels_last else image.shape[-2:])
    if size is not None and hw != tuple(size):
        raise ValueError(
            f"{name} must have spatial size {tuple(size)} (H, W) in layout {layout}, "
            f"got shape {image.shape}"
        )
    return image


def _fma32(a, b, c) -> np.ndarray:
    """``fma(a, b, c)`` for float32 operands, rounded once to float32 (via exact float64 a * b)."""
    return (a.astype(np.float64) * b + c).astype(np.float32)


def _linear_indices(in_size: int, out_size: int):
    """Source indices and weights of torch's bilinear ``align_corners=False`` CPU/CUDA kernels.

    float32 arithmetic; ``scale * (i + 0.5) - 0.5`` is one fused multiply-add, as compiled in
    torch's AVX2/AVX512 and CUDA kernels (TF's ``tf.image.resize`` rounds twice instead, which
    moves the sample position by an ulp and the result by up to ~3e-4 for logits of +-30).
    """
    scale = np.float32(in_size) / np.float32(out_size)
    real = _fma32(np.arange(out_size, dtype=np.float32) + np.float32(0.5), scale, -0.5)
    real = np.maximum(real, np.float32(0))
    i0 = np.minimum(np.floor(real).astype(np.int64), in_size - 1)
    w1 = np.clip(real - i0.astype(np.float32), 0, 1).astype(np.float32)
    return i0, i0 + (i0 < in_size - 1), np.float32(1) - w1, w1


def resize_bilinear(x, size) -> np.ndarray:
    """Resize ``x`` ``(..., h, w)`` to ``(..., *size)`` like torch's ``F.interpolate``.

    Bilinear, ``align_corners=False``, no antialiasing, float32. Reproduces the arithmetic of
    torch's kernels (fused multiply-adds included), so results agree with torch on CPUs with
    AVX2 to the last bit or so; used for Meta's ``Sam.postprocess_masks``.
    """
    x, (h, w) = np.asarray(x, dtype=np.float32), _check_size(size, "size")
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., h, w), got {x.shape}")
    a0, a1, h0, h1 = _linear_indices(x.shape[-2], h)
    b0, b1, w0, w1 = _linear_indices(x.shape[-1], w)
    rows = _fma32(x[..., b0], w0, x[..., b1] * w1)  # torch: fma(x[b0], w0, x[b1] * w1)
    out = np.empty((*x.shape[:-2], h, w), dtype=np.float32)
    for s in range(0, h, 64):  # chunks of output rows keep the float64 temporaries in cache
        i = slice(s, s + 64)
        out[..., i, :] = _fma32(rows[..., a0[i], :], h0[i, None], rows[..., a1[i], :] * h1[i, None])
    return out


def _resize_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear PIL resize of one (H, W) channel; ``uint8`` as mode 'L', all else as mode 'F'."""
    h, w = size
    if plane.dtype == np.uint8:
        return np.asarray(Image.fromarray(plane).resize((w, h), _BILINEAR))
    pil = Image.fromarray(plane.astype(np.float32))
    out = np.asarray(pil.resize((w, h), _BILINEAR))
    if plane.dtype == np.bool_:
        return out > 0.5
    if np.issubdtype(plane.dtype, np.integer):
        info = np.iinfo(plane.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(plane.dtype)
    return out.astype(plane.dtype)


def _resize(image: np.ndarray, size: tuple[int, int], channels_last: bool) -> np.ndarray:
    """Resize a validated 3-D or 4-D image to ``size`` (H, W) with PIL bilinear, keeping dtype."""
    if image.dtype.kind not in "buif":
        raise TypeError(f"image must have a bool, integer or float dtype, got {image.dtype}")
    x = image if image.ndim == 4 else image[None]
    if not channels_last:
        x = np.moveaxis(x, 1, -1)
    x = np.ascontiguousarray(x)
    if x.shape[1:3] == tuple(size):
        y = x.copy()
    else:
        y = np.empty((x.shape[0], *size, x.shape[-1]), dtype=x.dtype)
        for n in range(x.shape[0]):
            if x.dtype == np.uint8 and x.shape[-1] == 3:
                # 3-channel uint8 is what Meta's apply_image sees: one 'RGB' image (same bytes
                # as three 'L' planes, but faster).
                y[n] = np.asarray(Image.fromarray(x[n]).resize(size[::-1], _BILINEAR))
            else:
                for c in range(x.shape[-1]):
                    y[n, ..., c] = _resize_plane(np.ascontiguousarray(x[n, ..., c]), size)
    if not channels_last:
        y = np.moveaxis(y, -1, 1)
    return np.ascontiguousarray(y if image.ndim == 4 else y[0])


class ImageResizer:
    """Resize images to the largest size fitting in ``dst_size`` while preserving aspect ratio.

    Also resizes point and box prompts, pads images to ``dst_size`` (bottom/right) and turns
    upscaled mask logits back into masks of the source size.

    Parameters
    ----------
    src_size : tuple of int
        Size ``(H0, W0)`` before resizing.
    dst_size : tuple of int
        Target size ``(H, W)`` after resizing and padding.
    pad_only : bool
        If True, images are not resized, only padded to ``dst_size``.

    Attributes
    ----------
    src_size, dst_size : tuple of int
        As given.
    rescaled_size : tuple of int
        Size ``(H, W)`` after scaling, before padding: ``(int(H0 * scale + 0.5),
        int(W0 * scale + 0.5))`` as in Meta's ``ResizeLongestSide.get_preprocess_shape``.
    scale : float
        ``dst_size[0] / max(H0, W0)`` for a square ``dst_size`` (Meta's formula), otherwise
        ``min(H / H0, W / W0)``; 1.0 if ``pad_only``.
    """

    def __init__(self, src_size, dst_size, pad_only: bool = False):
        self.src_size = _check_size(src_size, "src_size")
        self.dst_size = _check_size(dst_size, "dst_size")
        self.pad_only = bool(pad_only)
        (h0, w0), (h, w) = self.src_size, self.dst_size
        if self.pad_only:
            if h0 > h or w0 > w:
                raise ValueError(
                    f"pad_only=True needs src_size {self.src_size} to fit in "
                    f"dst_size {self.dst_size}"
                )
            self.scale = 1.0
            self.rescaled_size = self.src_size
            return
        # Same float operations as Meta's get_preprocess_shape when dst is square.
        self.scale = h * 1.0 / max(h0, w0) if h == w else min(h / h0, w / w0)
        new_h, new_w = int(h0 * self.scale + 0.5), int(w0 * self.scale + 0.5)
        # Clamping only matters for degenerate sizes (e.g. 1 x 5000, where Meta gives 0).
        self.rescaled_size = (min(max(new_h, 1), h), min(max(new_w, 1), w))

    def __repr__(self) -> str:
        return (
            f"ImageResizer(src_size={self.src_size}, dst_size={self.dst_size}, "
            f"pad_only={self.pad_only}, rescaled_size={self.rescaled_size})"
        )

    def scale_image(self, image, channels_last: bool = True) -> np.ndarray:
        """Resize ``image`` of size ``src_size`` to ``rescaled_size``, keeping its dtype.

        ``image`` is ``(H, W, C)`` or ``(N, H, W, C)``, or ``(C, H, W)`` or ``(N, C, H, W)`` if
        ``channels_last`` is False (e.g. masks). Resampling is PIL bilinear (antialiased when
        shrinking): 3-channel ``uint8`` images as one 'RGB' image, exactly as Meta's
        ``apply_image``; other ``uint8`` images per channel as 'L'; everything else per channel as
        float32 'F' (integers are rounded and clipped back, bools thresholded at 0.5).
        """
        image = _as_image(image, "image", channels_last, self.src_size)
        return _resize(image, self.rescaled_size, channels_last)

    def unscale_image(self, image, channels_last: bool = True) -> np.ndarray:
        """Reverse of :meth:`scale_image`: resize ``image`` of ``rescaled_size`` to ``src_size``."""
        image = _as_image(image, "image", channels_last, self.rescaled_size)
        return _resize(image, self.src_size, channels_last)

    @staticmethod
    def scale_to_size(image, size, channels_last: bool = True) -> np.ndarray:
        """Resize ``image`` to ``size`` (H, W), ignoring aspect ratio; see :meth:`scale_image`."""
        size = _check_size(size, "size")
        return _resize(_as_image(image, "image", channels_last, None), size, channels_last)

    def pad_image(self, image, channels_last: bool = True) -> np.ndarray:
        """Zero-pad ``image`` of ``rescaled_size`` at the bottom/right to ``dst_size``."""
        image = _as_image(image, "image", channels_last, self.rescaled_size)
        axis, (h, w) = image.ndim - (3 if channels_last else 2), self.rescaled_size
        shape = list(image.shape)
        shape[axis : axis + 2] = self.dst_size
        out = np.zeros(shape, dtype=image.dtype)
        out[(slice(None),) * axis + (slice(h), slice(w))] = image
        return out

    def scale_points(self, points) -> np.ndarray:
        """Scale points ``(..., 2)`` given as ``(x, y)`` like the image; returns float64.

        Like Meta's ``apply_coords``: ``x * (new_w / W0)`` and ``y * (new_h / H0)`` in float64,
        with ``(new_h, new_w) = rescaled_size`` (so the factors are the effective ones after
        rounding, not ``scale``).
        """
        points = np.array(points, dtype=np.float64)
        if points.ndim == 0 or points.shape[-1] != 2:
            raise ValueError(f"points must have shape (..., 2) as (x, y), got {points.shape}")
        (h0, w0), (h, w) = self.src_size, self.rescaled_size
        points[..., 0] = points[..., 0] * (w / w0)
        points[..., 1] = points[..., 1] * (h / h0)
        return points

    def scale_boxes(self, boxes) -> np.ndarray:
        """Scale boxes ``(..., 4)`` given as ``(x0, y0, x1, y1)`` like the image; returns float64.

        Like Meta's ``apply_boxes``, but the leading dimensions are kept.
        """
        boxes = np.asarray(boxes)
        if boxes.ndim == 0 or boxes.shape[-1] != 4:
            raise ValueError(
                f"boxes must have shape (..., 4) as (x0, y0, x1, y1), got shape {boxes.shape}"
            )
        return self.scale_points(boxes.reshape(*boxes.shape[:-1], 2, 2)).reshape(boxes.shape)

    def postprocess_mask(self, mask, threshold: float | None = None) -> np.ndarray:
        """Turn mask logits of size ``dst_size`` back into masks of size ``src_size``.

        ``mask`` is channels-first, ``(..., H, W)`` with ``(H, W) = dst_size`` (numpy or tf).
        The padding is cropped away and the result resized to ``src_size`` with
        :func:`resize_bilinear`, matching ``F.interpolate(..., mode="bilinear",
        align_corners=False)`` in Meta's ``Sam.postprocess_masks``.

        Returns
        -------
        np.ndarray
            ``(..., H0, W0)`` float32 logits, or a bool mask ``logits > threshold`` if
            ``threshold`` is given.
        """
        mask = np.asarray(mask)
        if mask.ndim < 2 or tuple(mask.shape[-2:]) != self.dst_size:
            raise ValueError(
                f"mask must have shape (..., H, W) with (H, W) = dst_size {self.dst_size}, "
                f"got {mask.shape}"
            )
        h, w = self.rescaled_size
        x = mask[..., :h, :w].astype(np.float32)
        if self.rescaled_size != self.src_size:
            x = resize_bilinear(x, self.src_size)
        x = np.ascontiguousarray(x)
        return x if threshold is None else x > threshold
