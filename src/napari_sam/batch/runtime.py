"""The slow steps every command shares: TensorFlow, the input stack, the model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .. import _tensorflow
from .checks import check_model
from .errors import InputError
from .timing import timed

__all__ = ["import_tensorflow", "load_model", "open_input", "resolve_channels"]

#: Slices up to this many pixels are read whole to check a file; larger ones in two bands.
_CHECK_PIXELS = 1 << 22


def import_tensorflow() -> None:
    """Import TensorFlow quietly (after the quick checks); ``napari-sam -v`` shows its lines."""
    with timed("TensorFlow import"):
        _tensorflow.import_tensorflow(verbose=os.environ.get("NAPARI_SAM_VERBOSE") == "1")


def open_input(path: Path, axes: str | None):
    """The input as a :class:`~napari_sam.stacks.StackView`, checked to be readable.

    Parameters
    ----------
    path : Path
        A TIFF file, a ``.npy`` file, a zarr array directory or an OME-Zarr image (its first
        multiscale level, with the axes of its metadata).
    axes : str, optional
        One letter per dimension; default: from the TIFF file, ``YX`` for a 2-D array.

    Raises
    ------
    InputError
        The file is missing, not an image, truncated (its first and last slice are read; of
        a slice over ``_CHECK_PIXELS`` pixels, a band at its start and one at its end), or
        ``axes`` does not fit it.
    """
    import numpy as np

    from ..stacks.view import StackView, is_zarr_directory

    if not path.exists():
        raise InputError("INPUT", f"{str(path)!r} does not exist")
    try:
        if path.suffix.lower() == ".npy" and path.is_file():
            data = np.load(path, mmap_mode="r", allow_pickle=False)
            if axes is None and data.ndim == 2:
                axes = "YX"
            if axes is None:
                raise InputError(
                    "--axes",
                    f"required for {path.name!r} (a .npy array of shape {data.shape}); "
                    f"give one letter per dimension, e.g. --axes ZYX",
                )
            return StackView(data, axes)
        if path.is_dir() and not is_zarr_directory(path):
            raise InputError(
                "INPUT", f"{str(path)!r} is a directory but not a zarr array or OME-Zarr image"
            )
        view = StackView(path, axes)
    except InputError:
        raise
    except ValueError as err:
        arg = "--axes" if str(err).startswith("axes:") else "INPUT"
        raise InputError(arg, err) from None
    except Exception as err:
        raise InputError(
            "INPUT",
            f"cannot read {str(path)!r} as a TIFF file, .npy file, zarr array or OME-Zarr image "
            f"({type(err).__name__}: {err})",
        ) from None
    try:  # a truncated file fails here, not minutes later in the middle of the run
        _check_readable(view)
    except Exception as err:
        view.close()
        raise InputError(
            "INPUT",
            f"cannot read the pixels of {str(path)!r}: the file is truncated or damaged "
            f"({type(err).__name__}: {err})",
        ) from None
    return view


def _check_readable(view) -> None:
    """Read the first and the last slice of ``view`` (raises where the file is damaged).

    Of a slice over :data:`_CHECK_PIXELS` pixels, only a band of rows at its start (first
    slice) and one at its end (last slice) are read, so that an image larger than memory is
    not loaded whole: a truncated TIFF, ``.npy`` or zarr array lacks its last rows or chunks.
    """
    h, w = view.slice_shape
    last = len(view) - 1
    if h * w <= _CHECK_PIXELS:
        for i in {0, last}:
            view.get_slice(i)
        return
    rows, cols = max(1, _CHECK_PIXELS // w), min(w, _CHECK_PIXELS)
    view.get_region(0, slice(0, rows), slice(0, cols))
    view.get_region(last, slice(h - rows, h), slice(w - cols, w))


def load_model(name: str, weights, in_channels: int, overrides: dict, decoder=None,
               config=None, dtype: str = "auto"):  # fmt: skip
    """The model with its weights (the arguments are checked first, without TensorFlow;
    ``config``: the configuration already built from them, used as it is; ``dtype``: the
    image encoder's, ``"auto"`` resolved here and reported with ``napari-sam -v``)."""
    from ..weights import create_model
    from ..weights.download import WeightsUnavailableError
    from ..weights.pth_reader import CheckpointError

    if config is None:
        check_model(name, in_channels, overrides)
    else:
        overrides = {**overrides, "config": config}
    if decoder is not None and not Path(decoder).is_file():
        raise InputError("--decoder", f"no such file {str(decoder)!r}")
    try:
        with timed("model load"):
            model = create_model(name, pretrained=weights or True, in_channels=in_channels,
                                 decoder=decoder, dtype=dtype, **overrides)  # fmt: skip
    except (ValueError, OSError, WeightsUnavailableError) as err:  # bad checkpoint, download
        if isinstance(err, CheckpointError) and decoder is not None and str(decoder) in str(err):
            raise InputError("--decoder", err) from None
        if "does not match the model" in str(err):
            err = (
                f"the checkpoint does not fit model {name!r} with in_channels={in_channels}"
                f"{' and the given --override values' if overrides else ''}: {err}"
            )
        raise InputError("--weights", err) from None
    if os.environ.get("NAPARI_SAM_VERBOSE") == "1":
        print(f"napari-sam: image encoder {model.dtype_reason}", file=sys.stderr)
    return model


def resolve_channels(channels, view):
    """The channel mapping for ``view``: ``channels`` (a ChannelSpec, or None for the default
    of its number of channels) checked against it."""
    from ..stacks.channels import ChannelSpec

    if channels is None and view.n_channels > 3:  # the command line's words, not the API's
        raise InputError("--channels", f"the image has {view.n_channels} channels; choose up to "
                         "three with --channels rgb:0,1,2 (or single:0), or give them all with "
                         "--channels adapt")  # fmt: skip
    try:
        return (channels or ChannelSpec.default_for(view.n_channels)).resolve(view.n_channels)
    except ValueError as err:
        raise InputError("--channels", err) from None
