"""Grid-prompt candidates of automatic segmentation, without wasted work.

Meta's generator upscales every candidate mask of every grid point (3 per point) to the full
image in float32, then drops most of them by predicted IoU and stability. Here the prompts are
decoded to low-resolution logits only (:func:`decode_points`); the caller filters by predicted
IoU, which needs no mask; only the survivors are upscaled (:func:`upscale_candidates`), with
the very operations of the prompt graphs (:func:`~napari_sam.model.sam.postprocess_logits`), and
their stability scores come out of the graph as two thresholded areas, so that only boolean
masks leave TensorFlow. The masks and scores are Meta's; the work is a fraction.

Both graphs are traced once per model structure and process (every model of a structure runs
them with its own weights, :func:`~napari_sam.predict.shared.shared_graph`); the decoding one is
compiled by XLA (twice as fast on a CPU as without); the points (padded to the generator's
batch) and the survivors (padded to :data:`UPSCALE_BATCH`) keep one shape each, so they are
compiled once per process.
"""

from __future__ import annotations

import functools
import weakref

import numpy as np
import tensorflow as tf

from ..model.sam import postprocess_logits
from .predictor import model_graphs
from .shared import shared_graph

__all__ = ["UPSCALE_BATCH", "decode_points", "trace_counts", "upscale_candidates"]

#: Candidates upscaled together (the survivors are padded to a multiple: one compiled shape).
UPSCALE_BATCH = 8

_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _graphs(model):
    if model in _GRAPHS:
        return _GRAPHS[model]
    cfg = model.cfg
    input_size = tuple(cfg.input_size)
    gh, gw = model.grid_size(input_size)
    mh, mw = model.mask_size(input_size)
    threshold = float(model.mask_threshold)
    f32 = tf.float32
    prepared_spec = tf.nest.map_structure(
        lambda t: tf.TensorSpec(t.shape, t.dtype),
        model_graphs(model).prepare.get_concrete_function().structured_outputs,
    )

    def lowres(m, embeddings, prepared, points):
        n = tf.shape(points)[0]
        return m.decode(
            embeddings, points, tf.ones((n, 1), f32), tf.zeros((n, 0, 4), f32),
            tf.zeros((n, 0, mh, mw), f32), input_size, True, prepared=prepared,
        )  # fmt: skip

    _GRAPHS[model] = graphs = (
        shared_graph(model, "lowres", lowres, [
            tf.TensorSpec((1, gh, gw, cfg.embed_dim), f32), prepared_spec,
            tf.TensorSpec((None, 1, 2), f32)], jit_compile=True),
        _upscale_graph(input_size, (mh, mw), threshold),
    )  # fmt: skip
    return graphs


@functools.cache
def _upscale_graph(input_size, mask_size, threshold):
    def upscale(logits, rescaled_size, original_size, offset, valid):
        full = postprocess_logits(logits[:, None], input_size, mask_size, threshold,
                                  rescaled_size, original_size, True)[:, 0]  # fmt: skip
        part = full[:, : valid[0], : valid[1]]  # stability over the valid region only
        inter = tf.reduce_sum(tf.cast(part > threshold + offset, tf.int32), axis=(1, 2))
        union = tf.reduce_sum(tf.cast(part > threshold - offset, tf.int32), axis=(1, 2))
        return full > threshold, inter, union

    return tf.function(upscale, input_signature=[
        tf.TensorSpec((UPSCALE_BATCH, *mask_size), tf.float32), tf.TensorSpec((2,), tf.int32),
        tf.TensorSpec((2,), tf.int32), tf.TensorSpec((), tf.float32),
        tf.TensorSpec((2,), tf.int32)])  # fmt: skip


def trace_counts(model) -> tuple[int, int]:
    """How often the decoding and the upscaling graphs of ``model`` were traced (once each)."""
    return tuple(g.experimental_get_tracing_count() for g in _graphs(model))


def decode_points(predictor, points: np.ndarray, batch: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Low-resolution logits and predicted IoU of one positive point each, three masks a point.

    Parameters
    ----------
    predictor : SAMPredictor
        With an image (or embedding) set.
    points : ndarray
        ``(N, 2)`` points (x, y) in original image pixels.
    batch : int, optional
        Pad the points to this many (one compiled shape for every batch of a grid).

    Returns
    -------
    logits : ndarray
        ``(N, K, H', W')`` low-resolution mask logits.
    scores : ndarray
        ``(N, K)`` predicted IoU.
    """
    if not predictor.is_image_set:
        raise RuntimeError("set an image with set_image() before decoding points")
    pts = predictor.resizer.scale_points(np.asarray(points, np.float64).reshape(-1, 1, 2))
    n = len(pts)
    if batch is not None and n < batch:
        pts = np.concatenate([pts, np.repeat(pts[-1:], batch - n, axis=0)])
    logits, scores = _graphs(predictor.model)[0](
        predictor.embedding, predictor.prepared, pts.astype(np.float32)
    )
    return logits.numpy()[:n], scores.numpy()[:n]


def upscale_candidates(predictor, logits: np.ndarray, offset: float = 1.0, valid=None):
    """Masks and stability scores of low-resolution candidates, at the original image size.

    Parameters
    ----------
    predictor : SAMPredictor
        The predictor that decoded them (its image sizes are used).
    logits : ndarray
        ``(M, H', W')`` low-resolution logits.
    offset : float
        The stability score's logit offset.
    valid : (int, int), optional
        ``(h, w)``: the stability counts only the top-left part of the masks (a tile's part
        inside the image); default the whole image.

    Returns
    -------
    masks : ndarray
        ``(M, H0, W0)`` bool: ``logits > mask_threshold`` upscaled as the prompt graphs do.
    stability : ndarray
        ``(M,)`` float32: IoU of the masks thresholded at ``mask_threshold +/- offset``.
    """
    upscale = _graphs(predictor.model)[1]
    logits = np.asarray(logits, np.float32)
    h0, w0 = predictor.original_size
    m = len(logits)
    masks = np.zeros((m, h0, w0), bool)
    inter, union = np.zeros(m, np.int64), np.zeros(m, np.int64)
    sizes = (np.asarray(predictor.resizer.rescaled_size, np.int32),
             np.asarray(predictor.original_size, np.int32))  # fmt: skip
    valid = np.asarray(predictor.original_size if valid is None else valid, np.int32)
    for i in range(0, m, UPSCALE_BATCH):
        part = logits[i : i + UPSCALE_BATCH]
        n = len(part)
        if n < UPSCALE_BATCH:  # one compiled shape: pad the last batch
            part = np.concatenate([part, np.zeros((UPSCALE_BATCH - n, *part.shape[1:]),
                                                  np.float32)])  # fmt: skip
        mk, it, un = upscale(part, *sizes, np.float32(offset), valid)
        masks[i : i + n], inter[i : i + n], union[i : i + n] = (
            mk.numpy()[:n], it.numpy()[:n], un.numpy()[:n])  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        return masks, (inter / union).astype(np.float32)
