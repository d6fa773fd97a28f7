"""Propagation through Z/T in the core ([pipeline]): :func:`napari_sam.segment.propagation.
propagate` on any SlicePredictor, with no napari (moved from test_napari_core)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from napari_sam.segment.propagation import propagate, propagation_prompts


class OraclePredictor:
    """A SlicePredictor stand-in whose ``predict_window`` answers with the true object under
    the first point (``beyond`` where that object has ended), on the whole slice."""

    def __init__(self, truth, nid=None, beyond=None):
        self.truth, self.nid, self.beyond, self.calls = truth, nid, beyond, []
        self.view = SimpleNamespace(stack_shape=truth.shape[:-2], slice_shape=truth.shape[-2:])

    def predict_window(self, index, points=None, labels=None, boxes=None,
                       multimask_output=True, return_logits=False, masks=None):  # fmt: skip
        self.calls.append((tuple(index), points, boxes))
        plane = self.truth[tuple(index)]
        if self.nid is not None:
            m = plane == self.nid
        else:
            x, y = (points[0] if points is not None else boxes[:2] + 1).astype(int)
            m = plane == plane[y, x]
        if not m.any() and self.beyond is not None:
            m = self.beyond
        masks = np.stack([m, np.zeros_like(m), m]) if multimask_output else m[None]
        h, w = plane.shape
        scores = np.linspace(0.9, 0.5, len(masks))
        return masks, scores, np.zeros((len(masks), 4, 4)), (0, h, 0, w)


def test_propagation_follows_the_object_and_stops_where_it_ends():
    from napari_sam.train.synthetic import make_sample_stack

    _, truth = make_sample_stack(0)
    nid = int(np.bincount(truth[5].ravel())[1:].argmax() + 1)
    zs = np.flatnonzero((truth == nid).any(axis=(1, 2)))
    sp = OraclePredictor(truth, nid)
    got = sorted(i[0] for i, _, _ in propagate(sp, (5,), truth[5] == nid, stop_iou=0.0))
    assert got == [z for z in zs if z != 5]
    assert all(pts is not None and box is not None for _, pts, box in sp.calls)
    other = truth[5] == truth[5][truth[5] != nid].max()  # SAM jumping to another object
    sp = OraclePredictor(truth, nid, beyond=other)
    got = sorted(i[0] for i, _, _ in propagate(sp, (5,), truth[5] == nid, stop_iou=0.3))
    assert got[0] >= zs.min() - 1 and got[-1] <= zs.max() + 1
    assert not set(got) - set(zs)  # the jump has IoU 0 with the previous slice: stopped
    got = [i for i, _, _ in propagate(sp, (5,), truth[5] == nid, limits=(5, 6))]
    assert got == [(6,)]
    assert list(propagate(sp, (5,), truth[5] == nid, cancel=lambda: True)) == []


def test_prompts_of_a_cropped_mask_are_those_of_the_whole_mask():
    """Propagation crops each mask to its object (a tiled slice's windows): the prompts in
    slice pixels are the very prompts of the uncropped mask."""
    from napari_sam.segment.propagation import crop_to_object

    mask = np.zeros((40, 50), bool)
    mask[5:19, 30:47] = True
    mask[10:12, 20:31] = True
    crop, window = crop_to_object(mask)
    for a, b in zip(propagation_prompts(crop, window), propagation_prompts(mask), strict=True):
        np.testing.assert_array_equal(a, b)


def test_propagation_on_a_tiled_stack_gives_the_untiled_objects_slices():
    """The same call on a StackPredictor and on a TiledPredictor of one stack (the core has no
    branch on the kind): both follow the object over the same slices; the tiled one's masks
    cover windows of the slice."""
    from napari_sam import create_model
    from napari_sam.stacks import StackView
    from napari_sam.stacks.factory import make_predictor
    from napari_sam.stacks.tiling import plan_tiling
    from napari_sam.train.synthetic import make_sample_stack

    image, truth = make_sample_stack(0)
    image, truth = image[2:8, 0], truth[2:8]
    model = create_model("sam_tiny_nuclei", pretrained=True)
    view = StackView(image, "ZYX")
    whole = make_predictor(model, view)
    tiled = make_predictor(model, view, plan_tiling(view.slice_shape, (256, 256), tile=128))
    nid = int(np.bincount(truth[3].ravel())[1:].argmax() + 1)
    start = truth[3] == nid
    a = {i: m for i, m, w in propagate(whole, (3,), start, stop_iou=0.3)}
    b = {i: (m, w) for i, m, w in propagate(tiled, (3,), start, stop_iou=0.3)}
    assert a and set(a) == set(b)
    h, w = view.slice_shape
    for mask, (y0, y1, x0, x1) in b.values():  # a window of the tiled slice, not the slice
        assert 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w and (y1 - y0) * (x1 - x0) < h * w
        assert mask.shape == (y1 - y0, x1 - x0) and mask.any()
