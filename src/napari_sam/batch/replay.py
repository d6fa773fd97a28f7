"""Replaying the napari widget's record (a labels sidecar): ``napari-sam segment --prompts
LABELS.prompts.json`` gives the labels the widget gave, step by step, with the functions the
widget used (:func:`napari_sam.segment.painting.write_objects` for clicks, boxes and refines,
:func:`napari_sam.segment.propagation.propagate`, and for Segment everything
:func:`napari_sam.segment.driver.segment_slice` and
:func:`napari_sam.segment.instances.write_instances`).
"""

from __future__ import annotations

import json
import sys

from .errors import InputError

__all__ = ["replay_everything", "replay_record"]


def replay_record(sp, prompts, labels, ids: dict):
    """Replay the napari widget's record into ``labels``: the objects of each ``step`` are
    predicted as the widget did (the same candidate; a refine from its label's mask as the
    labels are then) and written together as the widget wrote them
    (:func:`napari_sam.segment.painting.write_objects`)."""
    import numpy as np
    from tqdm import tqdm

    from ..segment.painting import write_objects
    from ..segment.propagation import propagate, refine_prompts

    steps: dict = {}
    for obj in prompts:
        steps.setdefault(obj.step, []).append(obj)
    with tqdm(total=len(prompts), desc="objects", unit="object", file=sys.stderr) as bar:
        for step in sorted(steps):
            group, masks = steps[step], []
            if group[0].everything is not None:  # the slices one Segment everything wrote
                replay_everything(sp, group, labels, ids)
                bar.update(len(group))
                continue
            if group[0].propagate is not None:  # the slices one propagation wrote
                how, obj = group[0].propagate, group[0]
                start = tuple(how["from"])
                if len(start) != len(sp.view.stack_shape):
                    raise InputError("--prompts", f"{obj.where}: propagated from slice {start}, "
                                     f"not a slice of the {sp.view.slice_axes} stack")
                mask = np.asarray(labels[start]) == obj.label_id
                if not mask.any():
                    raise InputError("--prompts", f"{obj.where}: propagates label "
                                     f"{obj.label_id}, which is not on slice {start} then")
                wanted = {o.slice for o in group}
                limits = None if how["limits"] is None else tuple(how["limits"])
                for here, m, window in propagate(sp, start, mask, how["axis"], how["stop_iou"],
                                                 limits):  # fmt: skip
                    if tuple(here) in wanted:
                        write_objects(labels, here, [m], [obj.label_id], obj.overwrite,
                                      window=window)  # fmt: skip
                        bar.update()
                ids[obj.object_key] = obj.label_id
                continue
            for obj in group:
                pts, lbl, box = obj.arrays()
                logits = None
                if obj.refine:
                    mask = np.asarray(labels[obj.slice]) == obj.label_id
                    if not mask.any():
                        raise InputError("--prompts", f"{obj.where}: refines label "
                                         f"{obj.label_id}, which is not on its slice then")
                    pts, lbl, box, logits = refine_prompts(sp, obj.slice, mask, pts, lbl)
                single = box is None and logits is None and pts is not None and len(pts) == 1
                multimask = single and obj.multimask is not False
                out, scores, _, (y0, y1, x0, x1) = sp.predict_window(
                    obj.slice, pts, lbl, box, multimask_output=multimask, masks=logits)
                k = (sp.best_candidate(out, scores) if obj.choice is None or not multimask
                     else obj.choice)  # fmt: skip
                if k >= len(out):
                    raise InputError("--prompts", f"{obj.where}: candidate {k} of {len(out)}")
                full = np.zeros(sp.view.slice_shape, bool)
                full[y0:y1, x0:x1] = out[k]
                masks.append(full)
                ids[obj.object_key] = obj.label_id
                bar.update()
            first = group[0]
            write_objects(labels, first.slice, masks, [o.label_id for o in group],
                          first.overwrite, first.label_id if first.refine else None)
    return labels


def replay_everything(sp, group, labels, ids: dict) -> None:
    """Replay one Segment everything of the record (``group``: the objects of its step):
    each of its slices segmented again by the model's segmenter, in the widget's order, and
    written with the widget's rules (linked along the recorded axis, slivers left out).

    Objects the record no longer has (erased after the step) are taken out again; a slice
    that no longer gives the recorded ids is said in one line, and so is a record without the
    write's rules (from before they were recorded), which is left out.

    Raises
    ------
    InputError
        The record's segmenter settings are not those of this model's segmenter.
    """
    import numpy as np

    from ..segment.driver import segment_slice
    from ..segment.factory import SegmenterError, make_segmenter
    from ..segment.instances import write_instances

    first = group[0]
    how = dict(first.everything)
    axis, min_area = how.pop("axis", None), how.pop("min_area", None)
    if axis is None or min_area is None:  # recorded before the write's rules were
        print(f"napari-sam: warning: {len(group)} object(s) of the record were made by Segment "
              f"everything without its 'axis' and 'min_area' ({first.where}, ...); the replay "
              "does not have them", file=sys.stderr)  # fmt: skip
        return
    try:
        segmenter = make_segmenter(sp.model, sp.predictor, method=how.get("method"))
    except SegmenterError as err:
        raise InputError("--prompts", f"{first.where}: {err}") from None
    now = json.loads(json.dumps(segmenter.describe()))
    if now != how:
        raise InputError("--prompts", f"{first.where}: made by Segment everything with {how}; "
                         f"this model segments with {now}")
    wanted: dict = {}
    for obj in group:
        wanted.setdefault(tuple(obj.slice), set()).add(obj.label_id)
        ids[obj.object_key] = obj.label_id
    erased = []  # taken out once the step is written: the widget linked to them then
    for index in sorted(wanted):
        before = np.array(labels[index])
        instances = segment_slice(sp, index, segmenter)
        got = set(write_instances(labels, index, instances, first.overwrite, axis=axis,
                                  min_area=min_area))  # fmt: skip
        if wanted[index] - got:
            print(f"napari-sam: warning: {first.where}: Segment everything on slice "
                  f"{list(index)} gave labels {sorted(got)}, the record has "
                  f"{sorted(wanted[index])}", file=sys.stderr)  # fmt: skip
        extra = sorted(got - wanted[index])
        if extra:
            plane = np.asarray(labels[index])
            gone = np.isin(plane, extra) & (plane != before)
            erased.append((index, gone, before[gone]))
    for index, gone, values in erased:
        labels[index][gone] = values
