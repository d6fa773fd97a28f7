"""The "Segment Anything" dock widget: prompts, live preview, commit, propagation."""

from __future__ import annotations

import threading

import numpy as np
from napari.layers import Image, Labels, Points, Shapes
from napari.qt.threading import thread_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)  # fmt: skip

from . import _layers as L
from ._actions import SAMActions
from ._commands import register
from ._session import Geometry, Session
from ._tf import ensure_tensorflow

KEYS = {"commit": "Shift-C", "cycle_mask": "Shift-M", "propagate": "Shift-P",
        "clear_prompts": "Shift-X", "toggle": "T"}  # fmt: skip


class _LayerBox(QComboBox):
    """A combo box of the viewer's layers of one type."""

    def __init__(self, viewer, kind, exclude=()):
        super().__init__()
        self.viewer, self.kind, self.exclude = viewer, kind, exclude

    def refresh(self):
        current = self.currentText()
        names = [ly.name for ly in self.viewer.layers if isinstance(ly, self.kind)]
        names = [n for n in names if n not in self.exclude]
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if current in names:
            self.setCurrentText(current)
        self.blockSignals(False)

    def layer(self):
        name = self.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None


def _channels_first(image) -> bool:
    """Guess whether the first axis of an image layer holds channels.

    Yes if its axis label says so (``c``, ``ch``, ``channel``); otherwise for a 4-D or
    larger, non-RGB image whose first axis has at most 4 entries.
    """
    if image.rgb:
        return False
    labels = [str(a).lower() for a in getattr(image, "axis_labels", ())]
    if labels and labels[0] in ("c", "ch", "channel", "channels"):
        return True
    if any(a in ("c", "ch", "channel", "channels") for a in labels):
        return False  # labelled, and not first: the user must transpose
    return image.ndim >= 4 and image.data.shape[0] <= 4


class SAMWidget(SAMActions, QWidget):
    """Segment objects of an image layer with SAM from Points and Shapes prompts.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (injected by napari).
    """

    def __init__(self, napari_viewer):
        super().__init__()
        ensure_tensorflow()  # before any core module that imports TensorFlow
        from ..weights import list_models

        self.viewer = napari_viewer
        self.session = self.model = self._session_key = self._model_key = None
        self.predictions, self.preview_index, self.refine_id = [], None, None
        self.refine_index, self.last_committed, self.propagated = None, None, []
        self.positive_mode, self.busy, self._cancel = True, False, threading.Event()
        self._worker = self._pbar = None
        form = QFormLayout(self)
        self.model_box = QComboBox()
        self.model_box.addItems(list_models())
        self.model_box.setCurrentText("sam_tiny_nuclei")
        self.checkpoint = QLineEdit(placeholderText="optional .npz / .pth checkpoint file")
        self.image_box = _LayerBox(self.viewer, Image)
        self.channel_axis = QComboBox()
        self.channel_axis.addItems(["auto", "none", "first axis"])
        self.channel_mode = QComboBox()
        self.channel_mode.addItems(["single", "rgb", "adapt"])
        self.channel_idx = QLineEdit("0", placeholderText="channel indices, e.g. 0 or 0,1")
        self.cache = QLineEdit(placeholderText="embedding cache folder (empty: memory only)")
        self.points_box = _LayerBox(self.viewer, Points)
        self.boxes_box = _LayerBox(self.viewer, Shapes)
        self.output_box = _LayerBox(self.viewer, Labels, exclude=(L.PREFIX + "preview",))
        self.multimask = QCheckBox("several candidate masks")
        self.multimask.setChecked(True)
        self.overwrite = QCheckBox("overwrite existing labels")
        self.iou_label = QLabel("predicted IoU: -")
        self.stop_iou = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, value=0.5)
        self.z_from, self.z_to = QSpinBox(maximum=99999), QSpinBox(maximum=99999, value=99999)
        self.prop_axis = QSpinBox(minimum=0, maximum=8)
        rows = [("model", self.model_box), ("checkpoint", self.checkpoint),
                ("image", self.image_box), ("channel axis", self.channel_axis),
                ("channels", self.channel_mode), ("channel indices", self.channel_idx),
                ("cache", self.cache), ("points", self.points_box), ("boxes", self.boxes_box),
                ("output labels", self.output_box), ("", self.multimask), ("", self.overwrite),
                ("", self.iou_label)]  # fmt: skip
        for label, w in rows:
            form.addRow(label, w)
        buttons = [("Set up layers", self.setup_layers, ""),
                   ("Embed stack", self.embed_stack, "embed every slice in the background"),
                   ("Next mask", self.cycle_mask, KEYS["cycle_mask"]),
                   ("Commit", self.commit, KEYS["commit"]),
                   ("Refine label", self.refine_selected, "selected label of the output"),
                   ("Clear prompts", self.clear_prompts, KEYS["clear_prompts"]),
                   ("Propagate", self.propagate, KEYS["propagate"]),
                   ("Cancel", self.cancel, "stop embedding / propagation")]  # fmt: skip
        self.buttons = {}
        for i, (text, slot, tip) in enumerate(buttons):
            if i % 2 == 0:
                row = QHBoxLayout()
                form.addRow(row)
            b = QPushButton(text)
            b.setToolTip(f"{slot.__doc__.strip().splitlines()[0]} [{tip}]" if tip else "")
            b.clicked.connect(lambda _=False, s=slot: s())
            row.addWidget(b)
            self.buttons[text] = b
        form.addRow("slice axis", self.prop_axis)
        form.addRow("stop below IoU", self.stop_iou)
        zr = QHBoxLayout()
        zr.addWidget(self.z_from)
        zr.addWidget(self.z_to)
        form.addRow("slice range", zr)
        self.setToolTip("Points: positive/negative toggled with T (lime/magenta); "
                        "Shapes rectangles are boxes, one object each. "
                        + ", ".join(f"{k}: {v}" for k, v in KEYS.items()))  # fmt: skip
        self._timer = QTimer(singleShot=True, interval=20)
        self._timer.timeout.connect(self.update_preview)
        self._connected = []
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._refresh_boxes)
        self.viewer.dims.events.current_step.connect(lambda e: self._timer.start())
        for box in (self.points_box, self.boxes_box):
            box.currentTextChanged.connect(self._connect_prompts)
        for name in ("commit", "cycle_mask", "propagate", "clear_prompts"):
            self.viewer.bind_key(KEYS[name], lambda v, n=name: getattr(self, n)(), overwrite=True)
        self._refresh_boxes()
        register(self)

    # ---------------------------------------------------------------- layers and settings
    @property
    def idle(self) -> bool:
        """No job running and no preview pending (scripts and tests wait for this)."""
        return self._worker is None and not self._timer.isActive()

    def _refresh_boxes(self, event=None):
        for box in (self.image_box, self.points_box, self.boxes_box, self.output_box):
            box.refresh()
        for box, name in ((self.points_box, "points"), (self.boxes_box, "boxes"),
                          (self.output_box, "labels")):  # fmt: skip
            if L.PREFIX + name in self.viewer.layers:
                box.setCurrentText(L.PREFIX + name)
        self._connect_prompts()

    def _connect_prompts(self, *_):
        for ev, cb in self._connected:
            ev.disconnect(cb)
        self._connected = []
        for layer in (self.points_box.layer(), self.boxes_box.layer()):
            if layer is not None:
                self._connected.append((layer.events.data, self._on_prompts))
                layer.events.data.connect(self._on_prompts)
        points = self.points_box.layer()
        if points is not None:
            points.bind_key(KEYS["toggle"], lambda ly: self.toggle_polarity(), overwrite=True)
            L.colour_points(points, self.positive_mode)

    def _on_prompts(self, event=None):
        if str(getattr(event, "action", "added")) in ("adding", "removing", "changing"):
            return
        points = self.points_box.layer()
        if points is not None:
            L.colour_points(points, self.positive_mode)
        self._timer.start()

    def geometry(self):
        """The :class:`Geometry` of the chosen image layer (ValueError if there is none)."""
        image = self.image_box.layer()
        if image is None:
            raise ValueError("image: add an image layer and choose it in the widget")
        axis = self.channel_axis.currentText()
        if axis == "auto":
            axis = "first axis" if _channels_first(image) else "none"
        return image, Geometry(image.data.shape, 0 if axis == "first axis" else None, image.rgb)

    def channels(self, geometry):
        """The :class:`~napari_sam.stacks.channels.ChannelSpec` chosen in the widget."""
        from ..stacks.channels import ChannelSpec

        mode = self.channel_mode.currentText()
        if geometry.n_channels == 1 and mode != "adapt":
            return ChannelSpec("single", (0,))
        idx = [int(s) for s in self.channel_idx.text().replace(",", " ").split()]
        return ChannelSpec(mode, None if mode == "adapt" else tuple(idx) or None)

    def setup_layers(self):
        """Add points, boxes, preview and output layers matching the image."""
        try:
            image, geo = self.geometry()
        except ValueError as err:
            return show_error(str(err))
        layers = L.make_prompt_layers(self.viewer, image, geo)
        self._refresh_boxes()
        return layers

    def set_model(self, model):
        """Use ``model`` (a :class:`~napari_sam.SegmentAnythingModel`) instead of the choice."""
        self.model, self._model_key, self.session = model, "given", None

    def current_index(self, geo=None):
        """Index of the displayed slice over the slice axes of the image."""
        image, geo = (self.image_box.layer(), geo) if geo else self.geometry()
        data = image.world_to_data(self.viewer.dims.point)
        data = np.asarray(data)[-len(geo.label_shape) :]
        return tuple(int(np.clip(round(v), 0, s - 1)) for v, s in zip(
            data[: geo.n_slice_dims], geo.label_shape, strict=False))  # fmt: skip

    # ---------------------------------------------------------------- background work
    def _session_factory(self):
        """A function (run in a worker) returning the session for the current settings."""
        from pathlib import Path

        image, geo = self.geometry()
        channels = self.channels(geo).resolve(geo.n_channels)
        name, ckpt = self.model_box.currentText(), self.checkpoint.text().strip()
        model_key = self._model_key if self._model_key == "given" else (name, ckpt, channels)
        cache = self.cache.text().strip()
        store = str(Path(cache) / image.name) if cache else None
        key = (id(image.data), geo, channels, store, model_key)
        if key == self._session_key and self.session is not None:

            def ready():
                return self.session

            ready.ready = True
            return ready
        n_in = channels.out_channels(geo.n_channels)

        def make():
            if model_key != self._model_key or self.model is None:
                from ..weights import create_model

                self.model = create_model(name, pretrained=ckpt or True, in_channels=n_in)
                self._model_key = model_key
            self.session = Session(self.model, image.data, geo, channels, store)
            self._session_key = key
            return self.session

        make.ready = False
        return make

    def _run(self, gen_fn, on_yield=None, on_done=None, total=None, desc="SAM"):
        if self._worker is not None:
            show_warning("Segment Anything: busy; wait or press Cancel")
            return None
        self._cancel.clear()
        self._pbar = progress(total=total, desc=desc)
        worker = thread_worker(gen_fn, start_thread=False, ignore_errors=True)()

        def finished():
            self._worker, self.busy = None, False
            self._pbar.close()

        def errored(err):
            show_error(f"Segment Anything: {err}")

        if on_yield:
            worker.yielded.connect(on_yield)
        if on_done:
            worker.returned.connect(on_done)
        worker.errored.connect(errored)
        worker.finished.connect(finished)
        self._worker = worker
        worker.start()
        return worker

    def cancel(self):
        """Stop the running embedding or propagation."""
        self._cancel.set()
