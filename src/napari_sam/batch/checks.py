"""Checks of the arguments of every command, quick and free of TensorFlow.

Each raises :class:`~napari_sam.batch.errors.InputError` naming the argument and what was
expected, so that a mistake costs well under a second.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from .errors import InputError

__all__ = [
    "check_dtype",
    "check_method",
    "check_model",
    "check_scheduler",
    "check_weights",
    "check_writable",
    "os_reason",
    "parse_channels",
    "parse_normalization",
    "parse_overrides",
    "setup_error_arg",
]


def parse_channels(text: str | None):
    """``rgb``, ``rgb:0,2``, ``single:1`` or ``adapt`` -> a ChannelSpec (None -> None)."""
    from ..stacks.channels import ChannelSpec

    if text is None:
        return None
    mode, _, idx = text.partition(":")
    try:
        indices = tuple(int(i) for i in idx.split(",")) if idx else None
        return ChannelSpec(mode.strip().lower(), indices)
    except ValueError as err:
        raise InputError(
            "--channels",
            f"{text!r}: {err}; expected rgb[:i[,j[,k]]], single:i or adapt "
            "(0-based channel indices)",
        ) from None


def parse_normalization(text: str):
    """``auto``, ``percentile[:LOW,HIGH]``, ``minmax``, ``dtype``, ``fixed:VMIN,VMAX``, ``none``."""
    from ..stacks.normalize import Normalization

    mode, _, args = text.partition(":")
    mode = mode.strip().lower()
    try:
        values = [float(v) for v in args.split(",")] if args else []
        want = {"fixed": (2,), "percentile": (0, 2)}.get(mode, (0,))
        if len(values) not in want:
            raise ValueError(f"mode {mode!r} takes {' or '.join(map(str, want))} values")
        if mode == "fixed":
            if not values[0] < values[1]:
                raise ValueError(f"VMIN must be below VMAX, got {values[0]:g}, {values[1]:g}")
            return Normalization.fixed(values[0], values[1])
        if mode == "percentile" and values:
            return Normalization("percentile", low=values[0], high=values[1])
        return Normalization(mode)
    except ValueError as err:
        raise InputError(
            "--normalization",
            f"{text!r}: {err}; expected auto, percentile:LOW,HIGH, minmax, dtype, "
            "fixed:VMIN,VMAX or none",
        ) from None


def parse_overrides(items: list[str] | None) -> dict:
    """``["key=JSON", ...]`` -> config overrides; keys must be model configuration fields."""
    import dataclasses

    from ..model.config import SegmentAnythingModelConfig

    fields = {f.name for f in dataclasses.fields(SegmentAnythingModelConfig)}
    out = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in fields - {"in_channels"}:
            raise InputError(
                "--override",
                f"{item!r}: expected KEY=VALUE with KEY a model configuration field "
                f"({', '.join(sorted(fields - {'in_channels'}))})",
            )
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise InputError(
                "--override", f"{item!r}: the value is not valid JSON (e.g. input_size=[512,512])"
            ) from None
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def check_weights(text: str | None, arg: str = "--weights") -> Path | None:
    """The ``--weights`` (or ``arg``) file, checked to be a readable, non-empty file (None
    stays None)."""
    if text is None:
        return None
    path = Path(text)
    if path.is_dir():
        raise InputError(
            arg, f"{text!r} is a directory; expected a checkpoint file (Meta's .pth, "
            "micro-sam's .pt or a converted .npz)"
        )  # fmt: skip
    if not path.is_file():
        raise InputError(arg, f"{text!r}: no such file")
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except OSError as err:
        raise InputError(arg, f"cannot read {text!r} ({err.strerror or err})") from None
    if empty:
        raise InputError(arg, f"{text!r} is empty; expected a checkpoint file")
    return path


def check_method(method: str | None, model: str, weights: Path | None, decoder: Path | None
                 ) -> str:  # fmt: skip
    """The method ``auto`` will use: ``--method``, else ``ais`` where an instance decoder is
    found (``--decoder``, the one inside ``--weights``, read from the file's index with no
    tensors, or the registered model's own), else ``amg``.

    Raises
    ------
    InputError
        ``--method ais`` without any decoder.
    """
    from ..weights.pth_reader import CheckpointError, read_pth_states
    from ..weights.registry import model_entry

    if method == "amg":
        return method
    if decoder is not None:
        found = True
    elif weights is None:
        found = model_entry(model).has_decoder
    elif weights.suffix.lower() == ".npz":
        found = False
    else:
        try:
            found = read_pth_states(weights, which=None)["decoder"]
        except CheckpointError as err:
            raise InputError("--weights", err) from None
    if method == "ais" and not found:
        source = f"{str(weights)!r}" if weights is not None else f"model {model!r}"
        raise InputError(
            "--method",
            f"ais needs an instance decoder, and {source} has none: pass --decoder FILE "
            "(micro-sam's vit_b_decoder.pt, ...) or use --method amg",
        )
    return "ais" if found else "amg"


_ADDRESS = re.compile(r"([a-z][a-z0-9+.-]*://)?[^\s/:]+(:\d{1,5})(/.*)?|[a-z]+://[^\s]+", re.I)


def check_scheduler(address: str | None) -> None:
    """``--scheduler``: a dask scheduler's address (``tcp://host:8786``, ``host:8786``); the
    form only, nothing is connected to."""
    if address is not None and not _ADDRESS.fullmatch(address.strip()):
        raise InputError("--scheduler", f"{address!r} is not a scheduler address; expected "
                         "e.g. tcp://host:8786 or host:8786")  # fmt: skip


def check_writable(path: Path, arg: str) -> None:
    """Fail unless files can be created in folder ``path`` or, if it does not exist yet, in
    its nearest existing parent (a probe file is created and removed at once)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(arg, f"cannot write to {str(path)!r}: {str(folder)!r} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".napari-sam-probe-"):
            pass
    except OSError as err:
        raise InputError(arg, f"cannot write to {str(folder)!r} ({os_reason(err)})") from None


def check_dtype() -> None:
    """``NAPARI_SAM_DTYPE``, when set, names a dtype (checked before TensorFlow is imported)."""
    from ..model.precision import DTYPES, ENV_VAR

    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in DTYPES:
        raise InputError(ENV_VAR, f"expected float32, bfloat16 or auto, got {value!r}")


def check_model(name: str, in_channels: int, overrides: dict):
    """``--model`` is registered and the ``--override`` values make a valid configuration
    (no TensorFlow needed); that configuration."""
    from ..weights.registry import list_models, model_config

    if name not in list_models():
        raise InputError(
            "--model", f"unknown model {name!r}; available: {', '.join(list_models())}"
        )
    try:
        return model_config(name, in_channels, **overrides)
    except (ValueError, TypeError) as err:
        raise InputError("--override", err) from None


def setup_error_arg(err: ValueError) -> str:
    """The argument a ValueError of setting up a stack (normalisation, channels) is about."""
    text = str(err)
    if text.startswith("image:"):  # e.g. a channel without one finite pixel value
        return "INPUT"
    return "--normalization" if text.startswith(("vmin", "normalization")) else "--channels"


def os_reason(err: OSError) -> str:
    """The short reason of an OS error, e.g. 'No space left on device'."""
    return err.strerror or str(err)
