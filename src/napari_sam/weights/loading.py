"""Reading checkpoints (with a converted native copy) and filling a model from them."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import numpy as np

from .._atomic import write_atomic
from .download import cache_dir
from .key_map import sam_key_map
from .pth_reader import CheckpointError, read_pth


def _native_copy_path(path: pathlib.Path) -> pathlib.Path:
    st = path.stat()
    tag = hashlib.blake2b(
        f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode(), digest_size=8
    ).hexdigest()
    return cache_dir() / "converted" / f"{path.stem}-{tag}.npz"


_MANIFEST = "__napari_sam_manifest__"


def _manifest(state: dict[str, np.ndarray]) -> str:
    return json.dumps({k: [list(v.shape), str(v.dtype)] for k, v in sorted(state.items())})


def _read_npz(path: pathlib.Path, require_manifest: bool = False) -> dict[str, np.ndarray]:
    """Read an ``.npz`` of arrays; any damage becomes a :class:`CheckpointError`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {k: data[k] for k in data.files}
    except Exception as exc:  # numpy and zipfile raise many kinds for damaged files
        raise CheckpointError(f"{path}: cannot read the weights file: {exc!r}") from exc
    manifest = state.pop(_MANIFEST, None)
    if manifest is not None and bytes(manifest).decode(errors="replace") != _manifest(state):
        raise CheckpointError(f"{path}: the weights file is incomplete or damaged")
    if require_manifest and manifest is None:
        raise CheckpointError(f"{path}: converted copy without a manifest")
    return state


def _write_npz_atomic(path: pathlib.Path, state: dict[str, np.ndarray]) -> None:
    """Write ``state`` and its manifest to ``path`` (complete or absent, never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = np.frombuffer(_manifest(state).encode(), np.uint8)
    write_atomic(path, lambda f: np.savez(f, **state, **{_MANIFEST: manifest}))


def read_checkpoint(path: str | os.PathLike, native_copy: bool = True) -> dict[str, np.ndarray]:
    """Read a checkpoint (Meta's ``.pth`` or a converted ``.npz``) into numpy arrays.

    A ``.pth`` file is parsed once, without torch and without running code from it; its
    converted copy is kept in ``<cache>/converted/`` (keyed by path, size and mtime) and
    read instead the next time.

    Raises
    ------
    CheckpointError
        The file is missing, truncated, hostile or not a checkpoint; the message names it.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; expected a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix.lower() == ".npz":
        return _read_npz(path)
    copy = _native_copy_path(path) if native_copy else None
    if copy is not None and copy.is_file():
        try:
            return _read_npz(copy, require_manifest=True)
        except CheckpointError:
            copy.unlink(missing_ok=True)  # a damaged converted copy: parse the .pth again
    state = read_pth(path)
    if copy is not None:
        try:
            _write_npz_atomic(copy, state)
        except OSError:
            pass  # a read-only cache only costs speed
    return state


def load_state_dict(
    model, state: dict[str, np.ndarray], source: str = "checkpoint", entries=None
) -> None:
    """Fill every variable of ``model`` from ``state`` (Meta's key names).

    ``entries`` is the key map to use (default: :func:`~napari_sam.weights.key_map.sam_key_map`
    of a SAM model; the instance decoder passes its own).

    All keys, variables, shapes and values are checked first; nothing is assigned unless the
    whole checkpoint fits, so no half-loaded model is left behind.

    Raises
    ------
    CheckpointError
        Lists missing keys, unexpected keys, unfilled variables, shape mismatches and float
        tensors with NaN or infinite values (a model with them predicts only NaN).
    """
    entries = sam_key_map(model) if entries is None else list(entries)
    mapped = {id(e.variable) for e in entries}
    unfilled = [v.path for v in model.weights if id(v) not in mapped]
    keys = {e.key for e in entries}
    missing = sorted(keys - set(state))
    unexpected = sorted(set(state) - keys)
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_short(unexpected)}")
    if unfilled:
        problems.append(f"model variables with no checkpoint key: {_short(unfilled)}")
    values, bad_shapes, non_finite, checked = [], [], [], set()
    for e in entries:
        if e.key not in state:
            continue
        if e.key not in checked:
            checked.add(e.key)
            if not _all_finite(np.asarray(state[e.key])):
                non_finite.append(e.key)
        value = np.asarray(e.transform(np.asarray(state[e.key])))
        if tuple(value.shape) != tuple(e.variable.shape):
            bad_shapes.append(
                f"{e.key} {tuple(state[e.key].shape)}, model expects {tuple(e.variable.shape)} "
                "after conversion"
            )
        values.append((e.variable, value))
    if bad_shapes:
        problems.append(f"wrong shapes ({len(bad_shapes)}): {_short(bad_shapes, 3)}")
    if non_finite:
        problems.append(
            f"tensors with NaN or infinite values ({len(non_finite)}): {_short(non_finite, 3)}"
        )
    if problems:
        only_values = len(problems) == 1 and non_finite
        what = "checkpoint is damaged" if only_values else "checkpoint does not match the model"
        raise CheckpointError(f"{source}: {what}: " + "; ".join(problems))
    for variable, value in values:
        variable.assign(value.astype(variable.dtype))


def _all_finite(array: np.ndarray) -> bool:
    """Whether a float tensor has only finite values (integer and bool tensors always do)."""
    if array.dtype.kind in "fc":
        return bool(np.isfinite(array).all())
    if array.dtype.kind == "V":  # ml_dtypes' bfloat16 and float8 types
        try:
            return bool(np.isfinite(array).all())
        except TypeError:  # a structured dtype: not a tensor of numbers
            return True
    return True


def _short(items, n=5):
    items = list(items)
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")
