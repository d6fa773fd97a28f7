"""``napari-sam auto`` and ``napari-sam segment``: the arguments (the work:
:func:`napari_sam.batch.label.run_files`)."""

from __future__ import annotations

import argparse
import sys

from .options import add_options

__all__ = ["add_label_commands"]

AUTO_EPILOG = """\
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


SEGMENT_EPILOG = """\
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


_COMMON = ["input", "out", "model", "weights", "decoder", "override", "axes", "channels",
           "normalization", "store", "overwrite", "scheduler", "tile", "halo", "diameter",
           "no_tile", "dtype"]  # fmt: skip
_HELPS = dict(
    input="a TIFF or .npy file, a zarr array directory, a folder of TIFF/.npy files, or a "
    "quoted glob such as 'data/*.tif'",
    out=("label TIFF to write; a folder when INPUT is a folder or a glob (one "
         "<name>_labels.tif per input)", "LABELS"),
    model="registered model (default: micro-sam's vit_b_lm or vit_l_lm when both its files "
    "are on this machine, else the shipped sam_tiny_nuclei; with --weights: sam_vit_b)",
    overwrite="recompute outputs that already exist (default: skip them, so an interrupted "
    "batch resumes)",
)  # fmt: skip


def add_label_commands(sub) -> None:
    """Add the ``auto`` and ``segment`` subcommands to the ``napari-sam`` parser."""
    from ..batch.settings import LabelSettings

    fmt = argparse.RawDescriptionHelpFormatter
    auto = sub.add_parser(
        "auto", help="segment everything automatically into a label image",
        description="Automatic segmentation ('segment everything') of every slice of one stack\n"
        "or many, into label TIFFs (uint16, or uint32 above 65535 objects) for Fiji and napari.",
        epilog=AUTO_EPILOG, formatter_class=fmt,
    )  # fmt: skip
    segment = sub.add_parser(
        "segment", help="segment objects from prompt files (points, boxes) into a label image",
        description="Segment the objects given by point and box prompts in a CSV or JSON file\n"
        "into a label TIFF (one id per object), for Fiji and napari.",
        epilog=SEGMENT_EPILOG, formatter_class=fmt,
    )  # fmt: skip
    add_options(segment, LabelSettings, [*_COMMON, "prompts", "allow_other_model",
                                         "sam_masks"], **_HELPS)
    add_options(auto, LabelSettings, [*_COMMON, "method", "points_per_side", "pred_iou_thresh",
                                      "stability_score_thresh", "min_overlap", "max_gap",
                                      "min_slices", "no_link_3d"], **_HELPS)  # fmt: skip
    auto.set_defaults(run=lambda args: _run(args, auto=True), model=None)
    segment.set_defaults(run=lambda args: _run(args, auto=False), model=None)


def _run(args, auto: bool) -> int:
    from ..batch.label import run_files
    from ..batch.settings import LabelSettings
    from ..weights.choice import default_model
    from ..weights.defaults import CLI_MODEL

    if args.model is None and args.weights:  # a checkpoint alone: Meta's ViT-B, as always
        args.model = CLI_MODEL
    elif args.model is None:
        choice = default_model()
        args.model = choice.name
        print(f"napari-sam: model {choice.reason}", file=sys.stderr)
    run_files(LabelSettings.from_namespace(args), auto)
    return 0
