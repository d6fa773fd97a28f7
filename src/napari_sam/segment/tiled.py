"""Automatic segmentation of a tiled slice: grid prompts per tile, one label per object.

The point grid covers the whole slice at the density ``points_per_side`` gives one tile; each
tile decodes only the grid points of its inner region (the inner regions partition the slice,
so no point is decoded twice), on the tile's stored embedding. Masks are filtered as Meta's
generator does (predicted IoU, stability), kept cropped to their boxes, and:

- a mask that reaches an edge of its window inside the image is cut there: its prompt point is
  decoded again on a window centred on it (:meth:`TiledPredictor.predict_window
  <napari_sam.stacks.tiled_predictor.TiledPredictor.predict_window>`), so objects crossing tile
  borders are whole, never two labels;
- duplicates (the same object from points of neighbouring tiles) are removed by box NMS over
  the whole slice, then by painting best first, each mask keeping only free pixels;
- two touching labels decoded on different tiles that one candidate mask covers as a whole
  are one object seen in parts from each side of a border: merged
  (:func:`~napari_sam.segment.seams.merge_across_tiles`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..masks import mask_to_box
from . import amg_utils as amg
from .seams import merge_across_tiles

__all__ = ["CroppedMask", "grid_points", "pack_tile", "paint_masks", "segment_tiled",
           "unpack_tile"]  # fmt: skip

_CUT_TOLERANCE = 1.0  # pixels from a window edge inside the image: the mask is cut there


@dataclass
class CroppedMask:
    """A mask kept within its box: ``mask`` covers rows ``y0..`` and columns ``x0..``."""

    mask: np.ndarray
    y0: int
    x0: int
    score: float
    stability: float
    point: tuple[float, float]
    origin: int = 0  # the tile decoded on (a window centred on demand: -1 - its number)

    @property
    def box(self) -> np.ndarray:
        """``(x0, y0, x1, y1)`` inclusive, in slice pixels."""
        h, w = self.mask.shape
        return np.array([self.x0, self.y0, self.x0 + w - 1, self.y0 + h - 1], np.float32)

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def _crop(mask, y0: int, x0: int, box, score, stability, point, origin) -> CroppedMask:
    bx0, by0, bx1, by1 = (int(v) for v in box)
    part = np.ascontiguousarray(mask[by0 : by1 + 1, bx0 : bx1 + 1])
    return CroppedMask(part, y0 + by0, x0 + bx0, float(score), float(stability), point, origin)


def grid_points(shape, tile, points_per_side: int) -> np.ndarray:
    """``(N, 2)`` points (x, y) over a ``shape`` slice, ``points_per_side`` per tile side."""
    (h, w), (th, tw) = shape, tile
    sy, sx = th / points_per_side, tw / points_per_side
    ys = (np.arange(math.ceil(h / sy)) + 0.5) * sy
    xs = (np.arange(math.ceil(w / sx)) + 0.5) * sx
    ys, xs = ys[ys < h], xs[xs < w]
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], 1)


def paint_masks(masks: list[CroppedMask], shape, min_free_fraction: float = 0.5, painted=None):
    """A ``uint32`` label image: masks best first, each taking the pixels still free.

    A mask left with less than ``min_free_fraction`` of its area is dropped (a duplicate or
    fragment of a better one), as :func:`~napari_sam.segment.automatic.to_label_image` does.
    ``painted``, a list, receives the mask of each label in id order.
    """
    labels = np.zeros(tuple(shape), np.uint32)
    n = 0
    for m in sorted(masks, key=lambda m: -m.score):
        h, w = m.mask.shape
        view = labels[m.y0 : m.y0 + h, m.x0 : m.x0 + w]
        free = m.mask & (view == 0)
        kept = int(free.sum())
        if kept and kept >= min_free_fraction * m.area:
            n += 1
            view[free] = n
            if painted is not None:
                painted.append(m)
    return labels


def _quality(generator, threshold: float, logits, iou):
    """The generator's filters (see :func:`~napari_sam.segment.amg_utils.filter_by_quality`)."""
    return amg.filter_by_quality(logits, iou, generator.pred_iou_thresh,
                                 generator.stability_score_thresh, threshold,
                                 generator.stability_score_offset)  # fmt: skip


def _tile_masks(tp, index, t, points, generator):
    """Decode the grid points of tile ``t``: ``(found, keep, cut)``, the masks that passed
    the filters, the positions in ``found`` of those the tile's NMS keeps, the cut ones."""
    tiling, view = tp.tiling, tp.view
    h, w = view.slice_shape
    wy0, wy1, wx0, wx1 = tiling.window(t)
    vh, vw = min(wy1, h) - wy0, min(wx1, w) - wx0  # the part of the window inside the image
    tp.predictor.set_embedding(tp.tile_embedding(index, t), (wy1 - wy0, wx1 - wx0))
    crop_box = [wx0, wy0, wx0 + vw, wy0 + vh]
    local = (points - np.array([wx0, wy0])).astype(np.float32)
    found, cut = [], []
    step = generator.points_per_batch
    for i in range(0, len(local), step):
        batch = local[i : i + step]
        masks, iou, pts, stab = generator.candidates(tp.predictor, batch, (vh, vw))
        masks = masks[:, :vh, :vw]
        if not len(masks):
            continue
        boxes = mask_to_box(masks)
        near = amg.is_box_near_crop_edge(boxes, crop_box, [0, 0, w, h], _CUT_TOLERANCE)
        for m, b, s, st, p, is_cut in zip(masks, boxes, iou, stab, pts, near, strict=True):
            if not m.any():
                continue
            rec = _crop(m, wy0, wx0, b, s, st, (float(p[0] + wx0), float(p[1] + wy0)), t)
            (cut if is_cut else found).append(rec)
    keep = []
    if found:
        keep = amg.box_nms(np.stack([m.box for m in found]), [m.score for m in found],
                           generator.box_nms_thresh)  # fmt: skip
    return found, [int(i) for i in keep], cut


def pack_tile(found: list[CroppedMask], keep, cut: list[CroppedMask]) -> dict:
    """The results of one tile as plain arrays (for a work folder; :func:`unpack_tile`)."""
    masks = found + cut
    shapes = np.array([m.mask.shape for m in masks], np.int64).reshape(-1, 2)
    bits = np.concatenate([m.mask.ravel() for m in masks]) if masks else np.zeros(0, bool)
    return {
        "shapes": shapes,
        "origin": np.array([[m.y0, m.x0, m.origin] for m in masks], np.int64).reshape(-1, 3),
        "values": np.array([[m.score, m.stability, *m.point] for m in masks],
                           np.float64).reshape(-1, 4),  # fmt: skip
        "bits": np.packbits(bits), "n_bits": np.array(bits.size),
        "n_found": np.array(len(found)), "keep": np.asarray(keep, np.int64),
    }  # fmt: skip


def unpack_tile(arrays: dict):
    """``(found, keep, cut)`` from :func:`pack_tile`'s arrays."""
    bits = np.unpackbits(arrays["bits"], count=int(arrays["n_bits"])).astype(bool)
    masks, start = [], 0
    for (h, w), (y0, x0, origin), (score, stab, px, py) in zip(
        arrays["shapes"], arrays["origin"], arrays["values"], strict=True
    ):
        mask = bits[start : start + h * w].reshape(h, w)
        start += h * w
        masks.append(CroppedMask(mask, int(y0), int(x0), float(score), float(stab),
                                 (float(px), float(py)), int(origin)))  # fmt: skip
    n = int(arrays["n_found"])
    return masks[:n], [int(i) for i in arrays["keep"]], masks[n:]


def _redecode(tp, index, cut: list[CroppedMask], generator) -> list[CroppedMask]:
    """Decode the points of cut masks again on windows centred on them (one per object)."""
    if not cut:
        return []
    keep = amg.box_nms(np.stack([m.box for m in cut]), [m.score for m in cut],
                       generator.box_nms_thresh)  # fmt: skip
    threshold = tp.model.mask_threshold
    out = []
    for i in keep:
        x, y = cut[i].point
        logits, iou, _, (y0, _, x0, _) = tp.predict_window(
            index, points=[[x, y]], labels=[1], multimask_output=True, return_logits=True
        )
        ok, stab = _quality(generator, threshold, logits, iou)
        if not ok.any():
            continue
        j = int(np.argmax(np.where(ok, iou, -np.inf)))
        mask = logits[j] > threshold
        if mask.any():
            box = mask_to_box(mask[None])[0]
            out.append(_crop(mask, y0, x0, box, iou[j], stab[j], (x, y), -1 - len(out)))
    return out


def segment_tiled(tp, index, generator, progress=None, tiles=None) -> np.ndarray:
    """Automatic segmentation of slice ``index`` of a tiled predictor: ``uint32 (Y, X)`` labels.

    Parameters
    ----------
    tp : TiledPredictor
        The stack, its tiling and tile embeddings.
    index : int or tuple of int
        The slice.
    generator : AutomaticMaskGenerator
        Its settings are used (``points_per_side`` per tile, thresholds, ``box_nms_thresh``,
        ``points_per_batch``, ``min_mask_region_area``); ``crop_n_layers`` must be 0 (the
        tiles replace crops).
    progress : callable, optional
        ``progress(done, total)`` before the first tile (``done`` 0) and after each tile.
    tiles : TileResults, optional
        Each tile's results kept between runs (``tiles.get(t)``: the arrays of
        :func:`pack_tile`, or None; ``tiles.put(t, arrays)``): a tile it has is not decoded
        again, so a killed run on a large slice resumes from the tiles it finished.
    """
    if generator.crop_n_layers:
        raise ValueError("crop_n_layers: crops are not used on tiled images (the tiles are)")
    tiling, shape = tp.tiling, tp.view.slice_shape
    pps = int(round(math.sqrt(len(generator.point_grids[0]))))
    points = grid_points(shape, tiling.tile, pps)
    owner = tiling.tiles_at(points[:, 1], points[:, 0])
    accept, cut, pool = [], [], []
    if progress is not None:
        progress(0, len(tiling))
    for t in range(len(tiling)):
        mine = points[owner == t]
        stored = None if tiles is None or not len(mine) else tiles.get(t)
        if stored is not None:
            found, keep, cut_here = unpack_tile(stored)
        elif len(mine):
            found, keep, cut_here = _tile_masks(tp, index, t, mine, generator)
            if tiles is not None:
                tiles.put(t, pack_tile(found, keep, cut_here))
        else:
            found, keep, cut_here = [], [], []
        pool += found
        accept += [found[i] for i in keep]
        cut += cut_here
        if progress is not None:
            progress(t + 1, len(tiling))
    redecoded = _redecode(tp, index, cut, generator)
    accept += redecoded
    pool += redecoded
    tp.release_slice()
    if generator.min_mask_region_area > 0:
        for m in accept:
            m.mask, _ = amg.remove_small_regions(m.mask, generator.min_mask_region_area, "holes")
            m.mask, _ = amg.remove_small_regions(m.mask, generator.min_mask_region_area, "islands")
    accept = [m for m in accept if m.mask.any()]
    if accept:
        keep = amg.box_nms(np.stack([m.box for m in accept]), [m.score for m in accept],
                           generator.box_nms_thresh)  # fmt: skip
        accept = [accept[i] for i in keep]
    painted: list[CroppedMask] = []
    labels = paint_masks(accept, shape, painted=painted)
    return merge_across_tiles(labels, painted, pool)
