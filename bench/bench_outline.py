"""What drawing ``sam_tiny_nuclei``'s outlines costs a click and a box.

Each side runs in a process of its own: the widget's way of answering a prompt
(``SlicePredictor.predict_window`` on a 512 x 512 image tiled as the apps tile it, all its
tiles embedded first), with SAM's masks (``sam``, ``make_predictor(..., outline=None)``),
with the model's outline settings but clicks not confined (``outline``, no guide), and as
the apps do (``apps``: clicks confined to the instance decoder's nuclei,
``guide=make_guide(model)``). For every nucleus of held-out synthetic images (seeds 400 and
up), a click at its centre (three candidates, the apps' choice) and a box; each prompt
answered twice, the second timed (the first traces the graphs, and computes a window's
instances once: they are kept). Reported: the median time per click and per box, their
ratio to SAM's masks, and (``apps``) what a window's instances cost the first click on it.

``python bench/bench_outline.py`` (``--images 2``, ``--size 512``, ``--json FILE``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench_tiling import cpu_kind, run_side  # shared by the benches

SIDES = ("sam", "outline", "apps")


def _side(side: str, n: int, size: int) -> dict:
    import numpy as np

    from napari_sam import create_model
    from napari_sam.masks import bounding_box, object_centre
    from napari_sam.segment.factory import make_guide
    from napari_sam.stacks.factory import make_predictor
    from napari_sam.stacks.tiling import plan_tiling
    from napari_sam.stacks.view import StackView
    from napari_sam.train.synthetic import make_nuclei_2d

    model = create_model("sam_tiny_nuclei", pretrained=True)
    clicks, boxes, guide_ms = [], [], []
    guide = make_guide(model) if side == "apps" else None
    for k in range(n):
        image, truth = make_nuclei_2d((size, size), seed=400 + k, edge_level=0.5)
        view = StackView(image, "YX")
        tiling = plan_tiling(view.slice_shape, model.cfg.input_size)
        sp = make_predictor(model, view, tiling, outline=None if side == "sam" else "model",
                            guide=guide)  # fmt: skip
        sp.precompute()
        if guide is not None:  # a window's instances: what the first click on it adds
            for t in range(sp.windows):
                for _attempt in range(2):
                    t0 = time.perf_counter()
                    guide(sp.tile_embedding((), t), sp.window_shape)
                    took = time.perf_counter() - t0
                guide_ms.append(1e3 * took)
        for i in range(1, int(truth.max()) + 1):
            mask = truth == i
            for kind, prompt in (("click", dict(points=[object_centre(mask)], labels=[1])),
                                 ("box", dict(boxes=bounding_box(mask)))):  # fmt: skip
                for _attempt in range(2):
                    t0 = time.perf_counter()
                    masks, scores, _, _ = sp.predict_window((), **prompt,
                                                            multimask_output=kind == "click")
                    sp.best_candidate(masks, scores)
                    took = time.perf_counter() - t0
                (clicks if kind == "click" else boxes).append(took)
    return {"side": side, "prompts": len(clicks), "click_ms": 1e3 * float(np.median(clicks)),
            "box_ms": 1e3 * float(np.median(boxes)),
            "window_instances_ms": float(np.median(guide_ms)) if guide_ms else None}  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.side:
        print("RESULT " + json.dumps(_side(args.side, args.images, args.size)))
        return 0
    results = {}
    for side in SIDES:
        cmd = [sys.executable, __file__, "--side", side, "--images", str(args.images),
               "--size", str(args.size)]  # fmt: skip
        results[side] = run_side(cmd)
        if results[side] is None:
            return 1
    sam, out, apps = results["sam"], results["outline"], results["apps"]
    print(f"sam_tiny_nuclei, {args.size} x {args.size} synthetic images, {sam['prompts']} "
          f"nuclei; {cpu_kind()}")
    print("| prompt | SAM's masks | outline drawn | ratio | the apps (clicks confined) | ratio |"
          "\n|---|---|---|---|---|---|")
    for kind in ("click", "box"):
        a, b, c = sam[f"{kind}_ms"], out[f"{kind}_ms"], apps[f"{kind}_ms"]
        print(f"| {kind} (median) | {a:.1f} ms | {b:.1f} ms | {b / a:.2f} x | {c:.1f} ms "
              f"| {c / a:.2f} x |")
    print(f"a window's instances (the first click on it, once): "
          f"{apps['window_instances_ms']:.1f} ms (median)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_kind(), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
