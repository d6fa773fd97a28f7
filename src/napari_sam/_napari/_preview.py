"""The widget's preview and embedding actions, for whole slices and for tiled large images.

:class:`PreviewActions` is a part of :class:`~napari_sam._napari._widget.SAMWidget` (it uses
the widget's controls, annotator and ``_run``). On an untiled image a click embeds the slice
in a worker if needed and decodes on the Qt thread; on a tiled image (a slice over 1.5 model
inputs, e.g. 16384 x 16384, or level 0 of a multiscale layer) the worker embeds the tile(s)
the prompts need and decodes too, so the Qt thread only draws: the preview covers the
decoded window, and the "SAM tiles ready" overlay shows the tiles embedded.
"""

from __future__ import annotations

import functools

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning

from ..stacks.contract import units_of
from ..stacks.store import MEMORY_BUDGET
from . import _layers as L
from ._jobs import Previewed, embed_slices, preview_job
from ._tiles import embed_all_tiles, overlay_factor, plan_for


def embed_stack_job(session, indices, index, cancel):
    """A worker's body for "Embed stack": every slice, or every tile of every slice."""
    if session.tiled:
        return (yield from embed_all_tiles(session, index, cancel))
    return (yield from embed_slices(session, indices, cancel))


class PreviewActions:
    """Preview, candidate masks and "Embed stack" of the widget (a mixin of ``SAMWidget``)."""

    def model_cfg(self):
        """The configuration of the model the next session uses (no TensorFlow needed)."""
        if self.annotator.model is not None and self.annotator.model_key == "given":
            return self.annotator.model.cfg
        from ..weights import model_config

        return model_config(self.settings().model_name)

    def planned_tiling(self, geo):
        """The tiling a session on an image of geometry ``geo`` will use (None: untiled)."""
        return plan_for(geo.label_shape[-2:], self.model_cfg().input_size, *self.object_size())

    def tiles_layer(self, image=None, geo=None):
        """The ready-tiles overlay of the chosen image (added if needed); None if untiled."""
        if image is None:
            image, geo = self.geometry()
        if self.planned_tiling(geo) is None:
            return None
        return L.tile_overlay(self.viewer, image, geo, overlay_factor(geo.label_shape[-2:]))

    def prepare(self):
        """Make the model and session of the chosen image in the background, embed the
        displayed slice (the tile at its centre, when tiled) and trace the decoding graphs,
        so that the first click answers as fast as the next ones; the state line says
        loading / embedding / ready."""
        try:
            image, geo = self.geometry()
            spec, index = self.session_spec(image, geo), self.current_index(geo)
        except ValueError as err:
            return show_error(str(err))
        if self._worker is not None:
            return None
        session = self.annotator.session_for(spec)
        if session is not None and session.has_embedding(index):
            return self.set_state("ready: click an object")
        self.set_state("loading the model..." if session is None else "embedding the slice...")

        def body(session):
            yield ("state", "embedding the slice...")
            session.prepare_click(index)
            return session

        def on_yield(item):
            self.set_state(item[1])

        def on_done(session):
            self.set_state("ready: click an object (Shift-C commits)",
                           f"image encoder {session.sp.model.dtype_reason}")

        return self._run(spec, body, on_yield, on_done, None, "preparing SAM", warm_up=True)

    def _model_chosen(self, name: str) -> None:
        """A model was chosen: one needing a download is used only if the user agrees (the
        previous choice comes back otherwise); then prepare."""
        from qtpy.QtWidgets import QMessageBox

        from ..weights.choice import download_needed

        question = download_needed(name) if name else None
        if question is not None:
            yes = QMessageBox.StandardButton.Yes
            answer = QMessageBox.question(self, "Download the model?", question,
                                          yes | QMessageBox.StandardButton.No)  # fmt: skip
            if answer != yes:
                self.model_box.blockSignals(True)
                self.model_box.setCurrentText(self._model_name)
                self.model_box.blockSignals(False)
                return show_info(f"Segment Anything: kept {self._model_name}; {name} not "
                                 "downloaded")  # fmt: skip
        self._model_name = name
        self._prepare_soon()

    def _prepare_soon(self, *_):
        """The image or the model changed: prepare in the background (once things settle)."""
        if not self._closed and self.image_box.layer() is not None:
            self.follow_image()
            self._prepare_timer.start()

    def embed_stack(self):
        """Embed every slice (every tile of a large image) in the background (cached)."""
        try:
            image, geo = self.geometry()
            spec, index = self.session_spec(image, geo), self.current_index(geo)
        except ValueError as err:
            return show_error(str(err))
        indices = list(np.ndindex(*spec.geometry.label_shape[:-2]))
        tiling = self.planned_tiling(geo)
        overlay = self.tiles_layer(image, geo)  # None untiled
        body = functools.partial(embed_stack_job, indices=indices, index=index,
                                 cancel=self._cancel.is_set)  # fmt: skip

        def on_yield(item):
            if not isinstance(item, tuple):
                return self.step()
            if item[0] == "progress" and self._pbar is not None:
                self._pbar.total = item[2]
                self._pbar.update(item[1] - self._pbar.n)
            elif overlay is not None:
                L.show_tiles(overlay, tiling, item[1], item[2])

        def on_done(result):
            if isinstance(result, int):
                return show_info(f"Segment Anything: {result} of {len(indices)} slices embedded")
            stopped = ", cancelled" if result.cancelled else ""
            show_info(f"Segment Anything: {result.computed + result.reused} of {result.total} "
                      f"tiles embedded ({result.reused} from the cache{stopped})")  # fmt: skip

        unit, per_slice = units_of(tiling)
        total = len(indices) * per_slice
        if spec.store is None:
            cfg = self.model_cfg()
            side = np.asarray(cfg.input_size) // cfg.encoder_patch_size
            per_unit = int(np.prod(side)) * cfg.embed_dim * 4
            if total * per_unit > MEMORY_BUDGET:
                show_warning(
                    f"Segment Anything: {total} {unit}s of {per_unit / 2**20:.1f} MB do not fit "
                    f"in {MEMORY_BUDGET >> 30} GiB of memory; only the last "
                    f"{MEMORY_BUDGET // per_unit} stay. Choose a cache folder to keep them all"
                )
        return self._run(spec, body, on_yield, on_done, total, f"embedding {unit}s",
                         exclusive=True)  # fmt: skip

    def update_preview(self):
        """Predict the prompted objects of the displayed slice into the preview layer."""
        try:
            image, geo, index, objects = self._prompts()
            spec = self.session_spec(image, geo)
        except ValueError as err:
            return show_error(f"Segment Anything: {err}")
        if not objects and not self.annotator.refining(index):
            return self._show([], index)
        if self.busy:
            return show_warning("Segment Anything: propagating; the preview waits")
        out = self.output_box.layer()
        labels = None if out is None else out.data

        def on_done(result):
            if result.predictions is not None:  # tiled: decoded in the worker
                self.annotator.set_preview(result.predictions, index)
                overlay = self.tiles_layer(image, geo)
                if overlay is not None and result.tiles:
                    L.show_tiles(overlay, result.session.tiling, index, result.tiles)
                return self._show_preview()
            try:
                self.annotator.predict(result.session, index, objects, labels,
                                       self.multimask.isChecked())  # fmt: skip
            except ValueError as err:
                return show_error(f"Segment Anything: {err}")
            self._show_preview()

        if self._worker is not None:  # try again once the running job is done
            self._preview_pending = True
            return None
        session = self.annotator.session_for(spec)
        if (session is not None and not session.sp.embeds_per_prompt
                and session.has_embedding(index)):  # fmt: skip
            return on_done(Previewed(session))
        try:
            refine = self.annotator.refine_target(index, labels)
        except ValueError as err:
            return show_error(f"Segment Anything: {err}")
        body = functools.partial(preview_job, index=index, objects=objects,
                                 multimask=self.multimask.isChecked(), refine=refine)  # fmt: skip
        unit, per_slice = units_of(self.planned_tiling(geo))
        desc = f"embedding {unit}" if per_slice == 1 else f"embedding {unit}s"
        return self._run(spec, body, None, on_done, None, desc, bar_after=250)

    def _show(self, preds, index):
        self.annotator.set_preview(preds, index)
        self._show_preview()

    def _show_preview(self):
        name = L.PREFIX + "preview"
        if name in self.viewer.layers:
            preview = self.viewer.layers[name]
            try:
                image, geo = self.geometry()
            except ValueError:
                image = geo = None
            if geo is not None and preview.data.shape != geo.label_shape:  # windowed layer
                plane, window = self.annotator.render_window()
                L.show_window(preview, image, geo, self.annotator.preview_index or (),
                              plane, window)  # fmt: skip
            elif geo is None or preview.data.shape == geo.label_shape:
                self.annotator.render_preview(preview.data)
                preview.refresh()
        self.iou_label.setText(f"predicted IoU: {self.annotator.scores_text()}")

    def cycle_mask(self):
        """Show the next candidate mask of every previewed object."""
        self.annotator.cycle_masks()
        self._show_preview()
