"""Where a command's time goes: start-up (TensorFlow, the model) and the work itself.

The batch functions time their steps with :func:`timed`; ``napari-sam -v`` prints
:func:`report` at the end, so that start-up and segmentation are told apart.
"""

from __future__ import annotations

import contextlib
import time

__all__ = ["report", "reset", "timed"]

_TIMES: dict[str, float] = {}
_START = [time.perf_counter()]


def reset() -> None:
    """Forget the times so far and start the clock of the total again."""
    _TIMES.clear()
    _START[0] = time.perf_counter()


@contextlib.contextmanager
def timed(step: str):
    """Add the time the ``with`` block takes to ``step``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _TIMES[step] = _TIMES.get(step, 0.0) + time.perf_counter() - t0


def report() -> str:
    """``"TensorFlow import 6.1 s, model load 0.8 s, ..., total 12.3 s"``."""
    parts = [f"{step} {seconds:.1f} s" for step, seconds in _TIMES.items()]
    return ", ".join([*parts, f"total {time.perf_counter() - _START[0]:.1f} s"])
