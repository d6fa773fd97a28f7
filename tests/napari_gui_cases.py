"""GUI acceptance cases of the napari plugin, on a real (shown) viewer under X.

Run in a fresh process by ``test_napari_gui.py`` (TensorFlow and the OpenGL driver must be
loaded in a fixed order, see ``napari_sam._napari._tf``); run directly with
``xvfb-run -a python -m pytest tests/napari_gui_cases.py``.
"""

import os
import time

import numpy as np
import pytest

from napari_sam.train.evaluation import iou, object_centre
from napari_sam.train.synthetic import make_nuclei_2d, make_sample_stack

import napari_fixtures as nf
from napari_fixtures import sam_widget, tiny_random_model, viewer, xvfb_display

__all__ = ["sam_widget", "tiny_random_model", "viewer", "xvfb_display"]  # fixtures

Z = 5  # the slice prompted
# A gap in a 10 ms timer longer than this means work ran on the event loop: one slice's
# embedding (about 1.2 s on 2 cores), the model's loading or a graph's tracing each take
# longer. Shorter gaps come from the GIL (the worker's tracing holds it in TensorFlow's op
# creation) and from napari's own drawing. A full garbage collection over napari's and
# TensorFlow's objects held the loop for 0.6 s until the plugin froze them
# (napari_sam._napari._tf), and napari's progress bar took 0.2 s to open (its activity
# dialog): the warm-up shows the widget's own busy bar instead. The warm-up case checks
# both, and its gaps against [first-use]'s 0.2 s (largest gaps 0.08 to 0.12 s measured on
# 2 AVX2 cores with a training job running beside it, 2026-12-06).
FROZEN_S = 1.0
WARM_UP_GAP_S = 0.2


def test_widget_and_sample_from_manifest(viewer, sam_widget):
    from napari_sam._napari._widget import SAMWidget

    assert isinstance(sam_widget, SAMWidget)
    viewer.open_sample("napari-sam-tf", "nuclei_stack")
    sam_widget.image_box.setCurrentText("nuclei stack")
    image = viewer.layers["nuclei stack"]
    assert image.data.shape == (2, 12, 192, 192) and image.data.dtype == np.uint16
    assert viewer.layers["true nuclei"].data.shape == (12, 192, 192)
    # the output is never a layer the user did not choose: not the sample's ground truth
    assert sam_widget.output_box.layer() is None and sam_widget.output_box.currentText() == ""
    sam_widget.setup_layers()
    assert sam_widget.output_box.layer().name != "true nuclei"
    assert sam_widget.geometry()[1].axes == "CZYX"  # the channel axis from the axis labels
    tz = viewer.add_image(np.zeros((5, 6, 32, 32)), name="tz", axis_labels=("t", "z", "y", "x"))
    sam_widget.image_box.setCurrentText(tz.name)
    assert sam_widget.geometry()[1].axes == "TZYX"
    assert "Shift-C" in sam_widget.buttons["Commit"].toolTip()
    assert "T: positive (lime)" in sam_widget.hint.text() and "Shift-C" in sam_widget.hint.text()


def test_preview_commit_undo_with_random_weights(viewer, sam_widget, tiny_random_model, qtbot):
    """The wiring, with any model: preview on one slice, commit, Ctrl+Z, prompts cleared."""
    points, _, preview, out = nf.open_sample(viewer, sam_widget, Z)
    sam_widget.set_model(tiny_random_model)
    _, truth = make_sample_stack(0)
    nid, mask = nf.nucleus(truth)
    existing = np.where(truth[Z] == nid, 0, truth[Z]).astype(out.data.dtype)  # the others
    out.data[Z] = existing
    x, y = object_centre(mask)
    points.add([Z, y, x])
    nf.idle(qtbot, sam_widget)
    assert len(sam_widget.predictions) == 1
    shown = preview.data.reshape(len(preview.data), -1).any(axis=1)
    assert shown.tolist() == [z == Z for z in range(12)] or not shown.any()
    free = np.asarray(sam_widget.predictions[0].mask, bool) & (existing == 0)
    if not free.any():  # random weights may predict nothing, or only over labelled nuclei,
        sam_widget.predictions[0].masks[:] = mask  # which a commit keeps: test a known mask
    before = out.data.copy()
    ids = sam_widget.commit()
    assert ids == [int(before.max()) + 1]
    assert len(points.data) == 0 and not preview.data.any()  # prompts and preview cleared
    kept = before > 0
    np.testing.assert_array_equal(out.data[kept], before[kept])  # nothing overwritten
    assert (out.data == ids[0]).any()
    nf.ctrl_z(qtbot, viewer, out)
    np.testing.assert_array_equal(out.data, before)


def test_event_loop_keeps_serving_timers_while_embedding(viewer, sam_widget, qtbot, tmp_path):
    from qtpy.QtCore import QTimer

    from napari_sam.model import SegmentAnythingModel
    from napari_sam.weights import model_config

    image, _ = make_sample_stack(1)
    viewer.add_image(image[:10, 0], name="ten slices")
    sam_widget.image_box.setCurrentText("ten slices")
    sam_widget.cache.setText(str(tmp_path))  # embeddings go to the on-disk store
    sam_widget.set_model(SegmentAnythingModel(model_config("sam_tiny_nuclei")))
    stamps = []
    timer = QTimer(interval=10)
    timer.timeout.connect(lambda: stamps.append(time.perf_counter()))
    timer.start()
    qtbot.wait(100)
    t0 = time.perf_counter()
    assert sam_widget.embed_stack() is not None
    nf.idle(qtbot, sam_widget)
    timer.stop()
    during = [t for t in stamps if t >= t0]
    gaps = np.diff([t0, *during])
    print(f"embedding 10 slices: {during[-1] - t0:.1f} s, largest timer gap {gaps.max():.3f} s")
    assert all(sam_widget.session.has_embedding((z,)) for z in range(10))
    assert len(list((tmp_path / "ten slices" / "records").glob("*.json"))) == 10
    assert gaps.max() < FROZEN_S, f"event loop blocked for {gaps.max():.3f} s"


def test_bad_input_gives_messages_not_tracebacks(viewer, sam_widget, tiny_random_model, qtbot):
    from napari.utils.notifications import ErrorNotification

    points, _, _, out = nf.open_sample(viewer, sam_widget, Z)
    sam_widget.set_model(tiny_random_model)
    out.data[Z, 10:20, 10:20] = 7
    labels_before = out.data.copy()
    n = len(nf.records())
    viewer.add_image(np.zeros((3, 40)), name="profiles")  # channels x one axis: no Y, X
    sam_widget.image_box.setCurrentText("profiles")
    sam_widget.channel_axis.setCurrentText("first axis")
    sam_widget.update_preview()
    assert any("spatial" in m for m in nf.messages(n)), nf.messages(n)
    sam_widget.image_box.setCurrentText("nuclei stack")
    sam_widget.channel_axis.setCurrentText("auto")
    n = len(nf.records())
    points.add([Z, 500, 500])  # outside the image
    nf.idle(qtbot, sam_widget)
    assert any("outside the image" in m for m in nf.messages(n)), nf.messages(n)
    n = len(nf.records())
    other = viewer.add_points([[Z, 20, 20]], ndim=3, scale=(1, 2, 2), name="other scale")
    sam_widget.points_box.setCurrentText(other.name)
    sam_widget.update_preview()
    assert any("scale" in m for m in nf.messages(n)), nf.messages(n)
    n = len(nf.records())
    wrong = viewer.add_labels(np.zeros((3, 10, 10), np.int32), name="wrong shape")
    sam_widget.output_box.setCurrentText(wrong.name)
    sam_widget.predictions = []
    assert sam_widget.commit() == [] and sam_widget.propagate() is None
    assert any("shape" in m for m in nf.messages(n)), nf.messages(n)
    np.testing.assert_array_equal(out.data, labels_before)  # no lost labels
    assert not any(isinstance(r, ErrorNotification) for r in nf.records())  # no tracebacks


def test_tiny_nuclei_point_preview_commit_and_propagation(viewer, sam_widget, qtbot):
    """Acceptance with the shipped ``sam_tiny_nuclei`` weights (runs once they ship)."""
    from napari_sam.weights.registry import TINY_NUCLEI_WEIGHTS

    if not TINY_NUCLEI_WEIGHTS.is_file():
        pytest.skip(
            "the sam_tiny_nuclei weights do not meet the targets yet and are not shipped "
            "(issue #3, docs/tiny-model.md)"
        )
    points, _, preview, out = nf.open_sample(viewer, sam_widget, Z)
    _, truth = make_sample_stack(0)
    nid, mask = nf.nucleus(truth, ends_inside=True)
    x, y = object_centre(mask)
    points.add([Z, y, x])
    nf.idle(qtbot, sam_widget, 300_000)
    got = preview.data[Z] > 0
    assert iou(got, mask) >= 0.8, f"IoU {iou(got, mask):.3f} with nucleus {nid}"
    others = np.delete(preview.data, Z, axis=0)
    assert not others.any(), "the preview touches other slices"
    ids = sam_widget.commit()
    assert ids == [1] and iou(out.data[Z] == 1, mask) >= 0.8
    nf.ctrl_z(qtbot, viewer, out)
    assert not out.data.any()
    out.redo()
    sam_widget.propagate()
    nf.idle(qtbot, sam_widget, 300_000)
    zs = np.flatnonzero((truth == nid).any(axis=(1, 2)))
    got_zs = np.flatnonzero((out.data == 1).any(axis=(1, 2)))
    print(f"nucleus {nid}: true slices {zs.min()}..{zs.max()}, got {got_zs.tolist()}")
    assert abs(got_zs.min() - zs.min()) <= 1 and abs(got_zs.max() - zs.max()) <= 1
    assert len(got_zs) == got_zs.max() - got_zs.min() + 1


def test_a_model_to_download_is_asked_for_first(viewer, sam_widget, qtbot, monkeypatch, tmp_path):
    """[first-use] 5: choosing a model whose files are not here asks first, with the size;
    declined, the previous model stays and nothing is loaded."""
    from qtpy.QtWidgets import QMessageBox

    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path / "micro_sam"))
    nf.open_sample(viewer, sam_widget, Z)
    before = sam_widget.model_box.currentText()
    asked = []

    def question(parent, title, text, buttons):
        asked.append(text)
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", question)
    sam_widget.model_box.setCurrentText("vit_b_lm")
    assert len(asked) == 1 and "vit_b_lm needs 2 file(s)" in asked[0] and "375 MB" in asked[0]
    assert sam_widget.model_box.currentText() == before
    assert any("vit_b_lm not downloaded" in m for m in nf.messages())
    sam_widget.model_box.setCurrentText(before)  # nothing to ask for the model already there
    assert len(asked) == 1


def test_screenshot_of_the_widget_at_work(viewer, sam_widget, tiny_random_model, qtbot, tmp_path):
    """[first-use] 4: the common path first, the rest collapsed, real slice ranges. Writes
    ``$NAPARI_SAM_SCREENSHOT`` (the README's picture) or a temporary file."""
    from napari_sam.weights.registry import TINY_NUCLEI_WEIGHTS

    points, boxes, _, _ = nf.open_sample(viewer, sam_widget, Z)
    w = sam_widget
    common = [w.model_box, w.image_box, w.output_box, w.state_label, w.hint]
    common += [w.buttons[b] for b in ("Commit", "Next mask", "Clear prompts", "Cancel")]

    def shown(c):  # a collapsed section keeps its widgets visible, at zero height
        return c.isVisible() and not c.visibleRegion().isEmpty()

    assert all(shown(c) for c in common)
    assert list(w.sections) == ["Prompts", "Channels", "Object size", "Model file and cache",
                                "Propagation", "Automatic segmentation"]  # fmt: skip
    assert not any(box.isExpanded() for box, _ in w.sections.values())
    advanced = [w.channel_axis, w.cache, w.checkpoint, w.stop_iou, w.buttons["Propagate"],
                w.buttons["Segment everything"], w.points_box, w.diameter]  # fmt: skip
    assert not any(shown(c) for c in advanced)
    assert (w.z_from.value(), w.z_to.value(), w.z_to.maximum()) == (0, 11, 11)  # 12 slices
    w.z_to.setValue(7)
    w.follow_image()  # the same image: the user's range is kept
    assert w.z_to.value() == 7
    w.sections["Propagation"][0].expand(animate=False)
    qtbot.wait(50)
    qtbot.waitUntil(lambda: shown(w.stop_iou) and shown(w.buttons["Propagate"]))
    w.sections["Propagation"][0].collapse(animate=False)
    if not TINY_NUCLEI_WEIGHTS.is_file():
        sam_widget.set_model(tiny_random_model)
    _, truth = make_sample_stack(0)
    _, mask = nf.nucleus(truth)
    x, y = object_centre(mask)
    points.add([Z, y, x])
    ys, xs = np.nonzero(truth[Z] == np.unique(truth[Z])[2])
    y0, y1, x0, x1 = ys.min() - 2, ys.max() + 2, xs.min() - 2, xs.max() + 2
    boxes.add_rectangles([[Z, y0, x0], [Z, y0, x1], [Z, y1, x1], [Z, y1, x0]])
    nf.idle(qtbot, sam_widget, 300_000)
    viewer.window._qt_window.resize(1280, 900)
    viewer.layers.selection.active = points
    qtbot.wait(300)
    shot = viewer.screenshot(canvas_only=False)
    assert shot.shape[0] > 500 and shot[..., :3].std() > 10
    from PIL import Image

    path = os.environ.get("NAPARI_SAM_SCREENSHOT") or str(tmp_path / "widget.png")
    Image.fromarray(shot).save(path)
    assert os.path.getsize(path) > 10_000


def test_toggle_polarity_cycle_masks_and_boxes(viewer, sam_widget, tiny_random_model, qtbot):
    from qtpy.QtCore import Qt

    points, boxes, preview, _ = nf.open_sample(viewer, sam_widget, Z)
    sam_widget.set_model(tiny_random_model)
    points.add([Z, 40, 40])
    nf.idle(qtbot, sam_widget)
    choice = sam_widget.predictions[0].choice
    from npe2 import PluginManager

    PluginManager.instance().get_command("napari-sam-tf.cycle_mask").exec()  # manifest command
    assert sam_widget.predictions[0].choice == (choice + 1) % 3
    assert "/3)" in sam_widget.iou_label.text()
    viewer.layers.selection.active = points
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_T)  # the key toggles positive / negative
    assert not sam_widget.positive_mode
    points.add([Z, 60, 60])
    assert points.features["positive"].tolist() == [True, False]
    np.testing.assert_allclose(points.face_color[1], [1, 0, 1, 1])  # magenta = negative
    for y0, x0 in ((100, 100), (140, 20)):  # two boxes: two more objects
        corners = [[Z, y0, x0], [Z, y0, x0 + 30], [Z, y0 + 30, x0 + 30], [Z, y0 + 30, x0]]
        boxes.add_rectangles(corners)
    nf.idle(qtbot, sam_widget)
    assert len(sam_widget.predictions) == 3
    assert set(np.unique(preview.data)) <= {0, 1, 2, 3}


def test_propagation_streams_slices_into_labels(
    viewer, sam_widget, tiny_random_model, qtbot, monkeypatch
):
    """Propagation wiring with an oracle decoder (the true masks): labels, ends, undo."""
    from napari_sam.stacks.stack_predictor import StackPredictor

    points, _, _, out = nf.open_sample(viewer, sam_widget, Z)
    sam_widget.set_model(tiny_random_model)
    _, truth = make_sample_stack(0)
    nid, mask = nf.nucleus(truth)

    def oracle(self, index, points=None, labels=None, boxes=None, multimask_output=True,
               return_logits=False, masks=None):  # fmt: skip
        m = truth[index[0]] == nid
        return (m[None], np.ones(1, np.float32), np.zeros((1, 64, 64), np.float32),
                (0, *m.shape[:1], 0, m.shape[1]))  # fmt: skip

    # the decoder every prediction goes through: previews and the core's propagation
    monkeypatch.setattr(StackPredictor, "predict_window", oracle)
    x, y = object_centre(mask)
    points.add([Z, y, x])
    nf.idle(qtbot, sam_widget)
    sam_widget.propagate()  # commits the preview first
    nf.idle(qtbot, sam_widget)
    zs = np.flatnonzero((truth == nid).any(axis=(1, 2)))
    got = np.flatnonzero((out.data == 1).any(axis=(1, 2)))
    assert abs(got.min() - zs.min()) <= 1 and abs(got.max() - zs.max()) <= 1
    np.testing.assert_array_equal(out.data[got] == 1, truth[got] == nid)
    assert len(sam_widget.propagated) == len(got) - 1
    for _ in range(len(got)):  # one undo step per slice
        out.undo()
    assert not out.data.any()


def test_widget_and_cli_give_the_same_labels(viewer, sam_widget, qtbot, tmp_path):
    """Issue [batch]: ``napari-sam segment`` with the Points layer napari saved = the widget."""
    import tifffile

    from napari_sam.cli import main
    from napari_sam.weights.registry import TINY_NUCLEI_WEIGHTS

    if not TINY_NUCLEI_WEIGHTS.is_file():
        pytest.skip("needs the shipped sam_tiny_nuclei weights")
    points, _, _, out = nf.open_sample(viewer, sam_widget, Z)
    image, truth = make_sample_stack(0)
    _, mask = nf.nucleus(truth)
    x, y = object_centre(mask)
    points.add([Z, y, x])
    neighbours = [i for i in np.unique(truth[Z]) if i and not (truth[Z] == i)[mask].any()]
    nx, ny = object_centre(truth[Z] == neighbours[0])
    sam_widget.toggle_polarity()  # the next point is negative
    points.add([Z, ny, nx])
    nf.idle(qtbot, sam_widget, 300_000)
    assert list(points.properties["positive"]) == [True, False]
    csv = tmp_path / "points.csv"
    points.save(str(csv))  # napari's own Points CSV writer (before the commit clears them)
    assert sam_widget.commit() == [1]
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, image, imagej=True, metadata={"axes": "ZCYX"})
    labels = tmp_path / "labels.tif"
    argv = ["segment", stack, "--prompts", csv, "--out", labels, "--model", "sam_tiny_nuclei",
            "--channels", "single:0"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    got = tifffile.imread(labels)
    assert got.shape == out.data.shape and got.max() == 1 and out.data.max() == 1
    # two models (the widget's and the CLI's) and their own graphs: equal to float rounding
    # only (oneDNN's rounding depends on the batch shape and the CPU kind), so a pixel whose
    # logit is at the threshold may flip; the object itself must be the same
    a, b = got == 1, out.data == 1
    iou = np.logical_and(a, b).sum() / np.logical_or(a, b).sum()
    assert iou >= 0.99, iou


def test_closing_the_widget_unbinds_its_keys(viewer, qtbot):
    """Closing the dock (napari's close button) or the widget removes its key bindings."""
    from napari.utils.key_bindings import coerce_keybinding

    from napari_sam._napari._commands import active_widget
    from napari_sam._napari._widget import KEYS, SAMWidget

    def mine(v):
        pass

    viewer.bind_key("Shift-X", mine)  # a binding of the user's, overwritten by the widget
    before = dict(viewer.keymap)
    dock, widget = viewer.window.add_plugin_dock_widget("napari-sam-tf", "Segment Anything")
    viewer.open_sample("napari-sam-tf", "nuclei_stack")
    widget.image_box.setCurrentText("nuclei stack")
    points = widget.setup_layers()[0]
    ours = [coerce_keybinding(KEYS[k]) for k in ("commit", "cycle_mask", "propagate")]
    clear, toggle = coerce_keybinding(KEYS["clear_prompts"]), coerce_keybinding(KEYS["toggle"])
    assert all(k in viewer.keymap for k in ours) and viewer.keymap[clear] is not mine
    assert toggle in points.keymap and active_widget() is widget
    dock.destroyOnClose()  # what the dock's close button does
    qtbot.wait(50)
    assert viewer.keymap == before and viewer.keymap[clear] is mine  # the user's is back
    assert toggle not in points.keymap
    assert active_widget() is not widget
    widget.update_preview()  # a closed widget no longer reacts to the viewer, but works
    viewer.dims.set_current_step(1, 3)
    qtbot.wait(50)
    assert widget.idle

    other = SAMWidget(viewer)  # and closing a widget itself
    other.image_box.setCurrentText("nuclei stack")
    other.points_box.setCurrentText(points.name)
    assert all(k in viewer.keymap for k in ours) and toggle in points.keymap
    other.close()
    assert viewer.keymap == before and toggle not in points.keymap


def test_previews_asked_for_while_busy_run_once_afterwards(
    viewer, sam_widget, tiny_random_model, qtbot
):
    points, _, _, _ = nf.open_sample(viewer, sam_widget, Z)
    sam_widget.set_model(tiny_random_model)
    runs = []  # whether each preview ran with no job running
    sam_widget._timer.timeout.connect(lambda: runs.append(sam_widget._worker is None))
    assert sam_widget.embed_stack() is not None
    runs.clear()  # napari's progress bar may process events (the timer of the slice change)
    points.add([Z, 40, 40])  # the preview waits for the embedding
    for _ in range(3):
        sam_widget.update_preview()
    assert sam_widget._preview_pending and not sam_widget.idle
    nf.idle(qtbot, sam_widget)
    assert runs.count(True) == 1 and not sam_widget._preview_pending
    assert len(sam_widget.predictions) == 1 and sam_widget.preview_index == (Z,)
    assert sam_widget.session.has_embedding((0,))  # the worker's session was adopted


def test_tiled_and_multiscale_images_preview_and_commit(viewer, sam_widget, qtbot):
    """Issue [scale]: a 1024 x 1024 image is tiled (the tiles a click needs are embedded in a
    worker, the preview is its window, the overlay shows ready tiles); a multiscale layer is
    segmented on level 0 with a windowed preview layer."""
    import dask.array as da

    from napari_sam.weights.registry import TINY_NUCLEI_WEIGHTS

    if not TINY_NUCLEI_WEIGHTS.is_file():
        pytest.skip("needs the shipped sam_tiny_nuclei weights")
    image, truth = make_nuclei_2d((1024, 1024), seed=2)
    _, mask = nf.nucleus(truth)
    x, y = object_centre(mask)
    large = viewer.add_image(image, name="large")
    sam_widget.image_box.setCurrentText("large")
    points, _, preview, out = sam_widget.setup_layers()  # starts making the session
    overlay = viewer.layers["SAM tiles ready (large)"]
    nf.idle(qtbot, sam_widget, 300_000)
    assert sam_widget.session.tiled and preview.data.shape == (1024, 1024)
    points.add([y, x])
    nf.idle(qtbot, sam_widget, 300_000)
    (pred,) = sam_widget.predictions
    assert pred.window is not None and pred.masks.shape[-2:] != (1024, 1024)
    assert iou(preview.data > 0, mask) >= 0.7 and overlay.data.any()
    assert sam_widget.commit() == [1] and iou(out.data == 1, mask) >= 0.7
    nf.ctrl_z(qtbot, viewer, out)
    assert not out.data.any()
    sam_widget.embed_stack()  # every tile, with the overlay updated
    nf.idle(qtbot, sam_widget, 300_000)
    assert sam_widget.session.has_embedding(()) and overlay.data.all()

    nf.only_layer(viewer, large)
    levels = [da.from_array(image[::k, ::k], chunks=256) for k in (1, 2, 4)]
    pyramid = viewer.add_image(levels, name="pyramid", multiscale=True)
    sam_widget.image_box.setCurrentText("pyramid")
    points, _, preview, out = sam_widget.setup_layers()
    assert preview.data.shape == (1, 1) and out.data.shape == (1024, 1024)  # windowed preview
    nf.idle(qtbot, sam_widget, 300_000)
    assert sam_widget.session.sp.view.shape == (1024, 1024)  # level 0
    points.add([y, x])
    nf.idle(qtbot, sam_widget, 300_000)
    (pred,) = sam_widget.predictions
    y0, y1, x0, x1 = pred.window
    assert preview.data.shape == (y1 - y0, x1 - x0) and tuple(preview.translate) == (y0, x0)
    shown = np.zeros(mask.shape, bool)
    shown[y0:y1, x0:x1] = preview.data > 0
    assert iou(shown, mask) >= 0.7 and pyramid.multiscale
    assert sam_widget.commit() == [1] and iou(out.data == 1, mask) >= 0.7
    assert preview.data.shape == (1, 1)  # the preview is cleared


def test_object_diameter_is_estimated_and_rescales_the_slices(viewer, sam_widget, qtbot):
    """[tiny-v2]: nuclei twice the size sam_tiny_nuclei was trained at; choosing the image
    fills the object diameter from the displayed slice (said once), the session tiles the
    slice so that they reach the model at its size, and a click gives the nucleus at full
    resolution. Once the user sets the size (or Estimate) it stays; an image of the model's
    size stays native. A model with no preferred size has the control disabled."""
    from napari_sam.weights.registry import TINY_NUCLEI_WEIGHTS

    if not TINY_NUCLEI_WEIGHTS.is_file():
        pytest.skip("needs the shipped sam_tiny_nuclei weights")
    assert sam_widget.model_box.currentText() == "sam_tiny_nuclei"
    assert sam_widget.diameter.isEnabled() and sam_widget.diameter.text() == "native"
    image, truth = make_nuclei_2d((256, 256), seed=3, radius_range=(24.0, 32.0))
    since = len(nf.records())
    viewer.add_image(image, name="large nuclei")  # the size is set when the image comes
    sam_widget.image_box.setCurrentText("large nuclei")
    said = [m for m in nf.messages(since) if "Object size set to" in m]
    assert len(said) == 1 and "works best at 28 px" in said[0], nf.messages(since)
    d = sam_widget.diameter.value()
    assert 40 < d < 70, d
    viewer.add_image(make_nuclei_2d((256, 256), seed=4)[0], name="fitting nuclei")
    sam_widget.image_box.setCurrentText("fitting nuclei")  # the widget's own size follows
    assert sam_widget.diameter.text() == "native"
    since = len(nf.records())  # objects too small to plan windows for: native, and said
    tiny = make_nuclei_2d((512, 512), seed=9, radius_range=(2.5, 3.5), density=3e-3)[0]
    viewer.add_image(tiny, name="tiny nuclei")
    sam_widget.image_box.setCurrentText("tiny nuclei")
    assert sam_widget.diameter.text() == "native"
    assert any("kept at native resolution" in m for m in nf.messages(since)), nf.messages(since)
    sam_widget.image_box.setCurrentText("large nuclei")
    assert sam_widget.diameter.value() == d
    sam_widget._set_size(0.0)  # a model chosen again fits the chosen image too
    sam_widget.follow_model("sam_tiny_nuclei")
    assert sam_widget.diameter.value() == d
    sam_widget.estimate.click()  # the user's choice from now on
    assert sam_widget.diameter.value() == d
    assert sam_widget.fit_object_size(*sam_widget.geometry()) is None
    points, _, preview, out = sam_widget.setup_layers()
    nf.idle(qtbot, sam_widget, 300_000)
    side = round(256 * d / 28.0)
    assert sam_widget.session.tiled and sam_widget.session.tiling.tile == (side, side)
    ids, counts = np.unique(truth[truth > 0], return_counts=True)
    mask = truth == ids[np.argmax(counts)]
    x, y = object_centre(mask)
    points.add([y, x])
    nf.idle(qtbot, sam_widget, 300_000)
    assert sam_widget.commit() == [1] and iou(out.data == 1, mask) >= 0.8
    assert sam_widget.sam_masks.isEnabled() and not sam_widget.settings().sam_masks
    sam_widget.sam_masks.setChecked(True)  # SAM's masks: a session of their own
    assert sam_widget.session_spec().sam_masks
    sam_widget.follow_model("sam_vit_b")
    assert not sam_widget.diameter.isEnabled() and not sam_widget.estimate.isEnabled()
    assert not sam_widget.sam_masks.isEnabled()  # Meta's models draw SAM's masks anyway
    sam_widget.follow_model("sam_tiny_nuclei")
    sam_widget.sam_masks.setChecked(False)


def test_the_widget_warms_up_by_itself_and_the_first_click_is_quick(viewer, sam_widget, qtbot):
    """[first-use] 3: once an image is chosen the widget loads the model, embeds the displayed
    slice and traces the decoding graphs in the background, saying so, without stalling the
    event loop; the first click then answers as fast as later ones."""
    import gc

    from qtpy.QtCore import QTimer

    from napari_sam.predict.shared import clear_shared_graphs

    clear_shared_graphs()  # as in a fresh napari: earlier cases traced this model's graphs
    viewer.open_sample("napari-sam-tf", "nuclei_stack")
    viewer.dims.set_current_step(1, Z)
    sam_widget.image_box.setCurrentText("nuclei stack")
    # napari lays out and draws the new layer first (0.1 to 0.2 s of its own work on the
    # event loop, with or without this plugin); the warm-up, due 300 ms after the image was
    # chosen, is measured from its start, after that
    sam_widget._prepare_timer.stop()
    qtbot.wait(1)
    assert sam_widget.state.endswith("not loaded yet"), sam_widget.state
    stamps = []
    timer = QTimer(interval=10)
    timer.timeout.connect(lambda: stamps.append(time.perf_counter()))
    timer.start()
    t0 = time.perf_counter()
    sam_widget._prepare_timer.start()  # as choosing the image did
    seen = set()
    wait_until = time.perf_counter() + 300
    while not sam_widget.state.startswith("ready") and time.perf_counter() < wait_until:
        seen.add(sam_widget.state)
        seen.add(sam_widget.busy_bar.isVisible())
        qtbot.wait(20)
    timer.stop()
    assert sam_widget.state.startswith("ready"), sam_widget.state
    assert {"loading the model...", "embedding the slice...", True} <= seen, seen
    assert not sam_widget.busy_bar.isVisible()  # the busy bar went with the warm-up
    gaps = np.diff([t0, *[t for t in stamps if t >= t0]])
    print(f"warm-up {stamps[-1] - t0:.1f} s, largest timer gaps {np.sort(gaps)[-3:]} s")
    assert gaps.max() < WARM_UP_GAP_S, f"event loop blocked for {gaps.max():.3f} s"
    # napari's, Qt's and TensorFlow's objects are out of the collector's sight (a full
    # collection walking them stalled the loop for 0.6 s)
    assert gc.get_freeze_count() > 200_000, gc.get_freeze_count()
    points, _, preview, _ = sam_widget.setup_layers()
    nf.idle(qtbot, sam_widget, 300_000)
    _, truth = make_sample_stack(0)
    _, mask = nf.nucleus(truth)
    x, y = object_centre(mask)
    t1 = time.perf_counter()
    points.add([Z, y, x])
    qtbot.waitUntil(lambda: preview.data[Z].any(), timeout=30_000)
    first = time.perf_counter() - t1
    print(f"first click after ready: {first:.3f} s")
    assert first < 1.0, f"the first click took {first:.2f} s"


def test_the_record_is_saved_replayed_and_shown_again(
    viewer, sam_widget, qtbot, tmp_path, monkeypatch
):
    """[provenance]: click, commit, a second object by box, refine the first, undo the
    refine; save with the plugin's writer (and with the widget's Save labels...);
    ``napari-sam segment`` with the sidecar gives the saved labels exactly; "Show prompts"
    puts an object's prompts back."""
    import json

    import tifffile

    from napari_sam.cli import main

    points, boxes, _, out = nf.open_sample(viewer, sam_widget, Z)
    image, truth = make_sample_stack(0)
    first, mask = nf.nucleus(truth)
    x, y = object_centre(mask)
    points.add([Z, y, x])
    nf.idle(qtbot, sam_widget, 300_000)
    assert sam_widget.commit() == [1]
    second = next(i for i in np.unique(truth[Z]) if i and i != first and (truth[Z] == i).sum()
                  > 100 and not np.isin(truth[Z, [0, -1]], i).any()
                  and not np.isin(truth[Z][:, [0, -1]], i).any())  # fmt: skip
    ys, xs = np.nonzero(truth[Z] == second)
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    boxes.add_rectangles([np.array([[Z, y0, x0], [Z, y0, x1], [Z, y1, x1], [Z, y1, x0]])])
    nf.idle(qtbot, sam_widget, 300_000)
    assert sam_widget.commit() == [2]
    saved = out.data.copy()
    out.selected_label = 1
    sam_widget.refine_selected()
    points.add([Z, y + 2, x + 2])
    nf.idle(qtbot, sam_widget, 300_000)
    assert sam_widget.commit() == [1]
    record = out.metadata["napari_sam"]
    assert [e["step"] for e in record["objects"]] == [1, 2, 3] and record["objects"][2]["refine"]
    assert out.features.set_index("index")["made_by"].to_dict() == {1: "refine", 2: "box"}
    nf.ctrl_z(qtbot, viewer, out)  # the refine undone: the record follows when read
    np.testing.assert_array_equal(out.data, saved)
    path = tmp_path / "labels.tif"
    written = out.save(str(path), plugin="napari-sam-tf")
    side = tmp_path / "labels.prompts.json"
    assert sorted(written) == sorted([str(path), str(side)]), written
    assert json.loads(side.read_text())["made_by"]["unrecorded"] == []
    objects = json.loads(side.read_text())["objects"]
    assert [(o["step"], o["id"], "box" in o) for o in objects] == [(1, 1, False), (2, 2, True)]
    from qtpy.QtWidgets import QFileDialog

    asked = tmp_path / "from_the_widget.tif"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(asked), ""))
    sam_widget.buttons["Save labels..."].click()  # the same two files, without napari's dialog
    assert json.loads((tmp_path / "from_the_widget.prompts.json").read_text())["objects"] == objects
    np.testing.assert_array_equal(tifffile.imread(asked), out.data)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, image, imagej=True, metadata={"axes": "ZCYX"})
    again = tmp_path / "again.tif"
    argv = ["segment", stack, "--prompts", side, "--out", again, "--model", "sam_tiny_nuclei",
            "--channels", "single:0"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    np.testing.assert_array_equal(tifffile.imread(again), tifffile.imread(path))
    np.testing.assert_array_equal(tifffile.imread(path), out.data)
    # the prompts of object 2 back in the prompt layers, refining it
    viewer.layers.remove(out)
    reopened = viewer.open(str(path), layer_type="labels")[0]
    sam_widget.output_box.setCurrentText(reopened.name)
    reopened.selected_label = 2
    sam_widget.show_prompts()
    assert len(boxes.data) == 1 and sam_widget.refine_id == 2
    # read from the sidecar, the record stays with the layer; where napari keeps a layer's
    # metadata and features (Duplicate Layer, the data tuple every writer is given) the record
    # goes along, as plain JSON, and works on the copy (the second label shown there)
    from napari.layers import Layer

    data, meta, kind = reopened.as_layer_data_tuple()
    assert json.loads(json.dumps(meta["metadata"])) == meta["metadata"]
    assert meta["features"].equals(reopened.features)
    copy = viewer.add_layer(Layer.create(data.copy(), {**meta, "name": "copy"}, kind))
    sam_widget.output_box.setCurrentText("copy")
    copy.selected_label = 1
    sam_widget.show_prompts()
    assert len(boxes.data) == 0 and len(points.data) == 1 and sam_widget.refine_id == 1
    nf.idle(qtbot, sam_widget, 300_000)
