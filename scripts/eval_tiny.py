"""Measure sam_tiny_nuclei on held-out synthetic images (seeds never used in training).

python scripts/eval_tiny.py [--weights FILE] [--seeds 0:20]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from napari_sam import SAMPredictor, create_model  # noqa: E402
from napari_sam.evaluation import evaluate_on_synthetic  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default=None, help="checkpoint (default: shipped weights)")
    parser.add_argument("--seeds", default="0:20", help="held-out seeds START:STOP")
    args = parser.parse_args(argv)
    start, stop = (int(v) for v in args.seeds.split(":"))
    model = create_model("sam_tiny_nuclei", pretrained=args.weights or True)
    t0 = time.time()
    s = evaluate_on_synthetic(SAMPredictor(model), range(start, stop))
    print(f"held-out seeds {start}..{stop - 1}: {s.n_objects} nuclei ({s.n_touching} touching)")
    print("| prompt | mean IoU |\n|---|---|")
    print(f"| one positive point at the centre | {s.point:.3f} |")
    print(f"| box | {s.box:.3f} |")
    print(f"| point, objects with a touching neighbour | {s.point_pair:.3f} |")
    print(f"| same + negative point on the neighbour | {s.point_and_negative:.3f} |")
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
