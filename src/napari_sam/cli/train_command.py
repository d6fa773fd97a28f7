"""``napari-sam train``: fine-tune SAM on a stack and its instance labels.

Uses :class:`napari_sam.train.training.Trainer` (point/box prompts with corrective rounds, focal +
dice + IoU loss); slices are normalised and channel-mapped exactly as for segmentation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .._atomic import write_atomic
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
)

_EPILOG = """\
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
    p = sub.add_parser(
        "train", help="fine-tune a model on a stack with instance labels",
        description="Fine-tune SAM (all of it, or the prompt encoder and mask decoder on a\n"
        "frozen image encoder) on a stack and its instance label image.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("images", metavar="IMAGES", help="a TIFF file, .npy file or zarr array")
    p.add_argument("labels", metavar="LABELS", help="instance labels (TIFF or .npy)")
    p.add_argument("--model", required=True, help="registered model to start from")
    p.add_argument("--weights", metavar="FILE", help="starting weights (default: official)")
    p.add_argument("--from-scratch", action="store_true", help="start from random weights")
    p.add_argument("--out", required=True, metavar="OUT.npz", help="trained weights to write")
    p.add_argument("--workdir", metavar="DIR", help="checkpoints (default: OUT.run)")
    p.add_argument("--axes", help="axes of IMAGES, as for 'napari-sam embed'")
    p.add_argument("--channels", metavar="MODE[:i,j,k]", help="as for 'napari-sam embed'")
    p.add_argument("--normalization", default="auto", metavar="MODE", help="default: auto")
    p.add_argument("--steps", type=int, default=1000, help="optimisation steps (default 1000)")
    p.add_argument("--batch-size", type=int, default=2, help="slices per step (default 2)")
    p.add_argument("--objects-per-image", type=int, default=8, help="default 8")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="default 1e-4")
    p.add_argument("--freeze-image-encoder", action="store_true",
                   help="train only the prompt encoder and mask decoder")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--override", action="append", metavar="KEY=JSON",
                   help="advanced: replace a model configuration field")  # fmt: skip
    p.set_defaults(run=_run_train)


def _read_labels(path: Path) -> np.ndarray:
    if not path.is_file():
        raise CLIError("LABELS", f"{str(path)!r} does not exist")
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        import tifffile

        return tifffile.imread(path)
    except Exception as err:
        raise CLIError("LABELS", f"cannot read {str(path)!r}: {err}") from None


def _sampler(view, labels, channels, norm, size, pad_value):
    """``sample(rng, step)``: a random labelled slice, resized and padded to ``size``.

    Images are padded with ``pad_value`` (the model's mean in 0..255), which its
    preprocessing maps to the zeros that :class:`~napari_sam.SAMPredictor` pads with.
    """
    from PIL import Image

    from ..predict.resizer import ImageResizer

    stack = labels.reshape(len(view), *view.slice_shape)
    usable = [i for i in range(len(view)) if stack[i].max() > 0]
    if not usable:
        raise CLIError("LABELS", "no labelled objects (all zeros)")

    def sample(rng, step=0):
        i = usable[int(rng.integers(len(usable)))]
        image = channels.apply(norm.apply(view.get_slice(i))).astype(np.float32)
        resizer = ImageResizer(image.shape[:2], size)
        image = resizer.pad_image(resizer.scale_image(image) - pad_value) + pad_value
        h, w = resizer.rescaled_size
        lab = Image.fromarray(stack[i].astype(np.int32)).resize((w, h), Image.NEAREST)
        lab = resizer.pad_image(np.asarray(lab)[..., None])[..., 0]
        return image, lab

    return sample


def _run_train(args) -> int:
    for name in ("steps", "batch_size", "objects_per_image"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')}", "expected a positive integer")
    overrides = parse_overrides(args.override)
    norm_settings = parse_normalization(args.normalization)
    weights = check_weights(args.weights)
    out = Path(args.out)
    if out.suffix.lower() != ".npz" or not out.parent.is_dir():
        raise CLIError("--out", f"{args.out!r}: expected a .npz path in an existing folder")
    if out.is_dir():
        raise CLIError("--out", f"{args.out!r} is a folder; expected a .npz file path")
    inputs = {"IMAGES": Path(args.images), "LABELS": Path(args.labels)}
    if weights is not None:
        inputs["--weights"] = weights
    for name, path in inputs.items():
        if path.exists() and out.resolve() == path.resolve():
            raise CLIError("--out", f"{args.out!r} is {name}; give the weights another name")
    check_writable(out.parent, "--out")
    workdir = Path(args.workdir) if args.workdir else out.with_suffix(".run")
    if workdir.exists() and not workdir.is_dir():
        raise CLIError("--workdir", f"{str(workdir)!r} is a file; expected a folder")
    check_writable(workdir, "--workdir")
    view = _open_input(Path(args.images), args.axes)
    labels = _read_labels(Path(args.labels))
    expected = (*view.stack_shape, *view.slice_shape)
    if labels.size != int(np.prod(expected)) or labels.shape[-2:] != view.slice_shape:
        raise CLIError("LABELS", f"shape {labels.shape} does not fit IMAGES {expected}")
    from ..stacks.channels import ChannelSpec

    try:
        channels = parse_channels(args.channels) or ChannelSpec.default_for(view.n_channels)
        channels = channels.resolve(view.n_channels)
    except ValueError as err:
        raise CLIError("--channels", err) from None
    try:
        norm = norm_settings.fit(view)
    except ValueError as err:
        raise CLIError("IMAGES", err) from None
    in_channels = channels.out_channels(view.n_channels)
    check_model(args.model, in_channels, overrides)
    _import_tensorflow()
    if args.from_scratch:
        from ..weights import create_model

        model = create_model(args.model, pretrained=False, in_channels=in_channels, **overrides)
    else:
        model = _create_model(args.model, weights, in_channels, overrides)
    from ..train.training import TrainConfig, Trainer
    from ..weights.key_map import export_state_dict

    size = tuple(model.cfg.input_size)
    pad_value = (255 * np.asarray(model.cfg.mean)).astype(np.float32)
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, objects_per_image=args.objects_per_image,
        learning_rate=args.learning_rate, freeze_image_encoder=args.freeze_image_encoder,
        seed=args.seed, warmup_steps=min(100, args.steps // 10),
    )  # fmt: skip
    sampler = _sampler(view, np.asarray(labels), channels, norm, size, pad_value)
    import tensorflow as tf

    try:
        trainer = Trainer(model, sampler, config, workdir=workdir)
        losses = trainer.fit()
    except (OSError, tf.errors.OpError) as err:  # TensorFlow's checkpoint writer: OpError
        reason = _reason(err) if isinstance(err, OSError) else err.message.split(";")[0]
        raise CLIError(
            "--workdir", f"cannot write the checkpoints in {str(workdir)!r} ({reason}); "
            "the last complete checkpoint is kept: run the same command again to resume"
        ) from None  # fmt: skip
    state = export_state_dict(model)
    try:
        write_atomic(out, lambda f: np.savez(f, **state))
    except OSError as err:
        raise CLIError("--out", f"cannot write {str(out)!r} ({_reason(err)})") from None
    done = f"{len(losses)} step(s), last loss {losses[-1]:.4f}" if losses else "nothing to do"
    print(f"{PROG}: trained ({done}); weights: {out}", file=sys.stderr)
    return 0
