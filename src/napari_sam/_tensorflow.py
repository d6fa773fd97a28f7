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

__all__ = ["TENSORFLOW_DEFAULTS", "import_tensorflow", "lazy_exports", "set_tensorflow_defaults"]

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


# Set before TensorFlow is imported (it reads them once), unless the user set them.
TENSORFLOW_DEFAULTS = {
    # oneDNN's rewrites: TensorFlow turns them on by itself on CPUs with AVX-512 VNNI/BF16 or
    # AMX, and there oneDNN computes the 3 x 3 convolutions of micro-sam's instance decoders
    # on a 512 x 512 map with its reference kernel: one call takes many minutes
    "TF_ENABLE_ONEDNN_OPTS": "0",
    # the CPU allocator: TensorFlow's default hands every large tensor back to the system and
    # takes fresh pages for the next, so each one is page-faulted anew (a 64 MiB elementwise
    # op: 22 ms, 4 ms with the pooling allocator; a sam_vit_t embedding 1.34 s -> 0.91 s,
    # sam_vit_b 9.8 s -> 7.9 s); the pool keeps freed memory for the next tensors
    "TF_CPU_ALLOCATOR_USE_BFC": "true",
}


def set_tensorflow_defaults() -> None:
    """Set :data:`TENSORFLOW_DEFAULTS` where the user did not (docs/perf.md).

    TensorFlow reads these variables once, when it is imported (and creates its CPU
    allocator), so this runs when ``napari_sam`` is imported; a script that imports
    TensorFlow first decides for itself.
    """
    if "tensorflow" not in sys.modules:
        for name, value in TENSORFLOW_DEFAULTS.items():
            os.environ.setdefault(name, value)


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
