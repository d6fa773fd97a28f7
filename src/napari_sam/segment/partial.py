"""Per-slice results kept in a work folder while a stack is segmented, so a killed run resumes.

Layout of the work folder (``<output>.partial/``)::

    key.json             what the results were computed from (input file, model, settings)
                         and the hash of it; written before any slice
    .lock                held (an OS file lock) by the one run writing the folder; a second
                         run on the same output stops with :class:`PartialLockedError`
    slice_<n>.npy        the 2-D label image of slice n (its position in the view's slice
                         order), before 3-D linking; each written to a temporary file first,
                         then renamed with ``os.replace``
    tile_<n>_<t>.npz     the candidate masks of tile t of a tiled slice n not finished yet
                         (:meth:`PartialResults.tiles_of`), written the same way; removed
                         once the slice's labels are stored

A folder whose key differs from the current one is discarded, never reused. The folder is
deleted once the output is written. Used by ``napari-sam auto`` through the ``cache``
argument of :func:`napari_sam.segment.driver.segment_stack`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from .._atomic import remove_stale_temps, write_atomic

__all__ = [
    "PartialLockedError",
    "PartialMismatchError",
    "PartialResults",
    "remove_work_folder",
    "work_folder",
]

FORMAT = 1
_SLICE = re.compile(r"slice_(\d+)\.npy")
_TILE = re.compile(r"tile_(\d+)_(\d+)\.npz")
_LOCK = ".lock"


class PartialMismatchError(ValueError):
    """The work folder holds files that are not partial results: it is left alone."""


class PartialLockedError(PartialMismatchError):
    """Another run is writing the work folder (it holds the folder's lock)."""


def _acquire(path: Path) -> FileLock:
    lock = FileLock(path / _LOCK, is_singleton=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise PartialLockedError(
            f"another napari-sam run is writing {path} (the same output); wait for it to "
            "finish or give another output"
        ) from None
    return lock


def _key_of(fields: dict) -> str:
    text = json.dumps({"format": FORMAT, **fields}, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def work_folder(output) -> Path:
    """The work folder of an output file: ``<output>.partial`` next to it."""
    output = Path(output)
    return output.with_name(output.name + ".partial")


def _check_ours(path: Path) -> None:
    if not path.is_dir():
        raise PartialMismatchError(f"{path} exists and is not a work folder")
    foreign = [
        f.name for f in path.iterdir()
        if f.name not in ("key.json", _LOCK) and not _SLICE.fullmatch(f.name)
        and not _TILE.fullmatch(f.name)
        and not (f.name.startswith(".") and f.name.endswith(".tmp"))
    ]  # fmt: skip
    if foreign:
        raise PartialMismatchError(
            f"{path} holds files that are not partial results ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); move them away or delete the folder"
        )


def remove_work_folder(path, lock: FileLock | None = None) -> bool:
    """Delete a work folder if it exists (after checking it holds only partial results).

    Parameters
    ----------
    path : str or os.PathLike
        The work folder.
    lock : filelock.FileLock, optional
        The folder's lock, held by the caller; default: taken here.

    Raises
    ------
    PartialMismatchError
        The folder holds other files (it is left alone).
    PartialLockedError
        Another run holds the folder's lock.
    """
    path = Path(path)
    if not path.exists():
        return False
    _check_ours(path)  # a file, or a folder of other files: left alone
    own = lock is None
    lock = _acquire(path) if own else lock
    try:
        # the key first: a kill half way leaves a folder that is discarded next time
        (path / "key.json").unlink(missing_ok=True)
        shutil.rmtree(path)
    finally:
        if own:
            lock.release()
    return True


class PartialResults:
    """Finished per-slice label images of one stack, on disk, keyed by what made them.

    Parameters
    ----------
    path : str or os.PathLike
        The work folder (created if missing).
    fields : dict
        JSON-serialisable description of everything the results depend on (input file and
        its size and modification time, model and weights, channels, normalisation, ...).
    n_slices : int
        Number of slices of the stack; slice files outside ``range(n_slices)`` are ignored.
    shape : tuple of int
        ``(H, W)`` of a slice; files of another shape are ignored (recomputed).
    overwrite : bool
        Discard whatever the folder holds, even if the key matches.

    Attributes
    ----------
    discarded : str or None
        Why an existing folder was discarded (other settings, or ``overwrite``); None if not.
    reused, computed : int
        Slices served by :meth:`get` and stored by :meth:`put` so far.
    tiles_reused, tiles_computed : int
        Tiles of unfinished slices served and stored (see :meth:`tiles_of`).

    Raises
    ------
    PartialMismatchError
        If ``path`` exists but is not a work folder (a file, or a folder holding other files).
    PartialLockedError
        If another run is writing the folder. The lock is held until :meth:`discard` or
        :meth:`close` (or the end of a ``with`` block).
    """

    def __init__(self, path, fields: dict, n_slices: int, shape, overwrite: bool = False):
        self.path = Path(path)
        self.fields = dict(fields)
        self.key = _key_of(self.fields)
        self.n_slices, self.shape = int(n_slices), tuple(int(s) for s in shape)
        self.reused = self.computed = 0
        self.tiles_reused = self.tiles_computed = 0
        self.discarded = None
        if self.path.exists():
            _check_ours(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = _acquire(self.path)
        try:
            self._open(overwrite)
        except BaseException:
            self.close()
            raise

    def _open(self, overwrite: bool) -> None:
        if (self.path / "key.json").exists() or self.done():
            stored = self._stored_key()
            if overwrite:
                self.discarded = "--overwrite"
            elif stored is None:  # killed before the key was written: keep it if still empty
                self.discarded = "no readable key file" if self.done() else None
            elif stored.get("key") != self.key:
                old = stored.get("fields", {})
                diff = sorted(k for k in set(old) | set(self.fields)
                              if old.get(k) != self.fields.get(k))  # fmt: skip
                self.discarded = "made with other settings (" + ", ".join(diff or ["format"]) + ")"
            if self.discarded is not None:
                self._clear()
        if not (self.path / "key.json").exists():
            record = json.dumps({"key": self.key, "fields": self.fields}, indent=1, default=str)
            write_atomic(self.path / "key.json", lambda f: f.write(record.encode()), fsync=True)
        remove_stale_temps(self.path)  # left by a killed writer (we hold the lock)

    def _clear(self) -> None:
        """Delete the results and the key (keeping the folder and its lock)."""
        (self.path / "key.json").unlink(missing_ok=True)  # first: see remove_work_folder
        for f in self.path.iterdir():
            if _SLICE.fullmatch(f.name) or _TILE.fullmatch(f.name):
                f.unlink()

    def _stored_key(self) -> dict | None:
        try:
            stored = json.loads((self.path / "key.json").read_text())
            return stored if isinstance(stored, dict) else None
        except (OSError, ValueError):
            return None

    def done(self) -> list[int]:
        """Slices with a result on disk."""
        out = []
        for f in self.path.iterdir():
            m = _SLICE.fullmatch(f.name)
            if m and int(m.group(1)) < self.n_slices:
                out.append(int(m.group(1)))
        return sorted(out)

    def get(self, n: int) -> np.ndarray | None:
        """The label image of slice ``n``, or None if it is missing or unreadable."""
        try:
            labels = np.load(self.path / f"slice_{int(n)}.npy", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if labels.shape != self.shape or labels.dtype.kind not in "ui":
            return None
        self.reused += 1
        return labels

    def put(self, n: int, labels: np.ndarray) -> None:
        """Store the label image of slice ``n`` (atomically)."""
        labels = np.ascontiguousarray(labels)
        write_atomic(self.path / f"slice_{int(n)}.npy", lambda f: np.save(f, labels), fsync=True)
        self.computed += 1
        for f in self.path.glob(f"tile_{int(n)}_*.npz"):  # the slice's tiles: done with
            f.unlink(missing_ok=True)

    def tiles_of(self, n: int) -> TileResults:
        """The per-tile results of slice ``n`` (a large tiled slice resumes tile by tile)."""
        return TileResults(self, int(n))

    def discard(self) -> None:
        """Delete the work folder (after checking it holds only partial results)."""
        try:
            remove_work_folder(self.path, lock=self._lock)
        finally:
            self.close()

    def close(self) -> None:
        """Release the folder's lock (the results stay for a later run)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def tile_count(self) -> int:
        """Tiles with results on disk (of slices not finished)."""
        return sum(1 for f in self.path.iterdir() if _TILE.fullmatch(f.name))

    def __enter__(self) -> PartialResults:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TileResults:
    """The results of each tile of one slice in a work folder (``get(t)``, ``put(t, arrays)``),
    as :func:`napari_sam.segment.tiled.segment_tiled` asks for them."""

    def __init__(self, results: PartialResults, n: int):
        self.results, self.n = results, n

    def _path(self, t: int) -> Path:
        return self.results.path / f"tile_{self.n}_{int(t)}.npz"

    def get(self, t: int) -> dict | None:
        """The arrays stored for tile ``t``, or None (missing or unreadable)."""
        try:
            with np.load(self._path(t), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
            return None
        self.results.tiles_reused += 1
        return arrays

    def put(self, t: int, arrays: dict) -> None:
        """Store the arrays of tile ``t`` (atomically)."""
        write_atomic(self._path(t), lambda f: np.savez(f, **arrays), fsync=True)
        self.results.tiles_computed += 1
