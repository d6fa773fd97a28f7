"""Batch labelling spread over a dask cluster: one task per input file.

Each worker process loads the model once (cached in this module, keyed by the model name,
weights file and overrides) and labels its files with the very function the local run uses
(:func:`napari_sam.batch.label.label_file`), which writes each output atomically. Tasks
carry the frozen :class:`~napari_sam.batch.settings.LabelSettings`, nothing parsed again.
``dask.distributed`` is imported only here, only when a cluster is used.

Examples
--------
>>> from dask.distributed import Client, LocalCluster
>>> from napari_sam.batch.api import auto
>>> with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
...     auto("stacks/", "labels/", weights="sam_vit_b_01ec64.pth", client=client)
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from .errors import InputError
from .settings import LabelSettings

__all__ = ["map_files", "worker_stats"]

_STATES: dict[tuple, dict] = {}  # worker side: (model, weights, overrides) -> model state
_LOCK = threading.Lock()


def worker_stats() -> dict:
    """Files labelled (``tasks``) and models created (``loads``) by this process's tasks.

    Run it on every worker with ``client.run(worker_stats)``.
    """
    return {key: sum(state.get(key, 0) for state in _STATES.values()) for key in ("tasks", "loads")}


def _state_for(settings: LabelSettings) -> dict:
    weights = None if settings.weights is None else str(Path(settings.weights).resolve())
    key = (settings.model, weights, tuple(settings.override), settings.channels)
    with _LOCK:
        return _STATES.setdefault(key, {"lock": threading.Lock()})


def _task(label_file, settings: LabelSettings, auto: bool, inp: Path, out: Path, many: bool):
    """Run on a worker: label one file; ``("ok", n_objects)`` or ``("error", arg, message)``.

    An :class:`~napari_sam.batch.errors.InputError` does not survive pickling, so it travels
    as a tuple.
    """
    state = _state_for(settings)
    try:
        with state["lock"]:  # one model per process: its threads take turns
            state["tasks"] = state.get("tasks", 0) + 1
            return ("ok", label_file(settings, auto, inp, out, many, state))
    except InputError as err:
        arg, _, message = str(err).partition(": ")
        return ("error", arg, message)


def _absolute(settings: LabelSettings) -> LabelSettings:
    paths = {k: str(Path(v).resolve()) for k in ("weights", "prompts", "store")
             if (v := getattr(settings, k)) is not None}  # fmt: skip
    return settings.replace(**paths)


def map_files(label_file, settings: LabelSettings, auto: bool, todo, many: bool,
              client=None) -> list[int]:  # fmt: skip
    """Label the ``(input, output)`` pairs ``todo`` on a dask cluster; objects per file.

    Parameters
    ----------
    label_file : callable
        What a worker runs for one file: :func:`napari_sam.batch.label.label_file` (passed in,
        so that this module needs nothing of the labelling).
    settings : LabelSettings
        The ``napari-sam auto`` or ``segment`` settings (``settings.scheduler`` is used when
        ``client`` is None).
    auto : bool
        Automatic segmentation rather than prompt files.
    todo : list of (Path, Path)
        Input files and the label images to write.
    many : bool
        Several inputs (folder or glob): prompt files and stores are looked up per input.
    client : dask.distributed.Client, optional
        The cluster to use; default: a client of ``settings.scheduler``, closed afterwards.

    Raises
    ------
    InputError
        The first user error met by a task (the other tasks are cancelled).
    """
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise InputError(
            "--scheduler", "needs dask's distributed scheduler: pip install 'dask[distributed]'"
        ) from None
    own = client is None
    if own:
        try:
            client = Client(settings.scheduler, timeout="20s")
        except OSError as err:
            raise InputError(
                "--scheduler", f"cannot reach {settings.scheduler!r} ({err})"
            ) from None
    settings = _absolute(settings)  # workers may run in another directory
    try:
        futures = [
            client.submit(
                _task, label_file, settings, auto, inp.resolve(), out.resolve(), many, pure=False
            )
            for inp, out in todo
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        counts = [0] * len(futures)
        for future in as_completed(futures):
            result = future.result()
            if result[0] == "error":
                client.cancel(futures)
                raise InputError(result[1], result[2])
            inp, out = todo[index[future.key]]
            counts[index[future.key]] = result[1]
            print(f"{inp} -> {out} ({result[1]} object(s))", file=sys.stderr)
        return counts
    finally:
        if own:
            client.close()
