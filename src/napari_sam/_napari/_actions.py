"""The widget's actions: embedding, live preview, commit, refinement and propagation.

:class:`SAMActions` is a mixin of :class:`~napari_sam._napari._widget.SAMWidget`; it runs every
model call that may take long (the first embedding of a slice, the whole stack, propagation)
in a napari ``thread_worker`` with a progress bar, and writes results on the Qt thread.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning

from . import _layers as L
from ._session import split_prompts


class SAMActions:
    """Actions of the Segment Anything widget (a mixin; the widget provides the state)."""

    def embed_stack(self):
        """Embed every slice of the image in the background (stored in the cache)."""
        try:
            make, (_, geo) = self._session_factory(), self.geometry()
        except ValueError as err:
            return show_error(str(err))
        indices = list(np.ndindex(*geo.label_shape[:-2]))

        def work():
            session = make()
            for n, index in enumerate(indices):
                if self._cancel.is_set():
                    return n
                session.embed(index)
                yield n + 1
            return len(indices)

        def on_done(n):
            show_info(f"Segment Anything: {n} of {len(indices)} slices embedded")

        return self._run(work, self._step, on_done, len(indices), "embedding slices")

    def _step(self, _=None):
        if self._pbar is not None:
            self._pbar.update(1)

    # ---------------------------------------------------------------- prompts and preview
    def toggle_polarity(self):
        """Switch new points between positive and negative."""
        self.positive_mode = not self.positive_mode
        points = self.points_box.layer()
        if points is not None:
            points.feature_defaults = {"positive": self.positive_mode}
            L.colour_points(points, self.positive_mode)
        show_info(f"Segment Anything: {'positive' if self.positive_mode else 'negative'} points")

    def _prompts(self):
        """Objects prompted on the displayed slice (checks every layer first)."""
        image, geo = self.geometry()
        points, boxes = self.points_box.layer(), self.boxes_box.layer()
        for layer, what in ((points, "points"), (boxes, "shapes")):
            if layer is not None:
                L.check_aligned(layer, image, geo, what)
        index = self.current_index(geo)
        pts, flags, rects = L.slice_prompts(points, boxes, index)
        objects, dropped = split_prompts(pts, flags, rects, geo.label_shape[-2:])
        if dropped:
            show_warning(f"Segment Anything: {dropped} point(s) outside the image ignored")
        return geo, index, objects

    def update_preview(self):
        """Predict the prompted objects of the displayed slice into the preview layer."""
        try:
            geo, index, objects = self._prompts()
            make = self._session_factory()
        except ValueError as err:
            return show_error(f"Segment Anything: {err}")
        refine = self.refine_id is not None and self.refine_index == index
        if not objects and not refine:
            return self._show([], index)
        if self.busy:
            return show_warning("Segment Anything: propagating; the preview waits")

        def work():
            session = make()
            session.embed(index)
            return session

        def on_done(session):
            try:
                objs = [self._refine_prompt(session, objects)] if refine else objects
                preds = [session.predict(index, o, self.multimask.isChecked()) for o in objs]
            except ValueError as err:
                return show_error(f"Segment Anything: {err}")
            self._show(preds, index)

        if self._worker is not None:  # try again once the running job is done
            self._worker.finished.connect(self._timer.start)
            return None
        if make.ready and make().has_embedding(index):
            return on_done(make())
        return self._run(work, None, on_done, None, "embedding slice")

    def _show(self, preds, index):
        self.predictions, self.preview_index = preds, index
        name = L.PREFIX + "preview"
        preview = self.viewer.layers[name] if name in self.viewer.layers else None
        if preview is not None:
            preview.data[...] = 0
            for k, p in enumerate(preds):
                preview.data[index][p.mask & (preview.data[index] == 0)] = k + 1
            preview.refresh()
        scores = ", ".join(f"{p.score:.2f} ({p.choice + 1}/{len(p.masks)})" for p in preds)
        self.iou_label.setText(f"predicted IoU: {scores or '-'}")

    def cycle_mask(self):
        """Show the next candidate mask of every previewed object."""
        for p in self.predictions:
            p.cycle()
        self._show(self.predictions, self.preview_index)

    def clear_prompts(self):
        """Remove the prompts of the displayed slice and the preview."""
        try:
            index = self.current_index()
        except ValueError as err:
            return show_error(str(err))
        self.clear_prompts_at(index)

    def _checked_output(self, out):
        """The image layer's geometry, after checking ``out`` fits it (else ValueError)."""
        image, geo = self.geometry()
        if out is None:
            raise ValueError("output labels: choose a Labels layer")
        L.check_labels(out, image, geo)
        return image, geo

    def refine_selected(self):
        """Use the output layer's selected label on this slice as a mask prompt."""
        out = self.output_box.layer()
        try:
            image, geo = self._checked_output(out)
            index = self.current_index(geo)
        except ValueError as err:
            return show_error(f"Segment Anything: {err}")
        if not (np.asarray(out.data[index]) == out.selected_label).any():
            return show_warning(f"Segment Anything: label {out.selected_label} not on this slice")
        self.refine_id, self.refine_index = int(out.selected_label), index
        self._timer.start()

    def _refine_prompt(self, session, objects):
        mask = np.asarray(self.output_box.layer().data[self.refine_index]) == self.refine_id
        prompt = session.mask_prompt(self.refine_index, mask)
        if objects and objects[0].points is not None:
            prompt.points = np.concatenate([prompt.points, objects[0].points])
            prompt.labels = np.concatenate([prompt.labels, objects[0].labels])
        return prompt

    # ---------------------------------------------------------------- commit and propagate
    def commit(self):
        """Write the preview into the output labels with new ids (Ctrl+Z undoes it)."""
        out = self.output_box.layer()
        try:
            image, geo = self._checked_output(out)
        except ValueError as err:
            show_error(f"Segment Anything: {err}")
            return []
        preds = [p for p in self.predictions if p.mask.any()]
        if not preds:
            show_warning("Segment Anything: nothing to commit; add prompts first")
            return []
        if self.refine_id is not None:
            ids = [self.refine_id]
        else:
            first = int(np.max(out.data)) + 1
            ids = list(range(first, first + len(preds)))
        L.write_objects(out, self.preview_index, [p.mask for p in preds[: len(ids)]], ids,
                        self.overwrite.isChecked(), self.refine_id)  # fmt: skip
        index = self.preview_index
        out.selected_label = ids[-1]
        self.clear_prompts_at(index)
        self.last_committed = (index, ids)
        return ids

    def clear_prompts_at(self, index):
        """Remove the prompts of slice ``index`` and the preview."""
        self.refine_id = None
        L.remove_slice_prompts(self.points_box.layer(), self.boxes_box.layer(), index)
        self._show([], index)

    def propagate(self):
        """Follow the previewed (committed first) or selected object through the stack."""
        out = self.output_box.layer()
        if self.predictions:
            self.commit()
        try:
            image, geo = self._checked_output(out)
            index = self.current_index(geo)
            if geo.n_slice_dims == 0:
                raise ValueError("propagate: the image has no slice axis (Z or T)")
            axis = min(self.prop_axis.value(), geo.n_slice_dims - 1)
            make = self._session_factory()
        except ValueError as err:
            return show_error(f"Segment Anything: {err}")
        label = int(out.selected_label)
        mask = np.asarray(out.data[index]) == label
        if not mask.any():
            return show_warning(f"Segment Anything: label {label} is not on this slice")
        limits = (self.z_from.value(), self.z_to.value())
        overwrite, stop = self.overwrite.isChecked(), self.stop_iou.value()

        def work():
            session = make()
            yield from session.propagate(index, mask, axis, stop, limits,
                                         cancel=self._cancel.is_set)  # fmt: skip

        def on_slice(item):
            here, m = item
            L.write_objects(out, here, [m], [label], overwrite)
            self.propagated.append(here)
            self._step()

        self.propagated = []
        self.busy = True
        return self._run(work, on_slice, None, geo.label_shape[axis], "propagating")
