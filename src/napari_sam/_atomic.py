"""Writing a file so that it is either complete or absent, never half-written."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path, write: Callable[[BinaryIO], object], fsync: bool = False) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary file beside it, then rename.

    The temporary file (``.<name>.<host>_<pid>-<thread>.tmp``: unique to the writer, also
    among the machines of a cluster sharing a folder) is removed if
    anything fails, so a crash or an error never leaves ``path`` half-written. ``fsync``
    flushes the data to disk before the rename (for files a resumed run will trust).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{_HOST}_{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


_HOST = socket.gethostname().replace(".", "-").replace("_", "-") or "host"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(folder) -> list[Path]:
    """Remove the temporary files :func:`write_atomic` left in ``folder`` when its process
    was killed; those of processes still running (another writer) are left alone, and so are
    those of other machines (whose processes cannot be checked from here).

    Returns the files removed.
    """
    removed = []
    for f in Path(folder).iterdir():
        name = f.name
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        host, _, writer = name[: -len(".tmp")].rpartition(".")[2].rpartition("_")
        if host and host != _HOST:
            continue  # another machine's writer
        pid = writer.partition("-")[0]
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        f.unlink(missing_ok=True)
        removed.append(f)
    return removed
