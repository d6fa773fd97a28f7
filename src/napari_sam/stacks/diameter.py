"""An estimate of the typical object diameter of a stack (for ``diameter="auto"``).

Classical and quick: the middle slice (a central region of at most 2048 x 2048 pixels of a
larger one) is smoothed, thresholded with Otsu's method and opened; the estimate is the median
equivalent diameter (``2 * sqrt(area / pi)``) of the foreground components. In a z-stack a
slice cuts most objects away from their widest section, so there the slices around it (up to
:data:`Z_SLICES`, in a central region of at most 512 x 512 pixels) are thresholded alike,
the foreground is labelled in 3-D, and each object counts with its widest section. Touching
objects that merge into one component make it larger, objects split by noise smaller: it is a
starting point for ``diameter``, not a measurement. No TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SIZE_HINT_RANGE", "Z_SLICES", "SizeFit", "estimate_diameter", "fit_to_model",
           "native_scale"]

# objects this much smaller or larger than a model's preferred size, as the model sees them
# at the default settings, are worth resampling (docs/tiny-model.md, real nuclei against the
# right size: at 0.68 x sam_tiny_nuclei's clicks lose 0.03 IoU and boxes 0.04, at 0.56 x
# (resized whole) 0.18 and 0.11, at 1.54 x clicks 0.22; at 0.79 x nothing); the apps then
# resample (the CLI's --diameter, the widget's Object size) unless told not to
SIZE_HINT_RANGE = (0.75, 1.3)
Z_SLICES = 11  # slices of a z-stack read around the measured one
_MAX_SIDE = 2048
_MAX_SIDE_Z = 512  # a z-stack reads Z_SLICES regions: 0.15 s on a 2-core CPU
_MIN_AREA = 9  # pixels: smaller components are noise


def estimate_diameter(view, index=None, channel: int = 0) -> float | None:
    """The median equivalent diameter, in pixels, of the bright objects of one slice.

    Parameters
    ----------
    view : StackView
        The stack (only a region of one slice is read).
    index : int or tuple of int, optional
        The slice; default the middle one.
    channel : int
        The channel holding the objects (e.g. the nuclear stain).

    Returns
    -------
    float or None
        The estimate, or None when the slice has no foreground objects (e.g. constant).
    """
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    index = view.index_tuple(len(view) // 2 if index is None else index)
    others = _z_neighbours(view, index)
    side = _MAX_SIDE if len(others) == 1 else _MAX_SIDE_Z
    h, w = view.slice_shape
    sy, sx = min(h, side), min(w, side)
    rows, cols = slice((h - sy) // 2, (h - sy) // 2 + sy), slice((w - sx) // 2, (w - sx) // 2 + sx)

    def smoothed(i):
        region = view.get_region(i, rows, cols)[..., channel]
        return ndi.gaussian_filter(np.nan_to_num(region.astype(np.float32)), 1.0)

    x = smoothed(index)
    if not np.isfinite(x).all() or x.max() <= x.min():
        return None
    threshold = threshold_otsu(x)
    fg = np.stack([ndi.binary_opening((x if i == index else smoothed(i)) > threshold)
                   for i in others])  # fmt: skip
    labels, n = ndi.label(fg)  # one slice: its 2-D components; a z-stack: 3-D objects
    if n == 0:
        return None
    per_slice = np.stack([np.bincount(z.ravel(), minlength=n + 1) for z in labels])
    areas = per_slice.max(axis=0)[1:]  # each object's widest section
    areas = areas[areas >= _MIN_AREA]
    if not len(areas):
        return None
    return float(np.median(2 * np.sqrt(areas / np.pi)))


def _z_neighbours(view, index: tuple) -> list[tuple]:
    """``index`` and the slices around it along a ``Z`` axis (up to :data:`Z_SLICES` in
    order), or ``[index]`` alone when the stack has no z-axis of several slices."""
    axes = view.slice_axes
    if "Z" not in axes or view.stack_shape[axes.index("Z")] < 2:
        return [index]
    k, n = axes.index("Z"), view.stack_shape[axes.index("Z")]
    start = min(max(0, index[k] - Z_SLICES // 2), max(0, n - Z_SLICES))
    return [index[:k] + (z,) + index[k + 1:] for z in range(start, min(n, start + Z_SLICES))]


def native_scale(slice_shape, input_size) -> float:
    """How the default settings scale a ``(Y, X)`` slice on its way into a model of input
    ``input_size``: 1 when it is tiled at native resolution, else the resize of the whole
    slice to the input (SAM's longest side: less than 1 for a larger slice, more for a
    smaller one)."""
    from .tiling import plan_tiling

    if plan_tiling(tuple(slice_shape), tuple(input_size)) is not None:
        return 1.0
    (h, w), (ih, iw) = slice_shape, input_size
    return min(ih / h, iw / w)


@dataclass(frozen=True)
class SizeFit:
    """Objects found far from a model's preferred size at the default settings.

    Attributes
    ----------
    diameter : float
        Their estimated diameter in image pixels (what ``diameter=`` resamples with).
    seen : float
        Their diameter as the default settings bring them to the model (``diameter`` times
        :func:`native_scale`).
    problem : str
        Empty when resampling to ``diameter`` can be planned; else why not (the planner's
        message), and the image stays as it is.
    """

    diameter: float
    seen: float
    problem: str = ""


def fit_to_model(view, model_diameter: float, input_size, index=None) -> SizeFit | None:
    """Whether the objects of slice ``index`` (default the middle one) reach a model of input
    ``input_size`` at the default settings outside :data:`SIZE_HINT_RANGE` times its
    preferred size ``model_diameter``: a :class:`SizeFit` if so, None when inside or nothing
    was found to measure. What the apps resample to by default."""
    from .tiling import plan_tiling

    d = estimate_diameter(view, index=index)
    if d is None:
        return None
    seen = d * native_scale(view.slice_shape, input_size)
    low, high = SIZE_HINT_RANGE
    if low <= seen / model_diameter <= high:
        return None
    try:
        plan_tiling(tuple(view.slice_shape), tuple(input_size), diameter=d,
                    model_diameter=model_diameter)  # fmt: skip
    except ValueError as err:
        return SizeFit(d, seen, str(err))
    return SizeFit(d, seen)
