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

__all__ = ["ZIP_ERRORS", "InvalidCheckpoint", "materialize"]

ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError)
_MAX_EXPANDED = 2**24  # elements a stride-0 (expanded) tensor may have beyond its storage size


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
        try:
            raw = zf.read(record)
        except KeyError:
            raise InvalidCheckpoint(f"the storage record {record!r} is missing") from None
        except ZIP_ERRORS as exc:
            raise InvalidCheckpoint(f"the storage record {record!r} is corrupt ({exc})") from None
        raw_code = {"bf16": "u2", "b1": "u1"}.get(ref.code, ref.code)
        dtype = np.dtype(raw_code).newbyteorder("<" if byteorder == "little" else ">")
        need = ref.numel * dtype.itemsize
        if len(raw) != need:
            raise InvalidCheckpoint(
                f"the storage record {record!r} has {len(raw)} bytes, but {ref.numel} elements "
                f"of {dtype.itemsize} bytes need {need} (truncated or corrupt file)"
            )
        flat = np.frombuffer(raw, dtype=dtype)
        for name in names:
            try:
                arrays[name] = _to_array(flat, tensors[name], name, ref.code)
            except (ValueError, OverflowError, MemoryError) as exc:
                raise InvalidCheckpoint(f"tensor {name!r} cannot be built ({exc})") from None
        del raw, flat
    return {name: arrays[name] for name in tensors}
