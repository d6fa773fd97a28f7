"""Meta's reference alone: its encoder time and prompt-to-mask latency, as JSON.

Run by ``bench_perf.py`` in a process of its own that imports torch but not TensorFlow:
with both libraries in one process the reference's encoder took 13 to 16 s instead of
10.5 s on the 2-core benchmark machine, even with pauses between runs. Builds the reference
with perturbed random weights, saves them like Meta's official files (for the napari-sam
side to load), then times ``SamPredictor.set_image`` and ``SamPredictor.predict`` on the
same image and prompts as ``bench_perf.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def test_image(side: int) -> np.ndarray:
    """The benchmark's uint8 RGB image."""
    return np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)


def prompts(n: int, w: int, h: int):
    """``n`` prompts of 1 to 5 points (the first positive) and, half the time, a box."""
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 6))
        pts = rng.uniform([0, 0], [w, h], (k, 2))
        lbl = rng.integers(0, 2, k)
        lbl[0] = 1
        box = None
        if rng.random() < 0.5:
            x0, y0 = rng.uniform(0, [w / 2, h / 2])
            box = np.array([x0, y0, x0 + w / 3, y0 + h / 3])
        out.append((pts, lbl, box))
    return out


def latencies(predict, cases, rounds: int) -> list[float]:
    """Seconds of ``predict(points, labels, box)`` per case over ``rounds`` rounds of all
    ``cases``, after a warm-up round."""
    times = []
    for i in range(rounds + 1):
        for case in cases:
            t0 = time.perf_counter()
            predict(*case)
            if i:
                times.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", required=True, help="napari-sam model config as JSON")
    ap.add_argument("--checkpoint", required=True, type=Path, help="where to save the weights")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)

    import torch

    from ref_models import build_reference, reference_predictor, save_like_official

    cfg = SimpleNamespace(**json.loads(args.config))
    sam = build_reference(cfg, seed=0)
    save_like_official(sam, args.checkpoint)
    ref = reference_predictor(sam)
    side = cfg.input_size[0]
    img = test_image(side)
    cases = prompts(args.prompts, side, side)
    with torch.no_grad():
        ref.set_image(img)  # warm-up
        encoder = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ref.set_image(img)
            encoder.append(time.perf_counter() - t0)
        latency = latencies(
            lambda pts, lbl, box: ref.predict(
                point_coords=pts, point_labels=lbl, box=box, multimask_output=True
            ),
            cases,
            args.rounds,
        )
    print(json.dumps({
        "encoder_s": statistics.median(encoder),
        "prompt_s": statistics.median(latency),
        "threads": torch.get_num_threads(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
