"""Import TensorFlow so that it cannot clash with an OpenGL driver's LLVM.

Mesa's OpenGL drivers (llvmpipe under Xvfb, radeonsi, ...) load ``libLLVM`` into the process;
TensorFlow's libraries are loaded with ``RTLD_GLOBAL`` and carry their own, different LLVM.
Whichever comes second binds to the other's symbols and the process crashes (in
``glClear``, or while TensorFlow loads). Loading TensorFlow with ``RTLD_DEEPBIND`` *after*
napari has made its OpenGL context makes TensorFlow use its own symbols and leaves Mesa's
alone. The plugin imports the core's TensorFlow modules only through :func:`ensure_tensorflow`.
"""

from __future__ import annotations

import functools
import gc

from .._tensorflow import import_tensorflow


def ensure_tensorflow() -> None:
    """Import TensorFlow (once, quietly) with ``RTLD_DEEPBIND`` where the platform has it.

    The objects alive once it is imported (napari's, Qt's, TensorFlow's and Keras' modules:
    over half a million) are then moved out of the garbage collector's sight (``gc.freeze``):
    they live as long as the process, and a full collection walking them held the GIL for
    0.6 s in the middle of the widget's warm-up, freezing napari's event loop.
    """
    import_tensorflow(deepbind=True)
    _freeze_what_is_there()


@functools.cache  # once per process
def _freeze_what_is_there() -> None:
    import keras  # noqa: F401  (its modules are as permanent as TensorFlow's)

    gc.collect()
    gc.freeze()
