"""The "Segment Anything" dock widget: Qt controls on a Qt-free :class:`Annotator`.

The widget reads its controls into plain values (:class:`~.annotator.Settings`,
:class:`~.annotator.SessionSpec`), asks the annotator, and runs long work (making the model
and session, embedding, propagation) in napari ``thread_worker``s whose functions take plain
values and yield or return their results. Only the workers' ``yielded`` / ``returned``
handlers, on the Qt thread, touch layers and the annotator's state.
"""

from __future__ import annotations

import functools
import threading

from napari.qt.threading import thread_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QTimer

from ..segment.instances import min_object_area, write_instances
from . import _layers as L
from ._commands import register, unregister
from ._controls import ControlsPanel
from ._everything import segment_slices, segmenter_for, stack_indices
from ._jobs import Built, with_session
from ._preview import PreviewActions
from ._qt_parts import KeyBindings
from ._record import RecordActions, record_of
from .annotator import Annotator

QUEUED = "queued: runs once the warm-up is done"  # _run's answer during the warm-up
KEYS = {"commit": "Shift-C", "cycle_mask": "Shift-M", "propagate": "Shift-P",
        "clear_prompts": "Shift-X", "toggle": "T"}  # fmt: skip


def _delegate(name: str):
    """A property of the widget that is the annotator's attribute ``name``."""

    def get(self):
        return getattr(self.annotator, name)

    def set_(self, value):
        setattr(self.annotator, name, value)

    return property(get, set_, doc=f"The annotator's ``{name}``.")


class SAMWidget(RecordActions, PreviewActions, ControlsPanel):
    """Segment objects of an image layer with SAM from Points and Shapes prompts.

    The controls come from :class:`ControlsPanel`, the preview and embedding actions from
    :class:`~napari_sam._napari._preview.PreviewActions`, commit and the objects' record from
    :class:`~napari_sam._napari._record.RecordActions`; the state and logic from
    ``annotator``. Large images (a slice over 1.5 model inputs) are tiled: clicks embed the
    tiles they need in a worker, and "SAM tiles ready" shows the tiles embedded.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (injected by napari).

    Attributes
    ----------
    annotator : Annotator
        The state and logic (model, session, preview, refine target, polarity, ...); the
        widget's ``predictions``, ``positive_mode``, ``session``, ... are its attributes.
    """

    model = _delegate("model")
    session = _delegate("session")
    predictions = _delegate("predictions")
    preview_index = _delegate("preview_index")
    refine_id = _delegate("refine_id")
    refine_index = _delegate("refine_index")
    positive_mode = _delegate("positive_mode")
    last_committed = _delegate("last_committed")
    propagated = _delegate("propagated")

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)  # the controls (imports TensorFlow first)
        self.annotator = Annotator()
        self.busy, self._cancel, self._worker, self._pbar = False, threading.Event(), None, None
        self._preview_pending, self._docked, self._closed = False, False, False
        self._warming, self._queued = False, None  # the warm-up, and a job asked for meanwhile
        self.add_buttons([
            ("Set up layers", self.setup_layers, "points, boxes and labels layers", ""),
            ("Commit", self.commit, KEYS["commit"], ""),
            ("Next mask", self.cycle_mask, KEYS["cycle_mask"], ""),
            ("Clear prompts", self.clear_prompts, KEYS["clear_prompts"], ""),
            ("Refine label", self.refine_selected, "selected label of the output", ""),
            ("Save labels...", self.save_labels, "TIFF and its record (.prompts.json)", ""),
            ("Show prompts", self.show_prompts, "recorded for the selected label", "Prompts"),
            ("Cancel", self.cancel, "stop embedding / propagation / segmenting", ""),
            ("Embed stack", self.embed_stack, "every slice / tile, in the background",
             "Model file and cache"),
            ("Propagate", self.propagate, KEYS["propagate"], "Propagation"),
            ("Segment everything", self.segment_everything,
             "this slice: the model's decoder or a grid of point prompts",
             "Automatic segmentation"),
            ("Segment stack", self.segment_stack, "every slice, linked in 3-D",
             "Automatic segmentation"),
        ])  # fmt: skip
        self.hint.setText(
            f"Click an object: a point prompts it ({KEYS['toggle']}: positive (lime) / negative "
            f"(magenta)), a rectangle in the boxes layer too. {KEYS['commit']} commits it, "
            f"{KEYS['cycle_mask']} shows the next mask, {KEYS['clear_prompts']} clears the "
            "prompts, Ctrl-Z on the labels undoes."
        )
        self._timer = QTimer(singleShot=True, interval=20)
        self._timer.timeout.connect(self.update_preview)
        self._prepare_timer = QTimer(singleShot=True, interval=300)  # an image chosen: warm up
        self._prepare_timer.timeout.connect(self.prepare)
        self._connected, self._keys = [], KeyBindings()
        self._viewer_events = [(self.viewer.layers.events.inserted, self._refresh_boxes),
                               (self.viewer.layers.events.removed, self._refresh_boxes),
                               (self.viewer.dims.events.current_step, self._on_step)]  # fmt: skip
        for ev, cb in self._viewer_events:
            ev.connect(cb)
        for box in (self.points_box, self.boxes_box):
            box.currentTextChanged.connect(self._connect_prompts)
        self.image_box.currentTextChanged.connect(self._prepare_soon)
        self.model_box.currentTextChanged.connect(self._model_chosen)
        for name in ("commit", "cycle_mask", "propagate", "clear_prompts"):
            self._keys.bind(self.viewer, KEYS[name], self._key(name))
        keys = self._keys  # a closure on the bindings, not the widget (gone by then)
        self.destroyed.connect(lambda *_: keys.unbind())
        self._refresh_boxes()
        register(self)

    # ---------------------------------------------------------------- life cycle
    def close_widget(self) -> None:
        """Unbind the widget's keys (restoring earlier bindings) and disconnect it.

        Called when the widget is closed or taken out of its dock (napari's close button);
        safe to call more than once.
        """
        if self._closed:
            return
        self._closed, self._preview_pending = True, False
        self._timer.stop()
        self._prepare_timer.stop()
        self._cancel.set()
        self._keys.unbind()
        for ev, cb in self._viewer_events + self._connected:
            ev.disconnect(cb)
        self._viewer_events, self._connected = [], []
        unregister(self)

    def closeEvent(self, event):  # noqa: N802 (Qt's name)
        """Qt's close event: :meth:`close_widget`, then close."""
        self.close_widget()
        super().closeEvent(event)

    def event(self, event):
        """Qt's events; leaving the dock (napari removes the dock widget) closes the widget."""
        if event.type() == QEvent.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked:
                self.close_widget()
        return super().event(event)

    @property
    def idle(self) -> bool:
        """No job running and none pending (scripts and tests wait for this)."""
        return (self._worker is None and not self._timer.isActive() and self._queued is None
                and not self._prepare_timer.isActive() and not self._preview_pending)

    # ---------------------------------------------------------------- layers and settings
    def _on_step(self, event=None):
        self._timer.start()

    def _refresh_boxes(self, event=None):
        for box in (self.image_box, self.points_box, self.boxes_box, self.output_box):
            box.refresh()
        for box, name in ((self.points_box, "points"), (self.boxes_box, "boxes"),
                          (self.output_box, "labels")):  # fmt: skip
            if L.PREFIX + name in self.viewer.layers:
                box.setCurrentText(L.PREFIX + name)
        self._connect_prompts()
        self._prepare_soon()  # an image may have come (the image box follows the layers)

    def _connect_prompts(self, *_):
        if self._closed:
            return
        for ev, cb in self._connected:
            ev.disconnect(cb)
        self._connected = []
        for layer in (self.points_box.layer(), self.boxes_box.layer()):
            if layer is not None:
                self._connected.append((layer.events.data, self._on_prompts))
                layer.events.data.connect(self._on_prompts)
        points = self.points_box.layer()
        if points is not None:
            self._keys.bind(points, KEYS["toggle"], self._toggle_key)
            L.colour_points(points, self.positive_mode)

    def _on_prompts(self, event=None):
        if str(getattr(event, "action", "added")) in ("adding", "removing", "changing"):
            return
        points = self.points_box.layer()
        if points is not None:
            L.colour_points(points, self.positive_mode)
        self._timer.start()

    def setup_layers(self):
        """Add points, boxes, preview and output layers matching the image."""
        try:
            image, geo = self.geometry()
        except ValueError as err:
            return show_error(str(err))
        layers = L.make_prompt_layers(self.viewer, image, geo)
        if self.tiles_layer(image, geo) is not None:  # tiled: the overlay of ready tiles
            self.viewer.layers.selection.active = layers[0]
        self._prepare_soon()
        self._refresh_boxes()
        return layers

    def set_model(self, model):
        """Use ``model`` (a :class:`~napari_sam.SegmentAnythingModel`) instead of the choice."""
        self.annotator.set_model(model)

    # ---------------------------------------------------------------- background work
    def _run(self, spec, body, on_yield=None, on_done=None, total=None, desc="SAM", bar_after=0,
             exclusive=False, warm_up=False):  # fmt: skip
        """Run ``body(session)`` (a generator of plain values) in a worker, making the
        session of ``spec`` there first if needed; handlers run on the Qt thread. The
        progress bar shows after ``bar_after`` ms (a quick job shows none); an ``exclusive``
        job disables every button but Cancel while it runs. A job asked for during the
        ``warm_up`` runs right after it (:data:`QUEUED`); the warm-up shows the state line's
        busy bar instead of napari's progress bar."""
        if self._worker is not None:
            if self._warming and self._queued is None:
                self._queued = functools.partial(self._run, spec, body, on_yield, on_done, total,
                                                 desc, bar_after, exclusive)  # fmt: skip
                return QUEUED
            show_warning("Segment Anything: busy; wait or press Cancel")
            return None
        self._warming = warm_up
        session = self.annotator.session_for(spec)
        build = None if session is not None else self.annotator.builder(spec)
        self._cancel.clear()
        self._pbar = None

        def work():  # plain values only: the session (or its builder) and the body
            return (yield from with_session(session, build, body))

        worker = thread_worker(work, start_thread=False, ignore_errors=True)()

        def yielded(item):
            if isinstance(item, Built):
                self.annotator.adopt(item)
            elif on_yield is not None:
                on_yield(item)

        def show_bar():
            if self._worker is worker and self._pbar is None:
                self._pbar = progress(total=total, desc=desc)

        def finished():
            self._worker, self.busy, self._warming = None, False, False
            self.enable_buttons(True)
            self.show_busy(False)
            if self._pbar is not None:
                self._pbar.close()
                self._pbar = None
            queued, self._queued = self._queued, None
            if queued is not None and not self._closed:  # asked for during the warm-up
                queued()
            elif self._preview_pending:  # a preview asked for while this ran
                self._preview_pending = False
                self._timer.start()

        def errored(err):
            show_error(f"Segment Anything: {err}")

        worker.yielded.connect(yielded)
        if on_done:
            worker.returned.connect(on_done)
        worker.errored.connect(errored)
        worker.finished.connect(finished)
        self._worker = worker
        if exclusive:
            self.enable_buttons(False)
        if warm_up:  # the state line's own bar
            self.show_busy(True)
        elif bar_after:
            QTimer.singleShot(bar_after, show_bar)
        else:
            show_bar()
        worker.start()
        return worker

    # ---------------------------------------------------------------- actions
    def clear_prompts(self):
        """Remove the prompts of the displayed slice and the preview."""
        try:
            index = self.current_index()
        except ValueError as err:
            return show_error(str(err))
        self.clear_prompts_at(index)

    def clear_prompts_at(self, index):
        """Remove the prompts of slice ``index`` and the preview."""
        self.annotator.clear(index)
        L.remove_slice_prompts(self.points_box.layer(), self.boxes_box.layer(), index)
        self._show_preview()

    def refine_selected(self):
        """Use the output layer's selected label on this slice as a mask prompt."""
        out = self.output_box.layer()
        try:
            _, geo = self._checked_output(out)
            index = self.current_index(geo)
        except ValueError as err:
            return show_error(f"Segment Anything: {err}")
        if not self.annotator.refine(out.data, index, out.selected_label):
            return show_warning(f"Segment Anything: label {out.selected_label} not on this slice")
        self._timer.start()

    def segment_everything(self, all_slices: bool = False):
        """Segment every object of the displayed slice into the output labels (an object
        overlapping one of a neighbouring slice along the slice axis takes its id)."""
        out = self.output_box.layer()
        try:
            image, geo = self._checked_output(out)
            s = self.settings()
            indices = (stack_indices(geo.label_shape, geo.n_slice_dims, s.prop_axis, s.limits)
                       if all_slices else [self.current_index(geo)])  # fmt: skip
            spec = self.session_spec(image, geo)
        except ValueError as err:
            return show_error(f"Segment Anything: {err}")
        written, min_area = set(), min_object_area(s.model_name)
        step, how = record_of(out).next_step, []  # the record: one step, the segmenter's settings

        def on_slice(item):  # (index, instances): written on the Qt thread, one undo step
            if item[0] == "progress":  # a step of the slice in progress (one slice: shown)
                return None if all_slices else self.progress_to(*item[1:])
            try:
                ids = write_instances(out.data, *item, s.overwrite, out.data_setitem, s.prop_axis,
                                      min_area=min_area)  # fmt: skip
            except ValueError as err:
                self._cancel.set()  # the next slices would not fit either
                return show_error(f"Segment Anything: {err}")
            written.update(ids)
            if not how:  # with the write's rules, for a replay
                how.append({**segmenter_for(self.annotator.session.sp).describe(),
                            "axis": s.prop_axis, "min_area": min_area})  # fmt: skip
            self.record_objects(out, item[0], [{"id": int(i), "overwrite": bool(s.overwrite),
                                                "everything": how[0]} for i in ids], step)
            out.selected_label = max(written, default=out.selected_label)
            return self.step() if all_slices else None  # one slice: its steps are the bar

        def done(count):
            stop = "" if count == len(indices) else " (cancelled)"
            show_info(f"Segment Anything: {len(written)} object(s) on {count} slice(s){stop}")

        body = functools.partial(segment_slices, indices=indices, cancel=self._cancel.is_set)
        self.busy = True
        total = len(indices) if all_slices else None
        return self._run(spec, body, on_slice, done, total, "segmenting everything",
                         exclusive=True)  # fmt: skip

    def segment_stack(self):
        """Segment every slice of the slice range along the slice axis, as Segment everything
        does slice after slice (in the background; Cancel keeps the slices done)."""
        return self.segment_everything(all_slices=True)

    def propagate(self):
        """Follow the previewed (committed first) or selected object through the stack."""
        out = self.output_box.layer()
        if self.predictions:
            self.commit()
        try:
            image, geo = self._checked_output(out)
            index = self.current_index(geo)
            s = self.settings()
            job = self.annotator.start_propagation(out.data, index, int(out.selected_label), geo,
                                                   s.prop_axis, s.stop_iou, s.limits,
                                                   s.overwrite)  # fmt: skip
            spec = self.session_spec(image, geo)
        except ValueError as err:
            return show_error(f"Segment Anything: {err}")
        if not job.mask.any():
            return show_warning(f"Segment Anything: label {job.label} is not on this slice")

        step = record_of(out).next_step

        def on_slice(item):
            here, mask, window = item
            log = record_of(out)
            self.annotator.accept_slice(job, out.data, here, mask, out.data_setitem, window, log,
                                        step)  # fmt: skip
            self.keep_record(out, log)
            self.step()

        body = functools.partial(job.run, cancel=self._cancel.is_set)
        self.busy = True
        return self._run(spec, body, on_slice, None, geo.label_shape[job.axis], "propagating",
                         exclusive=True)  # fmt: skip
