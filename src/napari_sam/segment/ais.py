"""Automatic instance segmentation with micro-sam's decoder ("AIS"): maps, then one watershed.

The decoder (:class:`~napari_sam.model.instance_decoder.InstanceDecoder`) turns an image
embedding into a foreground map and distances to object centres and boundaries;
:func:`instances_from_maps` turns the maps into labels as micro-sam does
(``InstanceSegmentationWithDecoder.generate`` with torch-em's
``watershed_from_center_and_boundary_distances``):

1. the foreground is smoothed (Gaussian, sigma ``foreground_smoothing``), both distance maps
   too (sigma ``distance_smoothing``);
2. foreground = smoothed foreground > ``foreground_threshold``;
3. seeds = connected components of (centre distance < ``center_distance_threshold``) and
   (boundary distance < ``boundary_distance_threshold``) inside the foreground;
4. a seeded watershed on the boundary distances inside the foreground;
5. objects smaller than ``min_size`` pixels become background (torch-em's ``size_filter``
   without a height map);
6. only where ``merge_solidity`` > 0 (not micro-sam's: off by default): neighbours whose
   union is convex are merged (:mod:`napari_sam.segment.convex_merge`), one nucleus the
   watershed cut in two; then the labels are made consecutive.

The smoothing, labelling and watershed here are scipy's and scikit-image's; torch-em uses
bioimage-cpp's. docs/microscopy-models.md gives the measured agreement.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import numpy as np

__all__ = [
    "AisSettings", "DecoderGuide", "InstanceSegmenter", "decoder_graph", "decoder_maps",
    "instances_from_maps",
]  # fmt: skip


@dataclass(frozen=True)
class AisSettings:
    """Thresholds of the watershed on the decoder's maps (micro-sam's names and defaults).

    Attributes
    ----------
    center_distance_threshold, boundary_distance_threshold : float
        Seeds are where both distances are below their threshold.
    foreground_threshold : float
        Foreground is where the smoothed foreground probability is above it.
    foreground_smoothing, distance_smoothing : float
        Gaussian sigmas (pixels) for the foreground and the two distance maps; 0 for none.
    min_size : int
        Objects of fewer pixels are removed.
    merge_solidity, merge_border : float
        Merge two neighbours when their union's solidity is at least ``merge_solidity`` and
        their shared border at least ``merge_border`` times the square root of the smaller
        one's area (:func:`~napari_sam.segment.convex_merge.merge_convex_neighbours`); 0: off.
    """

    center_distance_threshold: float = 0.5
    boundary_distance_threshold: float = 0.5
    foreground_threshold: float = 0.5
    foreground_smoothing: float = 1.0
    distance_smoothing: float = 1.6
    min_size: int = 0
    merge_solidity: float = 0.0
    merge_border: float = 0.0

    def with_options(self, options: Mapping | None) -> AisSettings:
        """These settings with ``options`` (a mapping of field names) replacing some."""
        if not options:
            return self
        names = {f.name for f in fields(self)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ValueError(
                f"AIS settings: unknown {', '.join(unknown)}; expected some of {sorted(names)}"
            )
        return replace(self, **dict(options))

    def check(self) -> AisSettings:
        """Raise ValueError naming a setting that is out of range; return self."""
        for name in ("center_distance_threshold", "boundary_distance_threshold",
                     "foreground_threshold"):  # fmt: skip
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1], got {value}")
        for name in ("foreground_smoothing", "distance_smoothing"):
            value = getattr(self, name)
            if not float(value) >= 0:
                raise ValueError(f"{name}: expected a sigma >= 0, got {value}")
        if not 0.0 <= float(self.merge_solidity) <= 1.0:
            raise ValueError(
                f"merge_solidity: expected a value in [0, 1], got {self.merge_solidity}"
            )
        if not float(self.merge_border) >= 0:
            raise ValueError(f"merge_border: expected a value >= 0, got {self.merge_border}")
        if int(self.min_size) != self.min_size or self.min_size < 0:
            raise ValueError(f"min_size: expected a whole number >= 0, got {self.min_size}")
        return self


_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def decoder_graph(decoder):
    """The decoder as a graph, traced once per decoder and embedding shape.

    3 to 4 times faster than calling it eagerly (grappler fuses its convolutions, biases and
    activations). With TensorFlow's oneDNN rewrites on, micro-sam's large 3 x 3 layers still
    get oneDNN's reference kernel, in a graph as eagerly (docs/perf.md): the apps keep them off.
    """
    if decoder not in _GRAPHS:
        import tensorflow as tf

        _GRAPHS[decoder] = tf.function(decoder)  # one trace per embedding shape (one a model)
    return _GRAPHS[decoder]


def decoder_maps(decoder, embedding, input_size, rescaled_size, original_size) -> np.ndarray:
    """The decoder's three maps (H, W, 3) for one embedding, at the image's own size.

    As micro-sam's ``DecoderAdapter`` with torch-em's ``postprocess_masks``: the decoder's
    output is resized (bilinear) to the model input, cropped to the resized image (the padding
    removed) and resized (bilinear, no antialiasing) to ``original_size``.

    Parameters
    ----------
    decoder : InstanceDecoder
    embedding : ndarray
        (h, w, E) or (1, h, w, E) image embedding.
    input_size : (int, int)
        The model input size.
    rescaled_size : (int, int)
        The image's size after resizing into the input (before padding).
    original_size : (int, int)
        The image's own size.
    """
    import tensorflow as tf

    x = np.asarray(embedding, np.float32)
    x = x[None] if x.ndim == 3 else x
    out = decoder_graph(decoder)(tf.constant(x))
    if tuple(out.shape[1:3]) != tuple(input_size):
        out = tf.image.resize(out, tuple(input_size), method="bilinear")
    h, w = rescaled_size
    out = out[:, :h, :w]
    if (h, w) != tuple(original_size):
        out = tf.image.resize(out, tuple(original_size), method="bilinear")
    return np.asarray(out[0].numpy(), np.float32)


def _smooth(a: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    if sigma <= 0:
        return a
    # vigra / bioimage-cpp truncate their Gaussian at 3 sigma; scipy's default is 4
    return ndimage.gaussian_filter(a.astype(np.float32), sigma, mode="mirror", truncate=3.0)


def instances_from_maps(
    foreground: np.ndarray,
    center_distances: np.ndarray,
    boundary_distances: np.ndarray,
    settings: AisSettings | None = None,
) -> np.ndarray:
    """Labels (uint32, 0 background) from the decoder's three maps of one 2-D image.

    Parameters
    ----------
    foreground, center_distances, boundary_distances : ndarray
        (H, W) maps in [0, 1] (:func:`decoder_maps` gives them as the last axis).
    settings : AisSettings, optional
        Thresholds (micro-sam's defaults if not given).
    """
    from skimage.measure import label
    from skimage.segmentation import watershed

    s = (settings or AisSettings()).check()
    fg = _smooth(np.asarray(foreground, np.float32), s.foreground_smoothing)
    center = _smooth(np.asarray(center_distances, np.float32), s.distance_smoothing)
    boundary = _smooth(np.asarray(boundary_distances, np.float32), s.distance_smoothing)
    fg_mask = fg > s.foreground_threshold
    seeds = (center < s.center_distance_threshold) & (boundary < s.boundary_distance_threshold)
    seeds &= fg_mask
    markers = label(seeds)  # full connectivity, as skimage's and bioimage-cpp's default
    labels = watershed(boundary, markers=markers, mask=fg_mask)
    if s.min_size > 0:
        labels = _size_filter(labels, int(s.min_size))
    if s.merge_solidity > 0:
        from .convex_merge import merge_convex_neighbours

        labels = merge_convex_neighbours(labels, s.merge_solidity, s.merge_border)
    return _relabel(labels)


def _size_filter(labels, min_size):
    ids, counts = np.unique(labels, return_counts=True)
    small = ids[(counts < min_size) & (ids != 0)]
    if small.size:
        labels = np.where(np.isin(labels, small), 0, labels)
    return labels


def _relabel(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids != 0]
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, np.uint32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.uint32)
    return lut[labels]


class InstanceSegmenter:
    """Segment every object of a slice with an instance decoder (``method="ais"``).

    Works on a :class:`~napari_sam.stacks.stack_predictor.StackPredictor` (one embedding per
    slice) and on a :class:`~napari_sam.stacks.tiled_predictor.TiledPredictor`: there each
    tile's maps are computed on its window and their inner regions written into full-size maps,
    then one watershed runs on the whole slice, so objects are whole across tile borders and no
    tile is normalised on its own.

    Parameters
    ----------
    decoder : InstanceDecoder
        The decoder (``model.instance_decoder`` of a micro-sam model).
    settings : AisSettings, optional
        Watershed thresholds.
    """

    method = "ais"

    def __init__(self, decoder, settings: AisSettings | None = None):
        if decoder is None:
            raise ValueError("method 'ais': the model has no instance decoder; use method 'amg'")
        self.decoder = decoder
        self.settings = (settings or AisSettings()).check()

    def maps(self, sp, index, progress=None) -> np.ndarray:
        """The (H, W, 3) maps of slice ``index`` of ``sp``."""
        from ..predict.resizer import ImageResizer

        input_size = tuple(sp.model.cfg.input_size)
        out = np.zeros((*sp.view.slice_shape, 3), np.float32)
        size = sp.window_shape
        rescaled = ImageResizer(size, input_size).rescaled_size
        for t in range(sp.windows):  # each window's maps over its inner region
            wy0, _, wx0, _ = sp.window(t)
            y0, y1, x0, x1 = sp.inner(t)
            m = decoder_maps(self.decoder, sp.tile_embedding(index, t), input_size, rescaled, size)
            out[y0:y1, x0:x1] = m[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]
            if progress is not None:
                progress(t + 1, sp.windows)
        return out

    def segment_slice(self, sp, index, progress=None) -> np.ndarray:
        """uint32 labels of slice ``index`` (``progress(done, total)`` after each tile)."""
        m = self.maps(sp, index, progress)
        return instances_from_maps(m[..., 0], m[..., 1], m[..., 2], self.settings)

    def describe(self) -> dict:
        """The method and its settings (for work-folder keys and records)."""
        return {"method": self.method, **{f.name: getattr(self.settings, f.name)
                                          for f in fields(self.settings)}}  # fmt: skip


class DecoderGuide:
    """The objects an instance decoder finds in one window: the
    :class:`~napari_sam.stacks.contract.InstanceGuide` by which the stack predictors confine a
    click's masks (:func:`napari_sam.predict.outline.confine_masks`).

    Parameters
    ----------
    decoder : InstanceDecoder
        The model's instance decoder.
    input_size : (int, int)
        The model's input size.
    settings : AisSettings, optional
        The model's watershed settings (as automatic segmentation uses them).
    """

    def __init__(self, decoder, input_size, settings: AisSettings | None = None):
        self.decoder = decoder
        self.input_size = tuple(int(v) for v in input_size)
        self.settings = (settings or AisSettings()).check()

    def __call__(self, embedding: np.ndarray, shape) -> np.ndarray:
        """uint32 labels ``shape`` of the window ``embedding`` was computed from."""
        from ..predict.resizer import ImageResizer

        shape = tuple(int(v) for v in shape)
        rescaled = ImageResizer(shape, self.input_size).rescaled_size
        m = decoder_maps(self.decoder, embedding, self.input_size, rescaled, shape)
        return instances_from_maps(m[..., 0], m[..., 1], m[..., 2], self.settings)
