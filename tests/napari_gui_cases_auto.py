"""GUI cases of the widget's automatic segmentation ("Segment everything", "Segment stack").

Run in a fresh process by ``test_napari_gui.py`` with ``napari_gui_cases.py``; run directly
with ``xvfb-run -a python -m pytest tests/napari_gui_cases_auto.py``.
"""

import numpy as np

from napari_sam.train.evaluation import iou
from napari_sam.train.synthetic import make_nuclei_2d

import napari_fixtures as nf
from napari_fixtures import sam_widget, viewer, xvfb_display

__all__ = ["sam_widget", "viewer", "xvfb_display"]  # fixtures


def ids_of(plane):
    return set(np.unique(plane[plane > 0]).tolist())


def test_segment_everything_links_slices_and_segment_stack_streams(
    viewer, sam_widget, qtbot, monkeypatch
):
    """Issue [auto]: Segment everything slice after slice gives an object one id in 3-D (one
    undo step a slice); Segment stack does every slice in the worker, with a progress bar,
    the same labels and Cancel keeping the slices done. The shipped model's AMG at 96 x 96."""
    import napari_sam.segment.driver as driver

    image, _ = make_nuclei_2d((96, 96), seed=1)
    stack = np.stack([np.roll(image, k, axis=1) for k in range(3)])  # drifting by a pixel
    viewer.add_image(stack, name="drift")
    sam_widget.image_box.setCurrentText("drift")
    _, _, _, out = sam_widget.setup_layers()
    viewer.dims.set_current_step(0, 0)
    n = len(nf.records())
    sam_widget.buttons["Segment everything"].click()
    nf.idle(qtbot, sam_widget, 300_000)
    first = out.data[0].copy()
    assert ids_of(first) and not out.data[1:].any(), nf.messages(n)
    viewer.dims.set_current_step(0, 1)
    sam_widget.buttons["Segment everything"].click()
    nf.idle(qtbot, sam_widget, 300_000)
    second = out.data[1].copy()
    assert ids_of(second) and not out.data[2].any()
    np.testing.assert_array_equal(out.data[0], first)  # slice 0 untouched
    same = 0
    for i in ids_of(second):
        best = max(ids_of(first), key=lambda j: iou(second == i, first == j))
        if iou(second == i, first == best) > 0.5:  # the same nucleus, a pixel further
            assert i == best, f"object {i} of slice 1 is object {best} of slice 0"
            same += 1
        elif i in ids_of(first):  # a weaker match links too (IoU 0.3 and up)
            assert iou(second == i, first == i) >= 0.3, f"object {i} is not on slice 0"
        else:
            assert i > max(ids_of(first)), f"new object {i} took an id of slice 0"
    assert same >= 1 and out.selected_label in ids_of(second)
    assert any("object(s) on 1 slice(s)" in m for m in nf.messages(n)), nf.messages(n)
    out.undo()  # the second slice's write only
    assert not out.data[1].any()
    np.testing.assert_array_equal(out.data[0], first)
    out.redo()

    stacked = viewer.add_labels(np.zeros(stack.shape, np.int32), name="stacked")
    sam_widget.output_box.setCurrentText("stacked")
    assert sam_widget.segment_stack() is not None
    assert sam_widget._pbar is not None and sam_widget._pbar.total == 3  # a progress bar
    nf.idle(qtbot, sam_widget, 300_000)
    assert all(ids_of(p) for p in stacked.data)
    np.testing.assert_array_equal(stacked.data[:2], out.data[:2])  # as slice after slice
    stacked.undo()  # one undo step a slice
    assert not stacked.data[2].any() and stacked.data[1].any()

    cut = viewer.add_labels(np.zeros(stack.shape, np.int32), name="cancelled")
    sam_widget.output_box.setCurrentText("cancelled")
    segment = driver.segment_slice

    def then_cancel(sp, index, *args, **kw):  # press Cancel once slice 0 is done: slice 1
        if index == (1,):  # stops within its first step
            sam_widget.cancel()
        return segment(sp, index, *args, **kw)

    monkeypatch.setattr(driver, "segment_slice", then_cancel)
    n = len(nf.records())
    sam_widget.buttons["Segment stack"].click()
    nf.idle(qtbot, sam_widget, 300_000)
    np.testing.assert_array_equal(cut.data[0], stacked.data[0])  # the slice done is kept
    assert not cut.data[1:].any()
    assert any("on 1 slice(s)" in m for m in nf.messages(n)), nf.messages(n)


def test_one_click_one_object_mode_commits_three_nuclei(viewer, sam_widget, qtbot):
    """[newcomer] 3: three positive clicks on three nuclei are one object by SAM's rule (the
    status line says so); in "one click = one object" mode one commit gives three labels."""
    from napari_sam.masks import object_centre
    from napari_sam.train.synthetic import make_sample_stack

    points, _, preview, out = nf.open_sample(viewer, sam_widget, 5)
    image, truth = make_sample_stack(0)
    plane = truth[5]
    ids, counts = np.unique(plane[plane > 0], return_counts=True)
    chosen = ids[np.argsort(-counts)][:3]
    for nid in chosen:
        x, y = object_centre(plane == nid)
        points.add([5, y, x])
    nf.idle(qtbot, sam_widget, 300_000)
    assert len(sam_widget.predictions) == 1
    assert "3 positive clicks describe ONE object" in viewer.status
    sam_widget.one_per_click.setChecked(True)
    sam_widget.update_preview()
    nf.idle(qtbot, sam_widget, 300_000)
    assert len(sam_widget.predictions) == 3
    ids = sam_widget.commit()
    assert len(ids) == 3 and set(np.unique(out.data[5])) - {0} == set(ids)
    for nid in chosen:  # each nucleus got a label of its own
        assert len(set(np.unique(out.data[5][plane == nid])) - {0}) == 1


def test_segment_everything_on_one_slice_shows_progress_and_cancels(
    viewer, sam_widget, qtbot, monkeypatch
):
    """[newcomer] 6: Segment everything on one slice disables the buttons that would conflict
    (Cancel stays), shows its steps (batches of grid prompts) on a progress bar, and Cancel
    stops it within a step, writing nothing; the buttons come back after."""
    from napari_sam.segment.automatic import AutomaticMaskGenerator
    from napari_sam.weights import create_model

    _, _, _, out = nf.open_sample(viewer, sam_widget, 5)
    nf.idle(qtbot, sam_widget, 300_000)
    # without its decoder, the shipped model segments with grid prompts: many steps
    sam_widget.set_model(create_model("sam_tiny_nuclei", pretrained=True, decoder=False))
    real, totals = AutomaticMaskGenerator.generate, []

    def generate(self, image, embedding=None, progress=None):
        def spy(done, total):  # Cancel pressed once two steps are done
            totals.append(total)
            if done == 2:
                sam_widget.cancel()
            progress(done, total)

        return real(self, image, embedding, spy)

    monkeypatch.setattr(AutomaticMaskGenerator, "generate", generate)
    n = len(nf.records())
    sam_widget.buttons["Segment everything"].click()
    buttons = sam_widget.buttons
    assert not buttons["Segment everything"].isEnabled() and not buttons["Commit"].isEnabled()
    assert not buttons["Segment stack"].isEnabled() and buttons["Cancel"].isEnabled()
    nf.idle(qtbot, sam_widget, 300_000)
    assert totals and totals[0] > 2, totals
    assert not out.data[5].any(), "a cancelled slice writes nothing"
    assert any("(cancelled)" in m for m in nf.messages(n)), nf.messages(n)
    assert all(b.isEnabled() for b in buttons.values())
    monkeypatch.setattr(AutomaticMaskGenerator, "generate", real)
    shown = []
    real_to = type(sam_widget).progress_to

    def progress_to(self, done, total):
        # the bar this call updates: napari's bar processes Qt events while it updates, so the
        # job's end (which closes the bar) may have run by the time the call returns, and
        # the next step's call may have run inside this one
        bar = self._pbar
        real_to(self, done, total)
        shown.append((done, total, None if bar is None else bar.n))

    monkeypatch.setattr(type(sam_widget), "progress_to", progress_to)
    sam_widget.buttons["Segment everything"].click()
    nf.idle(qtbot, sam_widget, 300_000)
    last = max(shown, default=None)  # calls may nest too (the same event processing)
    assert last and last[0] == last[1] == last[2], shown[-4:]  # the bar reached the end
    assert all(n is None or n <= total for _, total, n in shown), shown  # and never passed it
    assert out.data[5].any()


def test_sample_click_commit_then_everything_adds_no_slivers(
    viewer, sam_widget, qtbot, monkeypatch, tmp_path
):
    """[newcomer] 1 and 2 on the sample: the output is not the sample's labels; after a click
    and a commit, Segment everything with overwrite off adds no object smaller than the
    model's minimum area (committed pixels left out) and none that lay mostly over the
    committed object. [provenance]: saved with its record, ``napari-sam segment`` replays the
    click and Segment everything to the same labels."""
    import tifffile

    import napari_sam._napari._widget as widget_module
    from napari_sam.cli import main
    from napari_sam.masks import object_centre
    from napari_sam.segment.instances import min_object_area
    from napari_sam.train.synthetic import make_sample_stack

    points, _, _, out = nf.open_sample(viewer, sam_widget, 5)
    assert out.name != "true nuclei" and sam_widget.output_box.currentText() == out.name
    image, truth = make_sample_stack(0)
    plane = truth[5]
    ids, counts = np.unique(plane[plane > 0], return_counts=True)
    x, y = object_centre(plane == ids[np.argmax(counts)])
    points.add([5, y, x])
    nf.idle(qtbot, sam_widget, 300_000)
    committed = sam_widget.commit()
    assert committed == [1]
    before = out.data[5].copy()
    raw = []
    real = widget_module.write_instances

    def spy(labels, index, instances, *args, **kwargs):
        raw.append(np.asarray(instances).copy())
        return real(labels, index, instances, *args, **kwargs)

    monkeypatch.setattr(widget_module, "write_instances", spy)
    assert not sam_widget.overwrite.isChecked()
    sam_widget.buttons["Segment everything"].click()
    nf.idle(qtbot, sam_widget, 300_000)
    after = out.data[5]
    new = sorted(set(np.unique(after[(after > 0) & (before == 0)]).tolist()) - {0})
    assert new and raw, "Segment everything added nothing"
    np.testing.assert_array_equal(after[before > 0], before[before > 0])  # kept
    min_area = min_object_area("sam_tiny_nuclei")
    for k in new:
        here = (after == k) & (before == 0)
        assert here.sum() >= min_area, (k, int(here.sum()), min_area)
        src = np.bincount(raw[0][here]).argmax()  # the instance it came from
        whole = raw[0] == src
        assert (whole & (before > 0)).sum() <= 0.5 * whole.sum(), k
    # [provenance]: the record has the click and each new object with the segmenter's settings
    record = out.metadata["napari_sam"]["objects"]
    assert [e["id"] for e in record] == [1, *new] and "points" in record[0]
    assert {e["everything"]["method"] for e in record[1:]} == {"ais"}
    assert len({e["step"] for e in record[1:]}) == 1
    path, stack = tmp_path / "labels.tif", tmp_path / "stack.tif"
    written = out.save(str(path), plugin="napari-sam-tf")
    assert len(written) == 2, written
    tifffile.imwrite(stack, image, imagej=True, metadata={"axes": "ZCYX"})
    argv = ["segment", stack, "--prompts", tmp_path / "labels.prompts.json", "--out",
            tmp_path / "again.tif", "--model", "sam_tiny_nuclei", "--channels", "single:0"]
    assert main([str(a) for a in argv]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "again.tif"), out.data)
