"""Prompted masks drawn where people draw: at an object's half maximum, inside its box.

SAM decodes masks at a quarter of its input's resolution (a 64 x 64 grid for a 256 x 256
input: 4 px per logit for the project's small model), and a box's mask may spill past the
box into a touching neighbour. A model that records an outline level (the registry's
``outline`` settings, :class:`OutlineSettings`) has each prompted mask redrawn from the image
itself, in a narrow band around SAM's outline:

- the object's level ``f`` (the median of the smoothed image well inside the mask) and the
  background ``b`` (a low percentile of a ring a few pixels outside it) give the threshold
  ``b + level * (f - b)``: at ``level`` 0.5 the half-maximum edge, where hand labels of
  fluorescence nuclei sit;
- pixels of the mask within ``inner`` px of its outline stay only if they reach the
  threshold, pixels outside within ``outer`` px join if they do; nothing farther changes,
  so SAM decides which object it is and the image decides where its edge lies;
- with ``level_range``, a click's mask takes, of the levels within that range of ``level``,
  the one whose outline lies on the strongest edge (the highest mean gradient along it): a
  textured, unevenly lit nucleus, whose interior's median is not its plateau, gets its edge
  where a person sees it; a box's masks stay at ``level``;
- the piece that overlaps SAM's mask most is kept, its holes filled;
- a box's mask is cut to the box (the box says where the object is);
- of a click's candidates, the one chosen is the highest by predicted IoU among those at
  least ``min_solidity`` solid (their area over their convex hull's; a nucleus is convex, a
  mask that took in a touching neighbour is not), the most solid when none is
  (:func:`preferred_candidate`);
- where ``instances`` is set and the model has an instance decoder, a click's masks are
  confined by the objects the decoder finds and redrawn again (:func:`confine_masks`): to
  the object under the click (grown by 1 px) where it is convex, a nucleus, so that a mask
  that spilled into a touching neighbour or the haze around a bright nucleus keeps the
  clicked nucleus only; else (a nucleus the decoder cut in pieces) to the decoder's objects,
  which takes off background only. Boxes are not confined (on tuning images it cost them
  more than it gave clicks).

Meta's models and micro-sam's record no outline level: their masks are Meta's, unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np
from scipy import ndimage

from ..masks import solidity

__all__ = [
    "CONVEX",
    "OutlineSettings",
    "confine_masks",
    "describe_outline",
    "outline_settings",
    "preferred_candidate",
    "redraw_masks",
    "redraw_outline",
    "mask_solidity",
]

_MARGIN = 10  # px around a mask's bounding box: the ring, the band and the smoothing
#: The solidity at which :func:`confine_masks` takes a decoder's object for one nucleus when
#: the settings give no ``min_solidity``.
CONVEX = 0.98


@dataclass(frozen=True)
class OutlineSettings:
    """How a model's prompted masks are redrawn from the image (see the module).

    Attributes
    ----------
    level : float
        Where the edge lies between the background (0) and the object's intensity (1).
    inner, outer : int
        The band, in image pixels, inside and outside SAM's outline that the image redraws.
    sigma : float
        The Gaussian smoothing of the image first (pixels; 0: none).
    clip_to_box : bool
        Whether a box's mask is cut to the box.
    level_range : float
        Where above 0, each mask's level is chosen per object among ``level`` +- multiples
        of 0.05 up to this far: the one whose outline lies on the strongest edge (the
        highest mean gradient of the smoothed image along it), where a person sees the
        edge of a textured or unevenly lit nucleus; 0: ``level`` for every object.
    min_solidity : float or None
        Of a click's candidate masks, prefer those at least this solid (None: the highest
        predicted IoU, as SAM).
    instances : bool
        Whether a click's masks are confined to the instance the model's decoder finds under
        it (:func:`confine_masks`; nothing for a model without an instance decoder).
    """

    level: float = 0.5
    inner: int = 2
    outer: int = 1
    sigma: float = 1.0
    clip_to_box: bool = True
    level_range: float = 0.0
    min_solidity: float | None = None
    instances: bool = False

    def __post_init__(self):
        if not 0.0 < float(self.level) < 1.0:
            raise ValueError(f"level: expected a fraction between 0 and 1, got {self.level}")
        for name in ("inner", "outer"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name}: expected pixels >= 0, got {getattr(self, name)}")
        if not float(self.sigma) >= 0.0:
            raise ValueError(f"sigma: expected >= 0, got {self.sigma}")
        if not 0.0 <= float(self.level_range) < min(self.level, 1.0 - self.level):
            raise ValueError(f"level_range: expected >= 0 and below level's distance to 0 "
                             f"and 1, got {self.level_range}")  # fmt: skip
        if self.min_solidity is not None and not 0.0 < float(self.min_solidity) <= 1.0:
            raise ValueError(
                f"min_solidity: expected a fraction in (0, 1], got {self.min_solidity}"
            )
        if not isinstance(self.instances, bool):
            raise ValueError(f"instances: expected true or false, got {self.instances!r}")


def outline_settings(values) -> OutlineSettings | None:
    """Typed settings from a registry mapping (None or empty: masks stay SAM's)."""
    if not values:
        return None
    known = {f.name for f in fields(OutlineSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"outline: unknown settings {unknown}; expected some of {sorted(known)}")
    return OutlineSettings(**dict(values))


def describe_outline(settings: OutlineSettings | None) -> dict | None:
    """The settings as a plain dict (a provenance record's ``outline``); None for SAM's masks."""
    return None if settings is None else asdict(settings)


def mask_solidity(mask: np.ndarray) -> float:
    """A mask's pixels over the pixel centres inside their convex hull
    (:func:`napari_sam.masks.solidity`: a digital disc scores 1 at any size); 0 if empty."""
    ys, xs = np.nonzero(mask)
    return solidity(ys, xs) if ys.size else 0.0


def preferred_candidate(masks: np.ndarray, scores: np.ndarray, min_solidity: float | None) -> int:
    """Which of ``masks`` (K, H, W) a click gives: the highest of ``scores`` (predicted IoU)
    among the masks at least ``min_solidity`` solid, the most solid when none is (None: the
    highest score)."""
    scores = np.asarray(scores)
    if min_solidity is None or len(scores) < 2:
        return int(np.argmax(scores))
    solid = np.array([mask_solidity(m) for m in masks])
    passing = np.nonzero(solid >= min_solidity)[0]
    if not len(passing):
        return int(np.argmax(solid))
    return int(passing[np.argmax(scores[passing])])


def _crop(mask: np.ndarray) -> tuple[slice, slice]:
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    h, w = mask.shape
    return (slice(max(0, rows[0] - _MARGIN), min(h, rows[-1] + 1 + _MARGIN)),
            slice(max(0, cols[0] - _MARGIN), min(w, cols[-1] + 1 + _MARGIN)))  # fmt: skip


def _levels(settings: OutlineSettings) -> np.ndarray:
    """The levels :func:`redraw_outline` tries: ``level`` alone, or +- steps of 0.05 within
    ``level_range``."""
    steps = int(np.floor(float(settings.level_range) / 0.05 + 1e-9))
    return float(settings.level) + 0.05 * np.arange(-steps, steps + 1)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes(mask)`` in one labelling of the background: its pieces
    that do not reach the array's edge are holes."""
    background, n = ndimage.label(~mask)
    if not n:  # (one piece may be a hole too: a mask reaching all four edges)
        return mask
    outside = np.unique(np.concatenate([background[0], background[-1], background[:, 0],
                                        background[:, -1]]))  # fmt: skip
    return mask | ((background > 0) & ~np.isin(background, outside))


def _edge_strength(gradient: np.ndarray, mask: np.ndarray) -> float:
    """The mean of ``gradient`` over the pixels on either side of ``mask``'s outline (those
    with a 4-neighbour on the other side; outside the array is outside)."""
    p = np.pad(mask, 1)
    rim = ((p[:-2, 1:-1] != mask) | (p[2:, 1:-1] != mask)
           | (p[1:-1, :-2] != mask) | (p[1:-1, 2:] != mask))  # fmt: skip
    return float(gradient[rim].mean()) if rim.any() else -1.0


def redraw_outline(image: np.ndarray, mask: np.ndarray, settings: OutlineSettings) -> np.ndarray:
    """``mask`` (H, W) bool with its outline redrawn at ``settings.level`` of the object's
    intensity over the background in ``image`` (H, W) (or, with ``level_range``, at the level
    nearby whose outline lies on the strongest edge); an empty mask stays empty."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask
    sl = _crop(mask)
    m = mask[sl]
    region = np.asarray(image[sl], np.float32)
    smooth = ndimage.gaussian_filter(region, settings.sigma) if settings.sigma else region
    inside = ndimage.binary_erosion(m, iterations=2)
    if inside.sum() < 5:
        inside = m
    ring = ndimage.binary_dilation(m, iterations=6) & ~ndimage.binary_dilation(m, iterations=2)
    fg = float(np.median(smooth[inside]))
    bg = float(np.percentile(smooth[ring], 20)) if ring.any() else float(smooth.min())
    if not fg > bg:  # no brighter object here: nothing to snap to
        return mask
    depth = ndimage.distance_transform_edt(m)
    gap = ndimage.distance_transform_edt(~m)
    band = (m & (depth <= settings.inner)) | (~m & (gap <= settings.outer))
    levels = _levels(settings)
    gradient = (ndimage.gaussian_gradient_magnitude(region, max(float(settings.sigma), 1.0))
                if len(levels) > 1 else None)  # fmt: skip
    best, strength, previous = None, -np.inf, None
    for level in levels:
        edge = band & (smooth >= bg + level * (fg - bg))
        if previous is not None and np.array_equal(edge, previous):
            continue  # the same outline as the last level's
        previous = edge
        new = (m & (depth > settings.inner)) | edge
        pieces, n = ndimage.label(new)
        if n > 1:
            overlap = np.bincount(pieces[m], minlength=n + 1)
            overlap[0] = 0
            new = pieces == int(np.argmax(overlap))
        if not new.any():
            continue
        new = _fill_holes(new)
        score = _edge_strength(gradient, new) if gradient is not None else 0.0
        if score > strength:
            best, strength = new, score
    if best is None:
        return mask
    out = np.zeros_like(mask)
    out[sl] = best
    return out


def _clip(mask: np.ndarray, box) -> np.ndarray:
    x0, y0, x1, y1 = (int(round(float(v))) for v in np.asarray(box).reshape(4))
    out = np.zeros_like(mask)
    rows = slice(max(0, y0), max(0, y1 + 1))
    cols = slice(max(0, x0), max(0, x1 + 1))
    out[rows, cols] = mask[rows, cols]
    return out


def redraw_masks(image: np.ndarray, masks: np.ndarray, settings: OutlineSettings,
                 box=None) -> np.ndarray:  # fmt: skip
    """Every mask of ``masks`` (K, H, W) bool redrawn (:func:`redraw_outline`), then cut to
    ``box`` (x0, y0, x1, y1 in the masks' pixels, inclusive, as SAM's boxes) when given and
    ``settings.clip_to_box``; a box's masks at ``settings.level`` (its ``level_range`` is
    for clicks)."""
    image = np.asarray(image)
    if image.shape != masks.shape[-2:]:
        raise ValueError(f"image: expected shape {masks.shape[-2:]}, got {image.shape}")
    out = np.empty_like(masks, dtype=bool)
    if box is not None and settings.level_range:
        settings = replace(settings, level_range=0.0)  # a box's at the fixed level
    for k, m in enumerate(masks):
        if box is not None and settings.clip_to_box:
            m = _clip(np.asarray(m, bool), box)
        m = redraw_outline(image, m, settings)
        if box is not None and settings.clip_to_box:
            m = _clip(m, box)
        out[k] = m
    return out


def confine_masks(image: np.ndarray, masks: np.ndarray, objects: np.ndarray, clicked,
                  settings: OutlineSettings) -> np.ndarray:  # fmt: skip
    """Every mask of ``masks`` (K, H, W) bool confined by an instance decoder's ``objects``
    (H, W) labels, 0 background, then redrawn (:func:`redraw_outline`).

    Where the objects ``clicked`` (the ids under a click) are convex together (solidity at
    least ``settings.min_solidity``, else :data:`CONVEX`), a mask is cut to them grown by
    1 px: a nucleus, and the mask loses a touching neighbour or the haze of a bright nucleus.
    Where they are not (the decoder cut one nucleus into pieces, as it does nuclei well over
    the model's size), a mask only loses what the decoder calls background (its objects
    grown by 1 px are kept). A mask that would lose everything stays as it is.
    """
    objects = np.asarray(objects)
    if objects.shape != masks.shape[-2:]:
        raise ValueError(f"objects: expected shape {masks.shape[-2:]}, got {objects.shape}")
    own = np.isin(objects, np.asarray(clicked).ravel())
    convex = settings.min_solidity if settings.min_solidity is not None else CONVEX
    kept = own if own.any() and mask_solidity(own) >= convex else objects > 0
    allowed = ndimage.binary_dilation(kept)
    out = np.array(masks, dtype=bool, copy=True)
    for k, m in enumerate(out):
        cut = m & allowed
        if cut.any():
            out[k] = redraw_outline(image, cut, settings)
    return out

