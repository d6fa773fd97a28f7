"""Speed of napari-sam against Meta's reference on the same CPU, weights and image.

    python bench/bench_perf.py                 # full-size sam_vit_b (minutes)
    python bench/bench_perf.py --smoke         # a tiny configuration (seconds)
    python bench/bench_perf.py --vit-h-memory  # peak memory of sam_vit_h embedding a slice

Reports, from one run: the image encoder time of both, the prompt-to-mask latency (median
over prompts of 1 to 5 points and 0 or 1 box, masks upscaled to the 1024 x 1024 original),
the machine's float32 and bfloat16 matrix-multiply rates under TensorFlow, the fraction of
the float32 rate the encoder reaches, the bfloat16 encoder's speed-up and how many mask
pixels it changes, and peak memory. Needs the test extra (torch and
segment-anything). Timings are medians of ``--repeats`` runs after a warm-up. Meta's
reference is timed first, in a torch-only process (``reference_timings.py``, which also
writes the weights): in one process with TensorFlow it ran 30 to 50 % slower.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from reference_timings import latencies, prompts, test_image  # noqa: E402

from napari_sam import SAMPredictor, create_model  # noqa: E402
from napari_sam.model.precision import bfloat16_runs  # noqa: E402
from napari_sam.weights import model_config  # noqa: E402

ROUNDS = 3  # rounds of all prompts timed, after a warm-up round, on each side

SMOKE = dict(
    input_size=(256, 256),
    encoder_embed_dim=64,
    encoder_nb_blocks=2,
    encoder_nb_heads=2,
    encoder_global_attn_indices=(1,),
    encoder_window_size=7,
)


def encoder_macs(cfg) -> float:
    """Multiply-accumulates of the ViT image encoder for one image (patch embed to neck).

    The work napari-sam does: in window blocks, attention runs over the zero-padded
    windows (as in Meta's model), but only real tokens go through ``qkv`` and ``proj``.
    """
    gh, gw = (s // cfg.encoder_patch_size for s in cfg.input_size)
    n, d, p = gh * gw, cfg.encoder_embed_dim, cfg.encoder_patch_size
    macs = n * p * p * cfg.in_channels * d  # patch embedding
    for i in range(cfg.encoder_nb_blocks):
        tokens = n if i in cfg.encoder_global_attn_indices else cfg.encoder_window_size**2
        windows = (
            1
            if i in cfg.encoder_global_attn_indices
            else -(-gh // cfg.encoder_window_size) * -(-gw // cfg.encoder_window_size)
        )
        padded = tokens * windows
        side = int(round(tokens**0.5))
        macs += 2 * padded * side * d  # decomposed relative position terms
        macs += n * d * 3 * d + n * d * d  # qkv, proj (real tokens only)
        macs += 2 * windows * tokens * tokens * d  # q k^T and attn v
        macs += 2 * n * d * int(d * cfg.encoder_mlp_ratio)  # mlp
    e = cfg.embed_dim
    return float(macs + n * d * e + n * e * e * 9)  # neck


def matmul_rate(dtype, size=2048, repeats=10) -> float:
    """FLOP/s of a square matrix product under TensorFlow."""
    a = tf.random.normal((size, size), dtype=tf.float32)
    a = tf.cast(a, dtype)
    f = tf.function(lambda x: tf.matmul(x, x))
    f(a).numpy()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a).numpy()
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(times)


def alternating_medians(fns, repeats) -> list[float]:
    """Median seconds of each of ``fns``, timed in turn (a, b, c, a, b, c, ...) after one
    warm-up call each, so that a change in the machine's load affects all alike."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true", help="tiny configuration, seconds")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument(
        "--vit-h-memory",
        action="store_true",
        help="only: peak memory of sam_vit_h embedding a 1024 x 1024 slice",
    )
    args = ap.parse_args(argv)
    if args.vit_h_memory:
        return vit_h_memory()
    overrides = SMOKE if args.smoke else {}
    cfg = model_config("sam_vit_b", **overrides)
    side = cfg.input_size[0]
    print(f"$ python bench/bench_perf.py {' '.join(argv or sys.argv[1:])}")
    print(f"# cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
    img = test_image(side)
    cases = prompts(args.prompts, side, side)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pth"
        ref = reference(cfg, path, args)  # first, while this process is idle
        pred = SAMPredictor(create_model("sam_vit_b", pretrained=path, **overrides))
        pred16 = SAMPredictor(
            create_model("sam_vit_b", pretrained=path, dtype="bfloat16", **overrides)
        ) if bfloat16_runs() else None  # fmt: skip
    t_ref, lat_ref = ref["encoder_s"], ref["prompt_s"]
    print(f"# reference: torch threads={ref['threads']}; tensorflow threads: default")
    sides = [lambda: pred.set_image(img)] + ([lambda: pred16.set_image(img)] if pred16 else [])
    t_ours, t_bf16 = (alternating_medians(sides, args.repeats) + [None])[:2]
    for multimask in (True, False):  # warm-up: trace both graphs once
        pred(points=cases[0][0], labels=cases[0][1], multimask_output=multimask)
    traces = pred.trace_count()
    lat_ours = statistics.median(
        latencies(
            lambda pts, lbl, box: pred(
                points=pts, labels=lbl, boxes=None if box is None else box[None]
            ),
            cases,
            ROUNDS,
        )
    )
    agree = bf16_agreement(pred, pred16, cases) if pred16 else None
    f32 = matmul_rate(tf.float32)
    bf16 = matmul_rate(tf.bfloat16) if pred16 else None
    na = "n/a", "no bfloat16 kernels on this machine"
    flops = 2 * encoder_macs(cfg)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rows = [
        ("encoder, reference (torch)", f"{t_ref:.3f} s", ""),
        ("encoder, napari-sam float32", f"{t_ours:.3f} s", f"{t_ours / t_ref:.2f} x reference"),
        ("encoder FLOP", f"{flops / 1e12:.3f} TFLOP", ""),
        ("encoder rate, napari-sam", f"{flops / t_ours / 1e9:.0f} GFLOP/s",
         f"{flops / t_ours / f32:.0%} of the f32 matmul rate"),
        ("encoder, napari-sam bfloat16", *((f"{t_bf16:.3f} s", f"{t_ours / t_bf16:.2f} x "
         "faster than float32") if pred16 else na)),
        ("mask pixels equal, bfloat16 vs float32 encoder",
         *((f"{agree:.4%}", "") if pred16 else na)),
        ("prompt to mask, reference (median)", f"{1e3 * lat_ref:.1f} ms", ""),
        ("prompt to mask, napari-sam (median)", f"{1e3 * lat_ours:.1f} ms",
         f"{lat_ours / lat_ref:.2f} x reference"),
        ("float32 matmul rate (TF)", f"{f32 / 1e9:.0f} GFLOP/s", ""),
        ("bfloat16 matmul rate (TF)", *((f"{bf16 / 1e9:.0f} GFLOP/s", f"{bf16 / f32:.2f} x "
         "float32") if pred16 else na)),
        ("retraces after warm-up", str(pred.trace_count() - traces), "0 expected"),
        ("peak memory (this process: two napari-sam models)", f"{peak:.2f} GiB", ""),
    ]  # fmt: skip
    print("| measure | value | ratio |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def reference(cfg, path, args) -> dict:
    """Meta's timings from ``reference_timings.py`` in a torch-only process, which also
    writes the weights to ``path``."""
    cmd = [
        sys.executable, str(BENCH / "reference_timings.py"), "--config",
        json.dumps(cfg.to_dict()), "--checkpoint", str(path), "--repeats",
        str(args.repeats), "--prompts", str(args.prompts), "--rounds", str(ROUNDS),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"reference_timings.py failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bf16_agreement(pred, pred16, cases) -> float:
    """Fraction of mask pixels equal with the bfloat16 and the float32 encoder."""
    equal = total = 0
    for pts, lbl, box in cases:
        kw = dict(points=pts, labels=lbl, boxes=None if box is None else box[None])
        a, b = pred(**kw)[0], pred16(**kw)[0]
        equal, total = equal + int((a == b).sum()), total + a.size
    return equal / total


def vit_h_memory() -> None:
    """Peak memory of a process that builds sam_vit_h and embeds one 1024 x 1024 slice."""
    model = create_model("sam_vit_h")
    weights = sum(int(np.prod(v.shape)) * 4 for v in model.weights) / 2**30
    pred = SAMPredictor(model)
    img = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    pred.set_image(img)
    took = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    bound = 1.5 * weights + 2
    print("| measure | value |\n|---|---|")
    print(f"| sam_vit_h float32 weights | {weights:.2f} GiB |")
    print(f"| peak memory, building it and embedding a 1024 x 1024 slice | {peak:.2f} GiB |")
    print(f"| bound: 1.5 x weights + 2 GiB | {bound:.2f} GiB ({peak / bound:.0%} of it) |")
    print(f"| embedding time (first call, with tracing) | {took:.1f} s |")


if __name__ == "__main__":
    main()
