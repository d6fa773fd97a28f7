"""Benchmark of the embedding store.

Reads of one 64x64x256 float32 embedding (4 MiB, SAM ViT's image embedding) from memory and
from disk (zarr v3, one uncompressed chunk per slice, CRC32 checked; the OS page cache is warm,
as it is for slices written earlier in a session), and the store's overhead per slice over a
fake encoder that sleeps a fixed time (wall time of ``precompute`` minus the time spent inside
``encode``: reading, hashing, normalising the slice, writing the chunk and its record).

Run: ``PYTHONPATH=src python bench/bench_store.py [--reads 200] [--slices 16] [--sleep 0.05]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_sam.embedding_store import EmbeddingStore
from napari_sam.normalize import Normalization
from napari_sam.stacks import StackView

EMB = (64, 64, 256)


class SleepEncoder:
    """Sleeps ``delay`` seconds per slice; returns a cheap content-dependent embedding."""

    def __init__(self, delay: float):
        self.delay, self.spent = delay, 0.0
        self.signature = f"sleep:{delay}"
        self.embedding_shape = EMB

    def encode(self, images):
        t = time.perf_counter()
        time.sleep(self.delay * len(images))
        means = images.mean(axis=(1, 2, 3), dtype=np.float32)
        out = np.broadcast_to(means[:, None, None, None], (len(images), *EMB)).copy()
        self.spent += time.perf_counter() - t
        return out


def _median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def _raw_zarr_ms(tmp: Path, compressors, n: int) -> tuple[float, float]:
    import zarr

    arr = zarr.create_array(
        store=str(tmp / f"raw-{compressors is None}.zarr"),
        shape=(4, *EMB),
        chunks=(1, *EMB),
        dtype="float32",
        compressors=compressors,
    )
    emb = np.random.default_rng(0).normal(size=EMB).astype(np.float32)
    arr[1] = emb
    size = sum(f.stat().st_size for f in Path(arr.store.root).rglob("c/1/*/*/*"))
    return _median_ms(lambda: arr[1], n), size / emb.nbytes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reads", type=int, default=200)
    p.add_argument("--slices", type=int, default=16)
    p.add_argument("--sleep", type=float, default=0.05)
    p.add_argument("--size", type=int, default=1024, help="slice side (uint16 pixels)")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    view = StackView(rng.integers(0, 4096, (a.slices, a.size, a.size)).astype(np.uint16), "ZYX")
    norm = Normalization.fixed(0, 4095)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        enc = SleepEncoder(0.0)
        EmbeddingStore(tmp / "s").precompute(view, enc, normalization=norm)
        mem = EmbeddingStore.open(view, enc, normalization=norm, path=tmp / "s")
        mem.get(0)
        rows.append(("read from memory (get)", _median_ms(lambda: mem.get(0), a.reads), "ms"))
        disk = EmbeddingStore.open(view, enc, normalization=norm, path=tmp / "s", memory_budget=0)
        rows.append(
            ("read from disk (get, verified)", _median_ms(lambda: disk.get(3), a.reads), "ms")
        )
        ms, ratio = _raw_zarr_ms(tmp, None, a.reads)
        rows.append(("  raw zarr read, no compression", ms, f"ms (size x{ratio:.2f})"))
        try:
            from zarr.codecs import BloscCodec

            ms, ratio = _raw_zarr_ms(tmp, BloscCodec(cname="lz4", clevel=1), a.reads)
            rows.append(("  raw zarr read, blosc lz4", ms, f"ms (size x{ratio:.2f})"))
        except ImportError:
            pass
        for path in (None, tmp / "p"):
            enc = SleepEncoder(a.sleep)
            t = time.perf_counter()
            EmbeddingStore(path, memory_budget=1 << 28).precompute(view, enc, normalization=norm)
            per = (time.perf_counter() - t - enc.spent) / a.slices  # time outside encode()
            where = "memory only" if path is None else "disk"
            rows.append((f"precompute overhead / slice ({where})", 1e3 * per, "ms"))
        t = time.perf_counter()
        res = EmbeddingStore(tmp / "p").precompute(view, enc, normalization=norm)
        per = (time.perf_counter() - t) / a.slices
        rows.append((f"resume, all {res.reused} slices valid / slice", 1e3 * per, "ms"))
    width = max(len(r[0]) for r in rows)
    print(f"{a.slices} slices of {a.size}x{a.size} uint16, embeddings {EMB} float32")
    print(f"{'measure':<{width}}  {'median':>9}")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:9.3f} {unit}")


if __name__ == "__main__":
    main()
