"""Measure sam_tiny_nuclei on held-out synthetic images (seeds never used in training).

python scripts/eval_tiny.py [--weights FILE] [--seeds 0:20] [--auto-seeds 200:203]
                            [--edge-level 0.5]

Prompted segmentation: mean IoU of a centre point, a box, and a point plus a negative point
on a touching neighbour, on 2-D images. Automatic segmentation: ``napari-sam auto`` on 3-D
stacks (``--min-slices 3``: nuclei span 6 to 14 slices), instance F1 at IoU 0.5 of the
linked 3-D labels. ``--edge-level``: the labels' edge at this fraction of each nucleus's
intensity (``NucleiParams.edge_level``; 0.5, the half maximum, is where people draw; default:
the generator's, the foot of the intensity ramp).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tifffile  # noqa: E402

from napari_sam import SAMPredictor, create_model  # noqa: E402
from napari_sam.cli import main as cli_main  # noqa: E402
from napari_sam.train.evaluation import evaluate_on_synthetic, instance_f1  # noqa: E402
from napari_sam.train.synthetic import make_nuclei_3d  # noqa: E402


def _range(text: str) -> range:
    start, stop = (int(v) for v in text.split(":"))
    return range(start, stop)


def prompted(weights, seeds: range, **params) -> None:
    model = create_model("sam_tiny_nuclei", pretrained=weights or True)
    t0 = time.time()
    s = evaluate_on_synthetic(SAMPredictor(model), seeds, **params)
    print(f"held-out seeds {seeds.start}..{seeds.stop - 1}: {s.n_objects} nuclei "
          f"({s.n_touching} touching)")  # fmt: skip
    print("| prompt | mean IoU |\n|---|---|")
    print(f"| one positive point at the centre | {s.point:.3f} |")
    print(f"| box | {s.box:.3f} |")
    print(f"| point, objects with a touching neighbour | {s.point_pair:.3f} |")
    print(f"| same + negative point on the neighbour | {s.point_and_negative:.3f} |")
    print(f"({time.time() - t0:.0f} s)")


def automatic(weights, seeds: range, decoder=None, **params) -> None:
    print("| 3-D stack (seed) | nuclei | found | matched | F1 at IoU 0.5 |\n|---|---|---|---|---|")
    for seed in seeds:
        image, truth = make_nuclei_3d((16, 256, 256), seed=seed, **params)
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "stack.tif", Path(tmp) / "labels.tif"
            tifffile.imwrite(src, image, imagej=True, metadata={"axes": "ZYX"})
            extra = ["--weights", str(weights)] if weights else []
            extra += ["--decoder", str(decoder)] if decoder else []
            cli_main(["auto", str(src), "--out", str(out), "--model", "sam_tiny_nuclei",
                      "--min-slices", "3", *extra])  # fmt: skip
            s = instance_f1(tifffile.imread(out), truth)
        print(f"| {seed} | {s.n_true} | {s.n_predicted} | {s.n_matched} | {s.f1:.3f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default=None, help="checkpoint (default: shipped weights)")
    parser.add_argument("--seeds", default="0:20", help="held-out 2-D seeds START:STOP")
    parser.add_argument("--auto-seeds", default="200:203", help="held-out 3-D seeds, or ''")
    parser.add_argument("--decoder", default=None, help="decoder file (default: the shipped)")
    parser.add_argument("--edge-level", type=float, default=None, help="the labels' edge")
    args = parser.parse_args(argv)
    params = {} if args.edge_level is None else {"edge_level": args.edge_level}
    prompted(args.weights, _range(args.seeds), **params)
    if args.auto_seeds:
        automatic(args.weights, _range(args.auto_seeds), args.decoder, **params)


if __name__ == "__main__":
    main()
