"""``napari-sam auto`` with the shipped ``sam_tiny_nuclei``: its decoder (AIS) against grid
prompts (AMG), time per 512 x 512 image after the model is loaded, and instance F1.

Each side runs in a process of its own, through the batch API (what the CLI runs): once on a
folder of 1 image (TensorFlow's start: the first image's time), again on it, and on a folder
of ``--images`` images (new output folders, so nothing is skipped); the time per image after
loading is the difference of the last two runs over the extra images (each run loads the
model and traces its graphs: that falls out). The images are held-out synthetic
fluorescence nuclei (seeds 400 and up; never used in training or tuning); F1 at IoU 0.5 is
over all of them.

``python bench/bench_tiny_auto.py`` (``--images 5``, ``--size 512``, ``--json FILE``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_tiling import cpu_kind  # the same CPU description in every bench


def _side(method: str, n: int, size: int) -> dict:
    import numpy as np
    import tifffile

    from napari_sam.batch.api import auto
    from napari_sam.train.evaluation import instance_f1
    from napari_sam.train.synthetic import make_nuclei_2d

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        truths = {}
        for k in range(n):
            image, truth = make_nuclei_2d((size, size), seed=400 + k)
            folder = tmp / ("one" if k == 0 else "many")
            folder.mkdir(exist_ok=True)
            tifffile.imwrite(folder / f"img{k}.tif", image)
            truths[f"img{k}"] = truth
        tifffile.imwrite(tmp / "many" / "img0.tif", tifffile.imread(tmp / "one" / "img0.tif"))
        times = {}
        for name, folder in (("first", "one"), ("one", "one"), ("many", "many")):
            t0 = time.perf_counter()
            auto(tmp / folder, tmp / f"{name}_out", model="sam_tiny_nuclei", method=method)
            times[name] = time.perf_counter() - t0
        scores = [instance_f1(tifffile.imread(tmp / "many_out" / f"{k}_labels.tif"), t)
                  for k, t in truths.items()]  # fmt: skip
    return {
        "method": method,
        "first_image_s": times["first"],
        "per_image_after_load_s": (times["many"] - times["one"]) / (n - 1),
        "f1": float(np.mean([s.f1 for s in scores])),
        "nuclei": int(sum(s.n_true for s in scores)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--json", default=None)
    parser.add_argument("--side", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        print(json.dumps(_side(args.side, args.images, args.size)))
        return
    out = {"cpu": cpu_kind(), "size": args.size, "images": args.images, "sides": []}
    for method in ("ais", "amg"):
        run = subprocess.run([sys.executable, __file__, "--side", method, "--images",
                              str(args.images), "--size", str(args.size)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        side = json.loads(run.stdout.strip().splitlines()[-1])
        out["sides"].append(side)
        print(f"{method}: {side['per_image_after_load_s']:.2f} s per {args.size}^2 image after "
              f"load (first image {side['first_image_s']:.1f} s), F1 {side['f1']:.3f} over "
              f"{side['nuclei']} nuclei", flush=True)  # fmt: skip
    ais, amg = out["sides"]
    out["speed_up"] = amg["per_image_after_load_s"] / ais["per_image_after_load_s"]
    print(f"AIS is {out['speed_up']:.1f} x faster than AMG ({out['cpu']})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
