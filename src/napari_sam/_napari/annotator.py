"""The Qt-free annotator behind the Segment Anything widget: its state and its operations.

:class:`Annotator` holds what the widget used to keep on itself: the model and the
:class:`~napari_sam._napari._session.Session` (with the keys saying which settings made them),
the previewed predictions and their slice, the refine target, the polarity of new points, the
last commit and the propagated slices. It imports neither napari nor Qt nor magicgui: its
inputs are plain values and arrays (a Labels layer's ``data``, the prompts of a slice), so it
can be driven and tested without a display.

Threading: the functions a worker runs off the Qt thread are :func:`build_session`,
:func:`embed_slices`, :func:`preview_job` (embedding, and on a tiled image decoding too),
:func:`~napari_sam._napari._tiles.embed_all_tiles`, :meth:`PropagationJob.run` and
:func:`~napari_sam._napari._everything.segment_slices` (segment everything); they
take plain values, never touch an
:class:`Annotator`, and return (or yield) their results. Every :class:`Annotator` method that
changes its state (:meth:`Annotator.adopt`, :meth:`Annotator.predict`,
:meth:`Annotator.commit`, :meth:`Annotator.accept_slice`, ...) is meant for the thread that
owns the annotator (the Qt thread in the widget).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np

from ._jobs import (
    Built,
    Committed,
    Previewed,
    PropagationJob,
    SessionSpec,
    Settings,
    build_session,
    embed_slices,
    preview_job,
    record_entry,
    refine_prompt,
    write_objects,
)
from ._session import Geometry, ObjectPrompt, Prediction, Session
from ._tiles import full_window, place, render_windows, union_window

__all__ = ["Annotator", "Built", "Committed", "Previewed", "PropagationJob", "SessionSpec",
           "Settings", "build_session", "embed_slices", "preview_job", "write_objects"]  # fmt: skip


class Annotator:
    """State and logic of interactive Segment Anything annotation, free of napari and Qt.

    Parameters
    ----------
    model : SegmentAnythingModel, optional
        A model to use whatever the settings (as :meth:`set_model`).

    Attributes
    ----------
    model, session
        The current model and session (``None`` until made); ``model_key`` and ``session_key``
        say which settings made them.
    predictions : list of Prediction
        The previewed objects, on slice ``preview_index``.
    refine_id, refine_index
        The label being refined and its slice (``refine_id`` ``None``: not refining).
    positive_mode : bool
        New points are positive.
    last_committed : tuple, optional
        ``(index, ids)`` of the last commit.
    propagated : list of tuple
        The slices written by the last propagation.
    """

    def __init__(self, model=None):
        self.model = self.session = self.model_key = self.session_key = None
        self.predictions: list[Prediction] = []
        self.preview_index = self.refine_id = self.refine_index = self.last_committed = None
        self.positive_mode = True
        self.propagated: list[tuple] = []
        if model is not None:
            self.set_model(model)

    # ------------------------------------------------------------------ model and session
    def set_model(self, model) -> None:
        """Use ``model`` whatever the model settings (drops the current session)."""
        self.model, self.model_key, self.session = model, "given", None

    def keys(self, spec: SessionSpec) -> tuple:
        """``(model_key, session_key)`` of the settings ``spec``."""
        if self.model_key == "given":
            model_key = "given"
        else:
            model_key = (spec.model_name, spec.checkpoint, spec.channels)
        return model_key, (id(spec.data), spec.geometry, spec.channels, spec.store, model_key,
                           spec.diameter, spec.sam_masks)  # fmt: skip

    def session_for(self, spec: SessionSpec) -> Session | None:
        """The current session if it was made for ``spec``, else ``None``."""
        if self.session is None or self.keys(spec)[1] != self.session_key:
            return None
        return self.session

    def builder(self, spec: SessionSpec) -> Callable[[], Built]:
        """A function of plain values making the session of ``spec`` (for a worker).

        It reuses the current model when it was made for these settings; it never touches
        the annotator: hand its result to :meth:`adopt`.
        """
        model_key, key = self.keys(spec)
        model = self.model if model_key == self.model_key else None
        return functools.partial(build_session, spec, model, model_key, key)

    def adopt(self, built: Built) -> Session:
        """Make a worker's :class:`Built` model and session the current ones."""
        self.model, self.model_key = built.model, built.model_key
        self.session, self.session_key = built.session, built.key
        return built.session

    def open_session(self, spec: SessionSpec) -> Session:
        """The session of ``spec``, made here and now if needed (scripts and tests)."""
        return self.session_for(spec) or self.adopt(self.builder(spec)())

    # ------------------------------------------------------------------ preview
    def refining(self, index) -> bool:
        """Whether the refine target is on slice ``index``."""
        return self.refine_id is not None and self.refine_index == tuple(index)

    def predict(self, session: Session, index, objects: list[ObjectPrompt], labels=None,
                multimask: bool = True) -> list[Prediction]:  # fmt: skip
        """Predict the prompted ``objects`` of slice ``index`` and make them the preview.

        When refining on this slice, the refined label of ``labels`` (with the points of the
        first object) is the only object. Raises ValueError (the preview is kept) on bad
        prompts.
        """
        index = tuple(index)
        objs = [self.refine_prompt(session, objects, labels)] if self.refining(index) else objects
        preds = [session.predict(index, o, multimask) for o in objs]
        self.set_preview(preds, index)
        return preds

    def set_preview(self, predictions, index) -> None:
        """Show ``predictions`` (of slice ``index``) as the preview."""
        self.predictions, self.preview_index = list(predictions), index

    def cycle_masks(self) -> list[Prediction]:
        """Choose the next candidate mask of every previewed object."""
        for p in self.predictions:
            p.cycle()
        return self.predictions

    def render_preview(self, preview) -> None:
        """Write the preview into the array ``preview`` (objects 1, 2, ...; zero elsewhere)."""
        preview[...] = 0
        if self.preview_index is None:
            return
        plane = preview[self.preview_index]
        for k, p in enumerate(self.predictions):
            y0, y1, x0, x1 = full_window(p.mask, p.window)
            part = plane[y0:y1, x0:x1]
            part[p.mask & (part == 0)] = k + 1

    def render_window(self):
        """The preview as ``(int32 plane, window)`` over the union of the objects' windows
        (for a preview layer covering that window only); window None: no preview."""
        return render_windows(self.predictions)

    def scores_text(self) -> str:
        """The predicted IoU and the choice of every previewed object, e.g. ``0.91 (1/3)``."""
        parts = (f"{p.score:.2f} ({p.choice + 1}/{len(p.masks)})" for p in self.predictions)
        return ", ".join(parts) or "-"

    # ------------------------------------------------------------------ refine and commit
    def refine(self, labels, index, label: int) -> bool:
        """Refine ``label`` of slice ``index`` of ``labels`` next (False if it is not there)."""
        index = tuple(index)
        if not (np.asarray(labels[index]) == label).any():
            return False
        self.refine_id, self.refine_index = int(label), index
        return True

    def refine_prompt(self, session: Session, objects, labels) -> ObjectPrompt:
        """The refine target's mask prompt, plus the points of the first of ``objects``."""
        if labels is None:
            raise ValueError("output labels: choose a Labels layer")
        mask = np.asarray(labels[self.refine_index]) == self.refine_id
        return refine_prompt(session, objects, mask, self.refine_index, self.refine_id)

    def refine_target(self, index, labels):
        """``(labels, label)`` for :func:`preview_job` when refining on slice ``index``."""
        if not self.refining(index):
            return None
        if labels is None:
            raise ValueError("output labels: choose a Labels layer")
        return labels, self.refine_id

    def commit(self, labels, overwrite: bool = False, setitem=None,
               log=None) -> Committed | None:  # fmt: skip
        """Write the preview into ``labels`` with new ids (the refined id when refining).

        New ids follow the largest label of ``labels``; existing labels are kept unless
        ``overwrite``. The preview and the refine target are then cleared. Returns what
        changed, or ``None`` (nothing written) when no previewed mask has a pixel. Raises
        ValueError (nothing written) when a new id does not fit the dtype of ``labels``.
        ``log`` (a :class:`~napari_sam.io.prompt_log.PromptLog`) records each object's prompts.
        """
        preds = [p for p in self.predictions if p.mask.any()]
        if not preds:
            return None
        if self.refine_id is not None:
            ids = [self.refine_id]
        else:
            first = int(np.max(labels)) + 1
            ids = list(range(first, first + len(preds)))
            dtype = np.dtype(getattr(labels, "dtype", np.int32))
            if dtype.kind in "iu" and ids[-1] > np.iinfo(dtype).max:
                raise ValueError(
                    f"output labels: label {ids[-1]} does not fit the layer's {dtype} data; "
                    "choose a Labels layer of a larger integer type"
                )
        index, preds = self.preview_index, preds[: len(ids)]
        masks, window = [p.mask for p in preds], None
        if any(p.window is not None for p in preds):  # a tiled image: write the windows only
            windows = [full_window(p.mask, p.window) for p in preds]
            if self.refine_id is not None:
                windows.append(self.label_window(labels, index, self.refine_id))
            window = union_window(windows)
            masks = [place(p.mask, p.window, window) for p in preds]
        if log is not None:  # undone commits of this slice leave the record first
            log.prune(labels, [index])
        n = write_objects(labels, index, masks, ids, overwrite, self.refine_id, setitem, window)
        if log is not None:
            log.add(labels, index, [record_entry(p, i, overwrite) for p, i in zip(preds, ids,
                                                                                 strict=True)])
        self.clear(index)
        self.last_committed = (index, ids)
        return Committed(index, ids, n)

    @staticmethod
    def label_window(labels, index, label: int) -> tuple[int, int, int, int]:
        """The window ``(y0, y1, x0, x1)`` of ``label`` on slice ``index`` (empty if absent)."""
        ys, xs = np.nonzero(np.asarray(labels[tuple(index)]) == label)
        if not len(ys):
            return 0, 0, 0, 0
        return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1

    def clear(self, index) -> None:
        """Drop the preview (now of slice ``index``) and the refine target."""
        self.refine_id = None
        self.set_preview([], index)

    # ------------------------------------------------------------------ propagation and embedding
    def start_propagation(self, labels, index, label: int, geometry: Geometry, axis: int = 0,
                          stop_iou: float = 0.5, limits=None,
                          overwrite: bool = False) -> PropagationJob:  # fmt: skip
        """A :class:`PropagationJob` of ``label`` from slice ``index`` of ``labels``.

        Raises ValueError if the image has no slice axis; the job's mask is empty if the
        label is not on the slice. ``propagated`` restarts when the mask is not empty.
        """
        if geometry.n_slice_dims == 0:
            raise ValueError("propagate: the image has no slice axis (Z or T)")
        index = tuple(index)
        mask = np.asarray(labels[index]) == label
        if mask.any():
            self.propagated = []
        axis = min(axis, geometry.n_slice_dims - 1)
        return PropagationJob(index, mask, int(label), axis, stop_iou, limits, overwrite)

    def accept_slice(self, job: PropagationJob, labels, here, mask, setitem=None,
                     window=None, log=None, step=None) -> None:  # fmt: skip
        """Write a propagated slice ``here`` of ``job`` into ``labels`` (``mask`` covering
        ``window`` of the slice; None: the whole slice); ``log`` records it as part of the
        propagation numbered ``step``."""
        if log is not None:
            log.prune(labels, [tuple(here)])
        write_objects(labels, here, [mask], [job.label], job.overwrite, setitem=setitem,
                      window=window)  # fmt: skip
        if log is not None:
            how = {"from": [int(i) for i in job.index], "axis": int(job.axis),
                   "stop_iou": float(job.stop_iou),
                   "limits": None if job.limits is None else [int(v) for v in job.limits]}
            log.add(labels, here, [{"id": job.label, "overwrite": bool(job.overwrite),
                                    "propagate": how}], step)  # fmt: skip
        self.propagated.append(here)

    def propagate(self, session: Session, labels, index, label: int, geometry: Geometry,
                  axis: int = 0, stop_iou: float = 0.5, limits=None, overwrite: bool = False,
                  cancel=None, setitem=None, log=None) -> Iterator:  # fmt: skip
        """Follow ``label`` through the stack, writing each slice (a synchronous generator).

        Yields
        ------
        index, mask, window
            Each slice written, the object's mask there and the window it covers.
        """
        job = self.start_propagation(labels, index, label, geometry, axis, stop_iou, limits,
                                     overwrite)  # fmt: skip
        if not job.mask.any():
            raise ValueError(f"label {label} is not on this slice")
        step = None if log is None else log.next_step
        for here, mask, window in job.run(session, cancel):
            self.accept_slice(job, labels, here, mask, setitem, window, log, step)
            yield here, mask, window

    @staticmethod
    def embed(session: Session, indices, cancel=None):
        """Embed ``indices`` (see :func:`embed_slices`)."""
        return embed_slices(session, indices, cancel)
