"""``napari-sam segment`` and ``napari-sam auto``: label images of one stack or many.

One file's way (:func:`label_file`) is one straight sequence: open the input, read its
prompts, load the model (once per process), normalise and embed (or load the embeddings from
the store), segment (and link slices in 3-D), write the label image atomically.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .auto import segment_automatically, write_errors
from .checks import check_method, check_scheduler, os_reason, setup_error_arg
from .errors import InputError
from .files import (
    LABEL_SUFFIX,
    find_inputs,
    plan_outputs,
    prompt_file_for,
    same_file,
    store_for,
)
from .pipeline import ModelCache, Resolved, open_stack, resolve
from .record import check_replay, write_record
from .replay import replay_record
from .settings import LabelSettings
from .tiles import check_tile_options, make_predictor, tiling_for
from .timing import timed

MAX_POINTS_PER_SIDE = 256  # a grid of 65,536 prompts per image or tile

__all__ = ["check_label_settings", "label_file", "run_files", "segment_prompts"]


def check_label_settings(settings: LabelSettings, auto: bool) -> Resolved:
    """Every option value, before any file is opened or TensorFlow imported; the shared
    options as they are parsed (see :func:`napari_sam.batch.pipeline.resolve`)."""
    s = settings
    resolved = resolve(s, s.decoder)
    check_tile_options(s)
    check_scheduler(s.scheduler)
    if not auto:
        if s.prompts is None:
            raise InputError("--prompts", "required: a CSV or JSON file of prompts")
        return resolved
    if check_method(s.method, s.model, resolved.weights, resolved.decoder) == "ais":
        grid = {"points_per_side": s.points_per_side != LabelSettings.points_per_side,
                "pred_iou_thresh": s.pred_iou_thresh is not None,
                "stability_score_thresh": s.stability_score_thresh is not None}  # fmt: skip
        for name in (name for name, given in grid.items() if given):
            raise InputError(f"--{name.replace('_', '-')}", "sets the grid prompts of --method "
                             "amg, and this run uses ais (the model's instance decoder): leave "
                             "it out, or pass --method amg")  # fmt: skip
    for name in ("points_per_side", "min_slices"):
        if getattr(s, name) < 1:
            raise InputError(f"--{name.replace('_', '-')}",
                             f"expected a positive integer, got {getattr(s, name)}")  # fmt: skip
    if s.points_per_side > MAX_POINTS_PER_SIDE:
        raise InputError("--points-per-side", f"{s.points_per_side} would prompt "
                         f"{s.points_per_side**2:,} points per image or tile; expected at most "
                         f"{MAX_POINTS_PER_SIDE} (Meta's default is 32)")  # fmt: skip
    if s.max_gap < 0:
        raise InputError("--max-gap", f"expected an integer >= 0, got {s.max_gap}")
    for name in ("pred_iou_thresh", "stability_score_thresh", "min_overlap"):
        value = getattr(s, name)
        if value is not None and not 0 <= value <= 1:
            raise InputError(f"--{name.replace('_', '-')}",
                             f"expected a number in [0, 1], got {value:g}")  # fmt: skip
    return resolved


def run_files(settings: LabelSettings, auto: bool, client=None) -> list[Path]:
    """Check the settings, then label every input not done yet; the outputs written.

    Parameters
    ----------
    settings : LabelSettings
        What to label, how, and where the label images go.
    auto : bool
        Automatic segmentation (``auto``) rather than prompts (``segment``).
    client : dask.distributed.Client, optional
        Spread the files over this cluster (see :mod:`napari_sam.batch.cluster`); default: the
        cluster at ``settings.scheduler`` if given, else this process.

    Returns
    -------
    list of Path
        The label images written (existing ones skipped unless ``settings.overwrite``).

    Raises
    ------
    InputError
        Bad input, named by its argument.
    """
    from tqdm import tqdm

    s = settings
    resolved = check_label_settings(s, auto)
    inputs, many = find_inputs(s.input)
    if not auto and many and not Path(s.prompts).is_dir():
        raise InputError(
            "--prompts", "with several inputs, give a folder of <name>.csv/.json files"
        )
    if not auto and not many and same_file(Path(s.out), Path(s.prompts)):
        raise InputError("--out", f"{s.out!r} is the prompts file; give the labels another name")
    n_found = len(inputs)
    inputs, outputs = plan_outputs(inputs, many, s.out)
    if s.store is not None:
        from ..stacks.store import StoreMismatchError, check_store_path

        try:
            for inp in inputs:
                check_store_path(store_for(s, inp, many))
        except StoreMismatchError as err:
            raise InputError("--store", err) from None
    if len(inputs) < n_found:
        print(f"napari-sam: left out {n_found - len(inputs)} input(s) that are label images of "
              f"other inputs ('*{LABEL_SUFFIX}')", file=sys.stderr)  # fmt: skip
    todo = [(i, o) for i, o in zip(inputs, outputs, strict=True)
            if s.overwrite or not done_before(i, o)]  # fmt: skip
    if auto:  # a run killed after writing an output but before removing its work folder
        from ..segment.partial import PartialMismatchError, remove_work_folder, work_folder

        for o in set(outputs) - {o for _, o in todo}:
            try:
                remove_work_folder(work_folder(o))
            except PartialMismatchError:
                pass  # not ours: left alone
    skipped = len(inputs) - len(todo)
    if client is not None or s.scheduler:
        from .cluster import map_files

        map_files(label_file, s, auto, todo, many, client=client)
    else:
        cache = ModelCache()
        for inp, out in tqdm(
            todo, desc="files", unit="file", file=sys.stderr,
            disable=len(todo) < 2 or not sys.stderr.isatty(),  # a log: the per-file lines
        ):  # fmt: skip
            label_file(s, auto, inp, out, many, cache, resolved)
    print(f"wrote {len(todo)} label image(s), skipped {skipped} already done")
    return [o for _, o in todo]


def done_before(inp: Path, out: Path) -> bool:
    """Whether ``out`` holds this program's labels of ``inp`` (a finished earlier run); False
    when it does not exist.

    Raises
    ------
    InputError
        ``out`` exists but is something else (another file, or the labels of another input):
        never counted as done, never replaced without ``--overwrite``.
    """
    from ..io.labels import label_source

    if not out.exists():
        return False
    if label_source(out) == inp.name:
        return True
    raise InputError("--out", f"{str(out)!r} exists and is not napari-sam's labels of "
                     f"{inp.name!r}; pass --overwrite to replace it, or give another --out")


def label_file(settings: LabelSettings, auto: bool, inp: Path, out: Path, many: bool,
               cache: ModelCache, resolved: Resolved | None = None) -> int:  # fmt: skip
    """Label one input file and write ``out`` atomically; the number of objects.

    ``cache`` holds the model (loaded on first use) and the encoder, reused for the next
    files; ``resolved``: the settings as :func:`check_label_settings` parsed them (parsed
    here when not given, as on a dask worker).
    """
    from ..io.labels import write_label_tiff
    from ..io.prompt_files import PromptFileError, read_prompts
    from ..io.provenance import ProvenanceError, read_made_by

    s = settings
    resolved = resolved or resolve(s, s.decoder)
    with open_stack(resolved, inp) as opened:  # 1. open (readable: first and last slice read)
        view = opened.view
        prompts = made_by = None
        if not auto:  # 2. prompts, checked against the stack
            prompt_file = prompt_file_for(s, inp, many)
            try:
                prompts = read_prompts(prompt_file, view)
                made_by = read_made_by(prompt_file)  # a sidecar: replayed
            except (PromptFileError, ProvenanceError) as err:
                raise InputError("--prompts", err) from None
        tiling = tiling_for(s, view, opened.config)
        cache.model_for(resolved, opened)  # 3. the model, once per process
        # 4. normalisation fitted on the whole stack; embeddings from the store or computed
        outline = None if s.sam_masks else "model"  # the model's outline settings
        sp = _stack_predictor(cache, opened, tiling, resolved.normalization,
                              store_for(s, inp, many), outline)  # fmt: skip
        if made_by is not None:
            check_replay(made_by, sp, s, prompt_file)
        partial, note, ids = None, "", {}
        with timed("segmentation"):  # embedding included
            if auto:  # 5. segment every slice (resumable) and link in 3-D
                labels, partial = segment_automatically(sp, s, inp, out)
                note = f"; {partial.computed} slice(s) computed, {partial.reused} resumed"
                if partial.tiles_reused or partial.tiles_computed:
                    note += (f"; tiles: {partial.tiles_computed} computed, "
                             f"{partial.tiles_reused} resumed")  # fmt: skip
            else:
                labels = write_errors(lambda: segment_prompts(sp, prompts, ids), s)
        try:  # 6. write atomically, then drop the work folder
            write_label_tiff(out, labels, view.slice_axes + "YX", like=view.tiff,
                             source=inp.name)  # fmt: skip
            write_record(out, sp, s, inp, prompts, ids, partial)
            if partial is not None:
                partial.discard()  # after the output: a kill in between leaves it complete
        except OSError as err:
            raise InputError("--out", f"cannot write {str(out)!r} ({os_reason(err)})") from None
        finally:
            if partial is not None:
                partial.close()  # the work folder's lock
    print(f"napari-sam: {inp} -> {out} ({int(labels.max())} object(s){note})", file=sys.stderr)
    return int(labels.max())


def _stack_predictor(cache: ModelCache, opened, tiling, normalization, store, outline):
    from ..stacks.store import StoreMismatchError

    try:
        sp = make_predictor(cache.model, opened.view, tiling, opened.channels, normalization,
                            store, encoder=cache.encoder, outline=outline)  # fmt: skip
    except StoreMismatchError as err:
        raise InputError(
            "--store", str(err).replace("pass overwrite=True", "run 'napari-sam embed --overwrite'")
        ) from None
    except OSError as err:
        raise InputError("--store", f"cannot open the store ({os_reason(err)})") from None
    except ValueError as err:
        raise InputError(setup_error_arg(err), err) from None
    cache.encoder = sp.encoder
    return sp


def segment_prompts(sp, prompts, ids: dict | None = None):
    """Labels of the prompted objects: one id per object (the same on every slice);
    ``ids`` receives ``{object key: id}``. The napari widget's record (objects with a
    ``step``) is replayed commit by commit (:func:`replay_record`)."""
    import numpy as np
    from tqdm import tqdm

    labels = np.zeros((*sp.view.stack_shape, *sp.view.slice_shape), np.uint32)
    ids = {} if ids is None else ids
    if any(obj.step is not None for obj in prompts):
        return replay_record(sp, prompts, labels, ids)
    for obj in tqdm(prompts, desc="objects", unit="object", file=sys.stderr):
        pts, lbl, box = obj.arrays()
        single_point = box is None and len(pts) == 1
        target = labels[obj.slice]
        masks, scores, _, (y0, y1, x0, x1) = sp.predict_window(
            obj.slice, pts, lbl, box, multimask_output=single_point
        )  # within the window the mask came from (the whole slice when not tiled)
        target = target[y0:y1, x0:x1]
        mask = masks[sp.best_candidate(masks, scores)] if single_point else masks[0]
        key = obj.object_key
        target[mask] = ids.setdefault(key, len(ids) + 1)
    return labels
