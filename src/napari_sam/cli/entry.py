"""The ``napari-sam`` parser and :func:`main`: errors as one line, exit code 2.

``napari-sam embed``: precompute the SAM embeddings of every slice of a stack into an on-disk
store that the napari plugin and :class:`~napari_sam.stacks.stack_predictor.StackPredictor`
reuse. ``napari-sam auto`` / ``napari-sam segment``: label images, automatically or from
prompt files. ``napari-sam train``: fine-tune. The work of each is in :mod:`napari_sam.batch`.

TensorFlow is imported only inside the commands, so ``napari-sam --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from ..batch.checks import os_reason, parse_channels, parse_normalization, parse_overrides
from ..batch.errors import InputError as CLIError
from .embed import add_embed_command
from .label import add_label_commands
from .train import add_train_command

__all__ = [
    "CLIError",
    "build_parser",
    "main",
    "parse_channels",
    "parse_normalization",
    "parse_overrides",
]

PROG = "napari-sam"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``napari-sam: error: ...``) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-sam`` argument parser (subcommands)."""
    parser = _Parser(
        prog=PROG,
        description="Segment Anything (SAM) for microscopy: command line tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    add_embed_command(sub)
    add_label_commands(sub)
    add_train_command(sub)
    for command in sub.choices.values():
        command.add_argument(
            "-v", "--verbose", action="store_true",
            help="show TensorFlow's start-up lines, the image encoder's dtype, the times, and "
            "the full error (Python traceback) when something fails",
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
    if args.command is None:
        parser.print_help()
        return 2
    from ..batch import timing

    timing.reset()
    verbose = getattr(args, "verbose", False)
    try:
        with _console(verbose):
            code = args.run(args)
        if verbose:
            print(f"{PROG}: times: {timing.report()}", file=sys.stderr)
        return code
    except CLIError as err:
        _error(args, str(err))
        return 2
    except OSError as err:  # a file the checks could not foresee (disk full, a lost mount)
        where = f" {str(err.filename)!r}" if err.filename else ""
        _error(args, f"cannot read or write{where} ({os_reason(err)})")
        return 2
    except KeyboardInterrupt as err:  # batch.auto.Interrupted says what was kept
        said = str(err.args[0]) if err.args else "interrupted; run the same command again to resume"
        print(f"{PROG}: {said}", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _console(verbose: bool):
    """While a command runs: one-line warnings, or with ``-v`` TensorFlow's start-up lines
    (``NAPARI_SAM_VERBOSE``); both put back afterwards (``main`` may run in a bigger app)."""
    import warnings

    saved = os.environ.get("NAPARI_SAM_VERBOSE"), warnings.showwarning
    if verbose:
        os.environ["NAPARI_SAM_VERBOSE"] = "1"
    else:
        warnings.showwarning = _show_warning
    try:
        yield
    finally:
        if saved[0] is None:
            os.environ.pop("NAPARI_SAM_VERBOSE", None)
        else:
            os.environ["NAPARI_SAM_VERBOSE"] = saved[0]
        warnings.showwarning = saved[1]


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
