"""Choose ``sam_tiny_nuclei``'s outline settings on tuning images only.

For every style of synthetic nuclei (:mod:`napari_sam.train.styles`), 2-D 256 x 256 images of
tuning seeds ``--seeds`` (500 to 519 by default: neither training, which draws seeds
>= 1,000,000, nor the held-out benchmark, seeds 0 to 39 and 100 to 105), labels at half
maximum (``--edge-level 0.5``): the mean IoU of a click at each nucleus's centre (best of 3
by predicted IoU) and of a tight box, with SAM's masks and with each candidate of
:class:`~napari_sam.predict.outline.OutlineSettings` (``--grid``: ``inner,outer`` or
``inner,outer,min_solidity``, then ``,i``: clicks confined to the instance the model's
decoder finds under them, as the apps do, ``,rR``: each object's level chosen within +- R by
its edge (``level_range``); ``--zoom``: nuclei larger or smaller than the generator's;
level 0.5, the half maximum where hand labels of fluorescence nuclei sit).
SAM's masks are decoded once per prompt and redrawn for every candidate; a click's mask is
then chosen among the redrawn candidates as the apps do
(:func:`~napari_sam.predict.outline.preferred_candidate`). ``--confine-boxes`` confines
boxes too (to the instance that most of the box's mask covers), which the apps do not.

    python scripts/tune_outline.py [--seeds 500:520] [--grid 1,0:2,1:1,1,0.95,i] [--weights FILE]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from napari_sam import SAMPredictor, create_model  # noqa: E402
from napari_sam.masks import bounding_box  # noqa: E402
from napari_sam.predict.outline import (  # noqa: E402
    OutlineSettings,
    confine_masks,
    preferred_candidate,
    redraw_masks,
)
from napari_sam.segment.factory import make_guide  # noqa: E402
from napari_sam.train.evaluation import iou, normalised_rgb, object_centre  # noqa: E402
from napari_sam.train.styles import STYLES, style_params  # noqa: E402
from napari_sam.train.synthetic import make_nuclei_2d  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="500:520", help="tuning seeds START:STOP")
    parser.add_argument("--grid", default="1,0:1,1:2,0:2,1:2,2:3,1",
                        help="inner,outer[,min_solidity][,i][,rR], :-separated")  # fmt: skip
    parser.add_argument("--edge-level", type=float, default=0.5, help="the labels' edge")
    parser.add_argument("--weights", default=None, help="model file (default: the shipped)")
    parser.add_argument("--zoom", type=float, default=1.0,
                        help="nuclei this many times the generator's size (10 to 18 px radius)")
    parser.add_argument("--confine-boxes", action="store_true",
                        help="confine boxes too, where a candidate confines clicks")  # fmt: skip
    args = parser.parse_args(argv)
    seeds = range(*(int(v) for v in args.seeds.split(":")))
    grid = {"SAM's masks": None}
    for entry in args.grid.split(":"):
        inner, outer, *rest = entry.split(",")
        instances = "i" in rest
        spread = [float(v[1:]) for v in rest if v.startswith("r")]
        solid = [float(v) for v in rest if v != "i" and not v.startswith("r")]
        name = (f"inner {inner}, outer {outer}" + (f", min_solidity {solid[0]}" if solid else "")
                + (f", level +- {spread[0]}" if spread else "")
                + (", clicks confined" if instances else ""))  # fmt: skip
        grid[name] = OutlineSettings(inner=int(inner), outer=int(outer), instances=instances,
                                     min_solidity=solid[0] if solid else None,
                                     level_range=spread[0] if spread else 0.0)  # fmt: skip
    model = create_model("sam_tiny_nuclei", pretrained=args.weights or True)
    predictor, guide = SAMPredictor(model), make_guide(model)
    scores = {name: {s: ([], []) for s in STYLES} for name in grid}
    for style in STYLES:
        params = {**style_params(style), "edge_level": args.edge_level}
        low, high = params.get("radius_range", (10.0, 18.0))
        params["radius_range"] = (low * args.zoom, high * args.zoom)
        for seed in seeds:
            image, labels = make_nuclei_2d((256, 256), seed=int(seed), **params)
            rgb = normalised_rgb(image)
            grey = rgb.mean(-1)
            predictor.set_image(rgb)
            found = guide(predictor.embedding.numpy(), grey.shape) if guide else None
            for i in range(1, int(labels.max()) + 1):
                truth = labels == i
                if not truth.any():
                    continue
                masks, sc, _ = predictor(points=np.array([object_centre(truth)]),
                                         labels=np.array([1]))  # fmt: skip
                box = bounding_box(truth)
                bmask, _, _ = predictor(boxes=box[None], multimask_output=False)
                for name, settings in grid.items():
                    click, bm = masks[np.argmax(sc)][None], bmask
                    if settings is not None:
                        red = redraw_masks(grey, masks, settings)
                        bm = redraw_masks(grey, bm, settings, box)
                        if settings.instances and found is not None:
                            red = confined(grey, red, found, object_centre(truth), settings)
                            if args.confine_boxes:
                                bm = confined(grey, bm, found, None, settings, box)
                        click = red[preferred_candidate(red, sc, settings.min_solidity)][None]
                    scores[name][style][0].append(iou(click[0], truth))
                    scores[name][style][1].append(iou(bm[0], truth))
        print(f"{style} done", flush=True)
    print("| outline | " + " | ".join(STYLES) + " | mean |\n|---|" + "---|" * (len(STYLES) + 1))
    for name in grid:
        cells = [(np.mean(c), np.mean(b)) for c, b in scores[name].values()]
        mean = np.mean([c for c, _ in cells]), np.mean([b for _, b in cells])
        print(f"| {name} | " + " | ".join(f"{c:.3f} / {b:.3f}" for c, b in [*cells, mean]) + " |")


def confined(grey, masks, found, click, settings, box=None):
    """``masks`` confined by the decoder's objects ``found`` to the one under ``click``
    (x, y), or (a box's, ``click`` None) the one most of the first mask covers, as
    :func:`~napari_sam.predict.outline.confine_masks` does; unchanged where there is none."""
    if click is not None:
        x, y = (int(round(float(v))) for v in click)
        under = found[min(y, found.shape[0] - 1), min(x, found.shape[1] - 1)]
    else:
        ids, counts = np.unique(found[masks[0]], return_counts=True)
        counts, ids = counts[ids > 0], ids[ids > 0]
        under = ids[np.argmax(counts)] if ids.size else 0
    if not under:
        return masks
    out = confine_masks(grey, masks, found, [under], settings)
    return out if box is None else redraw_masks(grey, out, settings, box)


if __name__ == "__main__":
    main()
