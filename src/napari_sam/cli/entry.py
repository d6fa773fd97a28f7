"""The ``napari-sam`` command line.

``napari-sam embed``: precompute the SAM embeddings of every slice of a stack into an on-disk
store that the napari plugin and :class:`~napari_sam.stacks.stack_predictor.StackPredictor` reuse.
``napari-sam auto`` / ``napari-sam segment``: label images, automatically or from prompt files
(see :mod:`napari_sam.cli.batch_commands`).

TensorFlow is imported only inside the commands, so ``napari-sam --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

__all__ = [
    "CLIError",
    "check_model",
    "check_weights",
    "check_writable",
    "main",
    "parse_channels",
    "parse_normalization",
    "parse_overrides",
    "setup_error_arg",
]

PROG = "napari-sam"
_MAX_MESSAGE = 500

_EMBED_EPILOG = """\
examples:
  napari-sam embed cells.tif --model sam_vit_b --out cells.emb.zarr
  napari-sam embed movie.npy --axes TCYX --channels rgb:2,0 --model sam_vit_b \\
      --weights sam_vit_b_01ec64.pth --normalization percentile:1,99.5 --out movie.emb.zarr

Run it again with the same settings and only the slices still missing are computed (an
interrupted run resumes). A store made with another model, weights or settings is refused
unless --overwrite is given.
"""


_EMBED_OPTIONS = [
    (("input",), dict(metavar="INPUT", help="a TIFF file, a .npy file or a zarr array directory")),
    (("--model",), dict(required=True, help="registered model, e.g. sam_vit_b, sam_tiny_nuclei")),
    (("--weights",), dict(metavar="FILE", help="checkpoint (Meta's .pth or a converted .npz); "
                          "default: the model's official weights, downloaded once")),
    (("--out",), dict(required=True, metavar="STORE", help="store directory to write")),
    (("--axes",), dict(help="one letter per dimension: Y, X, C (channels) or S (RGB samples), "
                       "slice axes T, Z, ...; e.g. ZYX, TCYX, YXS. Default: from the TIFF "
                       "file; YX for a 2-D array; required for other arrays")),
    (("--channels",), dict(metavar="MODE[:i,j,k]", help="channels given to the model: "
                           "rgb[:i,j,k] (up to three channel indices to R, G, B), single:i (one "
                           "channel as grey) or adapt (all C channels; the model is built with "
                           "in_channels=C). Default: grey or RGB for 1-3 channels")),
    (("--normalization",), dict(default="auto", metavar="MODE", help="intensity mapping to "
                                "0..255, fitted on the whole stack: auto (8-bit data as is, else "
                                "percentile), percentile:LOW,HIGH (default 0.1,99.9), minmax, "
                                "dtype, fixed:VMIN,VMAX, none. Default: auto")),
    (("--batch-size",), dict(type=int, default=1, metavar="N", help="slices per model call "
                             "(default 1)")),
    (("--overwrite",), dict(action="store_true", help="discard a store at STORE made with "
                            "another model, weights or settings")),
    (("--override",), dict(action="append", metavar="KEY=JSON", help="advanced: replace a model "
                           "configuration field (repeatable; must fit the weights), e.g. "
                           "--override input_size=[512,512]")),
]  # fmt: skip


class CLIError(Exception):
    """A user error: reported as one line ``napari-sam: error: ARG: message``, exit code 2."""

    def __init__(self, arg: str, message):
        message = " ".join(str(message).split())  # one line
        for known in (f"{arg.lstrip('-')}: ", "data: ", "axes: ", "channels: ", "path: "):
            if message.startswith(known):
                message = message[len(known) :]
                break
        if len(message) > _MAX_MESSAGE:
            message = f"{message[: _MAX_MESSAGE - 40].rstrip()} ... ({len(message)} characters)"
        super().__init__(f"{arg}: {message}")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``napari-sam: error: ...``) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


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
        raise CLIError(
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
        raise CLIError(
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
            raise CLIError(
                "--override",
                f"{item!r}: expected KEY=VALUE with KEY a model configuration field "
                f"({', '.join(sorted(fields - {'in_channels'}))})",
            )
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise CLIError(
                "--override", f"{item!r}: the value is not valid JSON (e.g. input_size=[512,512])"
            ) from None
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def check_weights(text: str | None) -> Path | None:
    """The ``--weights`` file, checked to be a readable, non-empty file (None stays None)."""
    if text is None:
        return None
    path = Path(text)
    if path.is_dir():
        raise CLIError(
            "--weights", f"{text!r} is a directory; expected a checkpoint file (Meta's .pth "
            "or a converted .npz)"
        )  # fmt: skip
    if not path.is_file():
        raise CLIError("--weights", f"{text!r}: no such file")
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except OSError as err:
        raise CLIError("--weights", f"cannot read {text!r} ({err.strerror or err})") from None
    if empty:
        raise CLIError("--weights", f"{text!r} is empty; expected a checkpoint file")
    return path


def check_writable(path: Path, arg: str) -> None:
    """Fail unless files can be created in folder ``path`` or, if it does not exist yet, in
    its nearest existing parent (a probe file is created and removed at once)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise CLIError(arg, f"cannot write to {str(path)!r}: {str(folder)!r} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".napari-sam-probe-"):
            pass
    except OSError as err:
        raise CLIError(arg, f"cannot write to {str(folder)!r} ({err.strerror or err})") from None


def check_model(name: str, in_channels: int, overrides: dict) -> None:
    """``--model`` is registered and the ``--override`` values make a valid configuration
    (no TensorFlow needed)."""
    from ..weights.registry import list_models, model_config

    if name not in list_models():
        raise CLIError("--model", f"unknown model {name!r}; available: {', '.join(list_models())}")
    try:
        model_config(name, in_channels, **overrides)
    except (ValueError, TypeError) as err:
        raise CLIError("--override", err) from None


def _import_tensorflow() -> None:
    """Import TensorFlow with its start-up log lines (printed before logging is set up, to
    file descriptor 2) held back; they are shown only if the import fails."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # device probing logs too
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _open_input(path: Path, axes: str | None):
    import numpy as np

    from ..stacks.view import StackView

    if not path.exists():
        raise CLIError("INPUT", f"{str(path)!r} does not exist")
    try:
        if path.suffix.lower() == ".npy" and path.is_file():
            data = np.load(path, mmap_mode="r", allow_pickle=False)
            if axes is None and data.ndim == 2:
                axes = "YX"
            if axes is None:
                raise CLIError(
                    "--axes",
                    f"required for {path.name!r} (a .npy array of shape {data.shape}); "
                    f"give one letter per dimension, e.g. --axes ZYX",
                )
            return StackView(data, axes)
        if path.is_dir() and not (path / "zarr.json").exists() and not (path / ".zarray").exists():
            raise CLIError("INPUT", f"{str(path)!r} is a directory but not a zarr array")
        view = StackView(path, axes)
    except CLIError:
        raise
    except ValueError as err:
        arg = "--axes" if str(err).startswith("axes:") else "INPUT"
        raise CLIError(arg, err) from None
    except Exception as err:
        raise CLIError(
            "INPUT",
            f"cannot read {str(path)!r} as a TIFF file, .npy file or zarr array directory "
            f"({type(err).__name__}: {err})",
        ) from None
    try:  # a truncated file fails here, not minutes later in the middle of the run
        for i in {0, len(view) - 1}:
            view.get_slice(i)
    except Exception as err:
        view.close()
        raise CLIError(
            "INPUT",
            f"cannot read the pixels of {str(path)!r}: the file is truncated or damaged "
            f"({type(err).__name__}: {err})",
        ) from None
    return view


def _run_embed(args) -> int:
    from ..stacks.store import StoreMismatchError, TqdmProgress, check_store_path

    channels = parse_channels(args.channels)
    normalization = parse_normalization(args.normalization)
    overrides = parse_overrides(args.override)
    if args.batch_size < 1:
        raise CLIError("--batch-size", f"expected a positive integer, got {args.batch_size}")
    out, inp = Path(args.out), Path(args.input)
    if out.exists() and not out.is_dir():
        raise CLIError("--out", f"{str(out)!r} is a file; expected a store directory")
    if inp.exists() and out.resolve() == inp.resolve():
        raise CLIError("--out", f"{str(out)!r} is the input; give the store another path")
    try:
        check_store_path(out)
    except StoreMismatchError as err:
        raise CLIError("--out", err) from None
    check_writable(out, "--out")
    weights = check_weights(args.weights)
    view = _open_input(inp, args.axes)
    with view:
        from ..stacks.channels import ChannelSpec

        try:
            channels = channels or ChannelSpec.default_for(view.n_channels)
            channels = channels.resolve(view.n_channels)
        except ValueError as err:
            raise CLIError("--channels", err) from None
        in_channels = channels.out_channels(view.n_channels)
        check_model(args.model, in_channels, overrides)
        _import_tensorflow()  # slow: after the quick checks
        model = _create_model(args.model, weights, in_channels, overrides)

        from ..stacks.stack_predictor import StackPredictor
        from ..stacks.store import EmbeddingStore

        try:
            store = EmbeddingStore(out, overwrite=args.overwrite, memory_budget=0)
            sp = StackPredictor(model, view, channels, normalization, store=store)
        except StoreMismatchError as err:
            msg = str(err).replace("pass overwrite=True", "pass --overwrite")
            raise CLIError("--out", msg) from None
        except OSError as err:
            msg = f"cannot write the store {str(out)!r} ({_reason(err)})"
            raise CLIError("--out", msg) from None
        except ValueError as err:
            raise CLIError(setup_error_arg(err), err) from None
        print(f"{PROG}: {len(view)} slice(s) of {view!r} -> {out}", file=sys.stderr)
        try:
            with TqdmProgress(desc="embedding", unit="slice", file=sys.stderr) as bar:
                res = sp.precompute(progress=bar, batch_size=args.batch_size)
        except OSError as err:  # the slices done so far are kept; a rerun resumes
            raise CLIError(
                "--out", f"cannot write the store {str(out)!r} ({_reason(err)}); the slices "
                "done so far are kept: free space and run the same command again to resume"
            ) from None  # fmt: skip
    repaired = f" ({res.repaired} damaged slice(s) recomputed)" if res.repaired else ""
    print(
        f"computed {res.computed} slice(s), reused {res.reused} of {res.total}{repaired}; "
        f"store: {out}"
    )
    return 0


def setup_error_arg(err: ValueError) -> str:
    """The argument a ValueError of setting up a stack (normalisation, channels) is about."""
    text = str(err)
    if text.startswith("image:"):  # e.g. a channel without one finite pixel value
        return "INPUT"
    return "--normalization" if text.startswith(("vmin", "normalization")) else "--channels"


def _reason(err: OSError) -> str:
    """The short reason of an OS error, e.g. 'No space left on device'."""
    return err.strerror or str(err)


def _create_model(name: str, weights, in_channels: int, overrides: dict):
    """The model with its weights (the arguments are checked first, without TensorFlow)."""
    from ..weights import create_model
    from ..weights.download import WeightsUnavailableError

    check_model(name, in_channels, overrides)
    try:
        return create_model(name, pretrained=weights or True, in_channels=in_channels, **overrides)
    except (ValueError, OSError, WeightsUnavailableError) as err:  # bad checkpoint, download
        if "does not match the model" in str(err):
            err = (
                f"the checkpoint does not fit model {name!r} with in_channels={in_channels}"
                f"{' and the given --override values' if overrides else ''}: {err}"
            )
        raise CLIError("--weights", err) from None


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-sam`` argument parser (subcommands)."""
    parser = _Parser(
        prog=PROG,
        description="Segment Anything (SAM) for microscopy: command line tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    embed = sub.add_parser(
        "embed",
        help="precompute the SAM embeddings of a stack into an on-disk store",
        description="Precompute the SAM image embedding of every slice of a stack into a store\n"
        "directory (zarr), with a progress bar; print how many slices were computed and reused.",
        epilog=_EMBED_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for names, kwargs in _EMBED_OPTIONS:
        embed.add_argument(*names, **kwargs)
    embed.set_defaults(run=_run_embed)
    from .batch_commands import add_batch_commands
    from .train_command import add_train_command

    add_batch_commands(sub)
    add_train_command(sub)
    for command in sub.choices.values():
        command.add_argument(
            "-v", "--verbose", action="store_true",
            help="show the full error (Python traceback) when something fails",
        )  # fmt: skip
    return parser


def main(argv=None) -> int:
    """Run the ``napari-sam`` command line; returns the exit code (2 for bad input).

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "verbose", False):
        import warnings

        warnings.showwarning = _show_warning
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except CLIError as err:
        _error(args, str(err))
        return 2
    except OSError as err:  # a file the checks could not foresee (disk full, a lost mount)
        where = f" {str(err.filename)!r}" if err.filename else ""
        _error(args, f"cannot read or write{where} ({_reason(err)})")
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line ``napari-sam: warning: ...``, printed above any progress bar."""
    from tqdm import tqdm

    tqdm.write(f"{PROG}: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _error(args, message: str) -> None:
    """Print ``napari-sam: error: message`` (with the traceback first when ``-v`` is given)."""
    if getattr(args, "verbose", False):
        import traceback

        traceback.print_exc(file=sys.stderr)
    print(f"{PROG}: error: {message}", file=sys.stderr)
