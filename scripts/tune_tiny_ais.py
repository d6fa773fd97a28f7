"""Choose the watershed settings of ``sam_tiny_nuclei``'s decoder on tuning seeds only.

Tuning images: 2-D images (seeds 300 to 319) and the slices of 3-D stacks (seeds 300 to 302),
never the held-out seeds of docs/tiny-model.md (0 to 39, 200 to 202) nor training seeds
(>= 1,000,000). The decoder's maps are computed once per image; each setting is scored by the
mean instance F1 at IoU 0.5 over the images (slices without nuclei left out).

    python scripts/tune_tiny_ais.py [--decoder FILE] [--weights FILE] [--styles all]
                                    [--edge-level 0.5:0.7]

``--styles`` / ``--edge-level`` draw the tuning images as ``scripts/train_tiny.py`` draws
its training images (each style on every seed; the edge drawn per seed).
"""

from __future__ import annotations

import argparse
import itertools
import os
import pathlib
import sys
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import numpy as np  # noqa: E402
from train_tiny import value_range  # noqa: E402

from napari_sam.predict.predictor import default_preprocessing  # noqa: E402
from napari_sam.segment.ais import AisSettings, decoder_maps, instances_from_maps  # noqa: E402
from napari_sam.train.evaluation import instance_f1  # noqa: E402
from napari_sam.train.styles import style_names, style_params  # noqa: E402
from napari_sam.train.synthetic import make_nuclei_2d, make_nuclei_3d  # noqa: E402
from napari_sam.weights import create_model  # noqa: E402
from napari_sam.weights.registry import TINY_NUCLEI_DECODER  # noqa: E402


def _normalise(image, ref=None):  # as scripts/train_tiny.py's sampler
    lo, hi = np.percentile(image if ref is None else ref, [0.1, 99.9])
    return np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1) * 255


def tuning_images(styles=("default",), edge_level=None):
    """(normalised 256 x 256 image, labels) pairs of the tuning seeds."""
    out = []

    def params(style, seed):
        p = style_params(style)
        if edge_level is not None:
            p["edge_level"] = float(np.random.default_rng(seed).uniform(*edge_level))
        return p

    for style in styles:
        for seed in range(300, 320):
            image, labels = make_nuclei_2d((256, 256), seed=seed, **params(style, seed))
            out.append((_normalise(image), labels))
        for seed in range(300, 303):
            stack, labels = make_nuclei_3d((16, 256, 256), seed=seed, **params(style, seed))
            out += [(_normalise(s, stack), t) for s, t in zip(stack, labels, strict=True)
                    if t.max()]  # fmt: skip
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decoder", default=str(TINY_NUCLEI_DECODER))
    parser.add_argument("--weights", default=None, help="other weights of the model")
    parser.add_argument("--styles", default="default", help="styles of napari_sam.train.styles "
                        "(comma-separated, or 'all')")
    parser.add_argument("--edge-level", type=value_range, default=None, metavar="LOW:HIGH")
    args = parser.parse_args(argv)
    model = create_model("sam_tiny_nuclei", pretrained=args.weights or True, decoder=args.decoder)
    preprocess = default_preprocessing(model.cfg)
    maps, truths = [], []
    for image, labels in tuning_images(style_names(args.styles), args.edge_level):
        x = preprocess(np.repeat(image[..., None], 3, -1))
        emb = model.embed_images(x[None].astype(np.float32)).numpy()
        maps.append(decoder_maps(model.instance_decoder, emb, (256, 256), (256, 256), (256, 256)))
        truths.append(labels)
    grid = dict(
        foreground_threshold=(0.4, 0.5, 0.6),
        center_distance_threshold=(0.3, 0.4, 0.5, 0.6),
        boundary_distance_threshold=(0.4, 0.5, 0.6),
        distance_smoothing=(0.0, 1.0, 1.6),
        foreground_smoothing=(1.0,),
        min_size=(25,),
    )

    def mean_f1(settings):
        return float(np.mean([
            instance_f1(instances_from_maps(m[..., 0], m[..., 1], m[..., 2], settings), t).f1
            for m, t in zip(maps, truths, strict=True)]))  # fmt: skip

    results = []
    for values in itertools.product(*grid.values()):
        s = AisSettings(**dict(zip(grid, values, strict=True)))
        results.append((mean_f1(s), s))
    results.sort(key=lambda r: -r[0])
    default = mean_f1(AisSettings(min_size=25))
    print(f"{len(maps)} tuning images; micro-sam's defaults (min_size 25): F1 {default:.3f}")
    for f1, s in results[:8]:
        print(f"F1 {f1:.4f}  {s}")
    # then the merge of convex neighbours (segment/convex_merge.py) on the best watershed
    merged = []
    for solidity, border in itertools.product((0.88, 0.9, 0.92, 0.94, 0.96, 0.98),
                                              (0.0, 0.8, 1.0, 1.2)):  # fmt: skip
        s = replace(results[0][1], merge_solidity=solidity, merge_border=border)
        merged.append((mean_f1(s), s))
    merged.sort(key=lambda r: -r[0])
    print("with the merge of convex neighbours:")
    for f1, s in merged[:5]:
        print(f"F1 {f1:.4f}  merge_solidity {s.merge_solidity}  merge_border {s.merge_border}")


if __name__ == "__main__":
    main()
