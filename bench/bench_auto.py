"""Automatic segmentation with grid prompts: the project's generator against Meta's.

Both sides segment the same synthetic fluorescence image with the same SAM checkpoint
(random weights, every tensor perturbed, saved as Meta's ``.pth``; tests/ref_models.py) and the
same settings (Meta's defaults unless given), each in a process of its own (their thread pools
would slow each other in one). Each side encodes the image and generates the masks twice: the
first run includes tracing; the second, the steady state, is what a folder of images sees. The
masks of both sides are compared: the share of Meta's masks matched by one of ours at mask IoU
>= 0.9, and the reverse.

Random weights give masks that spread over the image; as in tests/test_automatic.py the
checkpoint is made to follow image regions (no position embeddings in the encoder, the
decoder's up-sampling kernels the same at every offset), so masks are local and the filters,
NMS and post-processing have real work. With Meta's thresholds (0.88 / 0.95) few random masks
pass, so ``--loose`` (both at 0) times the case where every mask goes through everything.

``python bench/bench_auto.py`` (``--model sam_vit_b``, ``--size 1024``, ``--points-per-side
32``, ``--loose``, ``--json FILE``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench_tiling import cpu_kind, run_side  # shared by the benches

TESTS = Path(__file__).resolve().parents[1] / "tests"


def _checkpoint(model: str, path: Path) -> None:
    sys.path.insert(0, str(TESTS))

    from napari_sam.weights import model_config

    from ref_models import build_reference, follow_regions, save_like_official

    sam = follow_regions(build_reference(model_config(model), seed=6))
    save_like_official(sam, path)


def _image(size: int):
    import numpy as np

    from napari_sam.train.synthetic import make_nuclei_2d

    image, _ = make_nuclei_2d((size, size), seed=4711, radius_range=(12, 24))
    x = image.astype(np.float64)
    lo, hi = np.percentile(x, [0.1, 99.9])
    grey = (np.clip((x - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _side(side: str, model: str, ckpt: Path, size: int, settings: dict, out: Path) -> dict:
    import numpy as np

    image = _image(size)
    if side == "meta":
        sys.path.insert(0, str(TESTS))
        import torch

        from reference import import_segment_anything

        sa = import_segment_anything()
        kind = {"sam_vit_b": "vit_b", "sam_vit_l": "vit_l", "sam_vit_h": "vit_h"}[model]
        sam = sa.sam_model_registry[kind](checkpoint=str(ckpt))
        gen = sa.SamAutomaticMaskGenerator(sam, **settings)

        def run():
            with torch.no_grad():
                return gen.generate(image)
    else:
        from napari_sam import create_model
        from napari_sam.segment.automatic import AutomaticMaskGenerator

        gen = AutomaticMaskGenerator(create_model(model, pretrained=ckpt), **settings)

        def run():
            return gen.generate(image)

    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        records = run()
        times.append(time.perf_counter() - t0)
    masks = np.stack([r["segmentation"] for r in records]) if records else np.zeros((0, size, size))
    np.savez_compressed(out, masks=np.packbits(masks.astype(bool), axis=-1),
                        shape=np.array(masks.shape))  # fmt: skip
    return {"first_s": times[0], "steady_s": times[1], "masks": len(records)}


def _load(path: Path):
    import numpy as np

    data = np.load(path)
    shape = tuple(data["shape"])
    return np.unpackbits(data["masks"], axis=-1, count=shape[-1]).astype(bool).reshape(shape)


def _boxes(masks):
    import numpy as np

    rows, cols = masks.any(2), masks.any(1)
    out = np.zeros((len(masks), 4), int)
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        if r.any():
            ys, xs = np.flatnonzero(r), np.flatnonzero(c)
            out[i] = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    return out


def matched(a, b, threshold: float = 0.9) -> float:
    """The share of masks of ``a`` that one mask of ``b`` matches at IoU >= ``threshold``
    (only masks whose boxes overlap are compared, each on the union of the two boxes)."""
    if len(a) == 0:
        return 1.0
    ba, bb = _boxes(a), _boxes(b)
    hits = 0
    for i, (y0, y1, x0, x1) in enumerate(ba):
        for j, (v0, v1, u0, u1) in enumerate(bb):
            if min(y1, v1) <= max(y0, v0) or min(x1, u1) <= max(x0, u0):
                if not (a[i].any() or b[j].any()):
                    hits += 1  # two empty masks
                    break
                continue
            r0, r1, c0, c1 = min(y0, v0), max(y1, v1), min(x0, u0), max(x1, u1)
            pa, pb = a[i, r0:r1, c0:c1], b[j, r0:r1, c0:c1]
            union = (pa | pb).sum()
            if union and (pa & pb).sum() / union >= threshold:
                hits += 1
                break
    return hits / len(a)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=("meta", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", default="sam_vit_b")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--loose", action="store_true", help="both thresholds 0")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    settings = {"points_per_side": args.points_per_side}
    if args.loose:
        settings.update(pred_iou_thresh=0.0, stability_score_thresh=0.0)
    if args.side:
        result = _side(args.side, args.model, args.checkpoint, args.size, settings, args.out)
        print("RESULT " + json.dumps(result))
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "sam.pth"
        _checkpoint(args.model, ckpt)
        for side in ("meta", "ours"):
            cmd = [sys.executable, __file__, "--side", side, "--checkpoint", str(ckpt),
                   "--out", str(Path(tmp) / f"{side}.npz"), "--model", args.model,
                   "--size", str(args.size), "--points-per-side", str(args.points_per_side),
                   *(["--loose"] if args.loose else [])]  # fmt: skip
            results[side] = r = run_side(cmd)
            if r is None:
                return 1
            print(f"{side:5s} first {r['first_s']:7.2f} s, steady {r['steady_s']:7.2f} s "
                  f"(encoder included) | {r['masks']} masks")  # fmt: skip
        meta, ours = _load(Path(tmp) / "meta.npz"), _load(Path(tmp) / "ours.npz")
    agree = {"meta_matched": matched(meta, ours), "ours_matched": matched(ours, meta)}
    ratio = results["ours"]["steady_s"] / results["meta"]["steady_s"]
    print(f"ours / meta (steady): {ratio:.2f} x | Meta's masks matched by ours "
          f"{agree['meta_matched']:.1%}, ours by Meta's {agree['ours_matched']:.1%} (IoU >= 0.9)")
    summary = {"cpu": cpu_kind(), "model": args.model, "size": args.size, **settings,
               "results": results, "ratio": ratio, **agree}  # fmt: skip
    print(f"CPU: {summary['cpu']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
