"""The options of a tiling checked on their own: tile and halo sizes, the object diameter.

Cheap (numpy only, no image): the command line checks them before it reads a file or imports
TensorFlow. :func:`napari_sam.stacks.tiling.plan_tiling` checks them again with the image.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "ARG_NAMES",
    "AUTO_TILE_FACTOR",
    "MAX_TILE_PIXELS",
    "MIN_TILE",
    "OptionError",
    "as_pair",
    "check_tiling",
]

#: Smallest tile side accepted, in pixels.
MIN_TILE = 64
#: Largest window accepted, in pixels (8192 x 8192: 0.75 GiB of float32 RGB).
MAX_TILE_PIXELS = 8192 * 8192
#: Tiling switches on by default when an image side exceeds this many model inputs.
AUTO_TILE_FACTOR = 1.5


class OptionError(ValueError):
    """A tiling option's value is wrong: ``option`` (as the caller names it) and ``message``;
    its text is ``"option: message"``."""

    def __init__(self, option: str, message: str):
        self.option, self.message = option, message
        super().__init__(f"{option}: {message}")

    def __reduce__(self):
        return type(self), (self.option, self.message)


def as_pair(value, name: str) -> tuple[int, int]:
    v = np.atleast_1d(np.asarray(value))
    if v.size not in (1, 2) or v.dtype.kind not in "iuf" or not np.all(v == np.round(v)):
        raise OptionError(name, f"expected an integer or a (Y, X) pair of integers, got {value!r}")
    v = np.broadcast_to(v, 2)
    return int(v[0]), int(v[1])


ARG_NAMES = {"tile": "tile", "halo": "halo", "diameter": "diameter", "no_tile": "no_tile"}


def check_tiling(tile=None, halo=None, diameter=None, no_tile: bool = False, names=None,
                 geometry_only: bool = False) -> None:  # fmt: skip
    """Check tile, halo and diameter values and how they combine (before any image is read).

    Parameters
    ----------
    tile, halo, diameter, no_tile
        As for :func:`plan_tiling`; ``diameter`` may also be ``"auto"`` (resolved by the
        caller before planning) or ``"native"`` (no resampling: what no diameter plans).
    names : dict, optional
        How the messages name each argument, e.g. ``{"tile": "--tile"}`` on the command line.
    geometry_only : bool
        Check only what makes a tiling at all (a :class:`~napari_sam.stacks.tiling.Tiling`);
        by default also what makes a sensible one: windows that fit in memory and a halo of at
        most 3/8 of the tile (tiles advancing at least a quarter of their size).

    Raises
    ------
    ValueError
        Starting with the argument's name: a tile under :data:`MIN_TILE` pixels, a negative
        halo or one of half the tile or more, a diameter that is not a positive number,
        ``no_tile`` with any of the others, ``tile`` with ``diameter``.
    """
    n = {**ARG_NAMES, **(names or {})}
    if diameter == "native":
        diameter = None
    if diameter is not None and diameter != "auto":
        try:
            d = float(diameter)
        except (TypeError, ValueError):
            d = float("nan")
        if not d > 0 or not math.isfinite(d):
            raise OptionError(
                n['diameter'], f"expected a positive object size in pixels, auto or native, "
                f"got {diameter}"
            )
    if tile is not None:
        th, tw = as_pair(tile, n["tile"])
        if min(th, tw) < MIN_TILE:
            raise OptionError(n['tile'], f"expected at least {MIN_TILE} pixels a side, got {tile}")
        if not geometry_only and th * tw > MAX_TILE_PIXELS:
            side = math.isqrt(MAX_TILE_PIXELS)
            raise OptionError(n['tile'], f"{tile} px windows are too large for memory; "
                             f"expected at most {side} px a side")  # fmt: skip
    if halo is not None:
        hy, hx = as_pair(halo, n["halo"])
        if min(hy, hx) < 0:
            raise OptionError(n['halo'], f"expected 0 or more pixels, got {halo}")
        if tile is not None and (2 * hy >= th or 2 * hx >= tw):
            size = f"{th}" if th == tw else f"{th}x{tw}"
            raise OptionError(
                n['halo'], f"{halo} px is half the tile ({size} px) or more; the tiles would "
                f"not advance. Expected a halo under {min(th, tw) // 2} px (about half the "
                "largest object is enough)"
            )
        if not geometry_only and tile is not None and (8 * hy > 3 * th or 8 * hx > 3 * tw):
            size = f"{th}" if th == tw else f"{th}x{tw}"
            raise OptionError(
                n['halo'], f"{halo} px leaves the {size} px tiles advancing only "
                f"{min(th - 2 * hy, tw - 2 * hx)} px (many times the work); expected at most "
                f"{3 * min(th, tw) // 8} px, 3/8 of the tile"
            )
    if no_tile:
        given = [n[k] for k, v in (("tile", tile), ("halo", halo), ("diameter", diameter)) if v]
        if given:
            raise OptionError(n['no_tile'], f"cannot be combined with {' or '.join(given)}")
    if tile is not None and diameter is not None:
        raise OptionError(
            n['tile'], f"give either {n['tile']} or {n['diameter']} (the diameter sets the "
            "tile size)"
        )
