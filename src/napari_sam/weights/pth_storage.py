"""Copying the tensors of a PyTorch zip checkpoint out of its storage records (numpy only).

Used by :mod:`napari_sam.weights.pth_reader` once its restricted unpickler has turned the
pickle into lazy tensor records: each ``data/<key>`` record is read once, checked against the
element count the pickle declared, and every tensor viewing it copied into a new C-contiguous
native array.
"""

from __future__ import annotations

import math
import zipfile
import zlib

import numpy as np
from numpy.lib.stride_tricks import as_strided

try:
    from ml_dtypes import bfloat16 as _BFLOAT16
except ImportError:  # pragma: no cover - ml_dtypes comes with tensorflow
    _BFLOAT16 = None

__all__ = ["MAX_PICKLE", "ZIP_ERRORS", "InvalidCheckpoint", "materialize", "read_record"]

ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError)
_MAX_EXPANDED = 2**24  # elements a stride-0 (expanded) tensor may have beyond its storage size
MAX_PICKLE = 1 << 26  # bytes of a checkpoint's data.pkl (the structure, no tensor data)
_CHUNK = 1 << 24  # bytes read from a record at a time
_MAX_RATIO, _SLACK = 64, 1 << 20  # a compressed record may inflate this much (torch stores them)


class InvalidCheckpoint(Exception):
    """A problem with a checkpoint's content (the reader adds the path)."""


def _to_array(flat: np.ndarray, t, name: str, code: str) -> np.ndarray:
    """Copy tensor ``t`` out of its storage ``flat`` into a new C-contiguous native array."""
    native = flat.dtype.newbyteorder("=")
    if 0 in t.size:
        view = np.zeros(t.size, native)
    else:
        end = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride, strict=True)) + 1
        if end > flat.size:
            raise InvalidCheckpoint(
                f"tensor {name!r} needs {end} elements but its storage has {flat.size}"
            )
        if math.prod(t.size) > max(flat.size, _MAX_EXPANDED):
            raise InvalidCheckpoint(f"tensor {name!r} of size {t.size} expands its storage too far")
        strides = tuple(s * flat.itemsize for s in t.stride)
        view = as_strided(flat[t.offset :], shape=t.size, strides=strides, writeable=False)
    if code == "b1":
        return np.not_equal(view, 0)
    array = np.array(view, dtype=native, order="C")
    if code == "bf16":
        if _BFLOAT16 is not None:
            return array.view(_BFLOAT16)
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


def read_record(zf: zipfile.ZipFile, record: str, need: int | None = None,
                limit: int | None = None) -> np.ndarray:
    """The bytes of one archive record, checked against its sizes before anything is inflated.

    The record's declared uncompressed size must be ``need`` (or at most ``limit``), and a
    compressed record may inflate at most 64-fold (torch stores its records uncompressed): a
    zip bomb is refused from its header. The bytes are read in bounded chunks into one buffer,
    never more than the declared size.

    Parameters
    ----------
    zf : zipfile.ZipFile
        The open archive.
    record : str
        The record's name.
    need : int, optional
        The exact size the record must have.
    limit : int, optional
        The largest size accepted when ``need`` is not known.

    Returns
    -------
    numpy.ndarray
        The record's bytes (``uint8``).

    Raises
    ------
    InvalidCheckpoint
        The record is missing, of the wrong size, inflates too far, or is corrupt.
    """
    try:
        info = zf.getinfo(record)
    except KeyError:
        raise InvalidCheckpoint(f"the storage record {record!r} is missing") from None
    size = info.file_size
    if need is not None and size != need:
        raise InvalidCheckpoint(
            f"the storage record {record!r} has {size} bytes, but its tensors need {need} "
            "(truncated or corrupt file)"
        )
    if limit is not None and size > limit:
        raise InvalidCheckpoint(f"the record {record!r} declares {size} bytes, over {limit}")
    if info.compress_type != zipfile.ZIP_STORED and size > _MAX_RATIO * info.compress_size + _SLACK:
        raise InvalidCheckpoint(
            f"the record {record!r} would inflate from {info.compress_size} to {size} bytes "
            "(a zip bomb?); refused before reading it"
        )
    buf = np.empty(size, np.uint8)
    view, pos = memoryview(buf), 0
    try:
        with zf.open(info) as f:
            while pos < size:
                n = f.readinto(view[pos : pos + _CHUNK])
                if not n:
                    break
                pos += n
    except ZIP_ERRORS as exc:
        raise InvalidCheckpoint(f"the storage record {record!r} is corrupt ({exc})") from None
    if pos != size:
        raise InvalidCheckpoint(
            f"the storage record {record!r} has {pos} bytes, but declares {size} "
            "(truncated or corrupt file)"
        )
    return buf


def materialize(zf: zipfile.ZipFile, prefix: str, tensors: dict, byteorder: str) -> dict:
    """Read each storage record once and build every tensor viewing it.

    Parameters
    ----------
    zf : zipfile.ZipFile
        The open checkpoint.
    prefix : str
        The archive's ``<dir>/``.
    tensors : dict
        Name -> lazy tensor record (``storage``, ``offset``, ``size``, ``stride``; the storage
        with ``key``, ``code``, ``numel``).
    byteorder : str
        ``"little"`` or ``"big"``.

    Raises
    ------
    InvalidCheckpoint
        A record is missing, corrupt, of the wrong size, or a tensor does not fit it.
    """
    by_storage: dict[str, list[str]] = {}
    for name, t in tensors.items():
        by_storage.setdefault(t.storage.key, []).append(name)
    arrays = {}
    for key, names in by_storage.items():
        refs = {tensors[name].storage for name in names}
        if len(refs) != 1:
            raise InvalidCheckpoint(f"storage {key!r} is referenced with different types or sizes")
        ref = refs.pop()
        record = f"{prefix}data/{key}"
        raw_code = {"bf16": "u2", "b1": "u1"}.get(ref.code, ref.code)
        dtype = np.dtype(raw_code).newbyteorder("<" if byteorder == "little" else ">")
        raw = read_record(zf, record, need=ref.numel * dtype.itemsize)
        flat = raw.view(dtype)
        for name in names:
            try:
                arrays[name] = _to_array(flat, tensors[name], name, ref.code)
            except (ValueError, OverflowError, MemoryError) as exc:
                raise InvalidCheckpoint(f"tensor {name!r} cannot be built ({exc})") from None
        del raw, flat
    return {name: arrays[name] for name in tensors}
