"""The on-disk layout of an embedding store: which files belong to it, checks and discarding.

Cheap (no zarr, no TensorFlow): the CLI checks a store path before loading a model. The layout
itself is described in :mod:`napari_sam.stacks.store`. Also the identity helpers the store keys
its contents on: :func:`package_version` and :func:`slice_hash`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

__all__ = [
    "CHUNK",
    "RECORD_NAME",
    "StoreMismatchError",
    "check_store_path",
    "discard_store",
    "files_in",
    "is_store_file",
    "package_version",
    "slice_hash",
]


class StoreMismatchError(ValueError):
    """An on-disk store was made for another encoder, settings, version or stack."""


RECORD_NAME = re.compile(r"\d+\.json")  # records/<i>.json
CHUNK = ("0", "0", "0")  # c/<i>/0/0/0: one chunk per slice


def files_in(path: Path) -> list[str]:
    """Every file below ``path`` (empty folders do not count)."""
    return [os.path.join(root, n) for root, _, names in os.walk(path) for n in names]


def is_store_file(path: Path, f: Path) -> bool:
    """Whether ``f`` is a file of the store layout: zarr.json, c/<i>/0/0/0, records/<i>.json
    (or a record's temporary file)."""
    parts = f.relative_to(path).parts
    if parts == ("zarr.json",):
        return True
    if len(parts) == 2 and parts[0] == "records":
        return bool(RECORD_NAME.fullmatch(parts[1])) or parts[1].endswith(".tmp")
    return len(parts) == 5 and parts[0] == "c" and parts[1].isdigit() and parts[2:] == CHUNK


def check_store_path(path) -> None:
    """Fail unless ``path`` is new, an empty folder, or (by its files) an embedding store.

    Cheap (no zarr, no TensorFlow): the CLI calls it before loading a model. Without
    ``zarr.json``, a folder of only the store's own files (what a reset killed half-way
    leaves) is a store too; anything else is the user's.

    Raises
    ------
    StoreMismatchError
        If ``path`` is a file, a zarr array that is not a store, or a folder of other files.
    """
    path = Path(path)
    meta = path / "zarr.json"
    if meta.is_file():
        try:
            attrs = json.loads(meta.read_text()).get("attributes", {})
        except (OSError, ValueError, AttributeError):
            return  # unreadable metadata: reported (and discarded on overwrite) when opened
        if isinstance(attrs, dict) and "napari_sam" not in attrs:
            raise StoreMismatchError(f"path: {path} holds a zarr array that is no store")
    elif path.exists() and not path.is_dir():
        raise StoreMismatchError(f"path: {path} is a file, not an embedding store directory")
    elif path.exists() and not all(is_store_file(path, Path(f)) for f in files_in(path)):
        raise StoreMismatchError(
            f"path: {path} is a non-empty directory, not a store; give an empty or new directory"
        )


def discard_store(path: Path) -> None:
    """Delete the records, chunks and metadata of the store at ``path``: only files of the
    store's own layout; anything else stops it, with nothing of the user's removed.

    Records go first, so whatever a kill leaves, no record outlives its chunk; ``zarr.json``
    goes last, so a half-discarded store is still recognised as one.
    """
    foreign = [f for f in files_in(path) if not is_store_file(path, Path(f))]
    if foreign:
        raise StoreMismatchError(
            f"path: {path} holds files that are not part of an embedding store "
            f"({', '.join(sorted(foreign)[:3])}); nothing was deleted: move them away or use "
            "another path"
        )
    for folder in (path / "records", path / "c"):
        if folder.is_dir():
            shutil.rmtree(folder)
    (path / "zarr.json").unlink(missing_ok=True)


def package_version() -> str:
    """``napari_sam.__version__``, else the installed distribution's version, else unknown."""
    try:
        from napari_sam import __version__ as v
    except ImportError:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("napari-sam-tf")
        except PackageNotFoundError:
            v = "0+unknown"
    return str(v)


def slice_hash(image: np.ndarray) -> str:
    """BLAKE2b hash of one slice's dtype, shape and raw bytes (C order)."""
    image = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{image.dtype.str}{image.shape}".encode())
    h.update(memoryview(image).cast("B"))
    return h.hexdigest()
