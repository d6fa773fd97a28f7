"""The shipped model on a hand-labelled real image: StarDist's 2-D test image (DSB 2018).

``img2d.tif`` (512 x 512, uint16, values 0 to 235, fluorescence nuclei) with ``mask2d.tif``
(125 nuclei labelled by hand, median about 24 px across) come from the 2018 Data Science Bowl
(Caicedo et al., Nature Methods 16, 2019; BBBC038, CC0) and ship in the BSD-3 licensed
``stardist`` wheel as ``stardist/data/images/`` (nothing of it is copied into this project;
``pip download --no-deps stardist`` and unzip the wheel, or ``pip install stardist``). It is
the real image [tiny-v2] describes (512 x 512, values 0 to 235, 125 nuclei about 24 px): its
acceptance figures, at the apps' default settings, measured here directly.

For every labelled nucleus: a click at its centre (``napari_sam.masks.object_centre``; the
best of SAM's three masks by predicted IoU) and a box around it, the IoU with its label;
``napari-sam auto`` on the image with the model's default route, instance F1 at IoU 0.5; and
the classical baseline of ``bench_real_nuclei.py`` (Otsu + distance watershed), for scale.
Both at native resolution (``--diameter native``: the apps' default when the nuclei are
0.75 to 1.3 x the model's size, as here) and with ``--diameter auto`` (``--diameters`` for
others), with the medians over nuclei touching another (within 3 px), over bright ones (mean
over twice the median: mitotic) and over the rest, and the best of the three masks a click gives.

``python bench/bench_dsb_nuclei.py --data DIR`` (the folder holding ``img2d.tif`` and
``mask2d.tif``; without it, an installed ``stardist``), ``--weights FILE``, ``--decoder FILE``,
``--diameters none,auto,18.7``, ``--scale 0.85`` (the image resampled: smaller nuclei),
``--json FILE``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from bench_real_nuclei import (
    auto_options,
    classical_labels,
    model_decoder,
    predictor_at,
    prompt_ious,
)
from bench_tiling import cpu_kind  # the same CPU description in every bench


def _data_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    try:
        import stardist
    except ImportError:
        raise SystemExit("bench_dsb_nuclei: --data DIR with img2d.tif and mask2d.tif (from the "
                         "stardist wheel's stardist/data/images)") from None  # fmt: skip
    return Path(stardist.__file__).parent / "data" / "images"


def nucleus_groups(image: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks over labels 1..n: touching (another label within 3 px), bright (mean
    intensity over twice the median nucleus's: mitotic), isolated (neither)."""
    from scipy import ndimage as ndi

    n = int(truth.max())
    means = ndi.mean(image.astype(np.float64), truth, np.arange(1, n + 1))
    touching = np.zeros(n, bool)
    for i, sl in enumerate(ndi.find_objects(truth), start=1):
        sl = tuple(slice(max(0, s.start - 4), s.stop + 4) for s in sl)
        mask = truth[sl] == i
        ring = ndi.binary_dilation(mask, iterations=3) & ~mask
        touching[i - 1] = bool((truth[sl][ring] > 0).any())
    bright = means > 2 * np.median(means)
    return {"isolated": ~touching & ~bright, "touching": touching, "bright": bright}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sam_tiny_nuclei")
    parser.add_argument("--data", default=None, help="folder with img2d.tif and mask2d.tif")
    parser.add_argument("--weights", default=None, help="other weights of --model")
    parser.add_argument("--decoder", default=None, help="another instance decoder, for "
                        "auto and the clicks' confining (other --weights have none unless given)")
    parser.add_argument("--diameters", default="none,auto", help="comma-separated object "
                        "diameters in px, 'none' (native resolution) or 'auto' (estimated)")
    parser.add_argument("--scale", type=float, default=1.0, help="measure on the image "
                        "resampled by this factor (labels nearest): other object sizes")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    folder = _data_dir(args.data)
    image = tifffile.imread(folder / "img2d.tif")
    labels = tifffile.imread(folder / "mask2d.tif")
    if args.scale != 1.0:
        from skimage.transform import rescale

        image = np.round(rescale(image.astype(np.float32), args.scale, order=1,
                                 anti_aliasing=True, preserve_range=True)).astype(image.dtype)
        labels = rescale(labels, args.scale, order=0, anti_aliasing=False,
                         preserve_range=True).astype(labels.dtype)  # fmt: skip

    from skimage.segmentation import relabel_sequential

    from napari_sam import create_model
    from napari_sam.batch.api import auto
    from napari_sam.stacks.diameter import estimate_diameter
    from napari_sam.stacks.view import StackView
    from napari_sam.train.evaluation import instance_f1

    truth = relabel_sequential(labels)[0]
    model = create_model(args.model, pretrained=args.weights or True, **model_decoder(args))
    view = StackView(image, "YX")
    diameter = estimate_diameter(view)
    sides = {}
    for v in args.diameters.split(","):
        if v == "none":
            sides["native resolution"] = None
        elif v == "auto":
            sides[f"diameter {diameter:.0f} px (auto)"] = diameter
        else:
            sides[f"diameter {float(v):g} px"] = float(v)
    groups = nucleus_groups(image, truth)
    result = {"cpu": cpu_kind(), "model": args.model, "weights": args.weights, "scale": args.scale,
              "decoder": args.decoder, "objects": int(truth.max()), "sides": {},
              "classical_f1": instance_f1(classical_labels(image, diameter), truth).f1}  # fmt: skip
    extra = auto_options(args)
    for name, d in sides.items():
        sp = predictor_at(model, args.model, view, d)
        clicks, best, boxes = prompt_ious(sp, 0, truth)
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "img.tif", Path(tmp) / "img_labels.tif"
            tifffile.imwrite(src, image)
            auto(src, out, model=args.model, diameter=d or "native",
                 **extra)  # fmt: skip  (speed: bench_tiny_auto.py)
            found = tifffile.imread(out)
        score = instance_f1(found, truth)
        result["sides"][name] = {
            "click_median_iou": float(np.median(clicks)), "box_median_iou": float(np.median(boxes)),
            "auto_f1": float(score.f1), "auto_objects": int(len(np.unique(found)) - 1),
            "groups": {g: {"objects": int(sel.sum()),
                           "click": float(np.median(np.asarray(clicks)[sel])),
                           "best_of_three": float(np.median(np.asarray(best)[sel])),
                           "box": float(np.median(np.asarray(boxes)[sel]))}
                       for g, sel in {"all": np.ones(len(clicks), bool), **groups}.items()},
        }  # fmt: skip
    scaled = f" scaled {args.scale:g} x" if args.scale != 1.0 else ""
    print(f"{args.model} on StarDist's img2d.tif (DSB 2018){scaled}: {int(truth.max())} nuclei, "
          f"estimated diameter {diameter:.1f} px; {result['cpu']}")  # fmt: skip
    print("| measure | " + " | ".join(sides) + " |\n|---|" + "---|" * len(sides))
    for key, label in (("click_median_iou", "click at the centre, median IoU"),
                       ("box_median_iou", "box, median IoU"),
                       ("auto_f1", "`auto`, F1 at IoU 0.5"),
                       ("auto_objects", "`auto`, objects found")):
        print(f"| {label} | " + " | ".join(f"{result['sides'][n][key]:.3f}" for n in sides) + " |")
    print(f"| classical (Otsu + watershed), F1 | {result['classical_f1']:.3f} |")
    print("\n| nuclei | " + " | ".join(f"{n}: click (best of 3) / box" for n in sides)
          + " |\n|---|" + "---|" * len(sides))  # fmt: skip
    for g in ("all", *groups):
        cells = [result["sides"][n]["groups"][g] for n in sides]
        print(f"| {g} ({cells[0]['objects']}) | " + " | ".join(
            f"{c['click']:.3f} ({c['best_of_three']:.3f}) / {c['box']:.3f}" for c in cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
