"""Import TensorFlow so that it cannot clash with an OpenGL driver's LLVM.

Mesa's OpenGL drivers (llvmpipe under Xvfb, radeonsi, ...) load ``libLLVM`` into the process;
TensorFlow's libraries are loaded with ``RTLD_GLOBAL`` and carry their own, different LLVM.
Whichever comes second binds to the other's symbols and the process crashes (in
``glClear``, or while TensorFlow loads). Loading TensorFlow with ``RTLD_DEEPBIND`` *after*
napari has made its OpenGL context makes TensorFlow use its own symbols and leaves Mesa's
alone. The plugin imports the core's TensorFlow modules only through :func:`ensure_tensorflow`.
"""

from __future__ import annotations

from .._tensorflow import import_tensorflow


def ensure_tensorflow() -> None:
    """Import TensorFlow (once, quietly) with ``RTLD_DEEPBIND`` where the platform has it."""
    import_tensorflow(deepbind=True)
