"""Label images as TIFF files that Fiji/ImageJ and napari read, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._atomic import write_atomic

__all__ = ["is_label_output", "label_source", "tiff_metadata", "write_label_tiff"]

_IMAGEJ_ORDER = "TZCYXS"
SOFTWARE = "napari-sam"  # the TIFF Software tag of the label images written here
SOURCE_TAG = 65321  # a private ASCII tag: the name of the input the labels were made from


def is_label_output(path) -> bool:
    """Whether ``path`` is a label TIFF written by :func:`write_label_tiff` (its Software tag)."""
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff") or not path.is_file():
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return tif.pages[0].software == SOFTWARE
    except Exception:  # not a TIFF we can read: not ours
        return False


def label_source(path) -> str | None:
    """The input file name recorded in a label TIFF written here, or None (none recorded, or
    not a label image of this program's)."""
    if not is_label_output(path):
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get(SOURCE_TAG)
            return None if tag is None else str(tag.value)
    except Exception:  # unreadable: no source
        return None


def tiff_metadata(source) -> dict:
    """Pixel size (``resolution``) and ImageJ ``unit``, ``spacing``, ``finterval`` of a TIFF.

    ``source``: a path, or an open ``tifffile.TiffFile`` (read as it is, not opened again).
    Returns ``{}`` for other files or when tifffile finds none.
    """
    import tifffile

    if isinstance(source, tifffile.TiffFile):
        return _metadata_of(source)
    path = Path(source)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return {}
    try:
        with tifffile.TiffFile(path) as tif:
            return _metadata_of(tif)
    except Exception:  # metadata is a nicety: never fail on it
        return {}


def _metadata_of(tif) -> dict:
    try:
        page, ij = tif.pages[0], tif.imagej_metadata or {}
        out = {"metadata": {k: ij[k] for k in ("unit", "spacing", "finterval") if k in ij}}
        xr, yr = page.tags.get("XResolution"), page.tags.get("YResolution")
        if xr is not None and yr is not None:
            out["resolution"] = (xr.value[0] / xr.value[1], yr.value[0] / yr.value[1])
        return out
    except Exception:  # metadata is a nicety: never fail on it
        return {}


def write_label_tiff(path, labels: np.ndarray, axes: str, like=None, source=None) -> Path:
    """Write a label image to ``path`` atomically (a temporary file, then ``os.replace``).

    The file is ``uint16`` if the largest id is below 65536, else ``uint32``. ``uint16``
    labels with axes in ImageJ order (a subsequence of ``TZCYXS``) are an ImageJ hyperstack;
    other files carry tifffile's shaped metadata (the axes). An existing ``path`` is therefore
    always complete; on failure no temporary file is left.

    Parameters
    ----------
    path : str or os.PathLike
        The TIFF file.
    labels : ndarray
        Non-negative integer labels.
    axes : str
        One letter per dimension of ``labels``, e.g. ``"ZYX"``.
    like : str, os.PathLike or tifffile.TiffFile, optional
        A TIFF file (a path, or one already open) whose pixel size, unit and z spacing are
        copied (see :func:`tiff_metadata`).
    source : str, optional
        The name of the input the labels were made from, recorded in the file (read back by
        :func:`label_source`): a later run counts the file as done for that input only.

    Raises
    ------
    OSError
        If the file cannot be written.
    """
    import tifffile

    path = Path(path)
    labels = np.asarray(labels)
    dtype = np.uint16 if int(labels.max(initial=0)) < 65536 else np.uint32
    extra = tiff_metadata(like) if like is not None else {}
    order = [_IMAGEJ_ORDER.find(a) for a in axes]
    imagej = dtype == np.uint16 and -1 not in order and order == sorted(order)
    meta = dict(extra.get("metadata", {})) if imagej else {}
    meta["axes"] = axes
    kwargs = {"resolution": extra["resolution"]} if "resolution" in extra else {}
    if source is not None:
        kwargs["extratags"] = [(SOURCE_TAG, "s", 0, str(source), True)]
    data = labels.astype(dtype)
    return write_atomic(
        path,
        lambda f: tifffile.imwrite(
            f, data, imagej=imagej, metadata=meta, software=SOFTWARE, **kwargs
        ),
    )
