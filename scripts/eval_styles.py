"""The shipped ``sam_tiny_nuclei`` on each style of synthetic nuclei (held-out seeds).

Per style (:mod:`napari_sam.train.styles`): mean IoU of a click at each nucleus's centre (best
of 3 masks) and of a tight box, over 2-D 256 x 256 images of seeds ``--seeds`` (0 to 19 by
default; training draws seeds >= 1,000,000), and the mean instance F1 at IoU 0.5 of automatic
segmentation with the model's decoder and registered watershed settings on the same images,
each normalised as the stack default does.

    python scripts/eval_styles.py [--seeds 0:20] [--weights FILE] [--decoder FILE]
                                  [--edge-level 0.6]

``--edge-level``: the labels' edge at this fraction of each nucleus's intensity
(``NucleiParams.edge_level``; 0.5 is where people draw; default: the generator's).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from napari_sam import SAMPredictor, create_model  # noqa: E402
from napari_sam.predict.predictor import default_preprocessing  # noqa: E402
from napari_sam.segment.ais import AisSettings, decoder_maps, instances_from_maps  # noqa: E402
from napari_sam.train.evaluation import (  # noqa: E402
    evaluate_on_synthetic,
    instance_f1,
    normalised_rgb,
)
from napari_sam.train.styles import STYLES, style_params  # noqa: E402
from napari_sam.train.synthetic import make_nuclei_2d  # noqa: E402
from napari_sam.weights.registry import TINY_NUCLEI_DECODER, model_entry  # noqa: E402


def auto_f1(model, seeds, params) -> float:
    settings = AisSettings().with_options(model_entry("sam_tiny_nuclei").ais)
    preprocess = default_preprocessing(model.cfg)
    scores = []
    for seed in seeds:
        image, labels = make_nuclei_2d((256, 256), seed=int(seed), **params)
        x = preprocess(normalised_rgb(image))[None].astype(np.float32)
        m = decoder_maps(model.instance_decoder, model.embed_images(x).numpy(), (256, 256),
                         (256, 256), (256, 256))  # fmt: skip
        scores.append(instance_f1(instances_from_maps(m[..., 0], m[..., 1], m[..., 2],
                                                      settings), labels).f1)  # fmt: skip
    return float(np.mean(scores))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="0:20", help="held-out seeds START:STOP")
    parser.add_argument("--weights", default=None, help="model file (default: the shipped)")
    parser.add_argument("--decoder", default=None, help="decoder file (default: the shipped)")
    parser.add_argument("--edge-level", type=float, default=None, help="the labels' edge")
    args = parser.parse_args(argv)
    start, stop = (int(v) for v in args.seeds.split(":"))
    seeds = range(start, stop)
    model = create_model("sam_tiny_nuclei", pretrained=args.weights or True,
                         decoder=args.decoder or str(TINY_NUCLEI_DECODER))
    predictor = SAMPredictor(model)
    print("| style | nuclei | click IoU | box IoU | auto F1 (decoder) |\n|---|---|---|---|---|")
    for name in STYLES:
        t0 = time.time()
        params = style_params(name)
        if args.edge_level is not None:
            params["edge_level"] = args.edge_level
        s = evaluate_on_synthetic(predictor, seeds, **params)
        f1 = auto_f1(model, seeds, params)
        print(f"| {name} | {s.n_objects} | {s.point:.3f} | {s.box:.3f} | {f1:.3f} |  "
              f"<!-- {time.time() - t0:.0f} s -->", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
