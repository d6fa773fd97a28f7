"""The error every batch function raises for bad input: it names the argument."""

from __future__ import annotations

__all__ = ["InputError"]

MAX_MESSAGE = 640  # characters of one error line: long enough for a path to copy a file to


class InputError(Exception):
    """A user error, naming the argument: shown as one line ``napari-sam: error: ARG:
    message`` (exit code 2) by the command line, raised as is from Python."""

    def __init__(self, arg: str, message):
        message = " ".join(str(message).split())  # one line
        for known in (f"{arg.lstrip('-')}: ", "data: ", "axes: ", "channels: ", "path: "):
            if message.startswith(known):
                message = message[len(known) :]
                break
        if len(message) > MAX_MESSAGE:  # the advice comes last: cut before it, never in it
            head, tail = message[: MAX_MESSAGE // 4], message[MAX_MESSAGE // 4 - MAX_MESSAGE + 7 :]
            message = f"{head.rstrip()} [...] {tail.lstrip()}"
        super().__init__(f"{arg}: {message}")
