"""The widget's "Segment everything" without Qt: the linked write and the slice-by-slice job."""

from types import SimpleNamespace

import numpy as np
import pytest

from napari_sam._napari import _everything as everything
from napari_sam._napari._everything import segment_slices, stack_indices
from napari_sam.segment.instances import neighbour_indices, write_instances
from napari_sam.segment.linking import match_neighbours


class Recorder:
    """A Labels layer's ``data_setitem`` stand-in: writes and counts the calls."""

    def __init__(self, labels):
        self.labels, self.calls = labels, 0

    def __call__(self, key, values):
        self.calls += 1
        self.labels[key] = values


def square(shape, y, x, size):
    m = np.zeros(shape, bool)
    m[y : y + size, x : x + size] = True
    return m


def test_objects_of_the_next_slice_keep_the_ids_of_the_slice_before():
    labels = np.zeros((2, 40, 40), np.int32)
    labels[0][square((40, 40), 2, 2, 8)] = 5
    labels[0][square((40, 40), 15, 15, 10)] = 9
    labels[1, 30:40, 30:40] = 3  # an object already on slice 1
    before = labels.copy()
    inst = np.zeros((40, 40), np.uint32)
    inst[square((40, 40), 3, 3, 8)] = 1  # overlaps 5 (IoU 0.6)
    inst[square((40, 40), 16, 16, 9)] = 2  # overlaps 9
    inst[0:2, 20:30] = 3  # new
    inst[26:36, 26:36] = 4  # new, partly over label 3
    rec = Recorder(labels)
    ids = write_instances(labels, (1,), inst, False, rec)
    assert rec.calls == 1  # one assignment: one undo step
    assert ids == [5, 9, 10, 11]
    plane = labels[1]
    assert (plane[inst == 1] == 5).all() and (plane[inst == 2] == 9).all()
    assert (plane[inst == 3] == 10).all()
    np.testing.assert_array_equal(plane[30:40, 30:40], 3)  # existing pixels kept
    assert (plane[(inst == 4) & (before[1] == 0)] == 11).all()
    np.testing.assert_array_equal(labels[0], before[0])  # other slices untouched
    assert write_instances(labels, (1,), np.zeros((40, 40), np.uint32), False) == []


def test_previous_slice_first_then_next_one_to_one_and_kept_ids_never_taken():
    shape = (3, 30, 30)
    labels = np.zeros(shape, np.uint16)
    labels[0][square(shape[1:], 2, 2, 10)] = 4
    labels[2][square(shape[1:], 2, 2, 10)] = 7  # the same place, next slice
    labels[2][square(shape[1:], 16, 16, 10)] = 8  # only on the next slice
    inst = np.zeros(shape[1:], np.uint32)
    inst[square(shape[1:], 3, 3, 10)] = 1  # matches 4 (before) and 7 (after): 4 wins
    inst[square(shape[1:], 17, 17, 10)] = 2  # matches 8 on the next slice
    assert write_instances(labels, (1,), inst, False) == [4, 8]
    # two objects over one object of the slice before: only the better one takes its id
    labels = np.zeros((2, 30, 30), np.int32)
    labels[0, 0:20, 0:10] = 6
    inst = np.zeros((30, 30), np.uint32)
    inst[0:12, 0:10], inst[12:20, 0:10] = 1, 2
    assert write_instances(labels, (1,), inst, False) == [6, 7]
    assert (labels[1, 0:12, 0:10] == 6).all() and (labels[1, 12:20, 0:10] == 7).all()
    # an id already elsewhere on this slice is not taken (kept pixels); overwritten it is
    labels = np.zeros((2, 30, 30), np.int32)
    labels[0, 0:10, 0:10] = 2
    labels[1, 20:30, 20:30] = 2  # id 2 also on slice 1, away from the new object
    inst = np.zeros((30, 30), np.uint32)
    inst[0:10, 0:10] = 1
    assert write_instances(labels.copy(), (1,), inst, False) == [3]
    inst[20:30, 20:30] = 2  # overwriting covers the old object 2 of slice 1 entirely
    assert write_instances(labels.copy(), (1,), inst, True) == [2, 3]


def test_linking_follows_the_slice_axis_and_can_be_turned_off():
    labels = np.zeros((2, 3, 20, 20), np.int32)  # T, Z, Y, X
    labels[0, 0, 0:10, 0:10] = 1  # slice (t=0, z=0)
    labels[1, 1, 0:10, 0:10] = 2  # slice (t=1, z=1)
    inst = np.zeros((20, 20), np.uint32)
    inst[0:10, 0:10] = 1
    assert write_instances(labels.copy(), (0, 1), inst, False, axis=1) == [1]  # along Z
    assert write_instances(labels.copy(), (0, 1), inst, False, axis=0) == [2]  # along T
    assert write_instances(labels.copy(), (0, 1), inst, False, axis=None) == [3]
    assert write_instances(np.zeros((20, 20), np.int32), (), inst, False) == [1]  # 2-D
    assert neighbour_indices((0, 1), 1, labels.shape) == [(0, 0), (0, 2)]
    assert neighbour_indices((0, 2), 5, labels.shape) == [(0, 1)]  # axis clipped to Z
    assert neighbour_indices((), 0, (20, 20)) == []


def test_ids_that_do_not_fit_the_dtype_raise_and_write_nothing():
    labels = np.zeros((2, 10, 10), np.uint8)
    labels[0, 0:5, 0:5] = 255
    inst = np.zeros((10, 10), np.uint32)
    inst[0:5, 0:5] = 1  # takes 255: fits
    inst[6:9, 6:9] = 2  # would be 256
    before = labels.copy()
    with pytest.raises(ValueError, match="256 does not fit"):
        write_instances(labels, (1,), inst, False)
    np.testing.assert_array_equal(labels, before)
    inst[inst == 2] = 0
    assert write_instances(labels, (1,), inst, False) == [255]


def test_match_neighbours_gives_each_id_once_and_skips_excluded_ones():
    cur = np.zeros((10, 10), np.int32)
    cur[0:5, 0:5], cur[5:10, 5:10] = 1, 2
    prev = np.where(cur == 1, 3, 0)
    nxt = np.zeros_like(cur)
    nxt[5:10, 2:10] = 4  # over object 2 (IoU 0.625)
    assert match_neighbours(cur, [prev, nxt]) == {1: 3, 2: 4}
    assert match_neighbours(cur, [prev, nxt], min_overlap=0.7) == {1: 3}
    assert match_neighbours(cur, [prev, nxt], exclude=[3]) == {2: 4}
    again = np.where(cur == 2, 3, 0)  # id 3 again, over the other object: given once only
    assert match_neighbours(cur, [prev, again]) == {1: 3}
    assert match_neighbours(cur, []) == {}


def test_stack_indices_in_the_slice_range_along_the_axis():
    assert stack_indices((4, 8, 8), 1, 0, (1, 2)) == [(1,), (2,)]
    assert stack_indices((2, 3, 8, 8), 2, 1, (1, 99)) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert stack_indices((8, 8), 0) == [()]
    assert len(stack_indices((3, 8, 8), 1)) == 3


def test_segment_slices_streams_slices_and_stops_when_cancelled(monkeypatch):
    released, asked = [], []

    class Segmenter:  # an InstanceSegmenter stand-in: slice z has z + 1 objects
        def segment_slice(self, sp, index, progress=None):
            asked.append(index)
            out = np.zeros((8, 8), np.uint32)
            out[0, : index[0] + 1] = np.arange(1, index[0] + 2)
            return out

    monkeypatch.setattr(everything, "segmenter_for", lambda model: Segmenter())
    sp = SimpleNamespace(model=None, release_slice=lambda: released.append(1))
    session = SimpleNamespace(sp=sp)
    got = []
    job = segment_slices(session, [(0,), (1,), (2,)], cancel=lambda: len(got) == 2)
    with pytest.raises(StopIteration) as stop:
        while True:
            got.append(next(job))
    assert stop.value.value == 2 and asked == [(0,), (1,)] and len(released) == 2
    assert [i for i, _ in got] == [(0,), (1,)] and got[1][1].max() == 2
    assert list(segment_slices(session, [(2,)]))[0][1].max() == 3


def test_a_long_slice_reports_its_steps_and_stops_within_one_when_cancelled(monkeypatch):
    """Segment everything on one slice: the steps (tiles, batches of grid prompts) come
    through as progress, and Cancel stops the slice after the step in progress."""
    steps = []

    class Segmenter:  # 10 steps a slice
        def segment_slice(self, sp, index, progress=None):
            for k in range(11):
                steps.append(k)
                progress(k, 10)
            return np.ones((8, 8), np.uint32)

    monkeypatch.setattr(everything, "segmenter_for", lambda model: Segmenter())
    session = SimpleNamespace(sp=SimpleNamespace(model=None, release_slice=lambda: None))
    items = list(segment_slices(session, [(0,)], every=0.0))
    assert [i for i in items if i[0] == "progress"] == [("progress", k, 10) for k in range(11)]
    assert items[-1][0] == (0,) and items[-1][1].max() == 1
    steps.clear()
    job = segment_slices(session, [(0,), (1,)], cancel=lambda: len(steps) > 3, every=0.0)
    with pytest.raises(StopIteration) as stop:
        while True:
            next(job)
    assert stop.value.value == 0 and len(steps) == 4  # stopped within the first slice


def test_grid_generator_reports_each_batch_of_prompts():
    from napari_sam import create_model
    from napari_sam.predict.predictor import SAMPredictor
    from napari_sam.segment.automatic import AutomaticMaskGenerator

    gen = AutomaticMaskGenerator(SAMPredictor(create_model("sam_tiny_nuclei", pretrained=True)),
                                 points_per_side=8, points_per_batch=16)  # fmt: skip
    seen = []
    gen.generate(np.zeros((64, 64, 3), np.uint8), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(k, 4) for k in range(5)]  # 64 prompts in batches of 16


def test_rims_around_committed_objects_and_specks_are_not_objects():
    """Overwrite off ([newcomer] 2): an instance mostly over committed labels (the rim of a
    committed nucleus) or too small once its free part is left is not written."""
    from napari_sam.segment.instances import min_object_area

    labels = np.zeros((1, 60, 60), np.int32)
    labels[0, 10:30, 10:30] = 1  # committed
    inst = np.zeros((60, 60), np.uint32)
    inst[8:32, 8:32] = 1  # the committed nucleus and a rim of 2 px: 176 of 576 px free
    inst[50:54, 50:54] = 2  # a speck: 16 px
    inst[35:55, 5:25] = 3  # a new nucleus: 400 px
    inst[25:45, 25:45] = 4  # half over the committed one (25 px of 400): most of it free
    got = write_instances(labels.copy(), (0,), inst, False, axis=None, min_area=50)
    assert got == [2, 3]  # the ids written for instances 3 and 4
    out = labels.copy()
    write_instances(out, (0,), inst, False, axis=None, min_area=50)
    assert not out[0, 8:10].any() and not out[0, 50:54, 50:54].any()  # no rim, no speck
    assert (out[0, 35:55, 5:25] > 1).all()
    areas = np.bincount(out[0][out[0] > 1])
    assert areas[areas > 0].min() >= 50
    # overwrite on: everything is written, over the committed object too
    assert write_instances(labels.copy(), (0,), inst, True, axis=None, min_area=50) == [2, 3, 4, 5]
    assert min_object_area("sam_tiny_nuclei") == 153  # a quarter of a 28 px disc
    assert min_object_area("sam_vit_b") == 16  # no object size recorded
