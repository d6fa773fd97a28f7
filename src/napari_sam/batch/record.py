"""The provenance of the CLI's label images ([provenance]): the sidecar each ``segment`` and
``auto`` output gets, and the check before a sidecar is replayed.

See :mod:`napari_sam.io.provenance` for the format.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import InputError

__all__ = ["check_replay", "made_by", "write_record"]


def made_by(sp, settings, inp: Path, command: str, partial=None) -> dict:
    """What the labels of ``inp`` were made with (the ``made_by`` of a sidecar)."""
    from .. import __version__
    from ..predict.outline import describe_outline
    from ..stacks.tiling import describe_tiling

    s = settings
    record = {
        "command": command,
        "version": __version__,
        "input": inp.name,
        "model": s.model,
        "weights": None if s.weights is None else Path(s.weights).name,
        "weights_hash": sp.encoder.weights_hash,
        "encoder_dtype": sp.encoder.model.encoder_dtype,
        "override": list(s.override),
        "channels": s.channels,
        "normalization": sp.normalization.describe(),
        "tiling": describe_tiling(sp.tiling),
        "outline": describe_outline(sp.outline),
    }
    if partial is not None:  # auto: the method and its settings, as the work folder keys them
        record["segmenter"] = partial.fields.get("generator")
    return record


def write_record(out: Path, sp, settings, inp: Path, prompts, ids: dict, partial) -> None:
    """Write the sidecar of ``out`` (never over a file that is not a sidecar)."""
    from ..io.provenance import is_sidecar, sidecar_path, write_sidecar

    path = sidecar_path(out)
    if path.exists() and not is_sidecar(path):
        print(f"napari-sam: left {path} alone (not a napari-sam sidecar); the labels' record "
              "is not written", file=sys.stderr)  # fmt: skip
        return
    objects = [] if prompts is None else [
        {"object": o.key, "slice": list(o.slice), "points": [list(p) for p in o.points],
         "labels": list(o.labels), "box": o.box, "id": ids.get(o.object_key)}
        for o in prompts
    ]  # fmt: skip
    for o, p in zip(objects, prompts or (), strict=False):
        if o["box"] is None:
            del o["box"]
        if p.step is not None:  # the widget's record, replayed: kept as it was
            o.update(step=p.step, id=p.label_id, overwrite=p.overwrite)
            o.update({k: v for k, v in (("multimask", p.multimask), ("choice", p.choice),
                                        ("refine", p.refine or None),
                                        ("propagate", p.propagate),
                                        ("everything", p.everything)) if v is not None})
    command = "segment" if partial is None else "auto"
    write_sidecar(path, made_by(sp, settings, inp, command, partial), objects)


def check_replay(record: dict, sp, settings, prompt_file) -> None:
    """A sidecar made with other weights: refused, or (``--allow-other-model``) a warning
    naming both hashes."""
    missing = record.get("unrecorded") or []
    if missing:
        print(f"napari-sam: warning: {Path(prompt_file).name}: {len(missing)} object(s) of the "
              "labels (slice and id, e.g. " + ", ".join(str(m) for m in missing[:3]) + ") were "
              "not made from prompts (Propagate, Segment everything or painting); the replay "
              "will not have them", file=sys.stderr)  # fmt: skip
    from ..predict.outline import describe_outline

    drawn, now = record.get("outline"), describe_outline(sp.outline)
    if drawn != now:  # records before 2026-12-07 have none: SAM's masks
        print(f"napari-sam: warning: {Path(prompt_file).name}: its masks were drawn "
              f"{'as SAM decoded them' if drawn is None else f'with outline {drawn}'}, this run "
              f"draws them {'as SAM decodes them' if now is None else f'with outline {now}'}; "
              "replayed masks may differ at their edges", file=sys.stderr)  # fmt: skip
    theirs, ours = record.get("weights_hash"), sp.encoder.weights_hash
    if theirs is None or theirs == ours:
        return
    what = (f"{Path(prompt_file).name} was made with model {record.get('model')!r} (weights "
            f"{theirs[:16]}), this run uses {settings.model!r} (weights {ours[:16]})")  # fmt: skip
    if not settings.allow_other_model:
        raise InputError("--prompts", f"{what}; pass --allow-other-model to replay it anyway")
    print(f"napari-sam: warning: {what}; replayed as asked", file=sys.stderr)
