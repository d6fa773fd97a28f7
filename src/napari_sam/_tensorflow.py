"""Importing TensorFlow quietly: its start-up lines are held back unless asked for.

TensorFlow and absl print to file descriptor 2 before any logging is set up ("All log
messages before absl::InitializeLog() ...", "Could not find cuda drivers", "failed call to
cuInit", "rebuild TensorFlow with the appropriate compiler flags"); a biologist reads that as
"it is broken". :func:`import_tensorflow` imports it, and probes the devices (which logs
too), with that descriptor redirected to a temporary file, shown only if the import fails.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading

__all__ = ["import_tensorflow", "keep_onednn_off", "lazy_exports"]

_LOCK = threading.Lock()


def import_tensorflow(verbose: bool = False, deepbind: bool = False) -> None:
    """Import TensorFlow once; its start-up log lines only with ``verbose``.

    Parameters
    ----------
    verbose : bool
        Show TensorFlow's start-up lines (``napari-sam -v``).
    deepbind : bool
        Load TensorFlow's libraries with ``RTLD_DEEPBIND`` where the platform has it (next to
        an OpenGL driver's LLVM in napari, see :mod:`napari_sam._napari._tf`).
    """
    if "tensorflow" in sys.modules:
        return
    with _LOCK:
        if "tensorflow" in sys.modules:
            return
        flags = getattr(os, "RTLD_DEEPBIND", 0) if deepbind else 0
        old = sys.getdlopenflags() if flags and hasattr(sys, "setdlopenflags") else None
        if old is not None:
            sys.setdlopenflags(os.RTLD_NOW | flags)
        try:
            if verbose:
                _import()
            else:
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
                _held_back(_import)
        finally:
            if old is not None:
                sys.setdlopenflags(old)


def keep_onednn_off() -> None:
    """Leave TensorFlow's oneDNN rewrites off unless the user set ``TF_ENABLE_ONEDNN_OPTS``.

    TensorFlow turns them on by itself on CPUs with AVX-512 VNNI/BF16 or AMX, and there
    oneDNN computes the 3 x 3 convolutions of micro-sam's instance decoders on a 512 x 512
    map with its reference kernel: one call takes many minutes (docs/perf.md). TensorFlow
    reads the variable once, when it is imported, so this runs when ``napari_sam`` is.
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def _import() -> None:
    import tensorflow as tf

    tf.config.list_physical_devices()  # device probing logs too


def _held_back(run) -> None:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            run()
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def lazy_exports(package: str, table: dict[str, str]):
    """A module ``__getattr__`` loading ``table``'s names (name -> module, absolute or
    relative to ``package``) on first use, so that importing the package never imports
    TensorFlow (the CLI checks its options and napari reads the manifest without it)."""

    def __getattr__(name):
        if name in table:
            import importlib

            return getattr(importlib.import_module(table[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
