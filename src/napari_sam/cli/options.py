"""One table of the command-line options: flags, help texts, defaults.

Defaults come from the settings classes of :mod:`napari_sam.batch.settings` (so a run from
Python and from the shell do the same); each command picks the options it has and may give
one a text of its own (``--out`` is a store for ``embed``, a label image for ``auto``).
"""

from __future__ import annotations

import dataclasses

from ..stacks.diameter import SIZE_HINT_RANGE

__all__ = ["OPTIONS", "add_options"]

_NORMALIZATION = (
    "intensity mapping to 0..255, fitted on the whole stack: auto (8-bit data as is, else "
    "percentile), percentile:LOW,HIGH (default 0.1,99.9), minmax, dtype, fixed:VMIN,VMAX, "
    "none. Default: auto"
)



def _number_or_text(text: str):
    """A float when the text is one, else the text (checked later, with a one-line error)."""
    try:
        return float(text)
    except ValueError:
        return text


OPTIONS: dict[str, tuple[tuple[str, ...], dict]] = {
    "input": (("input",), dict(metavar="INPUT", help="a TIFF file, a .npy file or a zarr array "
                               "directory")),
    "images": (("images",), dict(metavar="IMAGES", help="a TIFF file, .npy file or zarr array")),
    "labels": (("labels",), dict(metavar="LABELS", help="instance labels (TIFF or .npy)")),
    "out": (("--out",), dict(required=True, metavar="PATH", help="what to write")),
    "model": (("--model",), dict(help="registered model, e.g. sam_vit_b, sam_tiny_nuclei; "
                                      "sam_vit_t or vit_t_lm: under a second a slice on a CPU")),
    "weights": (("--weights",), dict(metavar="FILE", help="checkpoint (Meta's .pth or a "
                                     "converted .npz); default: the model's official weights, "
                                     "downloaded once")),
    "decoder": (("--decoder",), dict(metavar="FILE", help="micro-sam instance decoder "
                                     "(e.g. vit_b_decoder.pt) for --method ais; default: the "
                                     "model's own (micro-sam's models), or the one inside "
                                     "--weights")),
    "method": (("--method",), dict(choices=("ais", "amg"), help="ais: the model's instance "
                                   "decoder and a watershed (fast; default when the model has a "
                                   "decoder); amg: a grid of point prompts (Meta's generator)")),
    "override": (("--override",), dict(action="append", metavar="KEY=JSON", help="advanced: "
                                       "replace a model configuration field (repeatable; must fit "
                                       "the weights), e.g. --override input_size=[512,512]")),
    "axes": (("--axes",), dict(help="one letter per dimension: Y, X, C (channels) or S (RGB "
                               "samples), slice axes T, Z, ...; e.g. ZYX, TCYX, YXS. Default: "
                               "from the TIFF file; YX for a 2-D array; required for other "
                               "arrays")),
    "channels": (("--channels",), dict(metavar="MODE[:i,j,k]", help="channels given to the "
                                       "model: rgb[:i,j,k] (up to three channel indices to R, G, "
                                       "B), single:i (one channel as grey) or adapt (all C "
                                       "channels; the model is built with in_channels=C). "
                                       "Default: grey or RGB for 1-3 channels")),
    "normalization": (("--normalization",), dict(metavar="MODE", help=_NORMALIZATION)),
    "overwrite": (("--overwrite",), dict(action="store_true", help="recompute what exists")),
    "batch_size": (("--batch-size",), dict(type=int, metavar="N", help="slices per model call "
                                           "(default %(default)s)")),
    "store": (("--store",), dict(metavar="STORE", help="embedding store written by 'napari-sam "
                                 "embed' (reused; missing slices are added). With several "
                                 "inputs: a folder holding <name>.emb.zarr per input")),
    "scheduler": (("--scheduler",), dict(metavar="ADDRESS", help="spread the files over a dask "
                                         "cluster, e.g. tcp://10.0.0.5:8786 (needs "
                                         "dask[distributed]); each worker loads the model once. "
                                         "Default: this process")),
    "tile": (("--tile",), dict(type=int, metavar="PX", help="tile side in image pixels: each "
                               "tile is embedded at the model's input size. Default: the input "
                               "size (native resolution) when an image side exceeds 1.5 inputs; "
                               "smaller images are not tiled")),
    "halo": (("--halo",), dict(type=int, metavar="PX", help="overlap of neighbouring tiles on "
                               "each side (default: an eighth of the tile); more than half the "
                               "largest object")),
    "diameter": (("--diameter",), dict(type=_number_or_text, metavar="PX|auto|native",
                                       help="typical object diameter in pixels (auto: "
                                       "estimated from the middle slice): the image is tiled so "
                                       "that objects reach the model at the size it works best "
                                       "at (28 px in the input of sam_tiny_nuclei); results come "
                                       "back at the original resolution. Default, for models "
                                       "with such a size: estimated, and resampled only when "
                                       "the objects would reach the model below "
                                       f"{SIZE_HINT_RANGE[0]:g} x or above {SIZE_HINT_RANGE[1]:g} "
                                       "x it (said on stderr); native: never resampled")),
    "dtype": (("--dtype",), dict(choices=("auto", "float32", "bfloat16"), help="the image "
                                 "encoder's precision: auto (bfloat16 only where the CPU or GPU "
                                 "does it natively and faster, else float32; the environment "
                                 "variable NAPARI_SAM_DTYPE decides in its place when set), "
                                 "float32 or bfloat16. Default: %(default)s")),
    "no_tile": (("--no-tile",), dict(action="store_true", help="never tile: the whole image is "
                                     "resized to the model input (Meta's behaviour)")),
    "prompts": (("--prompts",), dict(required=True, metavar="FILE", help="prompts (.csv or "
                                     ".json, see below); a folder of <name>.csv/.json with "
                                     "several inputs")),
    "allow_other_model": (("--allow-other-model",), dict(action="store_true", help="replay a "
                                                        "sidecar (LABELS.prompts.json) made with "
                                                        "other weights (a warning names both)")),
    "sam_masks": (("--sam-masks",), dict(action="store_true", help="masks as SAM decodes them. "
                                        "Default: as the model records (sam_tiny_nuclei: "
                                        "redrawn at each object's half maximum, a box's cut to "
                                        "the box, a click's most convex candidate confined by "
                                        "its instance decoder; Meta's and micro-sam's models: "
                                        "SAM's masks)")),
    "points_per_side": (("--points-per-side",), dict(type=int, metavar="N", help="grid of N x N "
                                                     "point prompts per slice (default "
                                                     "%(default)s; fewer is faster)")),
    "pred_iou_thresh": (("--pred-iou-thresh",), dict(type=float, metavar="X", help="keep masks "
                                                     "whose predicted IoU is above X (default: "
                                                     "the model's, 0.88 for Meta's models, 0.7 "
                                                     "for sam_tiny_nuclei)")),
    "stability_score_thresh": (("--stability-score-thresh",), dict(type=float, metavar="X",
                               help="keep masks whose stability score is at least X (default: "
                               "the model's, 0.95 for Meta's models, 0.9 for sam_tiny_nuclei)")),
    "min_overlap": (("--min-overlap",), dict(type=float, metavar="X", help="IoU needed to link "
                                             "objects of neighbouring slices (default "
                                             "%(default)s)")),
    "max_gap": (("--max-gap",), dict(type=int, metavar="N", help="link an object across up to N "
                                     "slices where it was missed (default %(default)s; 0: only "
                                     "neighbouring slices)")),
    "min_slices": (("--min-slices",), dict(type=int, metavar="N", help="drop linked objects "
                                           "found in fewer than N slices (default %(default)s: "
                                           "keep all; e.g. 3 for nuclei sampled finely in z)")),
    "no_link_3d": (("--no-link-3d",), dict(action="store_true", help="do not link objects "
                                           "across slices: every object of every slice gets its "
                                           "own id")),
    "from_scratch": (("--from-scratch",), dict(action="store_true", help="start from random "
                                               "weights")),
    "workdir": (("--workdir",), dict(metavar="DIR", help="checkpoints (default: OUT.run)")),
    "steps": (("--steps",), dict(type=int, help="optimisation steps (default %(default)s)")),
    "objects_per_image": (("--objects-per-image",), dict(type=int, help="default %(default)s")),
    "learning_rate": (("--learning-rate",), dict(type=float, help="default %(default)s")),
    "freeze_image_encoder": (("--freeze-image-encoder",), dict(action="store_true", help="train "
                                                               "only the prompt encoder and "
                                                               "mask decoder")),
    "seed": (("--seed",), dict(type=int, help="random seed (default %(default)s)")),
}  # fmt: skip


def add_options(parser, settings_class, names, **helps) -> None:
    """Add the options ``names`` to ``parser``, with defaults from ``settings_class``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        A subcommand's parser.
    settings_class : type
        The dataclass the parsed arguments become; a field without a default is required.
    names : sequence of str
        Keys of :data:`OPTIONS`, in the order they are listed.
    **helps
        Per-command help texts (or ``(help, metavar)`` pairs) for some of the options.
    """
    fields = {f.name: f for f in dataclasses.fields(settings_class)}
    for name in names:
        flags, kwargs = OPTIONS[name]
        kwargs = dict(kwargs)
        if name in helps:
            text = helps[name]
            if isinstance(text, tuple):
                text, kwargs["metavar"] = text
            kwargs["help"] = text
        field = fields[name]
        if field.default is dataclasses.MISSING:
            if flags[0].startswith("-"):
                kwargs["required"] = True
        elif kwargs.get("action") not in ("store_true", "append"):
            kwargs["default"] = field.default
        parser.add_argument(*flags, **kwargs)
