"""Batch work spread over a dask cluster: whole files, or the tiles of one large image.

Each worker process loads the model once (cached in this module, keyed by the model name,
weights file, overrides and channels). Tasks carry the frozen settings, nothing parsed again.
``dask.distributed`` is imported only here, only when a cluster is used.

- A file that is not tiled is one task: the worker labels it with the very function the local
  run uses (:func:`napari_sam.batch.label.label_file`), which writes the output atomically.
- A tiled file (``auto``; ``embed`` with a client: any stack) has its tiles spread: one worker
  opens (or creates) the embedding store first, then every worker embeds groups of tiles into
  that shared store (each tile is its own zarr chunk and record, written atomically by one
  worker) with :meth:`EmbeddingStore.precompute_indices
  <napari_sam.stacks.store.EmbeddingStore.precompute_indices>`; this process then segments the
  image from the stored tiles as the local run does. The store is ``--store`` (on a file
  system the workers share), else a temporary ``.<output>.napari-sam-tiles.zarr`` next to
  the output (a hidden name of this program's own, never a user's store), removed once the
  output is written (kept, and resumed, after a failure).

Examples
--------
>>> from dask.distributed import Client, LocalCluster
>>> from napari_sam.batch.api import auto
>>> with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
...     auto("stacks/", "labels/", weights="sam_vit_b_01ec64.pth", client=client)
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import uuid
from pathlib import Path

from .checks import os_reason, setup_error_arg
from .errors import InputError
from .files import store_for, temporary_store
from .pipeline import ModelCache, open_input_of, open_stack, resolve
from .settings import LabelSettings
from .tiles import make_predictor, tiling_for

__all__ = ["map_files", "precompute_on_cluster", "worker_stats"]

_STATES: dict[tuple, dict] = {}  # worker side: (model, weights, overrides) -> model state
_LOCK = threading.Lock()
_STORE = "STORE"  # a task's error about the store: named by the driver (--store or --out)


def worker_stats() -> dict:
    """Files labelled (``tasks``), models created (``loads``) and tiles (or slices) embedded
    (``tiles``) by this process's tasks.

    Run it on every worker with ``client.run(worker_stats)``.
    """
    states = list(_STATES.values())
    stats = {key: sum(state.get(key, 0) for state in states) for key in ("tasks", "tiles")}
    return {**stats, "loads": sum(state["cache"].loads for state in states)}


def _state_for(settings) -> dict:
    weights = None if settings.weights is None else str(Path(settings.weights).resolve())
    key = (settings.model, weights, tuple(settings.override), settings.channels)
    with _LOCK:
        return _STATES.setdefault(key, {"lock": threading.Lock(), "cache": ModelCache()})


def _task(label_file, settings: LabelSettings, auto: bool, inp: Path, out: Path, many: bool):
    """Run on a worker: label one file; ``("ok", n_objects)`` or ``("error", arg, message)``.

    An :class:`~napari_sam.batch.errors.InputError` does not survive pickling, so it travels
    as a tuple.
    """
    state = _state_for(settings)
    try:
        with state["lock"]:  # one model per process: its threads take turns
            state["tasks"] = state.get("tasks", 0) + 1
            return ("ok", label_file(settings, auto, inp, out, many, state["cache"]))
    except InputError as err:
        return ("error", err.arg, err.message)


def _absolute(settings):
    paths = {k: str(Path(v).resolve()) for k in ("weights", "prompts", "store")
             if (v := getattr(settings, k, None)) is not None}  # fmt: skip
    return settings.replace(**paths)


@contextlib.contextmanager
def _connected(scheduler, client):
    """The client given, else one of ``scheduler`` (closed afterwards)."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise InputError(
            "--scheduler", "needs dask's distributed scheduler: pip install 'dask[distributed]'"
        ) from None
    if client is not None:
        yield client
        return
    try:  # the address's form was checked with the other options (checks.check_scheduler)
        client = Client(scheduler, timeout="20s")
    except OSError as err:
        raise InputError("--scheduler", f"cannot reach {scheduler!r} ({err})") from None
    except Exception as err:  # something else answers: dask fails on what it reads
        raise InputError("--scheduler", f"no dask scheduler answers at {scheduler!r} "
                         f"({type(err).__name__}: {str(err)[:120]})") from None  # fmt: skip
    try:
        yield client
    finally:
        client.close()


# --- the tiles of one image: worker side ---------------------------------------------------


def _open(settings, inp: Path, store: Path, normalization, overwrite: bool, token, state):
    """The predictor of ``inp`` on ``store`` (kept for the run's next tasks in this process)."""
    kept = state.get("open")
    if kept is not None and kept[0] == token:
        return kept[2]
    _release_state(state)
    s, cache = settings, state["cache"]
    resolved = resolve(s)
    opened = open_input_of(resolved, inp)  # kept open for the run's next tasks
    try:
        tiling = tiling_for(s, opened.view, opened.config)
        cache.model_for(resolved, opened)  # once per process, shared with whole-file tasks
        sp = make_predictor(
            cache.model, opened.view, tiling, opened.channels,
            normalization or resolved.normalization, store,
            encoder=cache.encoder, memory_budget=0, overwrite=overwrite,
        )  # fmt: skip
    except BaseException:
        opened.view.close()
        raise
    cache.encoder = sp.encoder
    state["open"] = (token, opened.view, sp)
    return sp


def _release_state(state, token=None) -> None:
    kept = state.get("open")
    if kept is not None and (token is None or kept[0] == token):
        state.pop("open", None)
        kept[1].close()


def _release(token) -> None:
    """Run on every worker after a run: close the input it kept open for the run's tasks."""
    for state in list(_STATES.values()):
        _release_state(state, token)


def _guarded(run) -> tuple:
    """``("ok", run())``, or an error as ``("error", arg, message)`` (tuples survive pickling)."""
    from ..stacks.store import StoreMismatchError

    try:
        return ("ok", run())
    except InputError as err:
        return ("error", err.arg, err.message)
    except StoreMismatchError as err:
        return ("error", _STORE, str(err))
    except OSError as err:
        return ("error", _STORE, f"cannot write the store ({os_reason(err)}); the tiles done "
                "so far are kept: run the same command again to resume")  # fmt: skip
    except ValueError as err:
        return ("error", setup_error_arg(err), str(err))


def _bind_task(settings, inp: Path, store: Path, overwrite: bool, token):
    """Run on one worker first: open or create the store; the fitted normalisation."""
    state = _state_for(settings)
    with state["lock"]:
        return _guarded(
            lambda: _open(settings, inp, store, None, overwrite, token, state).normalization
        )


def _tiles_task(settings, inp: Path, store: Path, bound, indices, batch_size: int, token):
    """Run on a worker: embed the tiles ``indices`` into the store; a PrecomputeResult."""
    if bound[0] != "ok":
        return bound  # the store could not be opened: that error, once per task
    state = _state_for(settings)

    def run():
        sp = _open(settings, inp, store, bound[1], False, token, state)
        sp.encoder.batch_size = batch_size
        res = sp.store.precompute_indices(indices, batch_size=batch_size)
        state["tiles"] = state.get("tiles", 0) + res.computed
        return res

    with state["lock"]:
        return _guarded(run)


# --- the tiles of one image: driver side ---------------------------------------------------


def _submit_tiles(client, settings, inp: Path, store: Path, total: int, overwrite: bool,
                  batch_size: int) -> tuple:  # fmt: skip
    """Submit the store's opening, then groups of tiles that wait for it: the job."""
    token = uuid.uuid4().hex
    bound = client.submit(_bind_task, settings, inp, store, overwrite, token, pure=False)
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    size = max(1, math.ceil(total / (4 * workers)))  # a few groups per worker
    groups = [list(range(i, min(i + size, total))) for i in range(0, total, size)]
    parts = [client.submit(_tiles_task, settings, inp, store, bound, g, batch_size, token,
                           pure=False) for g in groups]  # fmt: skip
    return token, bound, parts, total


def _raise(result, store_arg: str, hint: str):
    arg, message = result[1], result[2]
    if arg == _STORE:
        arg, message = store_arg, message.replace("pass overwrite=True", hint)
    raise InputError(arg, message)


def _collect(client, job, unit: str, store_arg: str, hint: str, progress_file=None):
    """Wait for a job's tiles (a progress bar on ``progress_file``); the PrecomputeResult."""
    from dask.distributed import as_completed
    from tqdm import tqdm

    from ..stacks.progress import PrecomputeResult

    token, bound, parts, total = job
    res = PrecomputeResult(0, 0, total, unit=unit)
    try:
        with tqdm(total=total, desc=f"{unit}s on the cluster", unit=unit,
                  file=progress_file or sys.stderr) as bar:  # fmt: skip
            for future in as_completed(parts):
                out = future.result()
                if out[0] == "error":
                    _raise(out, store_arg, hint)
                res.computed += out[1].computed
                res.reused += out[1].reused
                res.repaired += out[1].repaired
                bar.update(out[1].total)
    except BaseException:
        client.cancel([bound, *parts])
        raise
    with contextlib.suppress(Exception):  # every task of the job is done
        client.run(_release, token)
    return res


def precompute_on_cluster(settings, inp, store, total: int, unit: str = "tile", client=None,
                          overwrite: bool = False, batch_size: int = 1, store_arg: str = "--out",
                          progress_file=None):  # fmt: skip
    """Embed every tile (or slice) of one stack into ``store``, spread over a dask cluster.

    Parameters
    ----------
    settings : EmbedSettings or LabelSettings
        The model, weights, overrides, channels, normalisation and tiling options.
    inp : Path
        The input stack (the workers read it: a file system they share).
    store : Path
        The embedding store (created by the first task if missing; shared by the workers).
    total : int
        Number of tiles (slices times tiles per slice) or, for a stack that is not tiled,
        slices.
    unit : str
        What is counted: ``"tile"`` or ``"slice"``.
    client : dask.distributed.Client, optional
        The cluster; default: a client of ``settings.scheduler``, closed afterwards.
    overwrite : bool
        Discard a store made with other settings (else an error naming ``store_arg``).
    batch_size : int
        Tiles per encoder call on a worker.
    store_arg : str
        The argument errors about the store name.
    progress_file : file, optional
        Where the progress bar goes; default ``sys.stderr``.

    Returns
    -------
    PrecomputeResult
        Tiles computed, reused and repaired, over all workers.

    Raises
    ------
    InputError
        The first user error met by a task (the other tasks are cancelled).
    """
    settings = _absolute(settings)
    inp, store = Path(inp).resolve(), Path(store).resolve()
    with _connected(settings.scheduler, client) as client:
        job = _submit_tiles(client, settings, inp, store, total, overwrite, batch_size)
        return _collect(client, job, unit, store_arg, "pass --overwrite", progress_file)


def _tiles_of(settings, inp: Path) -> int:
    """Number of tiles of a tiled input (slices times tiles per slice); 0 when not tiled."""
    with open_stack(resolve(settings), inp) as opened:
        tiling = tiling_for(settings, opened.view, opened.config)
        return 0 if tiling is None else len(opened.view) * len(tiling)


def _tile_store(settings, inp: Path, out: Path, many: bool) -> tuple[Path, bool]:
    """The shared store of a tiled input: ``--store``'s, else a temporary one; (path, temp)."""
    from ..stacks.store import StoreMismatchError, check_store_path

    given = store_for(settings, inp, many)
    if given is not None:
        return Path(given), False
    path = temporary_store(out)
    try:
        check_store_path(path)
    except StoreMismatchError as err:
        raise InputError("--store", f"{err}; give --store for the tiles' embeddings") from None
    return path, True


def _remove_store(path: Path) -> None:
    from ..stacks.store_layout import discard_store

    with contextlib.suppress(OSError, ValueError):  # not only the store's files: left there
        discard_store(path)
        path.rmdir()


def map_files(label_file, settings: LabelSettings, auto: bool, todo, many: bool,
              client=None) -> list[int]:  # fmt: skip
    """Label the ``(input, output)`` pairs ``todo`` on a dask cluster; objects per file.

    For ``auto``, a tiled input has its tiles embedded on the workers (see the module), then
    is segmented here from the shared store; every other input is one worker's task.

    Parameters
    ----------
    label_file : callable
        What runs for one file: :func:`napari_sam.batch.label.label_file` (passed in, so that
        this module needs nothing of the labelling).
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
    settings = _absolute(settings)  # workers may run in another directory
    paths = [(inp.resolve(), out.resolve()) for inp, out in todo]
    tiles = {k: n for k, (inp, _) in enumerate(paths) if auto and (n := _tiles_of(settings, inp))}
    stores = {k: _tile_store(settings, *paths[k], many) for k in tiles}  # (path, temporary)
    with _connected(settings.scheduler, client) as client:
        from dask.distributed import as_completed

        whole = [k for k in range(len(todo)) if k not in tiles]
        futures = [client.submit(_task, label_file, settings, auto, *paths[k], many, pure=False)
                   for k in whole]  # fmt: skip
        index = {f.key: k for f, k in zip(futures, whole, strict=True)}
        jobs, counts = {}, [0] * len(todo)
        try:
            for k, (store, temp) in stores.items():  # the workers embed while this segments
                jobs[k] = _submit_tiles(client, settings, paths[k][0], store, tiles[k],
                                        overwrite=temp, batch_size=1)  # fmt: skip
            local = ModelCache()  # this process's model, for the tiled inputs
            for k, job in jobs.items():
                (inp, out), (store, temp) = paths[k], stores[k]
                _collect(client, job, "tile", "--store", "run 'napari-sam embed --overwrite'")
                counts[k] = label_file(settings.replace(store=str(store)), auto, inp, out, False,
                                       local)  # fmt: skip
                if temp:
                    _remove_store(store)
            for future in as_completed(futures):
                result = future.result()
                if result[0] == "error":
                    raise InputError(result[1], result[2])
                inp, out = todo[index[future.key]]
                counts[index[future.key]] = result[1]
                print(f"{inp} -> {out} ({result[1]} object(s))", file=sys.stderr)
        except BaseException:
            client.cancel(futures + [f for j in jobs.values() for f in (j[1], *j[2])])
            raise
    return counts
