"""Tiles of a large image: overlapping windows the model sees at native resolution.

A :class:`Tiling` covers a ``(Y, X)`` slice with windows of ``tile`` pixels that overlap by at
least ``2 * halo``. Each window has an *inner region*; the inner regions partition the slice
(each boundary lies in the middle of an overlap, so a pixel of an inner region is at least
``halo`` pixels from the edge of its window, unless that edge is the image's). A window is
always ``tile`` pixels: one that would reach past a slice smaller than the tile is padded.

:func:`plan_tiling` picks the tiling of an image for a model: tiles of the model's input size
when the image is more than 1.5 times larger, or tiles sized so that objects of
``diameter`` pixels appear at the model's preferred object size. :class:`TileView` shows every
window of every slice of a :class:`~napari_sam.stacks.view.StackView` as a slice of its own,
read lazily, so the embedding store keeps a record per tile per slice.

This module does not import TensorFlow (the command line checks tilings before loading it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .tiling_options import (
    ARG_NAMES,
    AUTO_TILE_FACTOR,
    MAX_TILE_PIXELS,
    MIN_TILE,
    OptionError,
    as_pair,
    check_tiling,
)

__all__ = [
    "describe_tiling",
    "AUTO_TILE_FACTOR",
    "MIN_TILE",
    "TileView",
    "Tiling",
    "check_tiling",
    "plan_tiling",
    "read_window",
]

def _axis(length: int, tile: int, halo: int) -> list[tuple[int, int, int]]:
    """``(window start, inner start, inner stop)`` of each window along one axis."""
    if length <= tile:
        return [(0, 0, length)]
    stride = tile - 2 * halo
    n = math.ceil((length - tile) / stride) + 1
    starts = [round(i * (length - tile) / (n - 1)) for i in range(n)]
    bounds = [0] + [(starts[i] + starts[i + 1] + tile) // 2 for i in range(n - 1)] + [length]
    return [(starts[i], bounds[i], bounds[i + 1]) for i in range(n)]


@dataclass(frozen=True)
class Tiling:
    """Overlapping windows over a ``(Y, X)`` slice.

    Parameters
    ----------
    image_shape : tuple of int
        ``(Y, X)`` of the slice.
    tile : int or (int, int)
        Window size in image pixels (at least :data:`MIN_TILE`).
    halo : int or (int, int)
        Overlap on each side: neighbouring windows overlap by at least ``2 * halo``
        (under half the tile). Choose more than half the largest object.

    Attributes
    ----------
    rows, cols : tuple of (int, int, int)
        ``(window start, inner start, inner stop)`` per window row / column.
    """

    image_shape: tuple[int, int]
    tile: tuple[int, int]
    halo: tuple[int, int]

    def __init__(self, image_shape, tile, halo):
        check_tiling(tile, halo, geometry_only=True)
        object.__setattr__(self, "image_shape", as_pair(image_shape, "image_shape"))
        object.__setattr__(self, "tile", as_pair(tile, "tile"))
        object.__setattr__(self, "halo", as_pair(halo, "halo"))
        (h, w), (th, tw), (hy, hx) = self.image_shape, self.tile, self.halo
        object.__setattr__(self, "rows", tuple(_axis(h, th, hy)))
        object.__setattr__(self, "cols", tuple(_axis(w, tw, hx)))

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Windows along Y and X."""
        return len(self.rows), len(self.cols)

    def window(self, t: int) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of window ``t`` (row-major); it may reach past the image."""
        r, c = divmod(int(t), len(self.cols))
        y0, x0 = self.rows[r][0], self.cols[c][0]
        return y0, y0 + self.tile[0], x0, x0 + self.tile[1]

    def inner(self, t: int) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of the inner region of window ``t``."""
        r, c = divmod(int(t), len(self.cols))
        return self.rows[r][1], self.rows[r][2], self.cols[c][1], self.cols[c][2]

    def tile_at(self, y: float, x: float) -> int:
        """The window whose inner region holds pixel ``(y, x)`` (clipped into the image)."""
        r = next(i for i, (_, _, b) in enumerate(self.rows) if y < b or i == len(self.rows) - 1)
        c = next(i for i, (_, _, b) in enumerate(self.cols) if x < b or i == len(self.cols) - 1)
        return r * len(self.cols) + c

    def tiles_at(self, ys, xs) -> np.ndarray:
        """:meth:`tile_at` of many pixels at once (arrays of rows and columns)."""
        row_ends = np.array([b for _, _, b in self.rows[:-1]])
        col_ends = np.array([b for _, _, b in self.cols[:-1]])
        r = np.searchsorted(row_ends, np.asarray(ys), side="right")
        c = np.searchsorted(col_ends, np.asarray(xs), side="right")
        return r * len(self.cols) + c

    def margin(self, t: int, box) -> float:
        """Distance of ``box`` (x0, y0, x1, y1) to the nearest window edge inside the image.

        Negative when the box leaves the window; ``inf`` for a single window.
        """
        y0, y1, x0, x1 = self.window(t)
        h, w = self.image_shape
        bx0, by0, bx1, by1 = box
        gaps = [
            by0 - y0 if y0 > 0 else math.inf,
            bx0 - x0 if x0 > 0 else math.inf,
            y1 - by1 if y1 < h else math.inf,
            x1 - bx1 if x1 < w else math.inf,
        ]
        return min(gaps)

    def best_tile(self, box) -> tuple[int, float]:
        """The window holding ``box`` (x0, y0, x1, y1) farthest from its inner edges.

        Returns ``(t, margin)``; the margin is negative when no window holds the box.
        """
        margins = [self.margin(t, box) for t in range(len(self))]
        t = int(np.argmax(margins))
        return t, margins[t]

    def signature(self) -> str:
        """A stable string of the image shape, tile and halo (part of the store's key)."""
        (h, w), (th, tw), (hy, hx) = self.image_shape, self.tile, self.halo
        return f"tiles:image={h}x{w}:tile={th}x{tw}:halo={hy}x{hx}"

    def __repr__(self) -> str:
        return (
            f"Tiling(image_shape={self.image_shape}, tile={self.tile}, halo={self.halo}, "
            f"grid={self.grid_shape})"
        )


def describe_tiling(tiling: Tiling | None) -> dict | None:
    """``{"tile": [h, w], "halo": [h, w]}`` of ``tiling`` for records; None when untiled."""
    if tiling is None:
        return None
    return {"tile": list(tiling.tile), "halo": list(tiling.halo)}


def plan_tiling(
    image_shape,
    input_size,
    tile=None,
    halo=None,
    no_tile: bool = False,
    diameter=None,
    model_diameter=None,
    names=None,
) -> Tiling | None:
    """The tiling of a ``(Y, X)`` slice for a model, or None for the whole image at once.

    Parameters
    ----------
    image_shape : tuple of int
        ``(Y, X)`` of a slice.
    input_size : tuple of int
        The model's input size (e.g. ``(256, 256)``).
    tile : int or (int, int), optional
        Window size in image pixels; each window is resized to the model input. Default: the
        input size (native resolution), or the size ``diameter`` asks for.
    halo : int or (int, int), optional
        Overlap; default an eighth of the tile.
    no_tile : bool
        Never tile: the whole image is resized to the model input (Meta's behaviour).
    diameter : float or "native", optional
        The typical object diameter in image pixels ("native", as None: no resampling; the
        apps resample by default when objects look far from the model's size, and "native"
        tells them not to). Windows are sized
        ``input_size * diameter / model_diameter`` so that objects reach the model at the
        size it works best at; the masks come back in image pixels.
    model_diameter : float, optional
        That size for the model (:attr:`ModelEntry.object_diameter
        <napari_sam.weights.registry.ModelEntry.object_diameter>`); needed with ``diameter``.
    names : dict, optional
        How error messages name the arguments (see :func:`check_tiling`).

    Returns
    -------
    Tiling or None
        With ``tile`` or ``diameter`` always a tiling (a single padded window for a small
        image); by default a tiling only when a side of the image is more than
        :data:`AUTO_TILE_FACTOR` times the input's, else None.

    Raises
    ------
    ValueError
        Naming the argument, for the cases of :func:`check_tiling`, ``no_tile`` with any of
        the others, ``tile`` with ``diameter``, or ``diameter`` for a model with no object size.
    """
    check_tiling(tile, halo, diameter, no_tile, names)
    diameter = None if diameter == "native" else diameter
    if no_tile:
        return None
    n = {**ARG_NAMES, **(names or {})}
    h, w = as_pair(image_shape, "image_shape")
    ih, iw = as_pair(input_size, "input_size")
    if diameter is not None:
        if model_diameter is None:
            raise OptionError(
                n['diameter'], f"this model records no preferred object size; give a tile "
                f"size instead ({n['tile']})"
            )
        if float(diameter) > max(h, w):
            raise OptionError(
                n['diameter'], f"objects of {float(diameter):g} px are larger than the image "
                f"({h} x {w} px); expected the typical object diameter, at most {max(h, w)} px"
            )
        scale = float(diameter) / float(model_diameter)
        tile = (round(ih * scale), round(iw * scale))
        if tile[0] * tile[1] > MAX_TILE_PIXELS:
            raise OptionError(
                n['diameter'], f"objects of {float(diameter):g} px would need windows of "
                f"{tile[0]} x {tile[1]} px, too large for memory; expected at most "
                f"{float(model_diameter) * math.isqrt(MAX_TILE_PIXELS) / max(ih, iw):g} px"
            )
        if min(tile) < MIN_TILE:
            raise OptionError(
                n['diameter'], f"objects of {float(diameter):g} px would need tiles of {tile} px, "
                f"under the {MIN_TILE} px minimum"
            )
    elif tile is None:
        if max(h / ih, w / iw) <= AUTO_TILE_FACTOR:
            return None
        tile = (ih, iw)
    th, tw = as_pair(tile, n["tile"])
    if halo is None:
        halo = (th // 8, tw // 8)
    check_tiling((th, tw), halo, names=names)
    return Tiling((h, w), (th, tw), halo)


def read_window(view, index, window, pad_value) -> np.ndarray:
    """Window ``(y0, y1, x0, x1)`` of slice ``index`` as ``(y1-y0, x1-x0, C)``, padded past
    the bottom/right of the image with ``pad_value`` (per channel)."""
    y0, y1, x0, x1 = window
    h, w = view.slice_shape
    region = view.get_region(index, slice(y0, min(y1, h)), slice(x0, min(x1, w)))
    if region.shape[:2] == (y1 - y0, x1 - x0):
        return region
    out = np.empty((y1 - y0, x1 - x0, region.shape[-1]), region.dtype)
    out[...] = np.asarray(pad_value).astype(region.dtype)
    out[: region.shape[0], : region.shape[1]] = region
    return out


class TileView:
    """Every window of every slice of a stack, as the slices of a view of their own.

    Flat slice ``n * len(tiling) + t`` is window ``t`` of slice ``n`` of ``base``, read lazily
    (only that region of a memory-mapped, zarr or TIFF array). Windows reaching past the image
    are padded at the bottom/right with ``pad_value`` (per channel; e.g. the fitted
    normalisation's low value, which maps to 0).

    Parameters
    ----------
    base : StackView
        The stack.
    tiling : Tiling
        Its tiling (``tiling.image_shape`` must be the slice shape).
    pad_value : sequence of float, optional
        Per-channel value of padded pixels; default 0.
    """

    def __init__(self, base, tiling: Tiling, pad_value=None):
        if tuple(tiling.image_shape) != tuple(base.slice_shape):
            raise ValueError(
                f"tiling: made for slices of {tiling.image_shape}, the stack's are "
                f"{base.slice_shape}"
            )
        self.base, self.tiling = base, tiling
        self.n_tiles = len(tiling)
        self.dtype, self.n_channels = base.dtype, base.n_channels
        self.stack_shape = (*base.stack_shape, self.n_tiles)
        self.slice_axes = base.slice_axes + "#"
        self.slice_shape = tuple(tiling.tile)
        pad = np.zeros(self.n_channels) if pad_value is None else np.asarray(pad_value)
        self.pad_value = np.broadcast_to(pad, (self.n_channels,))

    def tiling_signature(self) -> str:
        """The tiling's signature and the padding value (the embedding store keys on it)."""
        return f"{self.tiling.signature()}:pad={','.join(repr(float(v)) for v in self.pad_value)}"

    def __len__(self) -> int:
        return len(self.base) * self.n_tiles

    def flat(self, index, t: int) -> int:
        """The flat number of window ``t`` of base slice ``index``."""
        return self.base.flat_index(index) * self.n_tiles + int(t)

    def index_tuple(self, index) -> tuple[int, ...]:
        """``(*base index, t)`` of a flat number or an index tuple."""
        if isinstance(index, (int, np.integer)):
            n = len(self)
            if not -n <= int(index) < n:
                from .view import SliceIndexError

                raise SliceIndexError(f"index: tile {int(index)} out of range for {n} tile(s)")
            s, t = divmod(int(index) % n, self.n_tiles)
            return (*self.base.index_tuple(s), t)
        index = tuple(int(j) for j in index)
        if not index or not 0 <= index[-1] < self.n_tiles:
            raise ValueError(f"index: {index} has no tile number below {self.n_tiles}")
        return (*self.base.index_tuple(index[:-1]), index[-1])

    def flat_index(self, index) -> int:
        """The flat number of a flat number or ``(*base index, t)``."""
        t = self.index_tuple(index)
        return self.flat(t[:-1], t[-1])

    def get_slice(self, index) -> np.ndarray:
        """Window ``t`` of a base slice as a ``(tile_y, tile_x, C)`` array (padded if needed)."""
        *s, t = self.index_tuple(index)
        return read_window(self.base, tuple(s), self.tiling.window(t), self.pad_value)

    def __repr__(self) -> str:
        return f"TileView({self.base!r}, {self.tiling!r})"
