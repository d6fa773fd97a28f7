"""The error every batch function raises for bad input: it names the argument."""

from __future__ import annotations

__all__ = ["InputError"]

MAX_MESSAGE = 640  # characters of one error line: long enough for a path to copy a file to


class InputError(Exception):
    """A user error, naming the argument: shown as one line ``napari-sam: error: ARG:
    message`` (exit code 2) by the command line, raised as is from Python.

    Attributes
    ----------
    arg : str
        The argument, e.g. ``"--channels"`` or ``"INPUT"``.
    message : str
        What was wrong and what was expected (one line).
    """

    def __init__(self, arg: str, message):
        message = " ".join(str(message).split())  # one line
        for known in (f"{arg.lstrip('-')}: ", "data: ", "axes: ", "channels: ", "path: "):
            if message.startswith(known):
                message = message[len(known) :]
                break
        if len(message) > MAX_MESSAGE:  # the advice comes last: cut before it, never in it
            head, tail = message[: MAX_MESSAGE // 4], message[MAX_MESSAGE // 4 - MAX_MESSAGE + 7 :]
            message = f"{head.rstrip()} [...] {tail.lstrip()}"
        self.arg, self.message = arg, message
        super().__init__(f"{arg}: {message}")

    def __reduce__(self):  # survives pickling (a dask task's error) with its two parts
        return type(self), (self.arg, self.message)
