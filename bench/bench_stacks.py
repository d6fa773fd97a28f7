"""Benchmark of stack embeddings: reading stored embeddings, and the store's precompute overhead.

1. Reads of one SAM ViT-sized embedding (64 x 64 x 256 float32, 4 MiB) through
   ``EmbeddingStore.get``: from disk (a new store, nothing in memory: reads and hashes the image
   slice, reads the chunk, checks its CRC32; the OS page cache is warm) and from memory
   (LRU hit). Targets: disk <= 20 ms, memory <= 1 ms (median). With the model, also
   ``StackPredictor.set_slice`` from disk (the read plus handing the embedding to the predictor).
2. The store's overhead when precomputing a stack with a real model encoder: wall time of
   ``EmbeddingStore.precompute`` over N slices (normalisation fit, reading, hashing,
   normalising, writing chunks and records; a new store each time) against the bare
   ``ModelEncoder.encode`` time of the same, already normalised slices. Target <= 5 %.
   Runs alternate (bare, store, bare, store, ...) so a changing machine load hits both alike.

Run: ``python bench/bench_stacks.py [--model sam_vit_b] [--slices 4] [--size 1024]``
(``--override KEY=JSON`` for a smaller architecture, e.g. ``--override encoder_nb_blocks=2``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_sam.stacks import StackView
from napari_sam.stacks.normalize import Normalization
from napari_sam.stacks.store import EmbeddingStore

EMB = (64, 64, 256)


class CheapEncoder:
    """Content-dependent embeddings of SAM ViT size, made quickly (fills the store for reads)."""

    signature = "bench-cheap"
    embedding_shape = EMB

    def encode(self, images):
        means = images.mean(axis=(1, 2, 3), dtype=np.float32)
        noise = np.random.default_rng(0).standard_normal(EMB, dtype=np.float32)
        return noise[None] * means[:, None, None, None]


def make_stack(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``(n, size, size)`` uint16 discs on noise (fluorescence-like, 12 bit)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size), np.uint16)
    for i in range(n):
        img = rng.normal(300, 40, (size, size))
        for _ in range(12):
            cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 40, size / 12)]
            img += 2500 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)
        out[i] = np.clip(img, 0, 4095)
    return out


def median_ms(fn, n: int) -> float:
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def bench_reads(tmp: Path, view: StackView, reads: int) -> dict:
    store = EmbeddingStore(tmp / "reads.emb")
    store.precompute(view, CheapEncoder(), normalization=Normalization("dtype"))
    disk = EmbeddingStore.open(
        view, CheapEncoder(), normalization=Normalization("dtype"), path=tmp / "reads.emb",
        memory_budget=0,
    )  # fmt: skip
    n = len(view)
    out = {"disk": median_ms(lambda i: disk.get(i % n), reads)}
    mem = EmbeddingStore.open(view, CheapEncoder(), normalization=Normalization("dtype"))
    for i in range(n):
        mem.get(i)
    out["memory"] = median_ms(lambda i: mem.get(i % n), reads)
    return out


def bench_overhead(tmp: Path, view: StackView, model, repeats: int) -> dict:
    from napari_sam.stacks.encoder import ModelEncoder

    enc = ModelEncoder(model)
    norm = Normalization().fit(view)
    probe = EmbeddingStore.open(view, enc, normalization=norm)
    prepared = [probe.prepare(view.get_slice(i))[None] for i in range(len(view))]
    t = time.perf_counter()
    enc.encode(prepared[0])  # trace
    trace_s = time.perf_counter() - t
    real_encode, inside = enc.encode, [0.0]

    def timed_encode(images):
        t = time.perf_counter()
        out = real_encode(images)
        inside[0] += time.perf_counter() - t
        return out

    bare, store_s, own = [], [], []
    for r in range(repeats):
        t = time.perf_counter()
        for x in prepared:
            real_encode(x)
        bare.append(time.perf_counter() - t)
        enc.encode, inside[0] = timed_encode, 0.0
        store = EmbeddingStore(tmp / f"overhead-{r}.emb", memory_budget=0)
        t = time.perf_counter()
        res = store.precompute(view, enc, normalization=Normalization())
        store_s.append(time.perf_counter() - t)
        own.append(store_s[-1] - inside[0])
        enc.encode = real_encode
        assert res.computed == len(view)
    sp_ms = None
    if enc.embedding_shape == EMB:
        from napari_sam.stacks.stack_predictor import StackPredictor

        sp = StackPredictor(model, view, store=tmp / "overhead-0.emb", memory_budget=0, encoder=enc)
        sp_ms = median_ms(lambda i: sp.set_slice(i % len(view)), 20)
    return dict(
        trace_s=trace_s,
        bare=statistics.median(bare),
        store=statistics.median(store_s),
        own=statistics.median(own),
        runs=list(zip(bare, store_s, own, strict=True)),
        set_slice_ms=sp_ms,
        embedding_shape=enc.embedding_shape,
    )


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="sam_vit_b", help="registered model (random weights)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=JSON")
    p.add_argument("--slices", type=int, default=4, help="slices for the overhead run")
    p.add_argument("--size", type=int, default=1024, help="slice size (square, uint16)")
    p.add_argument("--reads", type=int, default=100, help="timed reads per read benchmark")
    p.add_argument("--read-slices", type=int, default=8, help="slices in the read benchmark")
    p.add_argument("--repeats", type=int, default=2, help="bare/store pairs of overhead runs")
    p.add_argument("--skip-model", action="store_true", help="only the read benchmark")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cmd = "python " + shlex.join(sys.argv if argv is None else ["bench_stacks.py", *argv])
    print(f"$ {cmd}")
    print(f"# cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-stacks-") as tmp:
        tmp = Path(tmp)
        view = StackView(make_stack(args.read_slices, args.size), "ZYX")
        reads = bench_reads(tmp, view, args.reads)
        rows = [
            (f"get() from disk, {EMB} f32, {args.size}^2 slice", reads["disk"], "ms", "<= 20"),
            (f"get() from memory, {EMB} f32", reads["memory"], "ms", "<= 1"),
        ]
        if not args.skip_model:
            import keras

            from napari_sam.weights import create_model

            overrides = {}
            for item in args.override:
                key, _, raw = item.partition("=")
                value = json.loads(raw)
                overrides[key] = tuple(value) if isinstance(value, list) else value
            keras.utils.set_random_seed(0)
            t = time.perf_counter()
            model = create_model(args.model, **overrides)
            build_s = time.perf_counter() - t
            stack = StackView(make_stack(args.slices, args.size, seed=1), "ZYX")
            o = bench_overhead(tmp, stack, model, args.repeats)
            name = f"{args.model}{' (overridden)' if overrides else ''}"
            if o["set_slice_ms"] is not None:
                rows.append(("StackPredictor.set_slice from disk", o["set_slice_ms"], "ms", ""))
            rows += [
                (f"model build ({name}, random weights)", build_s, "s", ""),
                ("encoder trace + first call", o["trace_s"], "s", ""),
                (f"bare ModelEncoder.encode, {args.slices} slices", o["bare"], "s", ""),
                (f"store.precompute, {args.slices} slices", o["store"], "s", ""),
                ("overhead vs bare run", 100 * (o["store"] / o["bare"] - 1), "%", "<= 5"),
                ("store's own time (outside encode)", o["own"], "s", ""),
                ("  as % of the bare encode time", 100 * o["own"] / o["bare"], "%", "<= 5"),
                ("  per slice", 1e3 * o["own"] / args.slices, "ms", ""),
            ]
    print(f"{'measure':<48} {'value':>10}  {'unit':<4} target")
    for label, value, unit, target in rows:
        print(f"{label:<48} {value:>10.3f}  {unit:<4} {target}")
    if not args.skip_model:
        runs = ", ".join(f"({b:.2f}, {s:.2f}, {w:.3f})" for b, s, w in o["runs"])
        print(f"# runs (bare s, store s, store's own s): {runs}")
        print(f"# embedding shape {o['embedding_shape']}; load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
