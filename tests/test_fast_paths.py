"""The prompt path's shortcuts give the same numbers as the plain computation.

The reference comparisons are in test_parity.py; these check each shortcut on its own.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from napari_sam import create_model
from napari_sam.model.sam import upscale_logits, upscale_logits_x4

from small_configs import ONE_BLOCK_128 as SMALL


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (2, 1, 8, 12), (3, 4, 1, 5)])
def test_upscale_x4_equals_bilinear_resize(shape):
    logits = tf.constant(np.random.default_rng(0).normal(size=shape), tf.float32)
    want = upscale_logits(logits, (4 * shape[2], 4 * shape[3])).numpy()
    got = upscale_logits_x4(logits).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6)
    above = upscale_logits_x4(logits, 0.25).numpy()
    assert above.dtype == bool and (above != (want > 0.25)).sum() <= 1


@pytest.fixture(scope="module")
def model():
    m = create_model("sam_vit_b", **SMALL)
    rng = np.random.default_rng(1)
    for v in m.mask_decoder.weights + m.prompt_encoder.weights:  # no zero biases or unit gains
        v.assign(v.numpy() + 0.1 * rng.normal(size=v.shape).astype(np.float32))
    return m


@pytest.mark.parametrize("n_points,n_boxes", [(1, 0), (4, 0), (0, 1), (2, 1)])
@pytest.mark.parametrize("multimask", [True, False])
def test_prepared_decoding_equals_plain(model, n_points, n_boxes, multimask):
    """Three prompts share one embedding: the prepared first block gives the same masks."""
    rng = np.random.default_rng(n_points + 10 * n_boxes)
    size = model.cfg.input_size
    emb = tf.constant(rng.normal(size=(1, *model.grid_size(), 256)), tf.float32)
    points = tf.constant(rng.uniform(0, size[0], (3, n_points, 2)), tf.float32)
    labels = tf.constant(rng.integers(0, 2, (3, n_points)), tf.float32)
    corner = rng.uniform(0, size[0] / 2, (3, n_boxes, 2))
    boxes = tf.constant(np.concatenate([corner, corner + 30], -1), tf.float32)
    masks = tf.zeros((3, 0, *model.mask_size()))
    args = (points, labels, boxes, masks, size, multimask)
    want_logits, want_scores = model.decode(emb, *args)
    prepared = model.prepare_decoding(emb)
    logits, scores = model.decode(emb, *args, prepared=prepared)
    # Float rounding only; oneDNN's results vary by ~2e-5 of the scale from run to run.
    scale = np.abs(want_logits.numpy()).max()
    np.testing.assert_allclose(logits.numpy(), want_logits.numpy(), atol=1e-4 * scale)
    scale = np.abs(want_scores.numpy()).max()
    np.testing.assert_allclose(scores.numpy(), want_scores.numpy(), atol=1e-4 * scale)
