"""``napari-sam embed``: the embeddings of every slice of a stack into an on-disk store."""

from __future__ import annotations

import sys
from pathlib import Path

from .checks import check_scheduler, check_writable, os_reason, setup_error_arg
from .errors import InputError
from .pipeline import ModelCache, open_stack, resolve
from .settings import EmbedSettings
from .tiles import check_tile_options, make_predictor, tiling_for

__all__ = ["embed"]


def embed(settings: EmbedSettings, progress_file=None, client=None):
    """Embed every slice not validly stored yet; resumable, atomic per slice.

    Parameters
    ----------
    settings : EmbedSettings
        What to embed, with which model, into which store.
    progress_file : file, optional
        Where the progress bar goes; default ``sys.stderr``.
    client : dask.distributed.Client, optional
        Spread the tiles (or slices) over this cluster's workers, which share the store (see
        :func:`napari_sam.batch.cluster.precompute_on_cluster`); default: this process.

    Returns
    -------
    PrecomputeResult
        Slices computed, reused and repaired.

    Raises
    ------
    InputError
        Bad input, named by its argument; nothing complete-looking is left behind.
    """
    from ..stacks.contract import units_of
    from ..stacks.store import StoreMismatchError, TqdmProgress, check_store_path

    s, progress_file = settings, progress_file or sys.stderr
    resolved = resolve(s)
    check_tile_options(s)
    check_scheduler(s.scheduler)
    if s.batch_size < 1:
        raise InputError("--batch-size", f"expected a positive integer, got {s.batch_size}")
    out, inp = Path(s.out), Path(s.input)
    if out.exists() and not out.is_dir():
        raise InputError("--out", f"{str(out)!r} is a file; expected a store directory")
    if inp.exists() and out.resolve() == inp.resolve():
        raise InputError("--out", f"{str(out)!r} is the input; give the store another path")
    try:
        check_store_path(out)
    except StoreMismatchError as err:
        raise InputError("--out", err) from None
    check_writable(out, "--out")
    with open_stack(resolved, inp) as opened:
        view = opened.view
        tiling = tiling_for(s, view, opened.config)
        unit, per_slice = units_of(tiling)
        if client is not None or s.scheduler:  # the tiles on a dask cluster
            from .cluster import precompute_on_cluster

            n = len(view) * per_slice
            print(f"napari-sam: {n} {unit}(s) of {view!r} on the cluster -> {out}",
                  file=progress_file)  # fmt: skip
            return precompute_on_cluster(s, inp, out, n, unit, client, s.overwrite, s.batch_size,
                                         progress_file=progress_file)  # fmt: skip
        model = ModelCache().model_for(resolved, opened)  # TensorFlow: after the quick checks

        from ..stacks.store import EmbeddingStore

        try:
            store = EmbeddingStore(out, overwrite=s.overwrite, memory_budget=0)
            sp = make_predictor(model, view, tiling, opened.channels, resolved.normalization,
                                store)  # fmt: skip
        except StoreMismatchError as err:
            msg = str(err).replace("pass overwrite=True", "pass --overwrite")
            raise InputError("--out", msg) from None
        except OSError as err:
            msg = f"cannot write the store {str(out)!r} ({os_reason(err)})"
            raise InputError("--out", msg) from None
        except ValueError as err:
            raise InputError(setup_error_arg(err), err) from None
        what = f"{len(view)} slice(s)"
        if sp.windows > 1:
            what += f" x {sp.windows} tile(s) of {sp.window_shape[0]}x{sp.window_shape[1]} px"
        print(f"napari-sam: {what} of {view!r} -> {out}", file=progress_file)
        try:
            with TqdmProgress(desc="embedding", unit=unit, file=progress_file) as bar:
                return sp.precompute(progress=bar, batch_size=s.batch_size)
        except OSError as err:  # the slices done so far are kept; a rerun resumes
            raise InputError(
                "--out", f"cannot write the store {str(out)!r} ({os_reason(err)}); the slices "
                "done so far are kept: free space and run the same command again to resume"
            ) from None  # fmt: skip
