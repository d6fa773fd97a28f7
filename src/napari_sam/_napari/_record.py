"""The widget's record of how each object was made ([provenance]): kept with the output
Labels layer, written beside it on save, its prompts shown again for refining.

The record is a :class:`~napari_sam.io.prompt_log.PromptLog` kept in the output layer's
``metadata["napari_sam"]`` (``made_by`` and ``objects``), updated on every commit and made to
agree with the labels (napari's undo and redo) whenever it is read. napari's own TIFF writer
drops metadata: the plugin's writer ("labels with the Segment Anything record") writes the
label TIFF and its sidecar ``<name>.prompts.json``, which ``napari-sam segment`` replays.
A Labels layer opened from a file that has a sidecar beside it gets its record back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from napari.utils.notifications import show_error, show_info, show_warning

from ..io.prompt_log import PromptLog
from ..io.provenance import FORMAT, sidecar_path
from . import _layers as L
from ._jobs import made_by

__all__ = ["KEY", "RecordActions", "record_of", "write_labels"]

KEY = "napari_sam"  # the output layer's metadata entry


def record_of(layer) -> PromptLog:
    """The record of a Labels layer: its metadata's, else its file's sidecar, else empty."""
    kept = layer.metadata.get(KEY)
    if isinstance(kept, dict) and isinstance(kept.get("objects"), list):
        return PromptLog(kept["objects"])
    path = getattr(layer.source, "path", None)
    side = None if path is None else sidecar_path(path)
    if side is not None and side.is_file():
        import json

        try:
            data = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("format") == FORMAT:
            log = PromptLog.from_sidecar(data.get("objects") or [], layer.data)
            # kept with the layer from now on: read again, edited, copied or saved with it
            layer.metadata[KEY] = {"made_by": data.get("made_by"), "objects": log.entries}
            return log
    return PromptLog()


def write_labels(path: str, data, meta: dict) -> list[str]:
    """napari writer: the label TIFF and, when the layer has a record, its sidecar."""
    from ..io.labels import write_label_tiff
    from ..io.provenance import is_sidecar, write_sidecar

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        path = path.with_suffix(".tif")
    data = np.asarray(data)
    axes = "ZYX"[-data.ndim:] if data.ndim <= 3 else "TZYX"[-data.ndim:]
    write_label_tiff(path, data, axes)
    written = [str(path)]
    kept = (meta.get("metadata") or {}).get(KEY)
    side = sidecar_path(path)
    if side.exists() and not is_sidecar(side):
        show_warning(f"Segment Anything: left {side.name} alone (not a napari-sam sidecar); "
                     "the labels' record is not written")  # fmt: skip
    elif isinstance(kept, dict) and kept.get("objects"):
        objects = PromptLog(kept["objects"]).objects(data)
        made = dict(kept.get("made_by") or {})
        made["unrecorded"] = unrecorded(data, objects)
        written.append(str(write_sidecar(side, made, objects)))
    return written


def unrecorded(data: np.ndarray, objects) -> list:
    """``[[slice..., id], ...]`` of the objects in ``data`` that no recorded prompt made
    (Propagate, Segment everything, painting): a replay will not have them."""
    recorded = {(*e["slice"], int(e["id"])) for e in objects}
    out = []
    for index in np.ndindex(*data.shape[:-2]):
        for label in np.unique(data[index]):
            if label and (*index, int(label)) not in recorded:
                out.append([*index, int(label)])
    return out


def how(entry: dict) -> str:
    """How a recorded object was made: click, box, refine, propagate or everything."""
    for key in ("everything", "propagate", "refine", "box"):
        if entry.get(key):
            return key
    return "click"


def features_of(entries) -> pd.DataFrame:
    """The output layer's features: per label, how it was made last and in which commit."""
    last = {int(e["id"]): e for e in entries}
    return pd.DataFrame({"index": list(last), "made_by": [how(e) for e in last.values()],
                         "step": [int(e["step"]) for e in last.values()]})  # fmt: skip


class RecordActions:
    """Commit (recording each object) and "Show prompts" for :class:`SAMWidget`."""

    def commit(self):
        """Write the preview into the output labels with new ids (Ctrl+Z undoes it); the
        prompts of each object are recorded with the layer."""
        out = self.output_box.layer()
        try:
            self._checked_output(out)
            log = record_of(out)
            done = self.annotator.commit(out.data, self.overwrite.isChecked(), out.data_setitem,
                                         log)  # fmt: skip
        except ValueError as err:
            show_error(f"Segment Anything: {err}")
            return []
        if done is None:
            show_warning("Segment Anything: nothing to commit; add prompts first")
            return []
        self.keep_record(out, log)
        out.selected_label = done.ids[-1]
        L.remove_slice_prompts(self.points_box.layer(), self.boxes_box.layer(), done.index)
        self._show_preview()
        return done.ids

    def keep_record(self, out, log: PromptLog) -> None:
        """Keep ``log`` (and what made it) in the output layer's metadata."""
        kept = out.metadata.get(KEY) or {}
        now = made_by(self.annotator.session, self.model_box.currentText())
        out.metadata[KEY] = {"made_by": now, "objects": log.entries}
        out.features = features_of(log.entries)  # napari shows them under the cursor
        if (kept.get("made_by") or {}).get("weights_hash") not in (None, now["weights_hash"]):
            show_warning("Segment Anything: these labels hold objects made with another model; "
                         "the record names this one")  # fmt: skip

    def record_objects(self, out, index, entries, step: int) -> None:
        """Record ``entries`` written on slice ``index`` of ``out`` as part of ``step``."""
        log = record_of(out)
        log.prune(out.data, [tuple(index)])
        log.add(out.data, index, entries, step)
        self.keep_record(out, log)

    def save_labels(self, path: str | None = None) -> list[str]:
        """Save the output labels as a TIFF with their record beside it (``<name>.prompts.json``,
        what ``napari-sam segment --prompts`` replays), as the plugin's writer does; napari's
        own TIFF writer keeps no record. ``path``: asked for in a dialog when None."""
        out = self.output_box.layer()
        if out is None:
            show_error("Segment Anything: no output labels layer to save")
            return []
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(self, "Save labels with their record",
                                                  f"{out.name}.tif", "TIFF (*.tif *.tiff)")
            if not path:
                return []
        written = write_labels(path, out.data, out.as_layer_data_tuple()[1])
        show_info(f"Segment Anything: saved {', '.join(Path(p).name for p in written)}")
        return written

    def show_prompts(self):
        """Put the recorded clicks and box of the output's selected label on this slice back
        into the prompt layers, and refine that label with them."""
        out = self.output_box.layer()
        try:
            image, geo = self._checked_output(out)
            index = self.current_index(geo)
        except ValueError as err:
            return show_error(f"Segment Anything: {err}")
        label = int(out.selected_label)
        entries = [e for e in record_of(out).objects(out.data)
                   if tuple(e["slice"]) == tuple(index) and int(e["id"]) == label]  # fmt: skip
        if not entries:
            return show_warning(f"Segment Anything: no recorded prompts of label {label} on "
                                "this slice")  # fmt: skip
        if self.points_box.layer() is None or self.boxes_box.layer() is None:
            self.setup_layers()
        points, boxes = self.points_box.layer(), self.boxes_box.layer()
        L.remove_slice_prompts(points, boxes, index)
        first = next((e for e in entries if not e.get("refine")), entries[0])
        clicks = [(p, v) for e in entries for p, v in zip(e.get("points", []),
                                                          e.get("labels", []), strict=True)]
        for (x, y), positive in clicks:
            points.add([[*index, y, x]])
            points.features.loc[len(points.data) - 1, "positive"] = bool(positive)
        L.colour_points(points, self.annotator.positive_mode)
        if "box" in first:
            x0, y0, x1, y1 = first["box"]
            corners = [(y0, x0), (y0, x1), (y1, x1), (y1, x0)]
            boxes.add_rectangles([np.array([[*index, r, c] for r, c in corners])])
        self.annotator.refine(out.data, index, label)
        show_info(f"Segment Anything: label {label}: {len(clicks)} click(s)"
                  f"{' and a box' if 'box' in first else ''} from its record; Commit refines it")
        self._timer.start()
