"""``napari-sam auto`` and ``napari-sam segment``: label images of one stack or many.

TensorFlow is imported only after the quick checks of the arguments (see
:mod:`napari_sam.cli.entry`).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

from .entry import (
    PROG,
    CLIError,
    _create_model,
    _import_tensorflow,
    _open_input,
    _reason,
    check_model,
    check_weights,
    check_writable,
    parse_channels,
    parse_normalization,
    parse_overrides,
    setup_error_arg,
)

__all__ = ["add_batch_commands", "input_stem", "label_name", "process_file", "run_files"]

_SUFFIXES = (".tif", ".tiff", ".npy")
_MULTI_SUFFIXES = (".ome.tif", ".ome.tiff", ".ome.zarr")
LABEL_SUFFIX = "_labels.tif"


def input_stem(path: Path) -> str:
    """The name of an input without its file type: ``cell.1.tif`` -> ``cell.1``,
    ``plate.ome.tif`` -> ``plate``, ``stack.zarr`` -> ``stack``.

    Every per-input name (label image, embedding store, prompt file) is built from it.
    """
    name = path.name
    for suffix in _MULTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.suffix else name


def label_name(path: Path) -> str:
    """The label image written for an input in a folder run: ``<stem>_labels.tif``."""
    return input_stem(path) + LABEL_SUFFIX


_COMMON = [
    (("input",), dict(metavar="INPUT", help="a TIFF or .npy file, a zarr array directory, a "
                      "folder of TIFF/.npy files, or a quoted glob such as 'data/*.tif'")),
    (("--out",), dict(required=True, metavar="LABELS", help="label TIFF to write; a folder "
                      "when INPUT is a folder or a glob (one <name>_labels.tif per input)")),
    (("--model",), dict(default="sam_vit_b", help="registered model (default sam_vit_b)")),
    (("--weights",), dict(metavar="FILE", help="checkpoint (Meta's .pth or a converted .npz); "
                          "default: the model's official weights, downloaded once")),
    (("--override",), dict(action="append", metavar="KEY=JSON", help="advanced: replace a model "
                           "configuration field (repeatable), e.g. input_size=[512,512]")),
    (("--axes",), dict(help="one letter per dimension (Y, X, C/S channels, slice axes T, Z, ...); "
                       "default: from the TIFF file; needed for .npy arrays that are not 2-D")),
    (("--channels",), dict(metavar="MODE[:i,j,k]", help="rgb[:i,j,k], single:i or adapt, as for "
                           "'embed'; default grey or RGB for 1-3 channels")),
    (("--normalization",), dict(default="auto", metavar="MODE", help="auto, percentile:LOW,HIGH, "
                                "minmax, dtype, fixed:VMIN,VMAX or none, as for 'embed'")),
    (("--store",), dict(metavar="STORE", help="embedding store written by 'napari-sam embed' "
                        "(reused; missing slices are added). With several inputs: a folder "
                        "holding <name>.emb.zarr per input")),
    (("--overwrite",), dict(action="store_true", help="recompute outputs that already exist "
                            "(default: skip them, so an interrupted batch resumes)")),
    (("--scheduler",), dict(metavar="ADDRESS", help="spread the files over a dask cluster, "
                            "e.g. tcp://10.0.0.5:8786 (needs dask[distributed]); each worker "
                            "loads the model once. Default: this process")),
]  # fmt: skip

_AUTO_EPILOG = """\
example:
  napari-sam auto cells.tif --out cells_labels.tif --points-per-side 16
  napari-sam auto 'plates/*.tif' --out labels/ --weights sam_vit_b_01ec64.pth --no-link-3d

Every slice is segmented automatically (a grid of point prompts, filtered by predicted IoU
and stability, duplicates removed); for stacks with a Z (else the last slice) axis, objects
of neighbouring slices are linked by mask IoU into 3-D labels. Outputs that already exist
are skipped; each is written to a temporary file first, so an existing one is complete.

Resuming: the label image of each slice (before 3-D linking) is saved as soon as it is done
in a work folder next to the output, LABELS.partial/. A run that is killed or interrupted
and started again with the same command segments only the slices still missing, then links,
writes the output and deletes the work folder. The folder is keyed by the input file (path,
size, modification time), model and weights, channels, normalisation and the segmentation
settings: results made otherwise are discarded (a line on stderr says so), never reused.
--overwrite discards them too. (--no-link-3d, --min-overlap, --max-gap and --min-slices act
after the per-slice step and do not invalidate them.)
"""

_SEGMENT_EPILOG = """\
example:
  napari-sam segment stack.tif --prompts points.csv --out stack_labels.tif
  napari-sam segment 'movies/*.tif' --prompts prompts/ --out labels/

Prompt files (coordinates in pixels, x = column, y = row):
  CSV:  x,y[,label][,object][,slice or z,t,...] rows for points; x0,y0,x1,y1 columns for boxes
  CSV as napari saves a Points layer: index,axis-0,axis-1,... (the last two are y, x); all
        points of a slice are one object unless an 'object' or 'id' column says otherwise
  JSON: [{"slice": 3, "points": [[x, y], ...], "labels": [1, 0], "box": [x0, y0, x1, y1],
         "object": "cell1"}]  ("object" optional: the same name on several slices, one id)
Each object gets one label id (the same id on every slice where it has prompts); later objects
are drawn over earlier ones. An object prompted by one point alone gets the best of SAM's
three masks, otherwise a single mask is predicted.
"""


def _inputs(text: str) -> tuple[list[Path], bool]:
    """Input files and whether there are several (folder or glob)."""
    path = Path(text)
    if any(c in text for c in "*?[") and not path.exists():
        found = sorted(Path(p) for p in glob.glob(text))
        if not found:
            raise CLIError("INPUT", f"no file matches {text!r}")
        return found, True
    if not path.exists():
        raise CLIError("INPUT", f"{text!r} does not exist")
    if path.is_dir() and not ((path / ".zarray").exists() or (path / "zarr.json").exists()):
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES)
        if not found:
            raise CLIError("INPUT", f"folder {text!r} has no .tif, .tiff or .npy file")
        return found, True
    return [path], False


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _outputs(inputs: list[Path], many: bool, out: Path) -> tuple[list[Path], list[Path]]:
    """(inputs, label images to write), checked: outputs never collide or replace an input.

    In a folder run, inputs that are the label images of other inputs (a run whose output
    folder is its input folder, run again) are outputs, not inputs: they are left out.
    """
    if many or out.is_dir():
        if out.exists() and not out.is_dir():
            raise CLIError(
                "--out", f"cannot create folder {str(out)!r} (a file of that name exists)"
            )
        check_writable(out, "--out")
        from ..io.labels import is_label_output

        targets = {p: out / label_name(p) for p in inputs}
        made = {t.resolve(): p for p, t in targets.items()}
        for p in inputs:
            if p.resolve() in made and not is_label_output(p):
                raise CLIError(
                    "--out", f"the label image of input {made[p.resolve()].name!r} would "
                    f"replace input {p.name!r}; give another --out folder"
                )  # fmt: skip
        inputs = [p for p in inputs if p.resolve() not in made]  # our outputs of a past run
        if not inputs:
            raise CLIError("INPUT", "every input is a label image written by napari-sam")
        seen: dict[Path, Path] = {}
        for p in inputs:
            key = Path(str(targets[p].resolve()).casefold())
            if key in seen:
                raise CLIError(
                    "--out", f"inputs {seen[key].name!r} and {p.name!r} would both be written "
                    f"to {targets[p].name!r}; rename one or run them into separate folders"
                )  # fmt: skip
            seen[key] = p
        outputs = [targets[p] for p in inputs]
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CLIError("--out", f"cannot create folder {str(out)!r} ({_reason(err)})") from None
    else:
        if _same(out, inputs[0]):
            raise CLIError("--out", f"{str(out)!r} is the input; give the labels another name")
        if not out.parent.is_dir():
            raise CLIError(
                "--out", f"cannot write to {str(out.parent)!r} (no such folder)"
            )  # fmt: skip
        check_writable(out.parent, "--out")
        outputs = [out]
    return inputs, outputs


def _store_for(args, inp: Path, many: bool):
    if args.store is None:
        return None
    store = Path(args.store)
    return store / f"{input_stem(inp)}.emb.zarr" if many else store


def _prompt_file(args, inp: Path, many: bool) -> Path:
    prompts = Path(args.prompts)
    if not many:
        return prompts
    stem = input_stem(inp)
    for suffix in (".csv", ".json"):
        if (prompts / f"{stem}{suffix}").is_file():
            return prompts / f"{stem}{suffix}"
    raise CLIError("--prompts", f"no {stem}.csv or {stem}.json in folder {str(prompts)!r}")


def _check_options(args, auto: bool) -> None:
    """Every option value, before any file is opened or TensorFlow imported."""
    parse_channels(args.channels)
    parse_normalization(args.normalization)
    check_model(args.model, 3, parse_overrides(args.override))
    check_weights(args.weights)
    if not auto:
        return
    positive = ("points_per_side", "min_slices")
    for name in positive:
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')}",
                           f"expected a positive integer, got {getattr(args, name)}")  # fmt: skip
    if args.max_gap < 0:
        raise CLIError("--max-gap", f"expected an integer >= 0, got {args.max_gap}")
    for name in ("pred_iou_thresh", "stability_score_thresh", "min_overlap"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 1:
            raise CLIError(f"--{name.replace('_', '-')}",
                           f"expected a number in [0, 1], got {value:g}")  # fmt: skip


def _run_batch(args, auto: bool) -> int:
    run_files(args, auto)
    return 0


def run_files(args, auto: bool, client=None) -> list[Path]:
    """Check the arguments, then label every input not done yet; the outputs written.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``napari-sam auto`` or ``segment`` arguments.
    auto : bool
        Automatic segmentation (``auto``) rather than prompts (``segment``).
    client : dask.distributed.Client, optional
        Spread the files over this cluster (see :mod:`napari_sam.batch.cluster`); default: the
        cluster at ``args.scheduler`` if given, else this process.

    Returns
    -------
    list of Path
        The label images written (existing ones skipped unless ``args.overwrite``).
    """
    from tqdm import tqdm

    _check_options(args, auto)
    inputs, many = _inputs(args.input)
    if not auto and many and not Path(args.prompts).is_dir():
        raise CLIError("--prompts", "with several inputs, give a folder of <name>.csv/.json files")
    if not auto and not many and _same(Path(args.out), Path(args.prompts)):
        raise CLIError("--out", f"{args.out!r} is the prompts file; give the labels another name")
    n_found = len(inputs)
    inputs, outputs = _outputs(inputs, many, Path(args.out))
    if args.store is not None:
        from ..stacks.store import StoreMismatchError, check_store_path

        try:
            for inp in inputs:
                check_store_path(_store_for(args, inp, many))
        except StoreMismatchError as err:
            raise CLIError("--store", err) from None
    if len(inputs) < n_found:
        print(f"{PROG}: left out {n_found - len(inputs)} input(s) that are label images of "
              f"other inputs ('*{LABEL_SUFFIX}')", file=sys.stderr)  # fmt: skip
    todo = [
        (i, o) for i, o in zip(inputs, outputs, strict=True) if args.overwrite or not o.exists()
    ]
    if auto:  # a run killed after writing an output but before removing its work folder
        from ..segment.partial import PartialMismatchError, remove_work_folder, work_folder

        for o in set(outputs) - {o for _, o in todo}:
            try:
                remove_work_folder(work_folder(o))
            except PartialMismatchError:
                pass  # not ours: left alone
    skipped = len(inputs) - len(todo)
    if client is not None or getattr(args, "scheduler", None):
        from ..batch.cluster import map_files

        map_files(args, auto, todo, many, client=client)
    else:
        state: dict = {}
        for inp, out in tqdm(
            todo, desc="files", unit="file", file=sys.stderr, disable=len(todo) < 2
        ):
            process_file(args, auto, inp, out, many, state)
    print(f"wrote {len(todo)} label image(s), skipped {skipped} already done")
    return [o for _, o in todo]


def process_file(args, auto: bool, inp: Path, out: Path, many: bool, state: dict) -> int:
    """Label one input file and write ``out`` atomically; the number of objects.

    ``state`` holds the model (created on first use, counted in ``state["loads"]``) and the
    encoder, reused for the next files.
    """
    from ..io.labels import write_label_tiff
    from ..io.prompt_files import PromptFileError, read_prompts
    from ..stacks.channels import ChannelSpec

    channels = parse_channels(args.channels)
    normalization = parse_normalization(args.normalization)
    view = _open_input(inp, args.axes)
    with view:
        try:
            chans = (channels or ChannelSpec.default_for(view.n_channels)).resolve(view.n_channels)
        except ValueError as err:
            raise CLIError("--channels", err) from None
        prompts = None
        if not auto:
            try:
                prompts = read_prompts(_prompt_file(args, inp, many), view)
            except PromptFileError as err:
                raise CLIError("--prompts", err) from None
        if state.get("model") is None:
            _import_tensorflow()
            in_channels = chans.out_channels(view.n_channels)
            state["model"] = _create_model(
                args.model, args.weights, in_channels, parse_overrides(args.override)
            )
            state["loads"] = state.get("loads", 0) + 1
        sp = _stack_predictor(
            state["model"], view, chans, normalization, args, inp, many, state.get("encoder")
        )
        state["encoder"] = sp.encoder
        partial, note = None, ""
        if auto:
            labels, partial = _auto(sp, args, inp, out)
            note = f"; {partial.computed} slice(s) computed, {partial.reused} resumed"
        else:
            labels = _write_errors(lambda: _segment(sp, prompts), args)
        axes = view.slice_axes + "YX"
        try:
            write_label_tiff(out, labels, axes, like=inp)
            if partial is not None:
                partial.discard()  # after the output: a kill in between leaves it complete
        except OSError as err:
            raise CLIError("--out", f"cannot write {str(out)!r} ({_reason(err)})") from None
        finally:
            if partial is not None:
                partial.close()  # the work folder's lock
    print(f"{PROG}: {inp} -> {out} ({int(labels.max())} object(s){note})", file=sys.stderr)
    return int(labels.max())


def _write_errors(run, args):
    """``run()``, with a failed write (disk full, ...) to the store or the work folder as a
    one-line error; what was finished so far is kept for a rerun."""
    try:
        return run()
    except OSError as err:
        where, arg = (Path(err.filename), None) if err.filename else (None, None)
        store = getattr(args, "store", None)
        if store and where is not None and where.resolve().is_relative_to(Path(store).resolve()):
            arg = "--store"
        arg = arg or "--out"
        what = f" {str(where)!r}" if where is not None else ""
        kept = "; the slices done so far are kept: run the same command again to resume"
        raise CLIError(arg, f"cannot write{what} ({_reason(err)}){kept}") from None


def _stack_predictor(model, view, chans, normalization, args, inp, many, encoder):
    from ..stacks.stack_predictor import StackPredictor
    from ..stacks.store import StoreMismatchError

    try:
        return StackPredictor(
            model, view, chans, normalization, store=_store_for(args, inp, many), encoder=encoder
        )
    except StoreMismatchError as err:
        raise CLIError(
            "--store", str(err).replace("pass overwrite=True", "run 'napari-sam embed --overwrite'")
        ) from None
    except OSError as err:
        raise CLIError("--store", f"cannot open the store ({_reason(err)})") from None
    except ValueError as err:
        raise CLIError(setup_error_arg(err), err) from None


# AutomaticMaskGenerator attributes the per-slice labels depend on (with points_per_side)
_GENERATOR_SETTINGS = (
    "points_per_batch", "pred_iou_thresh", "stability_score_thresh", "stability_score_offset",
    "box_nms_thresh", "crop_n_layers", "crop_nms_thresh", "crop_overlap_ratio",
    "min_mask_region_area",
)  # fmt: skip


def _thresholds(args) -> dict:
    """The automatic-segmentation thresholds: given on the command line, else the model's."""
    from ..weights import auto_settings

    given = {"pred_iou_thresh": args.pred_iou_thresh,
             "stability_score_thresh": args.stability_score_thresh}  # fmt: skip
    defaults = auto_settings(args.model)
    return {k: defaults[k] if v is None else v for k, v in given.items()}


def _input_identity(inp: Path) -> dict:
    """Path, size and modification time of an input (a zarr directory: of all its files)."""
    st = inp.stat()
    size, mtime = st.st_size, st.st_mtime_ns
    if inp.is_dir():
        for root, _, names in os.walk(inp):
            for name in names:
                s = os.stat(os.path.join(root, name))
                size, mtime = size + s.st_size, max(mtime, s.st_mtime_ns)
    return {"path": str(inp.resolve()), "size": size, "mtime_ns": mtime}


def _auto(sp, args, inp: Path, out: Path):
    """Segment every slice, resuming from ``<out>.partial``; (labels, PartialResults)."""
    from tqdm import tqdm

    from ..segment.automatic import AutomaticMaskGenerator
    from ..segment.linking import segment_stack
    from ..segment.partial import PartialMismatchError, PartialResults, work_folder

    gen = AutomaticMaskGenerator(
        sp.predictor, points_per_side=args.points_per_side,
        **_thresholds(args),
    )  # fmt: skip
    view = sp.view
    fields = {
        "input": _input_identity(inp),
        "axes": args.axes or "",
        "view": [view.axes, list(view.stack_shape), list(view.slice_shape)],
        "model": [args.model, str(Path(args.weights).resolve()) if args.weights else None,
                  sorted(args.override or ())],
        "channels": args.channels or "",
        "normalization": args.normalization,
        # the embedding store's key: encoder signature (config, a hash of every weight,
        # input size, package version), channel mapping and fitted normalisation
        "embeddings": sp.store.key,
        "generator": {"points_per_side": args.points_per_side,
                      **{k: repr(getattr(gen, k)) for k in _GENERATOR_SETTINGS}},
    }  # fmt: skip
    folder = work_folder(out)
    try:
        partial = PartialResults(folder, fields, len(view), view.slice_shape, args.overwrite)
    except PartialMismatchError as err:
        raise CLIError("--out", err) from None
    except OSError as err:
        raise CLIError("--out", f"cannot create {str(folder)!r} ({_reason(err)})") from None
    if partial.discarded:
        print(f"{PROG}: discarded the partial results in {folder}: {partial.discarded}",
              file=sys.stderr)  # fmt: skip
    done = len(partial.done())
    if done:
        print(f"{PROG}: resuming {inp}: {done} of {len(view)} slice(s) already segmented "
              f"({folder})", file=sys.stderr)  # fmt: skip
    try:
        with tqdm(total=len(view), desc="slices", unit="slice", file=sys.stderr) as bar:
            labels = _write_errors(lambda: segment_stack(
                sp, gen, link_3d=not args.no_link_3d, min_overlap=args.min_overlap,
                max_gap=args.max_gap, min_slices=args.min_slices,
                progress=lambda done, total: bar.update(done - bar.n), cache=partial,
            ), args)  # fmt: skip
    except BaseException:
        partial.close()
        raise
    return labels, partial


def _segment(sp, prompts):
    import numpy as np
    from tqdm import tqdm

    labels = np.zeros((*sp.view.stack_shape, *sp.view.slice_shape), np.uint32)
    ids: dict[str, int] = {}
    for obj in tqdm(prompts, desc="objects", unit="object", file=sys.stderr):
        pts, lbl, box = obj.arrays()
        single_point = box is None and len(pts) == 1
        masks, scores, _ = sp.predict(
            obj.slice,
            points=None if pts is None else pts[None],  # batched: one object
            labels=None if lbl is None else lbl[None],
            boxes=None if box is None else box[None],
            multimask_output=single_point,
        )
        masks, scores = masks[0], scores[0]
        mask = masks[int(np.argmax(scores))] if single_point else masks[0]
        key = obj.key or f"\0{obj.slice}"  # no object column: one object per slice
        labels[obj.slice][mask] = ids.setdefault(key, len(ids) + 1)
    return labels


def add_batch_commands(sub) -> None:
    """Add the ``auto`` and ``segment`` subcommands to the ``napari-sam`` parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    auto = sub.add_parser(
        "auto", help="segment everything automatically into a label image",
        description="Automatic segmentation ('segment everything') of every slice of one stack\n"
        "or many, into label TIFFs (uint16, or uint32 above 65535 objects) for Fiji and napari.",
        epilog=_AUTO_EPILOG, formatter_class=fmt,
    )  # fmt: skip
    segment = sub.add_parser(
        "segment", help="segment objects from prompt files (points, boxes) into a label image",
        description="Segment the objects given by point and box prompts in a CSV or JSON file\n"
        "into a label TIFF (one id per object), for Fiji and napari.",
        epilog=_SEGMENT_EPILOG, formatter_class=fmt,
    )  # fmt: skip
    for parser in (auto, segment):
        for names, kwargs in _COMMON:
            parser.add_argument(*names, **kwargs)
    segment.add_argument(
        "--prompts",
        required=True,
        metavar="FILE",
        help="prompts (.csv or .json, see below); a folder of <name>.csv/.json with several inputs",
    )
    auto.add_argument(
        "--points-per-side",
        type=int,
        default=32,
        metavar="N",
        help="grid of N x N point prompts per slice (default 32; fewer is faster)",
    )
    auto.add_argument(
        "--pred-iou-thresh",
        type=float,
        default=None,
        metavar="X",
        help="keep masks whose predicted IoU is above X (default: the model's, 0.88 for "
        "Meta's models, 0.7 for sam_tiny_nuclei)",
    )
    auto.add_argument(
        "--stability-score-thresh",
        type=float,
        default=None,
        metavar="X",
        help="keep masks whose stability score is at least X (default: the model's, 0.95 "
        "for Meta's models, 0.9 for sam_tiny_nuclei)",
    )
    auto.add_argument(
        "--min-overlap",
        type=float,
        default=0.3,
        metavar="X",
        help="IoU needed to link objects of neighbouring slices (default 0.3)",
    )
    auto.add_argument(
        "--max-gap",
        type=int,
        default=1,
        metavar="N",
        help="link an object across up to N slices where it was missed (default 1; 0: only "
        "neighbouring slices)",
    )
    auto.add_argument(
        "--min-slices",
        type=int,
        default=1,
        metavar="N",
        help="drop linked objects found in fewer than N slices (default 1: keep all; "
        "e.g. 3 for nuclei sampled finely in z)",
    )
    auto.add_argument(
        "--no-link-3d",
        action="store_true",
        help="do not link objects across slices: every object of every slice gets its own id",
    )
    auto.set_defaults(run=lambda args: _run_batch(args, auto=True))
    segment.set_defaults(run=lambda args: _run_batch(args, auto=False))
