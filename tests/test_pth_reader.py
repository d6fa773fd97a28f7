"""Tests for napari_sam.weights.pth_reader (torch is only used here, to write checkpoints)."""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import pathlib
import pickle
import pickletools
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from napari_sam.weights import pth_storage
from napari_sam.weights.pth_reader import CheckpointError, read_pth


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _expected(t):
    t = t.detach()
    return t.float().numpy() if str(t.dtype) == "torch.bfloat16" else t.numpy()


def _assert_matches(arrays, state_dict):
    assert isinstance(arrays, dict)
    assert list(arrays) == list(state_dict)
    for name, t in state_dict.items():
        arr, want = arrays[name], _expected(t)
        assert isinstance(arr, np.ndarray), name
        assert arr.shape == tuple(t.shape), name
        if str(t.dtype) == "torch.bfloat16":
            assert arr.dtype == (pth_storage._BFLOAT16 or np.float32), name
            arr = arr.astype(np.float32)
        else:
            assert arr.dtype == want.dtype, name
        np.testing.assert_array_equal(arr, want, err_msg=name)
        assert arr.flags.c_contiguous and arr.flags.writeable, name


def _rewrite(src, dst, fn):
    """Copy zip ``src`` to ``dst``, passing each (name, data) through ``fn``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            name, data = fn(info.filename, zin.read(info.filename))
            zout.writestr(name, data)


def _write_zip(path, pkl, records=(), prefix="archive/"):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(prefix + "data.pkl", pkl)
        zf.writestr(prefix + "byteorder", b"little")
        for key, data in records:
            zf.writestr(f"{prefix}data/{key}", data)
    return path


def _error(path, *fragments):
    with pytest.raises(CheckpointError) as info:
        read_pth(path)
    message = str(info.value)
    assert f"'{path}'" in message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.fixture(scope="module")
def state_dict(torch):
    g = torch.Generator().manual_seed(0)
    big = torch.randn(30, generator=g)
    sd = {
        "f32_4d": torch.randn(2, 3, 4, 5, generator=g),
        "f16": torch.randn(7, generator=g).half(),
        "bf16": torch.randn(3, 4, generator=g).bfloat16(),
        "f64": torch.randn(2, 2, generator=g, dtype=torch.float64),
        "i64": torch.arange(-5, 5),
        "i32": torch.arange(-3, 3, dtype=torch.int32),
        "i16": torch.tensor([-32768, 0, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.arange(250, 256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True, True]),
        "scalar": torch.tensor(3.5),
        "scalar_i64": torch.tensor(7),
        "empty": torch.zeros(0, 3),
        "transposed": torch.randn(3, 5, generator=g).t(),
        "permuted_4d": torch.randn(2, 3, 4, 5, generator=g).permute(0, 2, 3, 1),
        "slice_a": big[2:6],
        "slice_b": big[10:20].view(2, 5),
        "every_third": big[::3],
        "expanded": torch.arange(2.0).expand(3, 2),
        "param": torch.nn.Parameter(torch.randn(4, generator=g)),
    }
    assert not sd["transposed"].is_contiguous() and not sd["permuted_4d"].is_contiguous()
    ptr = sd["slice_a"].untyped_storage().data_ptr()
    assert ptr == sd["slice_b"].untyped_storage().data_ptr() and sd["slice_b"].storage_offset()
    return sd


@pytest.fixture(scope="module")
def checkpoint(torch, state_dict, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    torch.save(state_dict, path)
    return path


def test_round_trip(checkpoint, state_dict, monkeypatch):
    reads = []
    original = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda s, n, *a: reads.append(n) or original(s, n))
    monkeypatch.setitem(sys.modules, "torch", None)  # any `import torch` would now fail
    arrays = read_pth(checkpoint)
    _assert_matches(arrays, state_dict)
    storage_reads = [n for n in reads if "/data/" in n]
    assert len(storage_reads) == len(set(storage_reads)) < len(state_dict)  # shared, read once
    assert not np.shares_memory(arrays["slice_a"], arrays["slice_b"])


def test_bfloat16_without_ml_dtypes(checkpoint, state_dict, monkeypatch):
    monkeypatch.setattr(pth_storage, "_BFLOAT16", None)
    arrays = read_pth(str(checkpoint))
    assert arrays["bf16"].dtype == np.float32
    _assert_matches(arrays, state_dict)


def test_sequential_state_dict(torch, tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Linear(5, 2)
    )
    net(torch.randn(2, 3, 7, 7))  # training-mode forward: updates the batch-norm statistics
    path = tmp_path / "sam_like.pth"
    torch.save(net.state_dict(), path)
    _assert_matches(read_pth(pathlib.Path(path)), net.state_dict())


@pytest.mark.parametrize("wrap", ["model", "state_dict", "only_entry"])
def test_nested_state_dict_is_unwrapped(torch, state_dict, tmp_path, wrap):
    extra = {} if wrap == "only_entry" else {"epoch": 3, "optimizer": {"lr": 0.1}}
    torch.save({wrap: state_dict, **extra}, tmp_path / "nested.pth")
    _assert_matches(read_pth(tmp_path / "nested.pth"), state_dict)


ODD_CONTENTS = {
    "list": lambda torch: ([torch.ones(2)], "holds a list"),
    "empty": lambda torch: ({}, "holds a dict"),
    "no_tensors": lambda torch: ({"a": 1}, "holds a dict"),
    "mixed": lambda torch: ({"w": torch.ones(2), "step": 3}, "holds a dict"),
    "two_levels": lambda torch: ({"a": {"model": {"w": torch.ones(2)}}}, "holds a dict"),
    "int_keys": lambda torch: ({0: torch.ones(2)}, "holds a dict"),
}


@pytest.mark.parametrize("kind", list(ODD_CONTENTS))
def test_not_a_mapping_of_tensors(torch, tmp_path, kind):
    obj, fragment = ODD_CONTENTS[kind](torch)
    torch.save(obj, tmp_path / "odd.pth")
    _error(tmp_path / "odd.pth", fragment, "not a non-empty mapping of names to tensors")


def test_big_endian_archive(torch, tmp_path):
    sd = {
        "a": torch.randn(3, 4),
        "b": torch.arange(-4, 4, dtype=torch.int32),
        "c": torch.eye(3).t(),
    }
    torch.save(sd, tmp_path / "le.pth")

    def to_big(name, data):
        name = "archive/" + name.split("/", 1)[1]  # also a different top folder name
        if name.endswith("/byteorder"):
            return name, b"big"
        if "/data/" in name:
            swapped = np.frombuffer(data, "<u4").byteswap().tobytes()
            assert swapped != data
            return name, swapped
        return name, data

    _rewrite(tmp_path / "le.pth", tmp_path / "be.pth", to_big)
    arrays = read_pth(tmp_path / "be.pth")
    _assert_matches(arrays, sd)
    assert all(a.dtype.isnative for a in arrays.values())
    _rewrite(
        tmp_path / "le.pth",
        tmp_path / "odd.pth",
        lambda n, d: (n, b"middle" if "byteorder" in n else d),
    )
    _error(tmp_path / "odd.pth", "unknown byte order 'middle'")


# --- hostile files ------------------------------------------------------------------------------


class _Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _globals(pkl):
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(pkl):
        if op.name in ("GLOBAL", "INST"):
            found.add(arg)
        elif op.name == "STACK_GLOBAL":
            found.add(" ".join(strings[-2:]))
        if isinstance(arg, str):
            strings.append(arg)
    return found


PAYLOADS = {
    "os.system": lambda m: _Payload(os.system, f"touch {m}"),
    "builtins.eval": lambda m: _Payload(builtins.eval, f"open({str(m)!r}, 'w').close()"),
    "builtins.exec": lambda m: _Payload(builtins.exec, f"open({str(m)!r}, 'w').close()"),
}


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_hostile_torch_save_is_refused(torch, tmp_path, kind):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pth"
    payload = PAYLOADS[kind](marker)
    torch.save({"evil": payload, "w": torch.ones(3)}, path)
    with zipfile.ZipFile(path) as zf:
        pkl = zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))
    # protocol 2 may write the module the Python 2 way (``__builtin__``); messages use the file's
    (named,) = [g for g in _globals(pkl) if g.endswith(" " + payload.func.__name__)]
    assert named.split()[0] in (payload.func.__module__, "__builtin__")
    qualified = named.replace(" ", ".")
    _error(path, f"refuses to load '{qualified}'")
    assert not marker.exists()
    # Control: an unrestricted unpickler really does run the payload of this file.
    unpickler = pickle.Unpickler(io.BytesIO(pkl))
    unpickler.persistent_load = lambda pid: None
    with contextlib.suppress(Exception):  # fails later, on the tensor, after the payload ran
        unpickler.load()
    assert marker.exists()


def _s(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _i(value):
    return b"J" + struct.pack("<i", value)


def _t(*items):
    return b"(" + b"".join(items) + b"t"


def _tensor_pkl(numel, offset, size, stride, storage=b"ctorch\nFloatStorage\n"):
    """A hand-written data.pkl: ``{"a": _rebuild_tensor_v2(storage '0', offset, size, stride)}``."""
    pid = _t(_s("storage"), storage, _s("0"), _s("cpu"), _i(numel)) + b"Q"
    args = _t(pid, _i(offset), _t(*map(_i, size)), _t(*map(_i, stride)), b"\x89", b"}")
    return b"\x80\x02}(" + _s("a") + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"Ru."


def test_hand_written_checkpoint_reads(tmp_path):
    data = np.arange(6, dtype="<f4").tobytes()
    path = _write_zip(tmp_path / "ok.pth", _tensor_pkl(6, 1, (2, 2), (2, 1)), [("0", data)])
    np.testing.assert_array_equal(read_pth(path)["a"], [[1, 2], [3, 4]])


HOSTILE_PICKLES = [
    ("inst", b"(Vtouch {m}\nios\nsystem\n.", "refuses to load 'os.system'"),
    ("obj", b"(cposix\nsystem\nVtouch {m}\no.", "refuses to load 'posix.system'"),
    ("builtins", b"cbuiltins\ngetattr\n(cos\nsystem\n", "refuses to load 'builtins.getattr'"),
    ("call_storage", b"\x80\x02ctorch\nFloatStorage\n)R.", "not callable"),
    ("bad_pid", b"\x80\x02(Vmodule\nVos\nVsystem\ntQ.", "refuses the persistent id"),
    ("str_storage", _tensor_pkl(6, 0, (6,), (1,), _s("FloatStorage")), "persistent id"),
    ("torch_load", b"\x80\x02ctorch\nload\n.", "refuses to load 'torch.load'"),
    ("out_of_bounds", _tensor_pkl(6, 0, (3, 3), (3, 1)), "needs 9 elements"),
    ("expand_bomb", _tensor_pkl(6, 0, (2**20, 2**20), (0, 0)), "expands its storage"),
    ("negative_stride", _tensor_pkl(6, 5, (6,), (-1,)), "invalid layout"),
    ("rank_mismatch", _tensor_pkl(6, 0, (2, 3), (1,)), "invalid layout"),
]


@pytest.mark.parametrize(
    ("name", "pkl", "fragment"), HOSTILE_PICKLES, ids=[c[0] for c in HOSTILE_PICKLES]
)
def test_hand_written_hostile_pickles(tmp_path, name, pkl, fragment):
    marker = tmp_path / "pwned"
    pkl = pkl.replace(b"{m}", str(marker).encode())
    path = _write_zip(tmp_path / f"{name}.pth", pkl, [("0", bytes(24))])
    _error(path, fragment)
    assert not marker.exists()


def test_stack_global_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    pkl = pickle.dumps({"evil": _Payload(subprocess.Popen, ["touch", str(marker)])}, protocol=4)
    assert "subprocess Popen" in _globals(pkl)
    _error(_write_zip(tmp_path / "p4.pth", pkl, prefix="p4/"), "refuses to load 'subprocess.Popen'")
    assert not marker.exists()


# --- damaged files and non-checkpoints -----------------------------------------------------------


def test_truncated_to_half(checkpoint, tmp_path):
    data = checkpoint.read_bytes()
    (tmp_path / "half.pth").write_bytes(data[: len(data) // 2])
    _error(tmp_path / "half.pth", "truncated or corrupt")


def test_shortened_storage_record(checkpoint, tmp_path):
    _rewrite(
        checkpoint, tmp_path / "short.pth", lambda n, d: (n, d[:-4] if n.endswith("/data/0") else d)
    )
    _error(tmp_path / "short.pth", "model/data/0", "truncated or corrupt file")


def test_missing_storage_record(checkpoint, tmp_path):
    _rewrite(checkpoint, tmp_path / "gap.pth", lambda n, d: (n.replace("/data/1", "/data/x"), d))
    _error(tmp_path / "gap.pth", "'model/data/1' is missing")


def test_corrupt_storage_bytes(checkpoint, tmp_path):
    data = bytearray(checkpoint.read_bytes())
    with zipfile.ZipFile(checkpoint) as zf:
        info = zf.getinfo("model/data/0")
    name_len, extra_len = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    data[info.header_offset + 30 + name_len + extra_len + 5] ^= 0xFF
    (tmp_path / "flipped.pth").write_bytes(bytes(data))
    _error(tmp_path / "flipped.pth", "'model/data/0' is corrupt", "CRC")


def test_legacy_format(torch, tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    _error(path, "not a PyTorch zip checkpoint", "legacy")


def test_random_bytes_empty_missing_and_directory(tmp_path):
    random = tmp_path / "random.pth"
    random.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _error(random, "not a PyTorch zip checkpoint")
    (tmp_path / "empty.pth").write_bytes(b"")
    _error(tmp_path / "empty.pth", "empty")
    _error(tmp_path / "missing.pth", "no such file")
    _error(tmp_path, "not a regular file")


def test_zip_without_data_pkl(tmp_path):
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "hello")
    _error(tmp_path / "other.zip", "not a PyTorch zip checkpoint")


def test_checkpoint_error_is_value_error():
    assert issubclass(CheckpointError, ValueError)


_PEAK = """
import resource, sys
from napari_sam.weights.pth_reader import read_pth
try:
    read_pth(sys.argv[1])
except Exception as exc:
    print(str(exc).splitlines()[0])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_kib(path):
    """Read ``path`` in a process of its own: (its first message line or "", peak RSS in KiB)."""
    run = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True,
                         timeout=300, check=True)  # fmt: skip
    *message, peak = run.stdout.strip().splitlines()
    return (message[0] if message else ""), int(peak)


def _deflated_zeros(zf, name, size):
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w", force_zip64=True) as f:
        chunk = bytes(1 << 26)
        for start in range(0, size, len(chunk)):
            f.write(chunk[: min(len(chunk), size - start)])


def test_a_record_that_inflates_to_a_gibibyte_is_refused_from_its_header(tmp_path):
    """A 1 MB file whose storage record inflates to 1 GiB (as its pickle declares) is refused,
    named, with the peak memory of reading a small file (within 300 MiB)."""
    numel = 2**28  # float32: 1 GiB
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", _tensor_pkl(numel, 0, (numel,), (1,)))
        zf.writestr("archive/byteorder", b"little")
        _deflated_zeros(zf, "archive/data/0", numel * 4)
    assert bomb.stat().st_size < 4 << 20
    small = _write_zip(tmp_path / "small.pth", _tensor_pkl(6, 0, (6,), (1,)),
                       [("0", np.arange(6, dtype="<f4").tobytes())])  # fmt: skip
    message, peak = _peak_kib(bomb)
    ok, base = _peak_kib(small)
    assert ok == "" and str(bomb) in message and "zip bomb" in message, message
    assert peak - base < 300 * 1024, (peak, base)
    _error(bomb, "'archive/data/0' would inflate from")


def test_an_oversized_pickle_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "pkl_bomb.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        _deflated_zeros(zf, "archive/data.pkl", (1 << 26) + 1)
    _error(path, "'archive/data.pkl' declares 67108865 bytes")


def test_a_record_with_a_lying_size_is_never_read_past_it(tmp_path):
    """The pickle declares 6 elements but the record holds (and declares) more: refused by size."""
    path = _write_zip(tmp_path / "long.pth", _tensor_pkl(6, 0, (6,), (1,)),
                      [("0", bytes(4 << 20))])  # fmt: skip
    _error(path, "'archive/data/0' has 4194304 bytes, but its tensors need 24")
