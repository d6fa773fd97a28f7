"""``napari-sam auto``'s per-stack work: the generator, its keyed work folder, 3-D linking."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .checks import os_reason
from .errors import InputError

__all__ = [
    "GENERATOR_SETTINGS",
    "input_identity",
    "Interrupted",
    "make_segmenter",
    "resolve_method",
    "segment_automatically",
    "write_errors",
]


def write_errors(run, settings):
    """``run()``, with a failed write (disk full, ...) to the store or the work folder as a
    one-line error; what was finished so far is kept for a rerun."""
    try:
        return run()
    except OSError as err:
        where, arg = (Path(err.filename), None) if err.filename else (None, None)
        store = settings.store
        if store and where is not None and where.resolve().is_relative_to(Path(store).resolve()):
            arg = "--store"
        arg = arg or "--out"
        what = f" {str(where)!r}" if where is not None else ""
        kept = "; the slices done so far are kept: run the same command again to resume"
        raise InputError(arg, f"cannot write{what} ({os_reason(err)}){kept}") from None


GENERATOR_SETTINGS = (
    "points_per_batch", "pred_iou_thresh", "stability_score_thresh", "stability_score_offset",
    "box_nms_thresh", "crop_n_layers", "crop_nms_thresh", "crop_overlap_ratio",
    "min_mask_region_area",
)  # fmt: skip


def resolve_method(settings, has_decoder: bool) -> str:
    """``--method``, or its default: ``ais`` when the model has an instance decoder."""
    from ..segment.factory import SegmenterError, method_for

    try:
        return method_for(settings.method, has_decoder)
    except SegmenterError:
        raise InputError(
            "--method",
            f"ais needs an instance decoder, and model {settings.model!r} has none: pass "
            "--decoder FILE (micro-sam's vit_b_decoder.pt, ...) or use --method amg",
        ) from None


def make_segmenter(sp, settings):
    """The automatic segmenter of ``--method`` (:func:`napari_sam.segment.factory.
    make_segmenter`): an InstanceSegmenter or Meta's generator."""
    from ..segment import factory

    method = resolve_method(settings, sp.model.instance_decoder is not None)
    return factory.make_segmenter(
        sp.model, sp.predictor, method, name=settings.model,
        points_per_side=settings.points_per_side, pred_iou_thresh=settings.pred_iou_thresh,
        stability_score_thresh=settings.stability_score_thresh,
    )  # fmt: skip


def input_identity(inp: Path) -> dict:
    """Path, size and modification time of an input (a zarr directory: of all its files)."""
    st = inp.stat()
    size, mtime = st.st_size, st.st_mtime_ns
    if inp.is_dir():
        for root, _, names in os.walk(inp):
            for name in names:
                s = os.stat(os.path.join(root, name))
                size, mtime = size + s.st_size, max(mtime, s.st_mtime_ns)
    return {"path": str(inp.resolve()), "size": size, "mtime_ns": mtime}


def segment_automatically(sp, settings, inp: Path, out: Path):
    """Segment every slice, resuming from ``<out>.partial``; (labels, PartialResults).

    The work folder is keyed by everything the per-slice labels depend on; its lock is held
    until the caller closes (or discards) the returned PartialResults.
    """
    from tqdm import tqdm

    from ..segment.driver import segment_stack
    from ..segment.partial import PartialMismatchError, PartialResults, work_folder

    gen = make_segmenter(sp, settings)
    view = sp.view
    fields = {
        "input": input_identity(inp),
        "axes": settings.axes or "",
        "view": [view.axes, list(view.stack_shape), list(view.slice_shape)],
        "model": [settings.model,
                  str(Path(settings.weights).resolve()) if settings.weights else None,
                  sorted(settings.override or ())],
        "channels": settings.channels or "",
        "normalization": settings.normalization,
        # the embedding store's key: encoder signature (config, a hash of every weight,
        # input size, package version), channel mapping and fitted normalisation
        "embeddings": sp.store.key,
        "generator": gen.describe() if hasattr(gen, "describe") else {
            "points_per_side": settings.points_per_side,
            **{k: repr(getattr(gen, k)) for k in GENERATOR_SETTINGS}},
    }  # fmt: skip
    folder = work_folder(out)
    try:
        partial = PartialResults(folder, fields, len(view), view.slice_shape, settings.overwrite)
    except PartialMismatchError as err:
        raise InputError("--out", err) from None
    except OSError as err:
        raise InputError("--out", f"cannot create {str(folder)!r} ({os_reason(err)})") from None
    if partial.discarded:
        print(f"{'napari-sam'}: discarded the partial results in {folder}: {partial.discarded}",
              file=sys.stderr)  # fmt: skip
    done = len(partial.done())
    if done:
        print(f"{'napari-sam'}: resuming {inp}: {done} of {len(view)} slice(s) already segmented "
              f"({folder})", file=sys.stderr)  # fmt: skip
    try:
        nested = sys.stderr.isatty()  # a log file gets no cursor movements ("\x1b[A")
        tiles = None if sp.windows == 1 or not nested else tqdm(
            total=sp.windows, desc="tiles", unit="tile", file=sys.stderr, leave=False
        )  # fmt: skip

        def tile_progress(done, total):
            tiles.update(done - tiles.n) if done else tiles.reset(total)

        with tqdm(total=len(view), desc="slices", unit="slice", file=sys.stderr) as bar:
            labels = write_errors(lambda: segment_stack(
                sp, gen, link_3d=not settings.no_link_3d, min_overlap=settings.min_overlap,
                max_gap=settings.max_gap, min_slices=settings.min_slices,
                progress=lambda done, total: bar.update(done - bar.n), cache=partial,
                tile_progress=None if tiles is None else tile_progress,
            ), settings)  # fmt: skip
        if tiles is not None:
            tiles.close()
    except KeyboardInterrupt:
        kept = f"{len(partial.done())} finished slice(s)"
        if tiles := partial.tile_count():
            kept += f" and {tiles} tile(s) of the slice in progress"
        partial.close()
        raise Interrupted(f"interrupted; run the same command again to resume (kept {kept} of "
                          f"{inp.name} in {folder})") from None  # fmt: skip
    except BaseException:
        partial.close()
        raise
    return labels, partial


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run, with the one line that says what was kept and how to resume."""
