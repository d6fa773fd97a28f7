"""Automatic mask generation ("segment everything"), a port of Meta's ``SamAutomaticMaskGenerator``.

A grid of single-point prompts is decoded by a :class:`~napari_sam.SAMPredictor` (three masks
per point); masks with a low predicted IoU or stability score are dropped, duplicates removed
by box non-maximum suppression, optionally on overlapping crops too. :func:`to_label_image`
turns the masks into a label image; :func:`napari_sam.segment.driver.segment_stack` does it for
every slice of a stack and links objects across neighbouring slices into 3-D labels (see
:mod:`napari_sam.segment.linking`).
"""

from __future__ import annotations

import numpy as np

from ..masks import mask_to_box
from ..predict.candidates import decode_points, upscale_candidates
from ..predict.predictor import SAMPredictor
from . import amg_utils as amg

__all__ = ["AutomaticMaskGenerator", "to_label_image"]

_KEYS = ("logits", "iou_preds", "points", "stability_score", "masks", "boxes")


def _select(data: dict, keep) -> dict:
    return {k: (v[keep] if isinstance(v, np.ndarray) else [v[i] for i in keep]) for k, v in
            data.items()}  # fmt: skip


def _cat(parts: list[dict]) -> dict:
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class AutomaticMaskGenerator:
    """Masks of every object in an image from a grid of point prompts.

    Parameters are those of Meta's ``SamAutomaticMaskGenerator`` (binary masks only).

    Parameters
    ----------
    model_or_predictor : SegmentAnythingModel or SAMPredictor
        The model, or a predictor of it (e.g. ``StackPredictor.predictor``) to share.
    points_per_side : int
        Grid points along each side of the image (``points_per_side**2`` prompts).
    points_per_batch : int
        Prompts decoded together.
    pred_iou_thresh : float
        Keep masks whose predicted IoU is above this (0 keeps all).
    stability_score_thresh : float
        Keep masks whose stability score is at least this (0 keeps all).
    stability_score_offset : float
        Logit offset of the stability score.
    box_nms_thresh : float
        Box IoU above which the lower-scored of two masks of one crop is dropped.
    crop_n_layers : int
        Run again on ``(2**i)**2`` overlapping crops for layers ``i = 1 .. crop_n_layers``.
    crop_nms_thresh : float
        Box IoU for removing duplicates between crops (smaller crops lose).
    crop_overlap_ratio : float
        Overlap of neighbouring first-layer crops, as a fraction of the short image side.
    crop_n_points_downscale_factor : int
        Layer ``i`` uses ``points_per_side / factor**i`` points a side.
    min_mask_region_area : int
        If > 0, fill holes and remove islands smaller than this, then run NMS again.
    """

    def __init__(
        self,
        model_or_predictor,
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        min_mask_region_area: int = 0,
    ):
        if isinstance(model_or_predictor, SAMPredictor):
            self.predictor = model_or_predictor
        else:
            self.predictor = SAMPredictor(model_or_predictor)
        if points_per_side < 1 or points_per_batch < 1 or crop_n_layers < 0:
            raise ValueError(
                "points_per_side and points_per_batch must be positive, crop_n_layers >= 0"
            )
        self.point_grids = amg.build_all_layer_point_grids(
            points_per_side, crop_n_layers, crop_n_points_downscale_factor
        )
        self.points_per_side = int(points_per_side)
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area

    def describe(self) -> dict:
        """The method and its settings (for work-folder keys and records)."""
        return {"method": "amg", "points_per_side": self.points_per_side,
                **{k: getattr(self, k) for k in ("points_per_batch", "pred_iou_thresh",
                                                 "stability_score_thresh", "box_nms_thresh",
                                                 "crop_n_layers")}}  # fmt: skip

    def generate(self, image: np.ndarray, embedding: np.ndarray | None = None,
                 progress=None) -> list[dict]:  # fmt: skip
        """Masks of everything in an ``(H, W, C)`` image with values in ``[0, 255]``.

        Parameters
        ----------
        image : ndarray
            The image (as given to :meth:`SAMPredictor.set_image`).
        embedding : ndarray, optional
            A precomputed embedding of the whole image, used instead of encoding it again
            (crops, if any, are always encoded).
        progress : callable, optional
            ``progress(done, total)`` before the first batch of grid points (``done`` 0) and
            after each (over all crops); it may raise to stop the generation.

        Returns
        -------
        list of dict
            One record per mask, as Meta's: ``segmentation`` (bool ``(H, W)``), ``area``
            (int), ``bbox`` (XYWH), ``predicted_iou``, ``point_coords`` (``[[x, y]]``),
            ``stability_score``, ``crop_box`` (XYWH).
        """
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        orig_size = image.shape[:2]
        crop_boxes, layers = amg.generate_crop_boxes(
            orig_size, self.crop_n_layers, self.crop_overlap_ratio
        )
        step = self.points_per_batch
        total = sum(-(-len(self.point_grids[layer]) // step) for layer in layers)
        ticks = iter(range(1, total + 1))

        def tick():
            if progress is not None:
                progress(next(ticks), total)

        if progress is not None:
            progress(0, total)
        parts = []
        for crop_box, layer in zip(crop_boxes, layers, strict=True):
            emb = embedding if layer == 0 else None
            parts.append(self._process_crop(image, crop_box, layer, orig_size, emb, tick))
        data = _cat(parts)
        if len(crop_boxes) > 1 and len(data["boxes"]):
            cb = data["crop_boxes"]
            scores = (1 / ((cb[:, 2] - cb[:, 0]) * (cb[:, 3] - cb[:, 1]))).astype(np.float32)
            data = _select(data, amg.box_nms(data["boxes"], scores, self.crop_nms_thresh))
        if self.min_mask_region_area > 0 and len(data["boxes"]):
            nms = max(self.box_nms_thresh, self.crop_nms_thresh)
            data = self.postprocess_small_regions(data, self.min_mask_region_area, nms)
        xywh = data["boxes"].copy()
        xywh[:, 2:] -= xywh[:, :2]
        cxywh = data["crop_boxes"].copy()
        cxywh[:, 2:] -= cxywh[:, :2]
        return [
            {
                "segmentation": data["masks"][i],
                "area": int(data["masks"][i].sum()),
                "bbox": xywh[i].tolist(),
                "predicted_iou": float(data["iou_preds"][i]),
                "point_coords": [data["points"][i].tolist()],
                "stability_score": float(data["stability_score"][i]),
                "crop_box": cxywh[i].tolist(),
            }
            for i in range(len(data["boxes"]))
        ]

    def _process_crop(self, image, crop_box, layer, orig_size, embedding=None,
                      tick=None) -> dict:  # fmt: skip
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1]
        if embedding is not None:
            self.predictor.set_embedding(embedding, crop.shape[:2])
        else:
            self.predictor.set_image(crop)
        points = self.point_grids[layer] * np.array(crop.shape[:2])[None, ::-1]
        step = self.points_per_batch
        batches = []
        for i in range(0, len(points), step):
            batches.append(self._process_batch(points[i : i + step], crop_box, orig_size))
            if tick is not None:
                tick()
        data = _cat(batches)
        data = _select(data, amg.box_nms(data["boxes"], data["iou_preds"], self.box_nms_thresh))
        offset = np.array([x0, y0, x0, y0])
        data["boxes"] = data["boxes"] + offset
        data["points"] = data["points"] + offset[:2]
        data["crop_boxes"] = np.tile(np.asarray(crop_box, np.int64), (len(data["boxes"]), 1))
        return data

    def candidates(self, predictor, points: np.ndarray, valid=None):
        """The masks of a batch of grid points that pass Meta's filters, as Meta's generator
        keeps them: predicted IoU first (it needs no mask), then the stability of the
        survivors, upscaled to the image (only they are).

        Parameters
        ----------
        predictor : SAMPredictor
            With the image (or tile) embedding set.
        points : ndarray
            ``(N, 2)`` points (x, y) in its image pixels; at most ``points_per_batch``.
        valid : (int, int), optional
            ``(h, w)``: the part of the image the stability counts (a tile inside the slice).

        Returns
        -------
        masks, iou, points, stability : ndarray
            ``(M, H0, W0)`` bool masks, ``(M,)`` predicted IoU, ``(M, 2)`` their points and
            ``(M,)`` stability scores.
        """
        logits, iou = decode_points(predictor, points, self.points_per_batch)  # low res
        k = logits.shape[1]
        logits, iou = logits.reshape(-1, *logits.shape[2:]), iou.reshape(-1)
        keep = iou > self.pred_iou_thresh if self.pred_iou_thresh > 0 else np.ones(len(iou), bool)
        masks, stability = upscale_candidates(
            predictor, logits[keep], self.stability_score_offset, valid
        )
        iou, pts = iou[keep], np.repeat(points, k, axis=0)[keep]
        if self.stability_score_thresh > 0:
            stable = stability >= self.stability_score_thresh
            masks, iou, pts, stability = masks[stable], iou[stable], pts[stable], stability[stable]
        return masks, iou, pts, stability

    def _process_batch(self, points, crop_box, orig_size) -> dict:
        orig_h, orig_w = orig_size
        masks, iou, pts, stability = self.candidates(self.predictor, points)
        boxes = mask_to_box(masks)
        near = amg.is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
        x0, y0, x1, y1 = crop_box
        if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
            full = masks[~near]
        else:
            full = np.zeros((int((~near).sum()), orig_h, orig_w), bool)
            full[:, y0:y1, x0:x1] = masks[~near]
        return {
            "masks": full,
            "iou_preds": iou[~near],
            "points": pts[~near],
            "stability_score": stability[~near],
            "boxes": boxes[~near],
        }

    @staticmethod
    def postprocess_small_regions(data: dict, min_area: int, nms_thresh: float) -> dict:
        """Fill small holes and remove small islands of every mask, then NMS again.

        Masks left unchanged are preferred by the NMS (score 1, changed masks 0), as in Meta's.
        """
        masks, scores = [], []
        for mask in data["masks"]:
            mask, holes = amg.remove_small_regions(mask, min_area, "holes")
            mask, islands = amg.remove_small_regions(mask, min_area, "islands")
            masks.append(mask)
            scores.append(float(not (holes or islands)))
        masks = np.stack(masks)
        boxes = mask_to_box(masks)
        keep = amg.box_nms(boxes, np.asarray(scores, np.float32), nms_thresh)
        data = dict(data, masks=masks, boxes=boxes)
        return _select(data, keep)


def to_label_image(
    records: list[dict],
    shape: tuple[int, int] | None = None,
    order: str = "best_first",
    min_free_fraction: float = 0.5,
) -> np.ndarray:
    """A ``uint32`` label image (0 background, ids ``1..K`` consecutive) without overlaps.

    Parameters
    ----------
    records : list of dict
        Records of :meth:`AutomaticMaskGenerator.generate` (``segmentation`` is needed;
        ``area`` and ``predicted_iou`` are used if present).
    shape : tuple of int, optional
        ``(H, W)``; required when ``records`` is empty.
    order : {"best_first", "largest_first"}
        ``best_first`` (default): masks in decreasing predicted IoU each take the pixels
        no better mask took; a mask left with less than ``min_free_fraction`` of its area is
        dropped as a duplicate or fragment of a better one. Suits instance segmentation
        (nuclei, cells): one label per object, no slivers. ``largest_first``: masks drawn
        from the largest to the smallest area (ties: higher predicted IoU last), each over
        the ones before, so small objects lying on larger ones stay visible (parts of a
        whole); objects entirely covered by later ones disappear.
    min_free_fraction : float
        See ``best_first``.
    """
    if order not in ("best_first", "largest_first"):
        raise ValueError(f"order must be 'best_first' or 'largest_first', got {order!r}")
    if not 0 <= min_free_fraction <= 1:
        raise ValueError(f"min_free_fraction must be in [0, 1], got {min_free_fraction}")
    if shape is None:
        if not records:
            raise ValueError("shape: required when there are no records")
        shape = records[0]["segmentation"].shape
    labels = np.zeros(tuple(shape), np.uint32)

    def area(i):
        return records[i].get("area", int(np.sum(records[i]["segmentation"])))

    if order == "best_first":
        n = 0
        for i in sorted(range(len(records)), key=lambda i: -records[i].get("predicted_iou", 0)):
            free = np.asarray(records[i]["segmentation"], bool) & (labels == 0)
            kept = int(free.sum())
            if kept and kept >= min_free_fraction * area(i):
                n += 1
                labels[free] = n
        return labels
    drawing = sorted(
        range(len(records)), key=lambda i: (-area(i), records[i].get("predicted_iou", 0.0))
    )
    for n, i in enumerate(drawing, start=1):
        labels[np.asarray(records[i]["segmentation"], bool)] = n
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(len(drawing) + 1, np.uint32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.uint32)
    return lut[labels]
