"""Read PyTorch ``.pth`` checkpoints into numpy arrays, without torch and without running code.

Checkpoints written by ``torch.save`` since torch 1.6 (such as Meta's ``sam_vit_b_01ec64.pth``)
are zip archives holding ``<dir>/data.pkl`` (a pickle of the state dict), ``<dir>/byteorder``
and one ``<dir>/data/<key>`` record of raw bytes per storage. The pickle is read with an
unpickler that resolves only an explicit allow-list of globals, all mapped to small stand-ins
defined here, so a hostile file cannot call anything: ``os.system``, ``builtins.eval`` and the
like are rejected when the pickle names them, before anything is called.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import namedtuple

import numpy as np

from .pth_storage import MAX_PICKLE, ZIP_ERRORS, InvalidCheckpoint, materialize, read_record

__all__ = ["CheckpointError", "read_pth", "read_pth_states"]

# torch storage type name -> numpy type code of its elements ("bf16" and "b1" are special).
_STORAGE_CODES = {
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "DoubleStorage": "f8",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "b1",
}
_ZIP_ERRORS = ZIP_ERRORS


class CheckpointError(ValueError):
    """A file that is missing, is not a PyTorch zip checkpoint, is corrupt, or is unsafe."""


_Invalid = InvalidCheckpoint  # a problem with the file's content; re-raised with the path


# Stand-ins: ``torch.<X>Storage`` (not callable), a lazy ``data/<key>`` reference, a lazy tensor
# (a strided view on a storage, in elements). Tuples, so a pickle's BUILD cannot alter them.
_StorageType = namedtuple("_StorageType", "name")
_Storage = namedtuple("_Storage", "key code numel")
_Tensor = namedtuple("_Tensor", "storage offset size stride")


class _StateDict(dict):
    """Stand-in for ``collections.OrderedDict``; ignores pickled attributes (``_metadata``)."""

    def __setstate__(self, state):
        pass


def _is_index(value) -> bool:
    return type(value) is int and value >= 0


_Rejected = namedtuple("_Rejected", "problem")  # a deferred problem, reported only if kept


def _refusal(module, name) -> str:
    return f"refuses to load '{module}.{name}' (not a tensor-rebuilding global)"


class _Opaque:
    """Inert stand-in for a global that is not allowed, and for what a pickle builds from it.

    Calling the type, ``__new__``, BUILD, APPENDS, ADDITEMS and SETITEMS only record their
    arguments; nothing given to it is ever called, iterated or hashed.
    """

    __slots__ = ("args", "kwargs", "state", "items")
    global_name = ("?", "?")

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self.args, self.kwargs, self.state, self.items = args, kwargs, None, []
        return self

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def append(self, item):
        self.items.append(item)

    def extend(self, items):
        self.items.append(items)

    def add(self, item):
        self.items.append(item)

    def __setitem__(self, key, value):
        self.items.append((key, value))


def _is_opaque(obj) -> bool:
    return isinstance(obj, _Opaque) or (isinstance(obj, type) and issubclass(obj, _Opaque))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored):
    if type(storage) is _Rejected or _is_opaque(storage):
        return storage
    if type(storage) is not _Storage:
        return _Rejected("a tensor is not backed by a storage record")
    size = tuple(size) if isinstance(size, tuple | list) else None
    stride = tuple(stride) if isinstance(stride, tuple | list) else None
    ok = size is not None and stride is not None and len(size) == len(stride)
    if not (ok and _is_index(storage_offset) and all(map(_is_index, size + stride))):
        return _Rejected(f"a tensor has an invalid layout (size={size}, stride={stride})")
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    if type(data) is _Rejected or _is_opaque(data):
        return data
    if type(data) is not _Tensor:
        return _Rejected("a parameter does not wrap a tensor")
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves the globals in ``_ALLOWED`` and torch's storage type names; others are opaque."""

    def __init__(self, file):
        super().__init__(file)
        self.first_refused = None
        self._opaque_types = {}

    def find_class(self, module, name):  # used by GLOBAL, STACK_GLOBAL, INST, EXT opcodes
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_CODES:
            return _StorageType(name)
        if self.first_refused is None:
            self.first_refused = _refusal(module, name)
        key = (module, name)
        if key not in self._opaque_types:
            attrs = {"__slots__": (), "global_name": key, "__module__": __name__}
            self._opaque_types[key] = type("_OpaqueGlobal", (_Opaque,), attrs)
        return self._opaque_types[key]

    def persistent_load(self, pid):
        if type(pid) is tuple and len(pid) > 1 and _is_opaque(pid[1]):
            return _Rejected(_refusal(*pid[1].global_name))
        ok = type(pid) is tuple and len(pid) == 5 and pid[0] == "storage"
        ok = ok and type(pid[1]) is _StorageType and pid[1].name in _STORAGE_CODES
        if not (ok and type(pid[2]) is str and type(pid[3]) is str and _is_index(pid[4])):
            return _Rejected(f"refuses the persistent id {repr(pid)[:80]}")
        return _Storage(pid[2], _STORAGE_CODES[pid[1].name], pid[4])


def _first_problem(obj) -> str | None:
    """The first opaque global or deferred problem in ``obj`` (iterative, cycle-safe walk)."""
    stack, seen = [obj], set()
    while stack:
        x = stack.pop()
        if _is_opaque(x):
            return _refusal(*x.global_name)
        if type(x) is _Rejected:
            return x.problem
        if type(x) in (_Tensor, _Storage, _StorageType) or id(x) in seen:
            continue
        if isinstance(x, dict):
            children = [c for item in dict.items(x) for c in item]
        elif isinstance(x, list | tuple | set | frozenset):
            children = list(x)
        else:
            continue
        seen.add(id(x))
        stack.extend(reversed(children))
    return None


def _is_tensor_map(obj) -> bool:
    items = dict.items(obj) if isinstance(obj, dict) else ()
    return bool(items) and all(type(k) is str and type(v) is _Tensor for k, v in items)


def _state_dict(obj) -> dict[str, _Tensor]:
    """Return ``obj`` or the state dict nested in it (``{"model": sd}``, ``{"state_dict": sd}``)."""
    if _is_tensor_map(obj):
        return dict(dict.items(obj))
    if isinstance(obj, dict):
        values = dict(dict.items(obj))
        nested = [values[k] for k in ("state_dict", "model") if _is_tensor_map(values.get(k))]
        if not nested and len(values) == 1:
            nested = [v for v in values.values() if _is_tensor_map(v)]
        if nested:
            return dict(dict.items(nested[0]))
    kind = "dict" if isinstance(obj, dict) else type(obj).__name__
    raise _Invalid(
        f"data.pkl holds a {kind}, not a non-empty mapping of names to tensors "
        "(nor one nested under 'state_dict' or 'model')"
    )


def _describe(obj) -> str:
    return "dict" if isinstance(obj, dict) else type(obj).__name__


def _strip_sam(sd: dict) -> dict:
    out = {}
    for key, t in sd.items():
        short = key[len("sam.") :] if key.startswith("sam.") else key
        if short in out:
            raise _Invalid(f"'model_state' holds {short!r} both with and without 'sam.' prefix")
        out[short] = t
    return out


def _states(obj) -> dict[str, dict | None]:
    """The ``model`` and ``decoder`` tensor maps of a checkpoint's unpickled object."""
    if type(obj) in (dict, _StateDict) and dict.__contains__(obj, "model_state"):
        for key in dict.keys(obj):
            if (problem := _first_problem(key)) is not None:
                raise _Invalid(problem)
        states = {}
        for key, label in (("model_state", "model"), ("decoder_state", "decoder")):
            value = dict.get(obj, key)
            if value is None:
                states[label] = None
                continue
            if (problem := _first_problem(value)) is not None:
                raise _Invalid(problem)
            if not _is_tensor_map(value):
                bad = [
                    f" (entry {k!r} holds a {_describe(v)})"
                    for k, v in (dict.items(value) if isinstance(value, dict) else ())
                    if type(k) is not str or type(v) is not _Tensor
                ]
                raise _Invalid(
                    f"{key!r} holds a {_describe(value)}, not a non-empty mapping of names "
                    f"to tensors{bad[0] if bad else ''}"
                )
            sd = dict(dict.items(value))
            states[label] = _strip_sam(sd) if key == "model_state" else sd
        if states["model"] is None and states["decoder"] is None:
            raise _Invalid("data.pkl holds a dict whose 'model_state' holds no tensors")
        return states
    if (problem := _first_problem(obj)) is not None:
        raise _Invalid(problem)
    return {"model": _state_dict(obj), "decoder": None}


def _not_a_zip(path: str, exc: Exception) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        return f"truncated or corrupt zip archive ({exc})"
    if head.startswith(b"\x80"):
        return (
            "not a PyTorch zip checkpoint: it looks like the legacy pre-1.6 torch.save format "
            "(_use_new_zipfile_serialization=False); re-save it with a current torch"
        )
    return "not a PyTorch zip checkpoint (no zip archive signature)"


def _read(path: str, labels=("model", "decoder")) -> dict[str, dict | None]:
    if not os.path.exists(path):
        raise _Invalid("no such file")
    if not os.path.isfile(path):
        raise _Invalid("not a regular file")
    if os.path.getsize(path) == 0:
        raise _Invalid("the file is empty, not a PyTorch zip checkpoint")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise _Invalid(_not_a_zip(path, exc)) from None
    with zf:
        pickles = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise _Invalid(
                "a zip archive but not a PyTorch zip checkpoint "
                f"({len(pickles)} '<dir>/data.pkl' records, expected 1)"
            )
        prefix = pickles[0][: -len("data.pkl")]
        try:
            data = read_record(zf, pickles[0], limit=MAX_PICKLE).tobytes()
            has_order = prefix + "byteorder" in set(zf.namelist())
            order = read_record(zf, prefix + "byteorder", limit=16) if has_order else b"little"
        except _ZIP_ERRORS as exc:
            raise _Invalid(f"truncated or corrupt zip archive ({exc})") from None
        byteorder = bytes(order).decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise _Invalid(f"unknown byte order {byteorder[:20]!r}")
        unpickler = _RestrictedUnpickler(io.BytesIO(data))
        try:
            obj = unpickler.load()
        except _Invalid:
            raise
        except Exception as exc:
            problem = f"data.pkl cannot be unpickled ({type(exc).__name__}: {exc})"
            if unpickler.first_refused is not None:
                problem = f"{unpickler.first_refused}, and {problem}"
            raise _Invalid(problem) from None
        del unpickler
        states = _states(obj)
        del obj
        if labels is None:  # which states the file holds, no tensor read
            return {label: sd is not None for label, sd in states.items()}
        return {
            label: None if states[label] is None else materialize(zf, prefix, sd, byteorder)
            for label, sd in states.items()
            if label in labels
        }


def read_pth(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the state dict of a PyTorch zip checkpoint as numpy arrays.

    Neither imports torch nor runs code from the file: the pickle may only name the globals
    ``torch.save`` uses for plain tensors and parameters; anything else is refused.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``torch.save(state_dict, path)`` with torch >= 1.6. A state dict
        nested one level as ``{"state_dict": sd}``, ``{"model": sd}`` or a single-entry dict
        is unwrapped.

    Returns
    -------
    dict of str to numpy.ndarray
        Parameter name -> new C-contiguous, native-byte-order array, in the file's order.
        ``bfloat16`` tensors are ``ml_dtypes.bfloat16`` arrays (``float32`` if ml_dtypes is
        missing); ``bool`` tensors are ``bool`` arrays.

    Raises
    ------
    CheckpointError
        ``"cannot read checkpoint '<path>': <problem>"`` if the file is missing, empty, not a
        PyTorch zip checkpoint (e.g. the legacy format), truncated or corrupt, names a global
        that is not allowed, or does not hold a non-empty mapping of names to tensors.
    """
    path = os.fspath(path)
    try:
        state = _read(path, ("model",))["model"]
        if state is None:
            raise _Invalid("data.pkl holds a dict with a 'decoder_state' but no 'model_state'")
        return state
    except (_Invalid, OSError) as exc:
        raise CheckpointError(f"cannot read checkpoint '{path}': {exc}") from None


def read_pth_states(
    path: str | os.PathLike, which=("model", "decoder")
) -> dict[str, dict[str, np.ndarray] | None]:
    """Read the model and decoder state dicts of a PyTorch zip checkpoint as numpy arrays.

    Like :func:`read_pth`, neither imports torch nor runs code from the file. Globals that are
    not allowed become inert stand-ins, accepted only in the entries other than
    ``model_state`` and ``decoder_state`` of a dict with a ``model_state`` (a torch-em training
    checkpoint's ``init``, optimizer and scheduler state), which are dropped unread.

    Parameters
    ----------
    path : str or os.PathLike
        A plain state dict (Meta's ``.pth``, micro-sam's ``vit_b.pt`` or decoder file, also
        nested as for :func:`read_pth`), an export ``{"model_state": sd, "decoder_state": sd}``
        or a torch-em training checkpoint (``best.pt``).
    which : tuple of str or None
        The states to read (``"model"``, ``"decoder"``); the others' tensors are not read.
        None: only whether the file holds each, ``{"model": bool, "decoder": bool}``.

    Returns
    -------
    dict
        ``{"model": state or None, "decoder": state or None}``, each state a dict of name to
        numpy array as returned by :func:`read_pth`. A plain state dict is returned as
        ``"model"``; a leading ``sam.`` is stripped from the keys of ``model_state``.

    Raises
    ------
    CheckpointError
        ``"cannot read checkpoint '<path>': <problem>"``, as for :func:`read_pth`.
    """
    path = os.fspath(path)
    try:
        return _read(path, None if which is None else tuple(which))
    except (_Invalid, OSError) as exc:
        raise CheckpointError(f"cannot read checkpoint '{path}': {exc}") from None
