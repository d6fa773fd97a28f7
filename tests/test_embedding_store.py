"""Tests of the embedding store: memory LRU, zarr on disk, signatures, crash safety."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from napari_sam import embedding_store as es
from napari_sam.stacks import StackView
from napari_sam.stacks.channels import ChannelSpec
from napari_sam.stacks.normalize import Normalization
from napari_sam.stacks.store import EmbeddingStore, StoreMismatchError, TqdmProgress

N, SIZE, EMB = 6, 32, (8, 8, 16)
FIXED = Normalization.fixed(0, 4095)  # stack-independent, so one slice can change alone


class FakeEncoder:
    """Deterministic, content-dependent: 4x4 block means through a fixed random projection."""

    def __init__(self, seed=0, delay=0.0, in_channels=3):
        rng = np.random.default_rng(seed)
        self.w = rng.normal(size=(in_channels, EMB[2])).astype(np.float32)
        self.b = rng.normal(size=EMB).astype(np.float32)
        self.delay, self.encoded, self.batches = delay, 0, []
        self.signature = f"fake-linear:seed={seed}:in={in_channels}:out={EMB}"
        self.embedding_shape = EMB

    def encode(self, images):
        b, h, w, c = images.shape
        time.sleep(self.delay * b)
        pooled = images.reshape(b, EMB[0], h // EMB[0], EMB[1], w // EMB[1], c).mean((2, 4))
        self.encoded += b
        self.batches.append(b)
        return np.tanh(pooled @ self.w / 255.0 + self.b).astype(np.float32)


def make_stack(n=N, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4096, (n, SIZE, SIZE)).astype(np.uint16)


def fresh(view, encoder, **kw):
    """Embeddings of every slice computed from scratch in memory."""
    store = EmbeddingStore.open(view, encoder, **kw)
    return [np.array(store.get(i)) for i in range(len(view))]


def test_round_trip_bit_identical_from_disk(tmp_path):
    view, enc = StackView(make_stack(), "ZYX"), FakeEncoder()
    first = EmbeddingStore(tmp_path / "s")
    assert tuple(first.precompute(view, enc, normalization=FIXED)) == (N, 0)
    written = [np.array(first.get(i)) for i in range(N)]
    enc2 = FakeEncoder()
    second = EmbeddingStore.open(
        view, enc2, normalization=FIXED, path=tmp_path / "s", memory_budget=0
    )
    for i in range(N):
        got = second.get(i)
        assert got.dtype == np.float32 and got.shape == EMB and not got.flags.writeable
        np.testing.assert_array_equal(got, written[i])
    assert enc2.encoded == 0
    res = second.precompute()
    assert (res.computed, res.reused, res.total, res.cancelled) == (0, N, N, False)
    meta = json.loads((tmp_path / "s" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, *EMB]
    assert meta["attributes"]["napari_sam"]["encoder"] == enc.signature


def test_lru_budget_eviction_memory_only():
    view, enc = StackView(make_stack(), "ZYX"), FakeEncoder()
    one = int(np.prod(EMB)) * 4
    store = EmbeddingStore(memory_budget=int(2.5 * one))
    store.precompute(view, enc, normalization=FIXED)
    assert enc.encoded == N and store.memory_bytes == 2 * one
    assert store.in_memory(N - 1) and store.in_memory(N - 2) and not store.in_memory(0)
    store.get(N - 1)
    assert enc.encoded == N  # still in memory
    store.get(N - 2)  # touch: now N-1 is least recently used
    store.get(0)  # evicted earlier: recomputed, evicts N-1
    assert enc.encoded == N + 1
    store.get(N - 2)
    assert enc.encoded == N + 1
    store.get(N - 1)
    assert enc.encoded == N + 2
    assert store.memory_bytes <= 2.5 * one


def test_disk_serves_what_memory_evicted(tmp_path):
    view, enc = StackView(make_stack(), "ZYX"), FakeEncoder()
    store = EmbeddingStore(tmp_path / "s", memory_budget=0)
    store.precompute(view, enc, normalization=FIXED)
    assert store.memory_bytes == 0
    ref = fresh(view, FakeEncoder(), normalization=FIXED)
    for i in range(N):
        np.testing.assert_array_equal(store.get(i), ref[i])
    assert enc.encoded == N


def test_changed_slice_only_that_one_recomputed(tmp_path):
    data = make_stack()
    EmbeddingStore(tmp_path / "s").precompute(
        StackView(data, "ZYX"), FakeEncoder(), normalization=FIXED
    )
    data = data.copy()
    data[3, 5, 7] += 1
    enc = FakeEncoder()
    view = StackView(data, "ZYX")
    store = EmbeddingStore(tmp_path / "s")
    assert tuple(store.precompute(view, enc, normalization=FIXED)) == (1, N - 1)
    ref = fresh(view, FakeEncoder(), normalization=FIXED)
    for i in range(N):
        np.testing.assert_array_equal(store.get(i), ref[i])
    # get() checks the content hash against the disk record too
    data[1, 0, 0] += 1
    enc3 = FakeEncoder()
    store3 = EmbeddingStore.open(view, enc3, normalization=FIXED, path=tmp_path / "s")
    np.testing.assert_array_equal(store3.get(1), fresh(view, FakeEncoder(), normalization=FIXED)[1])
    assert enc3.encoded == 1


@pytest.mark.parametrize(
    ("change", "label"),
    [
        ({"encoder": FakeEncoder(seed=1)}, "encoder signature"),
        ({"channels": ChannelSpec("rgb", (0,))}, "channel spec"),
        ({"normalization": Normalization.fixed(0, 1000)}, "normalisation"),
        ({"normalization": Normalization()}, "normalisation"),
        ({"data": make_stack(n=N + 1)}, "number of slices"),
        ({"version": "999.0"}, "napari-sam version"),
    ],
)
def test_different_ingredient_refused_or_recomputed(tmp_path, monkeypatch, change, label):
    path = tmp_path / "s"
    EmbeddingStore(path).precompute(
        StackView(make_stack(), "ZYX"), FakeEncoder(), normalization=FIXED
    )
    if "version" in change:
        monkeypatch.setattr(es, "package_version", lambda: change["version"])
    view = StackView(change.get("data", make_stack()), "ZYX")
    kw = {"channels": change.get("channels"), "normalization": change.get("normalization", FIXED)}
    enc = change.get("encoder", FakeEncoder())
    with pytest.raises(StoreMismatchError, match=rf"{label}: stored .*overwrite=True"):
        EmbeddingStore(path).precompute(view, enc, **kw)
    enc.encoded = 0
    store = EmbeddingStore(path, overwrite=True)
    assert tuple(store.precompute(view, enc, **kw)) == (len(view), 0)
    ref = fresh(view, FakeEncoder(seed=int("encoder" in change)), **kw)
    for i in range(len(view)):
        np.testing.assert_array_equal(store.get(i), ref[i])
    # the replaced store is now the valid one
    assert tuple(EmbeddingStore(path).precompute(view, enc, **kw)) == (0, len(view))


def test_rebinding_memory_store_never_serves_stale():
    view = StackView(make_stack(), "ZYX")
    store = EmbeddingStore.open(view, FakeEncoder(), normalization=FIXED)
    old = np.array(store.get(2))
    store.bind(view, FakeEncoder(seed=5), normalization=FIXED)
    new = store.get(2)
    assert not np.allclose(old, new)
    np.testing.assert_array_equal(new, fresh(view, FakeEncoder(seed=5), normalization=FIXED)[2])


def test_crash_between_chunk_and_record(tmp_path, monkeypatch):
    view, path = StackView(make_stack(), "ZYX"), tmp_path / "s"
    real = es._write_record

    def crash_on_2(p, record):
        if record["index"] == 2:
            raise KeyboardInterrupt("simulated crash")
        real(p, record)

    monkeypatch.setattr(es, "_write_record", crash_on_2)
    with pytest.raises(KeyboardInterrupt):
        EmbeddingStore(path).precompute(view, FakeEncoder(), normalization=FIXED)
    monkeypatch.setattr(es, "_write_record", real)
    assert (path / "c" / "2" / "0" / "0" / "0").exists()  # the chunk was written ...
    assert not (path / "records" / "2.json").exists()  # ... but never completed
    enc = FakeEncoder()
    store = EmbeddingStore(path)
    assert tuple(store.precompute(view, enc, normalization=FIXED)) == (N - 2, 2)
    ref = fresh(view, FakeEncoder(), normalization=FIXED)
    for i in range(N):
        np.testing.assert_array_equal(store.get(i), ref[i])


@pytest.mark.parametrize("damage", ["flip", "truncate", "record"])
def test_corruption_detected(tmp_path, damage):
    view, path = StackView(make_stack(), "ZYX"), tmp_path / "s"
    EmbeddingStore(path).precompute(view, FakeEncoder(), normalization=FIXED)
    chunk = path / "c" / "3" / "0" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    if damage == "flip":
        raw[1001] ^= 0x40
        chunk.write_bytes(bytes(raw))
    elif damage == "truncate":
        chunk.write_bytes(bytes(raw[: len(raw) // 2]))
    else:
        (path / "records" / "3.json").write_text('{"index": 3, "key": "')
    enc = FakeEncoder()
    store = EmbeddingStore.open(view, enc, normalization=FIXED, path=path)
    np.testing.assert_array_equal(store.get(3), fresh(view, FakeEncoder(), normalization=FIXED)[3])
    assert enc.encoded == 1
    if damage == "flip":  # and precompute finds it too
        chunk.write_bytes(bytes(raw))
        enc2 = FakeEncoder()
        assert tuple(EmbeddingStore(path).precompute(view, enc2, normalization=FIXED)) == (1, 5)


def test_records_from_another_store_not_trusted(tmp_path):
    view = StackView(make_stack(), "ZYX")
    EmbeddingStore(tmp_path / "a").precompute(view, FakeEncoder(seed=1), normalization=FIXED)
    EmbeddingStore(tmp_path / "b").precompute(view, FakeEncoder(), normalization=FIXED)
    for part in ("records/2.json", "c/2/0/0/0"):  # same slice content, other encoder
        (tmp_path / "b" / part).write_bytes((tmp_path / "a" / part).read_bytes())
    enc = FakeEncoder()
    store = EmbeddingStore(tmp_path / "b")
    assert tuple(store.precompute(view, enc, normalization=FIXED)) == (1, N - 1)
    np.testing.assert_array_equal(store.get(2), fresh(view, FakeEncoder(), normalization=FIXED)[2])


def test_batches_progress_and_cancel(tmp_path):
    view = StackView(make_stack(), "ZYX")
    enc, seen, stop = FakeEncoder(), [], threading.Event()

    def progress(done, total):
        seen.append((done, total))
        if done >= 4:
            stop.set()

    store = EmbeddingStore(tmp_path / "s")
    res = store.precompute(
        view, enc, normalization=FIXED, batch_size=2, progress=progress, cancel=stop
    )
    assert res.cancelled and (res.computed, res.reused) == (4, 0)
    assert enc.batches == [2, 2] and seen == [(2, N), (4, N)]
    enc2, seen = FakeEncoder(), []
    res = store.precompute(
        view, enc2, batch_size=4, progress=lambda d, t: seen.append(d), cancel=lambda: False
    )
    assert (res.computed, res.reused, res.cancelled) == (2, 4, False)
    assert enc2.batches == [2] and seen == [1, 2, 3, 4, 6]
    with TqdmProgress(disable=True) as bar:
        store.precompute(progress=bar)


def test_get_on_demand_writes_completed_slice(tmp_path):
    view, enc = StackView(make_stack(), "ZYX"), FakeEncoder()
    store = EmbeddingStore.open(view, enc, normalization=FIXED, path=tmp_path / "s")
    emb = np.array(store.get((4,)))
    assert enc.encoded == 1
    rec = json.loads((tmp_path / "s" / "records" / "4.json").read_text())
    assert rec["index"] == 4 and rec["key"] == store.key
    assert tuple(EmbeddingStore(tmp_path / "s").precompute(view, enc, normalization=FIXED)) == (
        N - 1,
        1,
    )
    np.testing.assert_array_equal(store.get(4), emb)


def test_multichannel_adapt_and_errors(tmp_path):
    data = np.random.default_rng(2).integers(0, 255, (2, 4, SIZE, SIZE)).astype(np.uint8)
    view = StackView(data, "ZCYX")
    with pytest.raises(ValueError, match="4 channels"):
        EmbeddingStore.open(view, FakeEncoder(in_channels=4))
    store = EmbeddingStore.open(view, FakeEncoder(in_channels=4), channels=ChannelSpec("adapt"))
    assert store.get(1).shape == EMB
    with pytest.raises(ValueError, match="channel index 5 is out of range"):
        EmbeddingStore.open(view, FakeEncoder(), channels=ChannelSpec("single", 5))

    class Wrong(FakeEncoder):
        def encode(self, images):
            return super().encode(images)[:, :4]

    with pytest.raises(ValueError, match="encoder: returned shape"):
        EmbeddingStore.open(view, Wrong(), channels=ChannelSpec("rgb", (0, 1))).get(0)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("precious")
    with pytest.raises(StoreMismatchError, match="not a store"):
        EmbeddingStore(foreign, overwrite=True).bind(view, FakeEncoder(), ChannelSpec("rgb"))
    assert (foreign / "thesis.txt").read_text() == "precious"
    with pytest.raises(RuntimeError, match="bind"):
        EmbeddingStore().get(0)
    with pytest.raises(ValueError, match="view, encoder"):
        EmbeddingStore().precompute()


def test_foreign_zarr_refused_and_reset_leftovers_accepted(tmp_path):
    import zarr

    view = StackView(make_stack(), "ZYX")
    zarr.create_array(store=str(tmp_path / "z"), shape=(2, 2), dtype="f4")
    with pytest.raises(StoreMismatchError, match="no store"):
        EmbeddingStore(tmp_path / "z", overwrite=True).precompute(view, FakeEncoder())
    assert (tmp_path / "z" / "zarr.json").exists()
    # a reset killed after zarr.json went: only records/ and c/ left, records point at chunks
    path = tmp_path / "s"
    EmbeddingStore(path).precompute(view, FakeEncoder(), normalization=FIXED)
    (path / "zarr.json").unlink()
    enc = FakeEncoder()
    assert tuple(EmbeddingStore(path).precompute(view, enc, normalization=FIXED)) == (N, 0)


_CHILD = """
import sys, time
sys.path[:0] = [{src!r}, {tests!r}]
from pathlib import Path
import napari_sam.stacks.store as es
from test_embedding_store import FIXED, FakeEncoder, make_stack
from napari_sam.stacks import StackView
hold = {hold}
real = es._write_record
def record(p, r):
    if r["index"] == hold:  # park between the chunk write and its record
        Path(str(p) + ".parked").write_text("")
        time.sleep(60)
    real(p, r)
es._write_record = record
es.EmbeddingStore({path!r}).precompute(StackView(make_stack({n}), "ZYX"), FakeEncoder(delay=0.2),
                                      normalization=FIXED)
"""


@pytest.mark.parametrize("hold", [-1, 3])
def test_kill_9_then_resume(tmp_path, hold):
    path = tmp_path / "s"
    here = Path(__file__).resolve().parent
    n = 10  # 2 s of work in the child: it is killed long before the end
    code = _CHILD.format(
        src=str(here.parent / "src"), tests=str(here), path=str(path), hold=hold, n=n
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    records = path / "records"
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if hold < 0 and records.is_dir() and len(list(records.glob("*.json"))) >= 2:
                time.sleep(0.1)  # somewhere inside the next slice
                break
            if hold >= 0 and (records / f"{hold}.json.parked").exists():
                break
            time.sleep(0.02)
        assert proc.poll() is None, "child ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    done = len(list(records.glob("*.json")))
    assert 2 <= done < n
    if hold >= 0:
        assert done == hold and (path / "c" / str(hold) / "0" / "0" / "0").exists()
    view, enc = StackView(make_stack(n), "ZYX"), FakeEncoder()
    store = EmbeddingStore(path)
    assert tuple(store.precompute(view, enc, normalization=FIXED)) == (n - done, done)
    assert enc.encoded == n - done
    ref = fresh(view, FakeEncoder(), normalization=FIXED)
    for i in range(n):
        np.testing.assert_allclose(store.get(i), ref[i], rtol=1e-6, atol=1e-7)


class PoisonedEncoder(FakeEncoder):
    """Returns NaN (or Inf) for the slice at ``position`` of its ``call``-th encode call."""

    def __init__(self, call, position, value=np.nan):
        super().__init__()
        self.poison, self.value, self.calls = (call, position), value, 0

    def encode(self, images):
        out = super().encode(images)
        if self.calls == self.poison[0]:
            out[self.poison[1], 0, 0, 0] = self.value
        self.calls += 1
        return out


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_embeddings_never_stored(tmp_path, value):
    view = StackView(make_stack(), "ZYX")
    store = EmbeddingStore(tmp_path / "s")
    # batches (0, 1, 2), (3, 4, 5): slice 4 of the second batch is poisoned
    with pytest.raises(ValueError, match=r"slice 4 are not finite"):
        store.precompute(view, PoisonedEncoder(1, 1, value), normalization=FIXED, batch_size=3)
    records = sorted(p.name for p in (tmp_path / "s" / "records").iterdir())
    assert records == ["0.json", "1.json", "2.json"]  # nothing of the poisoned batch
    assert not any(store.in_memory(i) for i in (3, 4, 5))
    # on demand too: the error reaches the caller, nothing is kept
    with pytest.raises(ValueError, match=r"slice 5 are not finite"):
        store.bind(view, PoisonedEncoder(0, 0, value), normalization=FIXED).get(5)
    assert not (tmp_path / "s" / "records" / "5.json").exists() and not store.in_memory(5)
    # a healthy encoder then computes exactly the missing slices
    res = EmbeddingStore(tmp_path / "s").precompute(view, FakeEncoder(), normalization=FIXED)
    assert (res.computed, res.reused) == (3, 3)
