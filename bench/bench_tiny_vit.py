"""MobileSAM's TinyViT: napari-sam's ``sam_vit_t`` against the reference, each in its own process.

The reference is Meta's ``SamPredictor`` around ``ultralytics``' TinyViT (as MobileSAM
assembles it), with torch; napari-sam's is ``SAMPredictor(create_model("sam_vit_t"))``. Both
get random weights (speed does not depend on them) and time ``set_image`` on the same
1024 x 1024 uint8 image: a warm-up, then the median of ``--repeats``. Prints JSON with both
times and their ratio, and the machine. In napari-sam's process it also times prompt to mask
(the median over ``--prompts`` prompts of 1 to 5 points and, half the time, a box, masks at
1024 x 1024, three rounds after a warm-up) with ``sam_vit_t`` and with ``sam_vit_b`` (whose
decoder gets the TinyViT's embedding: the decoders are the same size, the encoder is not
what is timed).

    python bench/bench_tiny_vit.py [--repeats 5] [--threads 2] [--prompts 50]
                                   [--out docs/tiny_vit_bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)


def _times(set_image, repeats: int) -> list[float]:
    img = _image()
    set_image(img)  # warm-up: graphs traced, memory allocated
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        set_image(img)
        out.append(time.perf_counter() - t0)
    return out


def ours(repeats: int, n_prompts: int = 0) -> dict:
    """napari-sam's ``sam_vit_t`` (random weights): embedding times, and prompt to mask with
    it and with ``sam_vit_b``'s decoder on the same embedding."""
    from napari_sam import SAMPredictor, create_model

    sys.path.insert(0, str(HERE.parent))
    from reference_timings import latencies, prompts

    pred = SAMPredictor(create_model("sam_vit_t"))
    out = {"embed_s": _times(pred.set_image, repeats)}
    if n_prompts:
        cases = prompts(n_prompts, 1024, 1024)
        vit_b = SAMPredictor(create_model("sam_vit_b"))
        vit_b.set_embedding(pred.embedding.numpy(), pred.original_size)
        runs = {name: lambda pts, lbl, box, p=p: p(points=pts, labels=lbl,
                                                   boxes=None if box is None else box[None])
                for name, p in (("sam_vit_t", pred), ("sam_vit_b", vit_b))}  # fmt: skip
        times = {name: latencies(run, cases, 0) for name, run in runs.items()}  # warm-up
        for _ in range(3):  # rounds alternating between the two models
            for name, run in runs.items():
                times[name] += latencies(run, cases, 1)
        out |= {f"prompt_ms_{n}": 1e3 * statistics.median(t) for n, t in times.items()}
    return out


def reference(repeats: int) -> dict:
    """Meta's predictor around ultralytics' TinyViT (random weights)."""
    import importlib.metadata

    import torch

    sys.path.insert(0, str(HERE.parents[1] / "tests"))
    real = importlib.metadata.version
    importlib.metadata.version = lambda n: "0.28.0" if n == "torchvision" else real(n)
    from ultralytics.models.sam.build import build_mobile_sam

    importlib.metadata.version = real
    from test_tiny_vit import _meta_sam_with

    from ref_models import reference_predictor

    tiny = build_mobile_sam()
    sam = _meta_sam_with(tiny.image_encoder, tiny.state_dict())
    pred = reference_predictor(sam)
    with torch.no_grad():
        return {"embed_s": _times(pred.set_image, repeats)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompts", type=int, default=50, help="prompts timed (0: none)")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--side", choices=("ours", "reference"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.side:  # one side, in this process
        if args.side == "reference":
            import torch

            torch.set_num_threads(args.threads)
        times = ours(args.repeats, args.prompts) if args.side == "ours" else reference(args.repeats)
        print(json.dumps(times))
        return 0
    result = {"command": " ".join(["python", *sys.argv]), "cpu": platform.processor() or "",
              "machine": _cpu_name(), "threads": args.threads}  # fmt: skip
    for side in ("reference", "ours"):
        cmd = [sys.executable, str(HERE), "--side", side, "--repeats", str(args.repeats),
               "--threads", str(args.threads), "--prompts", str(args.prompts)]  # fmt: skip
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", YOLO_CONFIG_DIR="/tmp/yolo-bench",
                   NAPARI_SAM_DTYPE="float32")  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        got = json.loads(done.stdout.strip().splitlines()[-1])
        times = got.pop("embed_s")
        result[side] = {"median_s": statistics.median(times), "times_s": times, **got}
    result["ours_over_reference"] = result["ours"]["median_s"] / result["reference"]["median_s"]
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                flags = open("/proc/cpuinfo").read()
                isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "?"
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores, {isa}"
    except OSError:
        pass
    return platform.machine()


if __name__ == "__main__":
    raise SystemExit(main())
