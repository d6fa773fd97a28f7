"""Prompt files for ``napari-sam segment``: CSV (ours, or napari's Points layer) and JSON.

Every format gives a list of :class:`ObjectPrompt`: the prompts of one object on one slice.

* CSV with columns ``x, y`` (points) and/or ``x0, y0, x1, y1`` (a box), optional ``label``
  (1 foreground, 0 background; default 1), ``object`` or ``id`` (which object a row belongs
  to; default: all rows of a slice are one object), and the slice as ``slice`` (flat slice
  number) or one column per slice axis, named by its letter (``z``, ``t``).
* The CSV napari writes for a Points layer: ``index, axis-0, axis-1, ...`` (the last two
  axes are Y and X, the ones before are the slice axes in the stack's order), optional
  ``label`` and ``object`` / ``id`` columns; the ``positive`` column napari writes for the
  plugin's Points layer (True/False) gives the label when there is no ``label`` column.
* JSON: a list of objects (or ``{"objects": [...]}``), each ``{"slice": 3 or [t, z],
  "points": [[x, y], ...], "labels": [1, ...], "box": [x0, y0, x1, y1], "object": "a"}``
  (``slice`` optional for a single image; ``labels`` default to 1; entries with the same
  ``object`` on several slices are one object).
* The napari widget's record (a sidecar, :mod:`napari_sam.io.prompt_log`) adds to each
  object ``id`` (its label), ``step`` (the commit; objects of one step are written together),
  ``multimask`` and ``choice`` (the candidate kept), ``overwrite`` (other labels painted over)
  and ``refine`` (its mask then was the mask prompt; no click is needed), or ``propagate``
  (``{"from": slice, "axis", "stop_iou", "limits"}``: written by propagating the object from
  that slice), or ``everything`` (made by Segment everything with these settings; a replay
  cannot redo it and says so); ``edited`` (changed by hand since) is informative.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ObjectPrompt", "PromptFileError", "read_prompts"]


class PromptFileError(ValueError):
    """A prompts file cannot be used; the message names the file and the line."""


@dataclass
class ObjectPrompt:
    """The prompts of one object on one slice (coordinates in slice pixels, x then y)."""

    key: str
    slice: tuple
    points: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    box: list | None = None
    where: str = ""
    step: int | None = None  # the widget's record: the commit it was written in
    label_id: int | None = None  # its label (a sidecar's "id")
    multimask: bool | None = None  # several candidates asked for (None: for one click)
    choice: int | None = None  # the candidate kept (None: the best predicted IoU)
    overwrite: bool = True  # painted over other labels
    refine: bool = False  # refined its label's mask on the slice at that step
    propagate: dict | None = None  # written by propagating from {"from": slice, "axis", ...}
    everything: dict | None = None  # made by the widget's Segment everything (its settings)

    @property
    def object_key(self) -> str:
        """Which object the prompts belong to: ``key``, or without one the slice (no object
        column: one object per slice)."""
        return self.key or f"\0{self.slice}"

    def arrays(self):
        """``points (M, 2)``, ``labels (M,)`` or ``None, None``, and ``box (1, 4)`` or ``None``."""
        pts = np.asarray(self.points, np.float64).reshape(-1, 2) if self.points else None
        lbl = np.asarray(self.labels, np.float64) if self.points else None
        box = None if self.box is None else np.asarray(self.box, np.float64)[None]
        return pts, lbl, box


def _num(value, name, where) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise PromptFileError(f"{where}: {name} {value!r} is not a number") from None
    if not math.isfinite(out):
        raise PromptFileError(f"{where}: {name} {value!r} is not a finite number")
    return out


def _whole(value, name, where) -> int:
    """A slice number: a whole number (``3`` or ``3.0``), never rounded."""
    out = _num(value, name, where)
    if out != int(out):
        raise PromptFileError(f"{where}: {name} {value!r} is not a whole number")
    return int(out)


def _slice_index(values, view, where) -> tuple:
    if len(values) != len(view.stack_shape):
        raise PromptFileError(
            f"{where}: expected {len(view.stack_shape)} slice coordinate(s) for slice axes "
            f"{view.slice_axes!r}, got {len(values)}"
        )
    idx = tuple(_whole(v, "slice coordinate", where) for v in values)
    for i, s, a in zip(idx, view.stack_shape, view.slice_axes, strict=True):
        if not 0 <= i < s:
            raise PromptFileError(f"{where}: slice {a}={i} is outside the stack ({a} < {s})")
    return idx


def _check_inside(obj: ObjectPrompt, view) -> None:
    h, w = view.slice_shape
    coords = [tuple(p) for p in obj.points]
    if obj.box is not None:
        x0, y0, x1, y1 = obj.box
        if not (x0 <= x1 and y0 <= y1):
            raise PromptFileError(f"{obj.where}: box {obj.box} must have x0 <= x1 and y0 <= y1")
        coords += [(x0, y0), (x1, y1)]
    for x, y in coords:
        if not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5):
            raise PromptFileError(
                f"{obj.where}: point (x={x:g}, y={y:g}) is outside the {w}x{h} (width x "
                "height) image"
            )


def _polarity(text: str, where: str) -> float:
    """The ``positive`` property napari saves for the plugin's Points layer: 1.0 or 0.0."""
    value = text.strip().lower()
    if value in ("true", "1", "1.0"):
        return 1.0
    if value in ("false", "0", "0.0"):
        return 0.0
    raise PromptFileError(f"{where}: positive {text!r} must be True or False")


def _add(objects: dict, key, sl, where, point=None, label=1.0, box=None, entry=None) -> None:
    at = (key, sl) if entry is None else (key, sl, entry)  # entry: a recorded prompt's number
    obj = objects.setdefault(at, ObjectPrompt(str(key), sl, where=where))
    if point is not None:
        if label not in (0.0, 1.0):
            raise PromptFileError(f"{where}: label {label:g} must be 1 (foreground) or 0")
        if len(obj.points) >= MAX_POINTS:
            raise PromptFileError(f"{where}: more than {MAX_POINTS} points for one object on "
                                  "one slice; a few clicks describe an object (name each "
                                  "object in an 'object' column or key)")  # fmt: skip
        obj.points.append(point)
        obj.labels.append(label)
    if box is not None:
        if obj.box is not None:
            raise PromptFileError(f"{where}: a second box for object {key!r} on one slice")
        obj.box = box


def _read_csv(path: Path, view) -> list[ObjectPrompt]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise PromptFileError(f"{path.name}: the file is empty")
    header = [h.strip().lower() for h in rows[0]]
    col = {h: i for i, h in enumerate(header)}
    napari = [h for h in header if h.startswith("axis-")]
    letters = [a.lower() for a in view.slice_axes]
    objects: dict = {}
    for n, row in enumerate(rows[1:], start=2):
        where = f"{path.name} line {n}"
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise PromptFileError(f"{where}: {len(row)} values but {len(header)} columns")

        def get(name, row=row):
            i = col.get(name)
            return None if i is None or row[i].strip() == "" else row[i].strip()

        key = get("object") or get("id") or ""
        label = _num(get("label"), "label", where) if get("label") is not None else 1.0
        if get("label") is None and get("positive") is not None:  # the widget's Points layer
            label = _polarity(get("positive"), where)
        if napari:
            coords = [get(f"axis-{i}") for i in range(len(napari))]
            if len(coords) != len(view.stack_shape) + 2:
                raise PromptFileError(
                    f"{where}: {len(coords)} axis columns but the stack has "
                    f"{len(view.stack_shape) + 2} dimensions without channels ({view.axes!r})"
                )
            sl = _slice_index(coords[:-2], view, where)
            y, x = (_num(v, f"axis-{len(coords) - 2 + i}", where) for i, v in
                    enumerate(coords[-2:]))  # fmt: skip
            _add(objects, key, sl, where, (x, y), label)
            continue
        if get("slice") is not None:
            flat = _whole(get("slice"), "slice", where)
            if not 0 <= flat < len(view):
                raise PromptFileError(f"{where}: slice {flat} is outside the stack ({len(view)})")
            sl = view.index_tuple(flat)
        else:
            sl = _slice_index([get(a) for a in letters], view, where) if letters else ()
        point = box = None
        if get("x") is not None or get("y") is not None:
            point = (_num(get("x"), "x", where), _num(get("y"), "y", where))
        if any(get(c) is not None for c in ("x0", "y0", "x1", "y1")):
            box = [_num(get(c), c, where) for c in ("x0", "y0", "x1", "y1")]
        if point is None and box is None:
            raise PromptFileError(f"{where}: no point (x, y) or box (x0, y0, x1, y1)")
        _add(objects, key, sl, where, point, label, box)
    return list(objects.values())


#: Points one object may have on one slice (SAM is trained with a few clicks an object).
MAX_POINTS = 1000
_JSON_KEYS = ("slice", "points", "labels", "box", "object", "id", "step", "multimask", "choice",
              "overwrite", "refine", "propagate", "everything", "edited")  # id on: a sidecar's


def _record_fields(item: dict, where: str) -> dict:
    """The record fields of a sidecar object (checked), as ObjectPrompt attributes."""
    out = {}
    for name, attr in (("step", "step"), ("id", "label_id"), ("choice", "choice")):
        value = item.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < (name == "step"
                                                                                or name == "id"):
                raise PromptFileError(f"{where}: {name!r} must be a whole number"
                                      f"{' >= 1' if name != 'choice' else ' >= 0'}, got {value!r}")
            out[attr] = value
    for name in ("multimask", "overwrite", "refine", "edited"):
        if name in item and not isinstance(item[name], bool):
            raise PromptFileError(f"{where}: {name!r} must be true or false, got {item[name]!r}")
        if name in item and name != "edited":
            out[name] = item[name]
    if "propagate" in item:
        out["propagate"] = _propagation(item["propagate"], where)
    if "everything" in item:
        if not isinstance(item["everything"], dict):
            raise PromptFileError(f"{where}: 'everything' must be the segmenter's settings "
                                  f"{{'method': ...}}, got {item['everything']!r}")
        out["everything"] = item["everything"]
    if ("step" in out or out.get("refine") or "propagate" in out) and "label_id" not in out:
        raise PromptFileError(f"{where}: a recorded object needs its label 'id'")
    for name in ("refine", "propagate", "everything"):
        if out.get(name) and "step" not in out:
            raise PromptFileError(f"{where}: {name!r} needs the 'step' it was committed in")
    return out


def _propagation(value, where: str) -> dict:
    """A recorded propagation ``{"from": [slice...], "axis": int, "stop_iou": number,
    "limits": null or [first, last]}``, checked."""
    def ints(v, n=None):
        return (isinstance(v, list) and (n is None or len(v) == n)
                and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v))

    ok = (isinstance(value, dict) and set(value) <= {"from", "axis", "stop_iou", "limits"}
          and ints(value.get("from")) and ints([value.get("axis")])
          and isinstance(value.get("stop_iou"), (int, float))
          and not isinstance(value.get("stop_iou"), bool)
          and (value.get("limits") is None or ints(value.get("limits"), 2)))  # fmt: skip
    if not ok:
        raise PromptFileError(f"{where}: 'propagate' must be {{'from': [slice], 'axis': n, "
                              f"'stop_iou': x, 'limits': null or [a, b]}}, got {value!r}")
    return value


def _read_json(path: Path, view) -> list[ObjectPrompt]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PromptFileError(f"{path.name} line {err.lineno}: invalid JSON ({err.msg})") from None
    except RecursionError:
        raise PromptFileError(f"{path.name}: JSON nested too deeply to be prompts") from None
    if isinstance(data, dict):
        data = data.get("objects")
    if not isinstance(data, list):
        raise PromptFileError(f"{path.name}: expected a list of objects or {{'objects': [...]}}")
    objects: dict = {}
    steps = 0  # objects of the widget's record (each with its 'step')
    defaulted = 0  # objects of a stack without 'slice': on slice 0, said once
    for n, item in enumerate(data):
        where = f"{path.name} object {n}"
        if not isinstance(item, dict) or not ({"points", "box", "propagate", "everything"}
                                              & set(item) or item.get("refine")):  # fmt: skip
            raise PromptFileError(f"{where}: expected {{'points': [[x, y], ...]}} and/or 'box'")
        unknown = sorted(str(k) for k in set(item) - set(_JSON_KEYS))
        if unknown:  # a misspelt "labels" would silently make every point foreground
            raise PromptFileError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; expected "
                f"{', '.join(map(repr, _JSON_KEYS))}"
            )
        s = item.get("slice", 0 if len(view.stack_shape) <= 1 else None)
        if s is None:
            raise PromptFileError(f"{where}: 'slice' is required for axes {view.slice_axes!r}")
        if not view.stack_shape and s not in (0, [], [0]):  # one 2-D image: only slice 0
            raise PromptFileError(f"{where}: slice {s!r} is outside the image (one 2-D slice: "
                                  "leave 'slice' out or give 0)")  # fmt: skip
        defaulted += "slice" not in item and bool(view.stack_shape)
        if isinstance(s, (dict, bool)) or (
            isinstance(s, list) and any(isinstance(v, (list, dict, bool)) for v in s)
        ):
            raise PromptFileError(
                f"{where}: 'slice' must be a slice number or a list of one number per slice "
                f"axis ({view.slice_axes!r}), got {s!r}"
            )
        sl = _slice_index(s if isinstance(s, list) else [s], view, where) if view.stack_shape \
            else ()  # fmt: skip
        key = item.get("object", f"\0{n}")  # same "object" on several slices: one id
        if isinstance(key, bool) or not isinstance(key, (str, int, float)):
            raise PromptFileError(f"{where}: 'object' must be a name or a number, got {key!r}")
        key = str(key)
        record = _record_fields(item, where)
        entry = n if "step" in record else None
        if "step" in record:  # the widget's record: every entry is a prompt of its own
            steps += 1
            obj = objects.setdefault((key, sl, n), ObjectPrompt(key, sl, where=where, **record))
        elif record:
            obj = objects.setdefault((key, sl), ObjectPrompt(key, sl, where=where))
            for attr, value in record.items():
                setattr(obj, attr, value)
        points = item.get("points")
        points = [] if points is None else points
        if not isinstance(points, list):
            raise PromptFileError(
                f"{where}: 'points' must be a list of [x, y] points, got {points!r}"
            )
        labels = item.get("labels")
        labels = [1] * len(points) if labels is None else labels
        if not isinstance(labels, list):
            raise PromptFileError(
                f"{where}: 'labels' must be a list of 1 (foreground) or 0 (background), one "
                f"per point, got {labels!r}"
            )
        if len(labels) != len(points):
            raise PromptFileError(
                f"{where}: 'labels' must have one value per point, got {len(labels)} for "
                f"{len(points)} point(s)"
            )
        for p, lab in zip(points, labels, strict=True):
            if not isinstance(p, list) or len(p) != 2:
                raise PromptFileError(
                    f"{where}: 'points' must be a list of [x, y] points; a point is {p!r}"
                )
            pt = tuple(_num(v, "point coordinate", where) for v in p)
            if isinstance(lab, bool) or not isinstance(lab, (int, float, str)):
                raise PromptFileError(f"{where}: label {lab!r} must be 1 (foreground) or 0")
            _add(objects, key, sl, where, pt, _num(lab, "label", where), entry=entry)
        box = item.get("box")
        if box is not None:
            if not isinstance(box, list) or len(box) != 4:
                raise PromptFileError(f"{where}: 'box' must be [x0, y0, x1, y1], got {box!r}")
            _add(objects, key, sl, where, box=[_num(v, "box", where) for v in box],
                 entry=entry)  # fmt: skip
        if not points and box is None and not (record.get("refine") or "propagate" in record
                                               or "everything" in record):  # fmt: skip
            raise PromptFileError(f"{where}: no point (in 'points') and no 'box'")
    if steps and steps != len(data):
        raise PromptFileError(f"{path.name}: either every object has its 'step' (the napari "
                              "widget's record) or none")  # fmt: skip
    if defaulted:
        warnings.warn(f"{path.name}: {defaulted} object(s) without 'slice' are taken to be on "
                      f"slice 0 of the {view.slice_axes} stack", stacklevel=3)  # fmt: skip
    return list(objects.values())


def read_prompts(path, view) -> list[ObjectPrompt]:
    """Read and check the prompts of ``path`` (``.csv`` or ``.json``) for the stack ``view``.

    Raises
    ------
    PromptFileError
        If the file is unreadable, a row or object is malformed (the message names the line),
        or a prompt lies outside the image or the stack.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"{str(path)!r}: no such file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise PromptFileError(f"{path.name}: expected a .csv or .json file")
    try:
        objects = (_read_csv if suffix == ".csv" else _read_json)(path, view)
    except (UnicodeDecodeError, csv.Error) as err:
        raise PromptFileError(f"{path.name}: cannot read ({err})") from None
    if not objects:
        raise PromptFileError(f"{path.name}: no prompts")
    for obj in objects:
        _check_inside(obj, view)
    return objects
