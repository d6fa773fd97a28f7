"""The widget's controls panel: its Qt controls and their reading into plain values."""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels, Points, Shapes
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)  # fmt: skip
from superqt import QCollapsible

from ..weights.choice import default_model
from . import _layers as L
from ._jobs import model_diameter
from ._qt_parts import LayerBox, channels_first, model_tips, pair, prompt_status, row
from ._session import Geometry, split_prompts
from ._tf import ensure_tensorflow
from .annotator import SessionSpec, Settings


def level_0(image):
    """The data of an image layer at full resolution (level 0 of a multiscale layer)."""
    return image.data[0] if getattr(image, "multiscale", False) else image.data


class ControlsPanel(QWidget):
    """The widget's Qt controls and their reading into plain values (no actions).

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer whose layers the combo boxes list.
    """

    def __init__(self, viewer):
        super().__init__()
        ensure_tensorflow()  # before any core module that imports TensorFlow
        from ..weights import list_models

        self.viewer = viewer
        self.model_box = QComboBox()
        self.model_box.addItems(list_models())
        choice = default_model()
        self.model_box.setCurrentText(choice.name)
        self.model_box.setToolTip(choice.reason)
        self._model_name = choice.name  # the model chosen last (a declined download goes back)
        self.checkpoint = QLineEdit(placeholderText="optional .npz / .pth checkpoint file")
        self.image_box = LayerBox(self.viewer, Image)
        self.channel_axis = QComboBox()
        self.channel_axis.addItems(["auto", "none", "first axis"])
        self.channel_mode = QComboBox()
        self.channel_mode.addItems(["single", "rgb", "adapt"])
        self.channel_idx = QLineEdit("0", placeholderText="channel indices, e.g. 0 or 0,1")
        self.cache = QLineEdit(placeholderText="embedding cache folder (empty: memory only)")
        self.points_box = LayerBox(self.viewer, Points)
        self.boxes_box = LayerBox(self.viewer, Shapes)
        self.output_box = LayerBox(self.viewer, Labels, exclude=(L.PREFIX + "preview",),
                                   optional=True)  # fmt: skip
        self.multimask = QCheckBox("several candidate masks")
        self.multimask.setChecked(True)
        self.overwrite = QCheckBox("overwrite existing labels")
        self.sam_masks = QCheckBox("SAM's masks as decoded")
        self.one_per_click = QCheckBox("one click = one object")
        self.one_per_click.setToolTip(
            "Each positive point is an object of its own (count many nuclei quickly). Off: "
            "the points of a slice describe one object together, as SAM means them"
        )
        self.diameter = QDoubleSpinBox(minimum=0.0, maximum=16384.0, decimals=1, value=0.0,
                                       suffix=" px")  # fmt: skip
        self.diameter.setSpecialValueText("native")  # 0: native resolution
        # set by the widget on each new image (fit_object_size) until the user sets it
        self._size_chosen = self._size_by_widget = False
        self.diameter.valueChanged.connect(self._size_edited)
        self.estimate = QPushButton("Estimate")
        self.estimate.setToolTip("Measure the typical object diameter on the displayed slice "
                                 "(Otsu threshold of the first channel: a starting point)")
        self.estimate.clicked.connect(self.estimate_diameter)
        self.model_box.currentTextChanged.connect(self.follow_model)
        self.iou_label = QLabel("predicted IoU: -")
        self.state_label = QLabel(f"model {choice.name}: not loaded yet", wordWrap=True)
        self.hint = QLabel(wordWrap=True)
        # the warm-up's bar: napari's own (its activity dialog) takes the event loop 0.2 s to open
        self.busy_bar = QProgressBar(minimum=0, maximum=0, textVisible=False, visible=False)
        self.stop_iou = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, value=0.5)
        self.z_from, self.z_to = QSpinBox(maximum=0), QSpinBox(maximum=0)
        self.prop_axis = QSpinBox(minimum=0, maximum=8)
        self.prop_axis.valueChanged.connect(self.follow_image)
        self._range_of = None  # (image, shape, axis) the slice range was set for
        layout = QVBoxLayout(self)
        common = QFormLayout()
        for label, w in (("model", self.model_box), ("image", self.image_box),
                         ("output labels", self.output_box), ("state", self.state_label),
                         ("", self.busy_bar), ("", self.hint), ("", self.iou_label)):  # fmt: skip
            common.addRow(label, w)
        layout.addLayout(common)
        self.sections = {}  # title: (QCollapsible, its form), in order
        for title, rows in (
            ("Prompts", [("points", self.points_box), ("boxes", self.boxes_box),
                         ("", self.one_per_click), ("", self.multimask),
                         ("", self.sam_masks), ("", self.overwrite)]),
            ("Channels", [("channel axis", self.channel_axis), ("channels", self.channel_mode),
                          ("channel indices", self.channel_idx)]),
            ("Object size", [("diameter", pair(self.diameter, self.estimate))]),
            ("Model file and cache", [("checkpoint", self.checkpoint), ("cache", self.cache)]),
            ("Propagation", [("slice axis", self.prop_axis), ("stop below IoU", self.stop_iou),
                             ("slice range", pair(self.z_from, self.z_to))]),
            ("Automatic segmentation", []),
        ):  # fmt: skip
            box, form = QCollapsible(title), QFormLayout()
            inner = QWidget()
            inner.setLayout(form)
            for label, w in rows:
                form.addRow(label, w)
            box.addWidget(inner)
            self.sections[title] = (box, form)
        self._layout = layout
        self.follow_model(self.model_box.currentText())

    def add_buttons(self, buttons) -> None:
        """Add the ``(text, slot, tip, section)`` buttons, two a row: section ``""`` under the
        common controls, the others at the top of their collapsed section; then the sections."""
        self.buttons = {}
        rows = {}
        for text, slot, tip, section in buttons:
            b = QPushButton(text)
            b.setToolTip(f"{slot.__doc__.strip().splitlines()[0]} [{tip}]" if tip else "")
            b.clicked.connect(lambda _=False, s=slot: s())
            self.buttons[text] = b
            rows.setdefault(section, []).append(b)
        common = rows.pop("", [])
        for i in range(0, len(common), 2):
            self._layout.addLayout(row(common[i : i + 2]))
        for title, (box, form) in self.sections.items():
            found = rows.pop(title, [])
            for i in range(0, len(found), 2):
                form.insertRow(i // 2, row(found[i : i + 2]))
            self._layout.addWidget(box)
        if rows:
            raise ValueError(f"buttons for unknown sections: {sorted(rows)}")
        self._layout.addStretch()

    def follow_image(self, *_) -> None:
        """The slice range spans every slice of the chosen image along the slice axis, set
        again when the image, its shape or the axis changes (the user's range is kept
        otherwise)."""
        try:
            image, geo = self.geometry()
        except ValueError:
            return
        n_dims = geo.n_slice_dims
        axis = min(self.prop_axis.value(), max(n_dims - 1, 0))
        n = int(geo.label_shape[axis]) if n_dims else 1
        key = (image.name, tuple(geo.label_shape), axis)
        if key == self._range_of:
            return
        self._range_of = key
        self.fit_object_size(image, geo)
        for w in (self.z_from, self.z_to):
            w.setMaximum(n - 1)
        self.z_from.setValue(0)
        self.z_to.setValue(n - 1)

    def follow_model(self, name: str) -> None:
        """The object diameter is offered for models that record a preferred object size
        (and fitted to the chosen image, as :meth:`fit_object_size`), SAM's masks as decoded
        for models that record an outline of their own."""
        tips = model_tips(name)
        for key, widgets in (("sam_masks", [self.sam_masks]),
                             ("diameter", [self.diameter, self.estimate])):  # fmt: skip
            for w in widgets:
                w.setEnabled(tips[key][0])
            widgets[0].setToolTip(tips[key][1])
        if tips["diameter"][0] and self.image_box.layer() is not None:
            self.fit_object_size(*self.geometry())

    def object_size(self) -> tuple[float | None, float | None]:
        """``(diameter, model_diameter)``: the object diameter set (None: native resolution,
        or a model that takes none) and the model's preferred size (None: it records none)."""
        s = self.settings()
        size = model_diameter(s.model_name)
        return (s.diameter if size is not None else None), size

    def fit_object_size(self, image, geo) -> str | None:
        """On a new image, unless the user set the object diameter: the estimate when the
        objects would reach the model outside ``SIZE_HINT_RANGE`` times its preferred size
        and that can be planned (said in one notification, returned too), else native
        resolution (said only when it could not be planned)."""
        from ..stacks.diameter import fit_to_model
        from ..stacks.view import StackView
        from ..weights import model_config

        s = self.settings()
        size = model_diameter(s.model_name)
        if size is None or self._size_chosen:
            return None
        view = StackView(level_0(image), geo.axes)
        input_size = tuple(model_config(s.model_name).input_size)
        fit = fit_to_model(view, size, input_size, index=self.current_index(geo))
        self._set_size(fit.diameter if fit and not fit.problem else 0.0)
        if fit is None:
            return None
        said = (f"Segment Anything: objects look about {fit.diameter:.0f} px across; "
                f"{s.model_name} works best at {size:g} px")  # fmt: skip
        if fit.problem:
            show_warning(f"{said}, but {fit.problem}: kept at native resolution")
            return None
        text = (f"{said}: Object size set to {fit.diameter:.0f} px to resample them "
                "('native' keeps the image as it is)")  # fmt: skip
        show_info(text)
        return text

    def _set_size(self, value: float) -> None:
        """Set the object diameter as the widget's own choice (not the user's)."""
        self._size_by_widget = True
        try:
            self.diameter.setValue(value)
        finally:
            self._size_by_widget = False

    def _size_edited(self, _=None) -> None:
        if not self._size_by_widget:
            self._size_chosen = True

    def estimate_diameter(self) -> float | None:
        """Set the object diameter to an estimate from the displayed slice (None: no objects
        found, the diameter is left as it was)."""
        from ..stacks.diameter import estimate_diameter
        from ..stacks.view import StackView

        try:
            image, geo = self.geometry()
        except ValueError as err:
            show_warning(f"Segment Anything: {err}")
            return None
        d = estimate_diameter(StackView(level_0(image), geo.axes), index=self.current_index(geo))
        if d is None:
            show_warning("Segment Anything: no objects found to measure on this slice")
            return None
        self._size_chosen = True  # the user asked: kept on later images
        self.diameter.setValue(d)
        show_info(f"Segment Anything: typical object diameter about {d:.0f} px")
        return d

    def step(self, _=None) -> None:
        """One more step on the running job's progress bar."""
        if self._pbar is not None:
            self._pbar.update(1)

    def progress_to(self, done: int, total: int) -> None:
        """The running job's progress bar at ``done`` of ``total``."""
        if self._pbar is not None:
            if self._pbar.total != total:
                self._pbar.total = total
            self._pbar.update(done - self._pbar.n)

    def cancel(self):
        """Stop the running embedding, propagation or segmentation (within a slice: after
        its step in progress)."""
        self._cancel.set()

    def _key(self, name):
        """The key handler of the action ``name`` (a named function: napari reads names)."""

        def handler(viewer=None):
            getattr(self, name)()

        handler.__name__ = handler.__qualname__ = f"segment_anything_{name}"
        return handler

    def toggle_polarity(self):
        """Switch new points between positive and negative."""
        self.positive_mode = not self.positive_mode
        points = self.points_box.layer()
        if points is not None:
            points.feature_defaults = {"positive": self.positive_mode}
            L.colour_points(points, self.positive_mode)
        show_info(f"Segment Anything: {'positive' if self.positive_mode else 'negative'} points")

    def _toggle_key(self, layer=None):
        self.toggle_polarity()

    def set_state(self, text: str, tip: str | None = None) -> None:
        """Show what the widget is doing (loading, embedding, ready) in its state line (and
        ``tip`` in its tooltip, e.g. the image encoder's dtype and why)."""
        try:
            self.state_label.setText(text)
            if tip is not None:
                self.state_label.setToolTip(tip)
        except RuntimeError:  # the warm-up ending after its widget was closed and deleted
            pass

    def show_busy(self, on: bool) -> None:
        """Show (``on``) or hide the state line's busy bar (the warm-up runs)."""
        try:
            self.busy_bar.setVisible(on)
        except RuntimeError:  # the warm-up ending after its widget was closed and deleted
            pass

    @property
    def state(self) -> str:
        """The state line's text (e.g. ``"ready: click an object"``)."""
        return self.state_label.text()

    def enable_buttons(self, on: bool) -> None:
        """Enable every button (``on``), or every one but Cancel (a long job runs)."""
        try:
            for text, button in self.buttons.items():
                button.setEnabled(on or text == "Cancel")
        except RuntimeError:  # a job ending after its widget was closed and deleted
            pass

    def settings(self) -> Settings:
        """The controls as plain values."""
        return Settings(
            self.model_box.currentText(), self.checkpoint.text().strip(),
            self.cache.text().strip(), self.multimask.isChecked(), self.overwrite.isChecked(),
            self.stop_iou.value(), (self.z_from.value(), self.z_to.value()),
            self.prop_axis.value(), self.diameter.value() or None,
            self.sam_masks.isChecked() and self.sam_masks.isEnabled(),
        )  # fmt: skip

    def geometry(self):
        """The :class:`Geometry` of the chosen image layer (ValueError if there is none)."""
        image = self.image_box.layer()
        if image is None:
            raise ValueError("image: add an image layer and choose it in the widget")
        axis = self.channel_axis.currentText()
        if axis == "auto":
            axis = "first axis" if channels_first(image) else "none"
        return image, Geometry(image.data.shape, 0 if axis == "first axis" else None, image.rgb)

    def channels(self, geometry):
        """The :class:`~napari_sam.stacks.channels.ChannelSpec` chosen in the widget."""
        from ..stacks.channels import ChannelSpec

        mode = self.channel_mode.currentText()
        if geometry.n_channels == 1 and mode != "adapt":
            return ChannelSpec("single", (0,))
        idx = [int(s) for s in self.channel_idx.text().replace(",", " ").split()]
        return ChannelSpec(mode, None if mode == "adapt" else tuple(idx) or None)

    def session_spec(self, image=None, geo=None) -> SessionSpec:
        """The :class:`SessionSpec` of the chosen image and settings (ValueError if bad).

        A multiscale layer is segmented on its level 0 (full resolution), read by region.
        """
        from pathlib import Path

        if image is None:
            image, geo = self.geometry()
        s = self.settings()
        channels = self.channels(geo).resolve(geo.n_channels)
        store = str(Path(s.cache) / image.name) if s.cache else None
        return SessionSpec(level_0(image), geo, channels, store, s.model_name, s.checkpoint,
                           self.object_size()[0], s.sam_masks)  # fmt: skip

    def current_index(self, geo=None):
        """Index of the displayed slice over the slice axes of the image."""
        image, geo = (self.image_box.layer(), geo) if geo else self.geometry()
        data = image.world_to_data(self.viewer.dims.point)
        data = np.asarray(data)[-len(geo.label_shape) :]
        return tuple(int(np.clip(round(v), 0, s - 1)) for v, s in zip(
            data[: geo.n_slice_dims], geo.label_shape, strict=False))  # fmt: skip

    def _prompts(self):
        """Objects prompted on the displayed slice (checks every layer first)."""
        image, geo = self.geometry()
        points, boxes = self.points_box.layer(), self.boxes_box.layer()
        for layer, what in ((points, "points"), (boxes, "shapes")):
            if layer is not None:
                L.check_aligned(layer, image, geo, what)
        index = self.current_index(geo)
        pts, flags, rects = L.slice_prompts(points, boxes, index)
        objects, dropped = split_prompts(pts, flags, rects, geo.label_shape[-2:],
                                         self.one_per_click.isChecked())  # fmt: skip
        if dropped:
            show_warning(f"Segment Anything: {dropped} point(s) outside the image ignored")
        self.viewer.status = prompt_status(objects)
        return image, geo, index, objects

    def _checked_output(self, out):
        """The image layer's geometry, after checking ``out`` fits it (else ValueError)."""
        image, geo = self.geometry()
        if out is None:
            raise ValueError("output labels: choose a Labels layer, or press Set up layers")
        L.check_labels(out, image, geo)
        return image, geo
