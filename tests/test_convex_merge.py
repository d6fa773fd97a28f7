"""Merging neighbours whose union is convex (a nucleus the watershed cut in two)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.segment.ais import AisSettings, instances_from_maps
from napari_sam.segment.convex_merge import merge_convex_neighbours, shared_borders, solidity


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _solidity(mask):
    ys, xs = np.nonzero(mask)
    return solidity(ys, xs)


def test_solidity_of_simple_shapes():
    square = np.zeros((20, 20), bool)
    square[3:13, 4:11] = True
    assert _solidity(square) == pytest.approx(1.0)
    ell = square.copy()
    ell[3:8, 6:11] = False  # an L: 45 pixels of a 70-pixel rectangle; its hull cuts a corner
    # its hull (of pixel centres) holds 55 pixel centres: Pick's theorem counts them exactly
    assert _solidity(ell) == pytest.approx(45 / 55)
    for r in (4, 12, 30):  # digital discs are convex at every size
        assert _solidity(_disc((70, 70), 35, 35, r)) == pytest.approx(1.0)
    assert _solidity(np.eye(6, dtype=bool)) == 1.0  # pixels on one line
    assert solidity(np.array([2, 2]), np.array([3, 4])) == 1.0  # two pixels
    ring = _disc((40, 40), 20, 20, 12) & ~_disc((40, 40), 20, 20, 6)
    assert _solidity(ring) == pytest.approx(ring.sum() / _disc((40, 40), 20, 20, 12).sum())


def _scene():
    """A disc cut across in two, one cut in three, two discs touching, two whole discs."""
    labels = np.zeros((100, 200), np.uint16)
    cut = _disc(labels.shape, 25, 25, 14)
    labels[cut] = 1
    labels[cut & (np.mgrid[:100, :200][1] > 27)] = 2  # a straight cut, a little off centre
    third = _disc(labels.shape, 25, 75, 14)
    xx = np.mgrid[:100, :200][1]
    labels[third] = 3
    labels[third & (xx > 70)] = 4
    labels[third & (xx > 80)] = 5
    labels[_disc(labels.shape, 70, 25, 14)] = 6  # two discs meeting at a short border
    labels[_disc(labels.shape, 70, 52, 14) & (xx > 38)] = 7
    labels[_disc(labels.shape, 25, 150, 14)] = 8
    labels[_disc(labels.shape, 70, 150, 14)] = 9
    return labels


def test_a_cut_nucleus_is_merged_and_touching_nuclei_are_not():
    labels = _scene()
    merged = merge_convex_neighbours(labels, 0.98, 1.0)
    assert merged.dtype == labels.dtype and labels.max() == 9  # input untouched
    assert set(np.unique(merged[labels == 1]) | np.unique(merged[labels == 2])) == {1}
    assert set(np.unique(merged[np.isin(labels, (3, 4, 5))])) == {3}  # three parts, one nucleus
    assert set(np.unique(merged)) == {0, 1, 3, 6, 7, 8, 9}
    assert (merged[labels == 0] == 0).all()


def test_the_border_and_area_limits():
    labels = _scene()
    borders = shared_borders(labels)
    assert (1, 2) in borders and (6, 7) in borders and (1, 8) not in borders
    assert borders[(6, 7)] < borders[(1, 2)]
    # a border shorter than asked keeps the cut halves apart
    assert merge_convex_neighbours(labels, 0.98, 3.0).max() == 9
    # never larger than max_area_ratio times the median object (375 pixels): the halves of
    # disc 1 (613) stay apart, of the three parts of disc 3 the two smaller ones (429) join
    kept = merge_convex_neighbours(labels, 0.98, 1.0, max_area_ratio=1.2)
    assert len(np.unique(kept[np.isin(labels, (1, 2))])) == 2
    assert len(np.unique(kept[np.isin(labels, (3, 4, 5))])) == 2
    assert (kept[labels == 5] == 4).all()
    # a low solidity threshold and a loose area limit merge the touching pair (0.88) too
    loose = merge_convex_neighbours(labels, 0.85, max_area_ratio=4)
    assert len(np.unique(loose[np.isin(labels, (6, 7))])) == 1


def test_empty_and_bad_input():
    assert not merge_convex_neighbours(np.zeros((5, 5), np.int32), 0.9).any()
    with pytest.raises(ValueError, match="labels: expected a 2-D"):
        merge_convex_neighbours(np.zeros((2, 5, 5), np.int32), 0.9)
    with pytest.raises(ValueError, match="merge_solidity"):
        AisSettings(merge_solidity=1.5).check()
    with pytest.raises(ValueError, match="merge_border"):
        AisSettings(merge_border=-1).check()


def test_ais_merges_a_nucleus_with_two_centres():
    """Maps of one elongated nucleus whose centre map has two minima: two seeds, one object."""
    yy, xx = np.mgrid[:64, :96].astype(np.float32)
    inside = ((yy - 32) / 14) ** 2 + ((xx - 48) / 30) ** 2 <= 1
    fg = inside.astype(np.float32)
    d1 = np.hypot(yy - 32, xx - 33) / 18
    d2 = np.hypot(yy - 32, xx - 63) / 18
    center = np.where(inside, np.clip(np.minimum(d1, d2), 0, 1), 1).astype(np.float32)
    boundary = np.where(inside, 1 - np.clip(np.minimum(d1, d2) * 0.2 + 0.3, 0, 1), 1)
    boundary = np.where(inside, np.minimum(boundary, center), 1).astype(np.float32)
    plain = AisSettings(foreground_smoothing=0, distance_smoothing=0)
    assert instances_from_maps(fg, center, boundary, plain).max() == 2
    merged = instances_from_maps(fg, center, boundary, AisSettings(
        foreground_smoothing=0, distance_smoothing=0, merge_solidity=0.98, merge_border=1.0))
    assert merged.max() == 1 and merged.dtype == np.uint32
    assert (merged > 0).sum() == inside.sum()
    # cut across its short axis (28 pixels), the border is 1.09 x the square root of a half
    strict = AisSettings(foreground_smoothing=0, distance_smoothing=0, merge_solidity=0.98,
                         merge_border=1.2)  # fmt: skip
    assert instances_from_maps(fg, center, boundary, strict).max() == 2
