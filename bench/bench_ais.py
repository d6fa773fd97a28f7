"""AIS (micro-sam's instance decoder + watershed) against AMG (grid prompts) on the same model.

Both sides segment the same 1024 x 1024 synthetic fluorescence slice with a full-size
``vit_b_lm`` (SAM ViT-B and micro-sam's decoder), each in its own process, measured the same
way: the image embedding is computed first (the same for both; its time is reported
separately), then the automatic segmentation is run twice; the first run includes TensorFlow's
graph tracing, the second is the steady state a folder of images sees.

The weights are random (the real checkpoints cannot be downloaded here): time depends on the
architecture, not the values, except in AMG, whose post-processing grows with the masks that
pass its filters. AMG is therefore timed twice: with micro-sam's thresholds for vit_b_lm
(0.65 / 0.7; few random masks pass) and with both thresholds at 0 (every mask goes through the
whole post-processing, as on a crowded real image): the real figure lies between the two.

``python bench/bench_ais.py`` (``--json FILE`` to save the figures; ``--points-per-side`` for
AMG's grid, default 32 as micro-sam's and Meta's).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench_tiling import cpu_kind, run_side  # shared by the benches

SIZE = 1024


def _side(method: str, points_per_side: int, loose: bool) -> dict:
    import numpy as np

    from napari_sam._tensorflow import import_tensorflow

    import_tensorflow()
    import keras

    from napari_sam.model.instance_decoder import InstanceDecoder
    from napari_sam.segment.ais import InstanceSegmenter
    from napari_sam.segment.automatic import AutomaticMaskGenerator
    from napari_sam.segment.driver import segment_slice
    from napari_sam.stacks.stack_predictor import StackPredictor
    from napari_sam.train.synthetic import make_nuclei_2d
    from napari_sam.weights import auto_settings, create_model

    keras.utils.set_random_seed(0)
    model = create_model("vit_b_lm")
    image, truth = make_nuclei_2d((SIZE, SIZE), seed=4711, radius_range=(12, 24))
    sp = StackPredictor(model, image, axes="YX")
    t0 = time.perf_counter()
    sp.get_embedding(())
    embed_s = time.perf_counter() - t0
    if method == "ais":
        gen = InstanceSegmenter(InstanceDecoder())
    else:
        thresholds = auto_settings("vit_b_lm")
        if loose:
            thresholds = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
        gen = AutomaticMaskGenerator(sp.predictor, points_per_side=points_per_side, **thresholds)
    times, objects = [], 0
    for _ in range(2):
        t0 = time.perf_counter()
        labels = segment_slice(sp, (), gen)
        times.append(time.perf_counter() - t0)
        objects = int(np.unique(labels).size - 1)
    return {"embed_s": embed_s, "first_s": times[0], "steady_s": times[1], "objects": objects}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=("ais", "amg", "amg-loose"), help=argparse.SUPPRESS)
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.side:
        method = "ais" if args.side == "ais" else "amg"
        result = _side(method, args.points_per_side, args.side == "amg-loose")
        print("RESULT " + json.dumps(result))
        return 0
    results = {}
    for side in ("ais", "amg", "amg-loose"):
        cmd = [sys.executable, __file__, "--side", side,
               "--points-per-side", str(args.points_per_side)]  # fmt: skip
        results[side] = run_side(cmd)
        if results[side] is None:
            return 1
        r = results[side]
        print(
            f"{side:10s} embedding {r['embed_s']:6.2f} s | segmentation first "
            f"{r['first_s']:6.2f} s, steady {r['steady_s']:6.2f} s | {r['objects']} objects"
        )
    ais = results["ais"]["steady_s"]
    for side in ("amg", "amg-loose"):
        print(f"{side} / ais (steady): {results[side]['steady_s'] / ais:.1f} x")
    summary = {"cpu": cpu_kind(), "size": SIZE, "points_per_side": args.points_per_side,
               "results": results}  # fmt: skip
    print(f"CPU: {summary['cpu']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
