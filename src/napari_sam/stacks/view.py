"""Slice-by-slice views over image stacks (numpy, dask, zarr, TIFF files).

A :class:`StackView` names every axis of an N-D array with a letter. ``Y`` and ``X`` are the
spatial axes SAM sees, ``C`` or ``S`` (RGB samples) is the channel axis, and every other axis
(``T``, ``Z``, ...) indexes 2-D slices. Slices are read lazily, one at a time, so stacks larger
than memory work.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["SLICE_AXES", "SliceIndexError", "StackView", "is_zarr_directory"]

#: Letters accepted for axes that index slices (tifffile / OME naming).
SLICE_AXES = "TZPMREHLVAJKB"
_SPATIAL = "YX"
_CHANNEL = "CS"
_UNKNOWN_TIFF_AXES = "QI"


def _suggest_axes(file_axes: str) -> str:
    """tifffile's axes with each unknown letter (Q, I) replaced by an unused slice letter,
    e.g. ``QYX`` -> ``ZYX``, ``IQYX`` -> ``TZYX``, ``QQYX`` -> ``ZTYX`` (always valid)."""
    out = ""
    for a in file_axes:
        if a in _UNKNOWN_TIFF_AXES:
            prefer = {"Q": "Z", "I": "T"}[a] + "ZT" + SLICE_AXES
            a = next(b for b in prefer if b not in file_axes and b not in out)
        out += a
    return out


class SliceIndexError(IndexError, ValueError):
    """A slice index is out of range (both an ``IndexError`` and a ``ValueError``)."""


def _open_tiff(path: Path):
    """Open the first series of a TIFF file as a lazy zarr array; return (array, axes, tif)."""
    import tifffile
    import zarr

    tif = tifffile.TiffFile(path)
    try:
        series = tif.series[0]
        if series.dataoffset is not None and not tif.is_ome:  # contiguous, uncompressed
            try:  # memory-mapped: a tile reads its own rows, not the whole (single-strip) page
                return tifffile.memmap(path, series=0, mode="r"), series.axes, tif
            except (ValueError, OSError):  # e.g. a truncated file: read through zarr below
                pass
        store = series.aszarr(level=0)
        array = zarr.open_array(store, mode="r")
    except Exception:
        tif.close()
        raise
    return array, series.axes, tif


#: OME-Zarr axis names (``multiscales[0].axes``) and their letters.
_OME_AXES = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}


def _ome_axes(multiscale: dict, ndim: int, name: str) -> str:
    """The axes letters of an OME-Zarr multiscale (0.1/0.2 have none: 5-D ``TCZYX``)."""
    meta = multiscale.get("axes")
    if meta is None:
        if ndim == 5:
            return "TCZYX"
        raise ValueError(f"axes: {name!r} (OME-Zarr, {ndim}-D) names no axes; pass them")
    names = [str(a.get("name", "") if isinstance(a, dict) else a).lower() for a in meta]
    unknown = [n for n in names if n not in _OME_AXES]
    if unknown or len(names) != ndim:
        raise ValueError(
            f"axes: cannot map the OME-Zarr axes {names} of {name!r} ({ndim}-D) to letters "
            f"(known: {sorted(_OME_AXES)}); pass them explicitly with --axes / axes="
        )
    return "".join(_OME_AXES[n] for n in names)


#: Files that make a directory a zarr array or group (v3, v2 array, v2 group).
ZARR_FILES = ("zarr.json", ".zarray", ".zgroup")


def is_zarr_directory(path) -> bool:
    """Whether ``path`` is a zarr array or group directory (e.g. an OME-Zarr image)."""
    path = Path(path)
    return path.is_dir() and any((path / f).exists() for f in ZARR_FILES)


def _open_zarr(path: Path, axes: str | None):
    """A zarr array directory, or an OME-Zarr group's level 0, lazily; ``(array, axes)``.

    An OME-Zarr image (a group with ``multiscales`` metadata, OME-NGFF 0.1 to 0.5) gives the
    first dataset of its first multiscale, with axes from its metadata unless ``axes`` is
    given.
    """
    import zarr

    node = zarr.open(str(path), mode="r")
    if not isinstance(node, zarr.Group):
        return node, axes
    attrs = node.attrs.asdict()
    multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    if not multiscales or not multiscales[0].get("datasets"):
        raise ValueError(
            f"data: {path.name!r} is a zarr group without OME-Zarr 'multiscales' metadata; "
            "expected a zarr array or an OME-Zarr image"
        )
    first = multiscales[0]
    array = node[str(first["datasets"][0]["path"])]
    if not isinstance(array, zarr.Array):
        raise ValueError(f"data: level 0 of the OME-Zarr image {path.name!r} is not an array")
    return array, axes or _ome_axes(first, array.ndim, path.name)


class StackView:
    """A lazy, slice-by-slice view of an N-D image stack.

    Parameters
    ----------
    data : array-like, str or os.PathLike
        A numpy array, dask array, zarr array (anything with ``shape``, ``dtype`` and numpy
        indexing), a path to a TIFF file (read lazily through ``tifffile``), or a path to a zarr
        array directory.
    axes : str, optional
        One letter per dimension, e.g. ``"YX"``, ``"YXS"``, ``"ZYX"``, ``"CZYX"``, ``"TZCYX"``.
        ``Y`` and ``X`` are required; at most one of ``C`` / ``S`` is the channel axis; every
        other letter (one of :data:`SLICE_AXES`) indexes slices. Required for arrays; for TIFF
        files it defaults to the series axes reported by ``tifffile``.

    Raises
    ------
    ValueError
        If ``axes`` does not match ``data`` (wrong length, repeated or unknown letters, no
        ``Y``/``X``, two channel axes, undetermined TIFF axes) or an axis has size zero.
    """

    def __init__(self, data, axes: str | None = None):
        self._closer = None
        #: The open ``tifffile.TiffFile`` of a TIFF path (its metadata; None otherwise).
        self.tiff = None
        if isinstance(data, (str, os.PathLike)):
            data, axes = self._open_path(Path(data), axes)
        try:
            if not all(hasattr(data, a) for a in ("shape", "dtype", "__getitem__")):
                raise ValueError(
                    f"data: expected an array (numpy, dask, zarr) or a TIFF path, got {type(data)}"
                )
            if axes is None:
                raise ValueError(f"axes: required for array data of shape {tuple(data.shape)}")
            self.axes = self._check_axes(str(axes).upper(), tuple(data.shape))
        except ValueError:
            self.close()
            raise
        self._data = data
        # a memory map (.npy, contiguous TIFF): its pages are dropped after each read, so a
        # tile-by-tile pass over an image larger than memory keeps few of them resident
        self._mmap = getattr(data, "_mmap", None)
        self.shape = tuple(int(s) for s in data.shape)
        self.dtype = np.dtype(data.dtype)
        self.slice_axes = "".join(a for a in self.axes if a not in _SPATIAL + _CHANNEL)
        chan = [a for a in self.axes if a in _CHANNEL]
        self.channel_axis = chan[0] if chan else None
        size = dict(zip(self.axes, self.shape, strict=True))
        self.stack_shape = tuple(size[a] for a in self.slice_axes)
        self.slice_shape = (size["Y"], size["X"])
        self.n_channels = size[self.channel_axis] if self.channel_axis else 1
        # order of the axes left after integer-indexing the slice axes
        kept = [a for a in self.axes if a not in self.slice_axes]
        self._perm = [kept.index(a) for a in "YX" + (self.channel_axis or "")]

    def _open_path(self, path: Path, axes: str | None):
        if path.is_dir():  # a zarr array, or an OME-Zarr image (its first multiscale level)
            return _open_zarr(path, axes)
        if path.suffix == ".npy":  # memory-mapped: slices are read on demand
            data = np.load(path, mmap_mode="r", allow_pickle=False)
            if axes is None and data.ndim != 2:
                raise ValueError(f"axes: pass the axes of {path.name!r} (shape {data.shape})")
            return data, axes or "YX"
        data, file_axes, self._closer = _open_tiff(path)
        self.tiff = self._closer
        if 0 in data.shape:
            self.close()
            raise ValueError(
                f"data: {path.name!r} holds no pixels (shape {tuple(data.shape)}); expected an "
                "image or a stack"
            )
        bad = sorted(set(file_axes) & set(_UNKNOWN_TIFF_AXES))
        if axes is None and bad:
            self.close()
            raise ValueError(
                f"axes: cannot tell what the axes {bad} of {path.name!r} (tifffile axes "
                f"{file_axes!r}, shape {tuple(data.shape)}) mean; pass them explicitly with "
                f"--axes / axes=, e.g. {_suggest_axes(file_axes)!r}"
            )
        return data, axes or file_axes

    @staticmethod
    def _check_axes(axes: str, shape: tuple) -> str:
        if len(axes) != len(shape):
            raise ValueError(
                f"axes: {axes!r} has {len(axes)} letters but the data has {len(shape)} "
                f"dimensions (shape {shape}); give one letter per dimension"
            )
        known = _SPATIAL + _CHANNEL + SLICE_AXES
        unknown = [a for a in axes if a not in known]
        if unknown:
            raise ValueError(
                f"axes: unknown letter(s) {unknown} in {axes!r}; expected Y, X, at most one "
                f"channel axis C or S, and slice axes from {SLICE_AXES!r} (T=time, Z=depth, ...)"
            )
        repeated = sorted({a for a in axes if axes.count(a) > 1})
        if repeated:
            raise ValueError(f"axes: letter(s) {repeated} repeated in {axes!r}")
        missing = [a for a in _SPATIAL if a not in axes]
        if missing:
            raise ValueError(f"axes: {axes!r} has no {' or '.join(missing)} axis; Y and X needed")
        if "C" in axes and "S" in axes:
            raise ValueError(
                f"axes: {axes!r} has two channel axes (C and S); rename one to a slice axis"
            )
        zero = [a for a, s in zip(axes, shape, strict=True) if s == 0]
        if zero:
            raise ValueError(f"data: axis {zero[0]} has size zero (shape {shape}, axes {axes!r})")
        return axes

    def __len__(self) -> int:
        return int(np.prod(self.stack_shape, dtype=np.int64))

    @property
    def slice_indices(self) -> list[tuple[int, ...]]:
        """Index tuples over the slice axes, in C order (``[()]`` for a single 2-D image)."""
        return list(np.ndindex(*self.stack_shape))

    def index_tuple(self, index) -> tuple[int, ...]:
        """Normalise a flat slice number or an index tuple into an index tuple.

        Raises
        ------
        SliceIndexError
            If ``index`` is out of range for this stack.
        """
        n = len(self)
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if not -n <= i < n:
                raise SliceIndexError(f"index: slice {i} out of range for {n} slice(s)")
            return tuple(int(j) for j in np.unravel_index(i % n, self.stack_shape))
        index = tuple(int(j) for j in index)
        if len(index) != len(self.stack_shape) or not all(
            0 <= j < s for j, s in zip(index, self.stack_shape, strict=False)
        ):
            raise SliceIndexError(
                f"index: {index} out of range; expected {len(self.stack_shape)} integer(s) "
                f"below {self.stack_shape} for axes {self.slice_axes!r}"
            )
        return index

    def flat_index(self, index) -> int:
        """Return the flat slice number (0 .. len-1) of ``index``."""
        t = self.index_tuple(index)
        return int(np.ravel_multi_index(t, self.stack_shape)) if t else 0

    def get_slice(self, index) -> np.ndarray:
        """Read one slice as a contiguous ``(Y, X, C)`` array in the stored dtype.

        Parameters
        ----------
        index : int or tuple of int
            Flat slice number or one index per slice axis (see :attr:`slice_indices`).
        """
        return self.get_region(index)

    def get_region(self, index, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """Read part of one slice, ``[rows, cols]`` of its ``(Y, X)``, as ``(y, x, C)``.

        Only that region is read from a memory-mapped, zarr, dask or TIFF array, so tiles of
        an image larger than memory can be read one at a time.
        """
        it = iter(self.index_tuple(index))
        part = {"Y": rows, "X": cols}
        key = tuple(
            next(it) if a in self.slice_axes else part.get(a, slice(None)) for a in self.axes
        )
        out = self._data[key]
        if hasattr(out, "compute"):  # dask
            out = out.compute()
        out = np.transpose(np.asarray(out), self._perm)
        if self.channel_axis is None:
            out = out[..., np.newaxis]
        if self._mmap is None:
            return np.ascontiguousarray(out)
        out = np.array(out, copy=True, order="C")  # off the map before its pages are dropped
        try:
            self._mmap.madvise(mmap.MADV_DONTNEED)
        except (AttributeError, OSError, ValueError):  # no madvise here, or a closed map
            pass
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.get_slice(i)

    def close(self) -> None:
        """Close the underlying file, if any."""
        if self._closer is not None:
            self._closer.close()
            self._closer = None

    def __enter__(self) -> StackView:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"StackView(axes={self.axes!r}, shape={self.shape}, dtype={self.dtype}, "
            f"slices={len(self)}, channels={self.n_channels})"
        )
