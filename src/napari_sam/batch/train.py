"""``napari-sam train``: fine-tune SAM on a stack and its instance labels.

Uses :class:`napari_sam.train.training.Trainer` (point/box prompts with corrective rounds,
focal + dice + IoU loss); slices are normalised and channel-mapped exactly as for
segmentation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._atomic import write_atomic
from .checks import check_weights, check_writable, os_reason
from .errors import InputError
from .pipeline import ModelCache, open_stack, resolve
from .runtime import import_tensorflow
from .settings import TrainSettings

__all__ = ["train"]


def _check(s: TrainSettings) -> tuple[Path, Path | None, Path]:
    """(out, weights, workdir), checked before anything is read."""
    for name in ("steps", "batch_size", "objects_per_image"):
        if getattr(s, name) < 1:
            raise InputError(f"--{name.replace('_', '-')}", "expected a positive integer")
    weights = check_weights(s.weights)
    out = Path(s.out)
    if out.suffix.lower() != ".npz" or not out.parent.is_dir():
        raise InputError("--out", f"{s.out!r}: expected a .npz path in an existing folder")
    if out.is_dir():
        raise InputError("--out", f"{s.out!r} is a folder; expected a .npz file path")
    inputs = {"IMAGES": Path(s.images), "LABELS": Path(s.labels)}
    if weights is not None:
        inputs["--weights"] = weights
    for name, path in inputs.items():
        if path.exists() and out.resolve() == path.resolve():
            raise InputError("--out", f"{s.out!r} is {name}; give the weights another name")
    check_writable(out.parent, "--out")
    workdir = Path(s.workdir) if s.workdir else out.with_suffix(".run")
    if workdir.exists() and not workdir.is_dir():
        raise InputError("--workdir", f"{str(workdir)!r} is a file; expected a folder")
    check_writable(workdir, "--workdir")
    return out, weights, workdir


def train(settings: TrainSettings) -> list[float]:
    """Fine-tune (resumable from ``workdir``) and write the weights atomically.

    Parameters
    ----------
    settings : TrainSettings
        Images, labels, model, training settings and where the weights go.

    Returns
    -------
    list of float
        The losses of this run's steps.

    Raises
    ------
    InputError
        Bad input, named by its argument.
    """
    s = settings
    resolved = resolve(s)
    out, _, workdir = _check(s)
    with open_stack(resolved, Path(s.images)) as opened:
        view, channels = opened.view, opened.channels
        labels = _read_labels(Path(s.labels))
        expected = (*view.stack_shape, *view.slice_shape)
        if labels.size != int(np.prod(expected)) or labels.shape[-2:] != view.slice_shape:
            raise InputError("LABELS", f"shape {labels.shape} does not fit IMAGES {expected}")
        try:
            norm = resolved.normalization.fit(view)
        except ValueError as err:
            raise InputError("IMAGES", err) from None
        if s.from_scratch:
            import_tensorflow()
            from ..weights import create_model

            model = create_model(s.model, pretrained=False, in_channels=opened.in_channels,
                                 config=opened.config)  # fmt: skip
        else:
            model = ModelCache().model_for(resolved, opened)
        losses = _fit(model, view, labels, channels, norm, s, workdir)
    from ..weights.key_map import export_state_dict

    state = export_state_dict(model)
    try:
        write_atomic(out, lambda f: np.savez(f, **state))
    except OSError as err:
        raise InputError("--out", f"cannot write {str(out)!r} ({os_reason(err)})") from None
    return losses


def _fit(model, view, labels, channels, norm, s: TrainSettings, workdir: Path) -> list[float]:
    import tensorflow as tf

    from ..train.training import TrainConfig, Trainer

    size = tuple(model.cfg.input_size)
    pad_value = (255 * np.asarray(model.cfg.mean)).astype(np.float32)
    config = TrainConfig(
        steps=s.steps, batch_size=s.batch_size, objects_per_image=s.objects_per_image,
        learning_rate=s.learning_rate, freeze_image_encoder=s.freeze_image_encoder,
        seed=s.seed, warmup_steps=min(100, s.steps // 10),
    )  # fmt: skip
    sampler = _sampler(view, np.asarray(labels), channels, norm, size, pad_value)
    try:
        return Trainer(model, sampler, config, workdir=workdir).fit()
    except (OSError, tf.errors.OpError) as err:  # TensorFlow's checkpoint writer: OpError
        reason = os_reason(err) if isinstance(err, OSError) else err.message.split(";")[0]
        raise InputError(
            "--workdir", f"cannot write the checkpoints in {str(workdir)!r} ({reason}); "
            "the last complete checkpoint is kept: run the same command again to resume"
        ) from None  # fmt: skip


def _read_labels(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError("LABELS", f"{str(path)!r} does not exist")
    try:
        if path.suffix.lower() == ".npy":
            labels = np.load(path, allow_pickle=False)
        else:
            import tifffile

            labels = tifffile.imread(path)
    except Exception as err:
        raise InputError("LABELS", f"cannot read {str(path)!r}: {err}") from None
    return check_instance_labels(labels, str(path))


def check_instance_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """Instance labels as integers: 0 the background, 1, 2, ... the objects.

    Raises
    ------
    InputError
        ``LABELS`` holds other values: negative, fractional or non-finite ones, or not numbers.
    """
    labels = np.asarray(labels)
    expected = "an instance label image (whole numbers >= 0, 0 the background)"
    if labels.dtype.kind not in "biuf":
        raise InputError("LABELS", f"{name!r} holds {labels.dtype} values; expected {expected}")
    if labels.dtype.kind == "f":
        bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if bad.any():
            value = labels[bad][0].item()
            raise InputError("LABELS", f"{name!r} holds a value {value!r} that is not a whole "
                                       f"number; expected {expected}")  # fmt: skip
    if labels.dtype.kind in "if" and labels.size and labels.min() < 0:
        raise InputError("LABELS", f"{name!r} holds negative values ({labels.min().item()!r}); "
                                   f"expected {expected}")  # fmt: skip
    return labels.astype(np.int64) if labels.dtype.kind == "f" else labels


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
        raise InputError("LABELS", "no labelled objects (all zeros)")

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
