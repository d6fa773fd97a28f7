"""The instance F1 used to report automatic segmentation quality."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.masks import iou, label_overlaps
from napari_sam.train.evaluation import instance_f1


def _blobs():
    truth = np.zeros((4, 40, 40), np.int32)
    truth[:2, 2:10, 2:10] = 1
    truth[1:4, 20:30, 5:15] = 2
    truth[:, 30:38, 30:38] = 3
    return truth


def test_identical_and_relabelled_predictions_score_one():
    truth = _blobs()
    assert instance_f1(truth, truth).f1 == 1.0
    relabelled = np.choose(truth, [0, 7, 5, 9])
    s = instance_f1(relabelled, truth)
    assert (s.f1, s.precision, s.recall, s.n_matched) == (1.0, 1.0, 1.0, 3)


def test_missing_extra_and_poorly_overlapping_objects():
    truth = _blobs()
    missing = np.where(truth == 3, 0, truth)
    s = instance_f1(missing, truth)
    assert s.n_matched == 2 and s.f1 == pytest.approx(2 * 2 / (2 + 3))
    assert s.precision == 1.0 and s.recall == pytest.approx(2 / 3)
    extra = truth.copy()
    extra[:, 12:16, 30:34] = 4
    assert instance_f1(extra, truth).precision == pytest.approx(3 / 4)
    shifted = np.roll(truth, 6, axis=2)  # every object overlaps its truth by less than half
    assert instance_f1(shifted, truth).n_matched == 0
    merged = np.where(truth > 0, 1, 0)  # one object covering all three: matches none
    assert instance_f1(merged, truth).f1 == 0.0


def test_empty_cases_and_bad_arguments():
    truth = _blobs()
    assert instance_f1(np.zeros_like(truth), truth).f1 == 0.0
    empty = np.zeros((3, 3), np.int32)
    assert instance_f1(empty, empty).f1 == 1.0
    with pytest.raises(ValueError, match="shape"):
        instance_f1(truth[0], truth)
    with pytest.raises(ValueError, match="threshold"):
        instance_f1(truth, truth, threshold=0.3)


def test_label_overlaps_counts_every_pair():
    a = np.array([[1, 1, 0, 2], [1, 3, 3, 2]], np.uint16)
    b = np.array([[5, 5, 5, 0], [0, 5, 7, 7]], np.int32)
    ov = label_overlaps(a, b)
    np.testing.assert_array_equal(ov.pairs, [[1, 2, 3, 3], [5, 7, 5, 7]])  # lexicographic
    np.testing.assert_array_equal(ov.intersection, [2, 1, 1, 1])
    np.testing.assert_array_equal(ov.area_a, [3, 2, 2, 2])
    np.testing.assert_array_equal(ov.area_b, [4, 2, 4, 2])
    np.testing.assert_array_equal(ov.ids_b, [5, 7])
    for k, (x, y) in enumerate(ov.pairs.T):
        ma, mb = a == x, b == y
        assert ov.iou()[k] == iou(ma, mb)
        assert ov.overlap()[k] == (ma & mb).sum() / min(ma.sum(), mb.sum())
    empty = label_overlaps(np.zeros_like(a), b)
    assert empty.pairs.shape == (2, 0) and len(empty.ids_a) == 0 and len(empty.iou()) == 0
