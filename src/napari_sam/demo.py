"""A short offline demo of the Python API: ``python -m napari_sam.demo [--out FILE]``.

Generates a synthetic fluorescence image (a seed never used in training; its labels at half
each nucleus's intensity, where people draw them), segments a few nuclei with the shipped
``sam_tiny_nuclei`` model from one click each, prints the IoU with the true objects and
writes an overlay PNG.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_sam.demo", description=__doc__)
    parser.add_argument("--out", default="napari-sam-demo.png", help="overlay image to write")
    parser.add_argument("--seed", type=int, default=7, help="synthetic image seed")
    args = parser.parse_args(argv)
    from PIL import Image

    from ._tensorflow import import_tensorflow

    import_tensorflow()  # TensorFlow's start-up lines held back

    from . import SAMPredictor, create_model, list_models
    from .masks import iou, object_centre
    from .train.evaluation import normalised_rgb
    from .train.synthetic import HALF_MAXIMUM_EDGE, make_nuclei_2d

    print("models:", ", ".join(list_models()))
    image, labels = make_nuclei_2d((256, 256), seed=args.seed, edge_level=HALF_MAXIMUM_EDGE)
    print(f"synthetic image {image.shape} {image.dtype}, {labels.max()} nuclei")
    t0 = time.perf_counter()
    model = create_model("sam_tiny_nuclei", pretrained=True, dtype="auto")  # shipped with it
    predictor = SAMPredictor(model)
    rgb = normalised_rgb(image)
    predictor.set_image(rgb)
    print(f"model loaded and image embedded in {time.perf_counter() - t0:.1f} s "
          f"(image encoder {model.dtype_reason})")
    overlay = rgb.astype(np.float32)
    colours = np.random.default_rng(0).uniform(60, 255, (labels.max() + 1, 3))
    for i in range(1, min(int(labels.max()), 8) + 1):
        truth = labels == i
        x, y = object_centre(truth)
        t0 = time.perf_counter()
        masks, scores, _ = predictor(points=np.array([[x, y]]), labels=np.array([1]))
        ms = 1000 * (time.perf_counter() - t0)
        best = masks[np.argmax(scores)]
        print(
            f"nucleus {i}: click ({x:.0f}, {y:.0f}) -> mask of {best.sum()} px, "
            f"IoU with the truth {iou(best, truth):.3f}, predicted IoU {scores.max():.3f} "
            f"({ms:.0f} ms)"
        )
        overlay[best] = 0.5 * overlay[best] + 0.5 * colours[i]
    out = Path(args.out).resolve()
    Image.fromarray(overlay.clip(0, 255).astype(np.uint8)).save(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
