"""Automatic segmentation without wasted work ([fast-auto]): the same masks, traced once."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.predict.candidates import decode_points, trace_counts, upscale_candidates
from napari_sam.segment import amg_utils as amg
from napari_sam.segment.automatic import AutomaticMaskGenerator
from napari_sam.train.synthetic import make_nuclei_2d


@pytest.fixture(scope="module")
def tiny():
    from napari_sam import create_model

    return create_model("sam_tiny_nuclei", pretrained=True)


def _grey(image):
    x = image.astype(np.float64)
    lo, hi = np.percentile(x, [0.1, 99.9])
    return np.repeat((np.clip((x - lo) / (hi - lo), 0, 1) * 255)[..., None], 3, -1)


def test_candidates_are_the_prompt_graphs_masks_and_meta_stability(tiny):
    """Low-resolution decoding then upscaling of the survivors gives the full-size masks and
    stability scores of the prompt graph with ``return_logits`` (as Meta's generator uses)."""
    from napari_sam import SAMPredictor

    image, _ = make_nuclei_2d((200, 300), seed=7)
    predictor = SAMPredictor(tiny)
    predictor.set_image(_grey(image))
    points = np.array([[40.0, 50.0], [150.0, 120.0], [250.0, 20.0]])
    logits, scores = decode_points(predictor, points, batch=8)
    full, want_scores, want_low = predictor(points=points[:, None], labels=np.ones((3, 1)),
                                            multimask_output=True, return_logits=True)  # fmt: skip
    np.testing.assert_allclose(scores, want_scores, atol=1e-4)
    np.testing.assert_allclose(logits, want_low, atol=1e-3)
    masks, stability = upscale_candidates(predictor, logits.reshape(-1, *logits.shape[2:]))
    full = full.reshape(-1, *full.shape[2:])
    assert masks.shape == full.shape == (9, 200, 300) and masks.dtype == bool
    agree = (masks == (full > tiny.mask_threshold)).mean()
    assert agree > 0.999, agree
    np.testing.assert_allclose(stability, amg.stability_score(full, tiny.mask_threshold, 1.0),
                               atol=1e-2)  # fmt: skip


def test_no_retracing_when_the_number_of_kept_masks_changes(tiny):
    image, _ = make_nuclei_2d((128, 160), seed=8)
    grey = _grey(image)
    counts = []
    for iou, stability, side in ((0.0, 0.0, 4), (0.9, 0.95, 4), (0.5, 0.5, 6), (0.0, 0.0, 3)):
        gen = AutomaticMaskGenerator(tiny, points_per_side=side, points_per_batch=16,
                                     pred_iou_thresh=iou, stability_score_thresh=stability)
        counts.append(len(gen.generate(grey)))
    assert len(set(counts)) > 1, counts  # the survivors differed from run to run
    assert trace_counts(tiny) == (1, 1)
