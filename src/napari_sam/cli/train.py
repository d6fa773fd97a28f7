"""``napari-sam train``: the arguments (the work: :func:`napari_sam.batch.train.train`)."""

from __future__ import annotations

import argparse
import sys

from .options import add_options

__all__ = ["add_train_command"]

EPILOG = """\
example:
  napari-sam train nuclei.tif nuclei_labels.tif --model sam_vit_b --out finetuned.npz \\
      --freeze-image-encoder --steps 500
  napari-sam segment other.tif --model sam_vit_b --weights finetuned.npz --prompts p.csv \\
      --out labels.tif

LABELS holds one integer id per object (0 = background), with the shape of IMAGES without
its channel axis. Training checkpoints go to OUT.run/ (or --workdir); run the same command
again to resume. The result is written to OUT (.npz) only when training ends.
"""


def add_train_command(sub) -> None:
    """Add the ``train`` subcommand to the ``napari-sam`` parser."""
    from ..batch.settings import TrainSettings

    p = sub.add_parser(
        "train", help="fine-tune a model on a stack with instance labels",
        description="Fine-tune SAM (all of it, or the prompt encoder and mask decoder on a\n"
        "frozen image encoder) on a stack and its instance label image.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_options(
        p, TrainSettings,
        ["images", "labels", "model", "weights", "from_scratch", "out", "workdir", "axes",
         "channels", "normalization", "steps", "batch_size", "objects_per_image",
         "learning_rate", "freeze_image_encoder", "seed", "override"],
        model="registered model to start from",
        weights="starting weights (default: the model's official weights)",
        out=("trained weights to write", "OUT.npz"),
        batch_size="slices per step (default %(default)s)",
    )  # fmt: skip
    p.set_defaults(run=_run)


def _run(args) -> int:
    from ..batch.settings import TrainSettings
    from ..batch.train import train

    losses = train(TrainSettings.from_namespace(args))
    done = f"{len(losses)} step(s), last loss {losses[-1]:.4f}" if losses else "nothing to do"
    print(f"napari-sam: trained ({done}); weights: {args.out}", file=sys.stderr)
    return 0
