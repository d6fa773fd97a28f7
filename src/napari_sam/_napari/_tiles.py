"""Windows of large slices for the plugin: placing windowed masks, the ready-tiles overlay,
and embedding every tile in a worker (no napari, no Qt).

A *window* is ``(y0, y1, x0, x1)`` in slice pixels; a windowed mask covers only that part of
the slice (a :class:`~napari_sam.stacks.tiled_predictor.TiledPredictor` decodes one object
on one window, so a 16384 x 16384 slice never needs a full-size array per candidate).
``None`` for a window means the whole slice.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from ..segment.propagation import (
    crop_to_object,
    full_window,
    place,
    placed_iou,
    union_window,
)
from ..stacks.tiling import Tiling, plan_tiling

__all__ = ["CONTROL_NAMES", "OVERLAY_SIDE", "crop_to_object", "embed_all_tiles", "full_window",
           "in_helper_thread", "overlay_factor",
           "paint_tiles", "place", "placed_iou", "plan_for", "ready_plane", "render_windows",
           "shifted", "tile_states", "tiles_around", "union_window"]  # fmt: skip

#: The ready-tiles overlay has at most this many pixels a side per slice.
OVERLAY_SIDE = 512


#: How the plugin's errors name the tiling arguments (the widget's controls).
CONTROL_NAMES = {"diameter": "object diameter", "tile": "object diameter"}


def plan_for(slice_shape, input_size, diameter=None, model_diameter=None) -> Tiling | None:
    """The plugin's tiling of ``(Y, X)`` slices for a model input (None: not tiled).

    With ``diameter`` (the typical object diameter in image pixels, None: native resolution)
    the windows bring objects to the model's preferred size ``model_diameter``
    (:func:`~napari_sam.stacks.tiling.plan_tiling`); ValueError naming the control if bad.
    """
    return plan_tiling(tuple(slice_shape), tuple(input_size), diameter=diameter,
                       model_diameter=model_diameter, names=CONTROL_NAMES)  # fmt: skip


def shifted(prompt, window):
    """``prompt`` (an ObjectPrompt in window pixels) in slice pixels."""
    if window is None:
        return prompt
    off = np.array([window[2], window[0]], np.float32)  # x, y
    return replace(
        prompt,
        points=None if prompt.points is None else prompt.points + off,
        box=None if prompt.box is None else prompt.box + np.tile(off, 2),
    )


def render_windows(predictions) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """The chosen masks of ``predictions`` as objects 1, 2, ... over the union of their
    windows: ``(int32 plane, window)``; ``(1 x 1 zeros, None)`` when there are none."""
    if not predictions:
        return np.zeros((1, 1), np.int32), None
    window = union_window([full_window(p.mask, p.window) for p in predictions])
    plane = np.zeros((window[1] - window[0], window[3] - window[2]), np.int32)
    for k, p in enumerate(predictions):
        y0, y1, x0, x1 = full_window(p.mask, p.window)
        part = plane[y0 - window[0] : y1 - window[0], x0 - window[2] : x1 - window[2]]
        part[p.mask & (part == 0)] = k + 1
    return plane, window


def overlay_factor(slice_shape) -> int:
    """Slice pixels per overlay pixel (the overlay has at most :data:`OVERLAY_SIDE` a side)."""
    return max(1, math.ceil(max(slice_shape) / OVERLAY_SIDE))


def tiles_around(tiling: Tiling, windows, pad: int = 1) -> list[int]:
    """The tiles whose inner region meets one of ``windows``, and ``pad`` tiles around."""
    rows, cols = tiling.grid_shape
    out: set[int] = set()
    for y0, y1, x0, x1 in windows:
        r0, c0 = divmod(tiling.tile_at(max(y0, 0), max(x0, 0)), cols)
        r1, c1 = divmod(tiling.tile_at(max(y1 - 1, 0), max(x1 - 1, 0)), cols)
        out.update(r * cols + c for r in range(max(r0 - pad, 0), min(r1 + pad, rows - 1) + 1)
                   for c in range(max(c0 - pad, 0), min(c1 + pad, cols - 1) + 1))  # fmt: skip
    return sorted(out)


def tile_states(session, index, tiles, chunk: int = 256) -> dict[int, bool]:
    """``{tile: embedding in memory or in the store}`` of some ``tiles`` of slice ``index``.

    A worker runs it: every ``chunk`` tiles it sleeps a moment, so that a long scan (7225
    tiles of a 16384 x 16384 image) never holds the GIL away from the Qt thread for long.
    """
    ready = session.sp.ready_tiles(tuple(index))
    out = {}
    for n, t in enumerate(tiles):
        if n and n % chunk == 0:
            time.sleep(0.002)
        out[int(t)] = bool(ready[int(t)])
    return out


def paint_tiles(plane: np.ndarray, tiling: Tiling, factor: int, states) -> None:
    """Paint ``states`` ``{tile: ready}`` into an overlay ``plane`` (1 ready, 0 not) of one
    slice, on the tiles' inner regions (which partition the slice)."""
    for t, ready in states.items():
        y0, y1, x0, x1 = tiling.inner(t)
        plane[y0 // factor : math.ceil(y1 / factor), x0 // factor : math.ceil(x1 / factor)] = ready


def ready_plane(tiling: Tiling, ready, factor: int) -> np.ndarray:
    """A uint8 overlay of one slice: 1 on the inner regions of the ``ready`` tiles."""
    h, w = tiling.image_shape
    plane = np.zeros((math.ceil(h / factor), math.ceil(w / factor)), np.uint8)
    paint_tiles(plane, tiling, factor, dict.fromkeys(ready, True))
    return plane


def embed_all_tiles(
    session, index, cancel: Callable[[], bool] | None = None, every: float = 0.25,
    batch_size: int = 4,
) -> Iterator:  # fmt: skip
    """Embed every tile of every slice (a generator, run in a worker).

    The session's ``precompute`` runs in a helper thread; this generator passes on its
    progress at most every ``every`` seconds, with the tiles of slice ``index`` done since.

    Yields
    ------
    ("progress", done, total) or ("tiles", index, states)
        Tiles embedded so far (of all slices); ``{tile: ready}`` of slice ``index`` (the
        tiles just embedded, then at the end every tile: whether it is still in memory).

    Returns
    -------
    PrecomputeResult
        What the store's precompute returned.
    """
    relay = in_helper_thread(
        lambda progress: session.precompute(progress=progress, cancel=cancel,
                                            batch_size=batch_size),
        every, "napari-sam-embed-tiles",
    )  # fmt: skip
    n_tiles, here = len(session.tiling), session.sp.view.flat_index(tuple(index))
    painted = 0.0
    shown = here * n_tiles  # flat tiles painted so far (the store goes in order)
    while True:
        try:
            done, total = next(relay)
        except StopIteration as stop:
            result = stop.value
            break
        now = time.monotonic()
        yield ("progress", done, total)
        end = min(done, (here + 1) * n_tiles)
        if end > shown and (now - painted >= 4 * every or done == total):
            painted = now  # each paint redraws the canvas: less often
            yield (
                "tiles",
                tuple(index),
                dict.fromkeys(range(shown - here * n_tiles, end - here * n_tiles), True),
            )
            shown = end
    yield ("tiles", tuple(index), tile_states(session, index, range(n_tiles)))  # evictions
    return result


def in_helper_thread(run: Callable, every: float = 0.25, name: str = "napari-sam-helper"):
    """Run ``run(progress)`` in a helper thread (a generator, for a worker): yield the
    ``(done, total)`` of its ``progress`` calls at most every ``every`` seconds (and the last,
    ``done == total``); return what ``run`` returned, or raise what it raised."""
    items: queue.SimpleQueue = queue.SimpleQueue()
    out: dict = {}

    def target():
        try:
            out["result"] = run(lambda done, total: items.put((done, total)))
        except BaseException as err:  # noqa: BLE001 (re-raised in the worker)
            out["error"] = err
        finally:
            items.put(None)

    helper = threading.Thread(target=target, name=name, daemon=True)
    helper.start()
    last = 0.0
    while (item := items.get()) is not None:
        now = time.monotonic()
        if now - last >= every or item[0] == item[1]:
            last = now
            yield item
    helper.join()
    if "error" in out:
        raise out["error"]
    return out["result"]
