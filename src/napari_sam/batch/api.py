"""``napari-sam auto`` and ``napari-sam segment`` from Python, here or on a dask cluster.

Examples
--------
>>> from dask.distributed import Client, LocalCluster
>>> from napari_sam.batch.api import auto
>>> with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
...     auto("stacks/", "labels/", weights="sam_vit_b_01ec64.pth", client=client)
"""

from __future__ import annotations

from pathlib import Path

from .cluster import map_files, worker_stats
from .label import run_files
from .settings import LabelSettings, overrides_as_options

__all__ = ["auto", "map_files", "segment", "worker_stats"]


def _run(auto: bool, inputs, out, client, options: dict) -> list[Path]:
    if "override" in options:
        options = dict(options, override=overrides_as_options(options["override"]))
    settings = LabelSettings(input=str(inputs), out=str(out), **options)
    return run_files(settings, auto=auto, client=client)


def auto(inputs, out, *, client=None, **options) -> list[Path]:
    """``napari-sam auto`` from Python: label a file, a folder or a glob of stacks.

    Parameters
    ----------
    inputs : str or Path
        A TIFF/.npy file, a zarr array, a folder of TIFF/.npy files or a glob.
    out : str or Path
        The label TIFF, or a folder (one ``<name>_labels.tif`` per input) for several inputs.
    client : dask.distributed.Client, optional
        Spread the files over this cluster; default: this process (or ``scheduler=ADDRESS``).
    **options
        The command's options with underscores, e.g. ``model="sam_vit_b"``,
        ``weights="w.npz"``, ``override={"input_size": [512, 512]}``, ``points_per_side=16``,
        ``overwrite=True``.

    Returns
    -------
    list of Path
        The label images written (those already there are skipped unless ``overwrite``).
    """
    return _run(True, inputs, out, client, options)


def segment(inputs, out, prompts, *, client=None, **options) -> list[Path]:
    """``napari-sam segment`` from Python: label objects given by prompt files.

    Parameters are those of :func:`auto`, plus ``prompts``: a CSV/JSON prompt file, or a folder
    of ``<name>.csv``/``<name>.json`` files for several inputs.
    """
    return _run(False, inputs, out, client, dict(options, prompts=str(prompts)))
