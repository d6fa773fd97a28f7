"""MobileSAM's TinyViT: napari-sam's ``sam_vit_t`` against the reference, each in its own process.

The reference is Meta's ``SamPredictor`` around ``ultralytics``' TinyViT (as MobileSAM
assembles it), with torch; napari-sam's is ``SAMPredictor(create_model("sam_vit_t"))``. Both
get random weights (speed does not depend on them) and time ``set_image`` on the same
1024 x 1024 uint8 image: a warm-up, then the median of ``--repeats``. Prints JSON with both
times and their ratio, and the machine.

    python bench/bench_tiny_vit.py [--repeats 5] [--threads 2] [--out docs/tiny_vit_bench.json]
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


def ours(repeats: int) -> list[float]:
    """napari-sam's ``sam_vit_t`` (random weights)."""
    from napari_sam import SAMPredictor, create_model

    pred = SAMPredictor(create_model("sam_vit_t"))
    return _times(pred.set_image, repeats)


def reference(repeats: int) -> list[float]:
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
        return _times(pred.set_image, repeats)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--side", choices=("ours", "reference"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.side:  # one side, in this process
        if args.side == "reference":
            import torch

            torch.set_num_threads(args.threads)
        times = (ours if args.side == "ours" else reference)(args.repeats)
        print(json.dumps(times))
        return 0
    result = {"command": " ".join(["python", *sys.argv]), "cpu": platform.processor() or "",
              "machine": _cpu_name(), "threads": args.threads}  # fmt: skip
    for side in ("reference", "ours"):
        cmd = [sys.executable, str(HERE), "--side", side, "--repeats", str(args.repeats),
               "--threads", str(args.threads)]  # fmt: skip
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", YOLO_CONFIG_DIR="/tmp/yolo-bench",
                   NAPARI_SAM_DTYPE="float32")  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        times = json.loads(done.stdout.strip().splitlines()[-1])
        result[side] = {"median_s": statistics.median(times), "times_s": times}
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
