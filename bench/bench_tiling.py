"""Acceptance figures of tiled segmentation (issue #14) on synthetic nuclei.

1. A ``SIZE x SIZE`` synthetic fluorescence image (``make_nuclei_2d``, nuclei at
   ``sam_tiny_nuclei``'s trained size, radius 10-18 px, a seed training never uses) is written
   as a TIFF and segmented by the real command line, each run its own process:
   ``napari-sam auto img.tif --model sam_tiny_nuclei`` with the default settings (tiled) and
   with ``--no-tile``: instance F1 at IoU 0.5 of both and the difference. Targets: default
   >= 0.90 and at least 0.30 above ``--no-tile``.
2. Objects split at tile borders in the default run: true objects whose pixels lie in more
   than one tile inner region (``Tiling.tiles_at``) and carry two or more predicted labels
   each covering >= 20 % of the object while lying >= 80 % inside it. Target: 0.
3. Clicks: one positive point at ``object_centre`` of each true object, decoded in this
   process by ``TiledPredictor.predict_window`` (multimask, the best-scored mask), IoU with the
   object; mean IoU of the objects that straddle a tile border and of the interior ones
   (target: within 0.02), and the same clicks on the whole image resized (``StackPredictor``,
   no tiling) for reference.
4. The same generator with nuclei at twice the trained size (radius 20-36 px; density a quarter
   of the default, so that they cover the same fraction of the image; seed ``--seed`` + 1) on
   a ``--big-size`` image: ``auto`` default against ``auto --diameter 56`` (splits counted
   on each run's own tiling). Target: ``--diameter`` F1 within 0.05 of item 1's default F1.

Every run also gets a short diagnosis of its missed objects (at the image border, straddling
a tile border, merged with a neighbour, split, poorly outlined, or not found at all).

``python bench/bench_tiling.py`` (2048 x 2048, ``--points-per-side`` 32: the acceptance
figures; 32 minutes on 2 heavily shared cores, 2026-12-02), ``--quick`` (768 x 768 and
1024 x 1024, 16 points per side: the smoke test, 92 s), ``--items 1,3``,
``--json FILE``. Temporary files go to ``--workdir`` (default: a new folder in the system temp
dir, deleted unless ``--keep``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODEL = "sam_tiny_nuclei"
SEED = 90210  # scripts/train_tiny.py trains on seeds >= 1_000_000 only
TRAINED = (10.0, 18.0)
DOUBLE = (20.0, 36.0)
DENSITY = 3e-4  # NucleiParams.density: nuclei per pixel at the trained size
QUICK = {"size": 768, "big_size": 1024, "points_per_side": 16}
FULL = {"size": 2048, "big_size": 2048, "points_per_side": 32}
TARGETS = {"f1": 0.90, "gain": 0.30, "split": 0, "click_gap": 0.02, "diameter_gap": 0.05}


def cpu_kind() -> str:
    """The CPU model and whether it has AVX-512."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                 if ln.startswith("model name")), "unknown")  # fmt: skip
    return f"{name}, {os.cpu_count()} core(s), avx512f: {'yes' if ' avx512f' in text else 'no'}"


def run_side(cmd) -> dict | None:
    """One side of a bench in a process of its own (``cmd``): the JSON of its last
    ``RESULT {...}`` line on stdout, or None (its stderr's tail printed) when it failed."""
    run = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
    if run.returncode or not line:
        print(run.stderr[-3000:], file=sys.stderr)
        return None
    return json.loads(line[-1][len("RESULT "):])


def make_image(path: Path, size: int, seed: int, radius_range, density: float):
    """Write a synthetic nuclei TIFF; returns the true labels."""
    import tifffile

    from napari_sam.train.synthetic import make_nuclei_2d

    image, labels = make_nuclei_2d(
        (size, size), seed=seed, radius_range=tuple(radius_range), density=density
    )
    tifffile.imwrite(path, image)
    return labels


def run_auto(image: Path, out: Path, pps: int, extra=()) -> dict:
    """``napari-sam auto`` as a subprocess; returns its wall time and the labels it wrote."""
    import tifffile

    exe = Path(sys.executable).with_name("napari-sam")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "napari_sam.cli"]
    cmd += ["auto", str(image), "--model", MODEL, "--out", str(out), "--overwrite"]
    cmd += ["--points-per-side", str(pps), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    shown = " ".join(["napari-sam", *cmd[cmd.index("auto") :]])
    return {"command": shown, "wall_s": wall, "labels": tifffile.imread(out)}


def straddling(truth: np.ndarray, tiling) -> dict[int, bool]:
    """For each true id, whether its pixels lie in more than one tile inner region."""
    ys, xs = np.nonzero(truth)
    ids, tiles = truth[ys, xs], tiling.tiles_at(ys, xs)
    out = {}
    order = np.argsort(ids, kind="stable")
    ids, tiles = ids[order], tiles[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    for s, e in zip(starts, np.r_[starts[1:], len(ids)], strict=True):
        out[int(ids[s])] = bool(tiles[s:e].min() != tiles[s:e].max())
    return out


def pieces(pred: np.ndarray, truth: np.ndarray, cover=0.2, purity=0.8) -> dict[int, int]:
    """For each true id, the predicted labels covering >= ``cover`` of it, >= ``purity`` inside."""
    from napari_sam.masks import label_overlaps

    ov = label_overlaps(pred.astype(np.int64), truth.astype(np.int64))
    size_p = dict(zip(ov.ids_a.tolist(), ov.sizes_a.tolist(), strict=True))
    size_t = dict(zip(ov.ids_b.tolist(), ov.sizes_b.tolist(), strict=True))
    out = dict.fromkeys(size_t, 0)
    for (p, t), n in zip(ov.pairs.T.tolist(), ov.intersection.tolist(), strict=True):
        if n >= cover * size_t[t] and n >= purity * size_p[p]:
            out[t] += 1
    return out


def diagnose(pred: np.ndarray, truth: np.ndarray, straddle: dict[int, bool] | None) -> dict:
    """Why true objects were missed (no predicted label at IoU > 0.5)."""
    from napari_sam.masks import label_overlaps

    ov = label_overlaps(pred.astype(np.int64), truth.astype(np.int64))
    size_p = dict(zip(ov.ids_a.tolist(), ov.sizes_a.tolist(), strict=True))
    size_t = dict(zip(ov.ids_b.tolist(), ov.sizes_b.tolist(), strict=True))
    best = dict.fromkeys(size_t, 0.0)
    partner = dict.fromkeys(size_t, 0)
    n_true_in = {}  # predicted id -> true objects it covers >= 50 % of
    for (p, t), n in zip(ov.pairs.T.tolist(), ov.intersection.tolist(), strict=True):
        iou = n / (size_p[p] + size_t[t] - n)
        if iou > best[t]:
            best[t], partner[t] = iou, p
        if n >= 0.5 * size_t[t]:
            n_true_in[p] = n_true_in.get(p, 0) + 1
    split = pieces(pred, truth)
    edge = set(np.unique(np.r_[truth[0], truth[-1], truth[:, 0], truth[:, -1]]).tolist()) - {0}
    kinds = {"missed": 0, "merged": 0, "split": 0, "poor": 0, "not found": 0,
             "at image border": 0, "straddling": 0}  # fmt: skip
    ious = []
    for t, b in best.items():
        if b > 0.5:
            continue
        kinds["missed"] += 1
        ious.append(b)
        kinds["at image border"] += t in edge
        kinds["straddling"] += bool(straddle and straddle.get(t))
        if b == 0:
            kinds["not found"] += 1
        elif n_true_in.get(partner[t], 0) >= 2 or size_p[partner[t]] > 1.8 * size_t[t]:
            kinds["merged"] += 1
        elif split[t] >= 2:
            kinds["split"] += 1
        else:
            kinds["poor"] += 1
    kinds["mean best IoU of missed"] = float(np.mean(ious)) if ious else None
    sizes = np.array(list(size_t.values()))
    kinds["true object area px (median)"] = float(np.median(sizes)) if len(sizes) else None
    return kinds


def score(pred, truth, tiling=None) -> dict:
    from napari_sam.train.evaluation import instance_f1

    s = instance_f1(pred, truth, 0.5)
    out = {"f1": s.f1, "precision": s.precision, "recall": s.recall, "n_true": s.n_true,
           "n_predicted": s.n_predicted, "n_matched": s.n_matched}  # fmt: skip
    straddle = straddling(truth, tiling) if tiling is not None else None
    if straddle is not None:
        split = pieces(pred, truth)
        out["straddling"] = int(sum(straddle.values()))
        out["split_at_border"] = int(sum(split[t] >= 2 for t, s in straddle.items() if s))
        out["split_interior"] = int(sum(split[t] >= 2 for t, s in straddle.items() if not s))
    out["diagnosis"] = diagnose(pred, truth, straddle)
    return out


def clicks(image_path: Path, truth: np.ndarray, tiling) -> dict:
    """Item 3: one click per true object, tiled and untiled."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tifffile
    from scipy import ndimage

    from napari_sam.masks import object_centre
    from napari_sam.stacks import StackPredictor, TiledPredictor
    from napari_sam.weights import create_model

    image = tifffile.imread(image_path)
    model = create_model(MODEL, pretrained=True)
    straddle = straddling(truth, tiling)
    objs = []
    for t, sl in enumerate(ndimage.find_objects(truth), start=1):
        if sl is None:
            continue
        crop = truth[sl] == t
        x, y = object_centre(crop)
        objs.append((t, sl, crop, (x + sl[1].start, y + sl[0].start)))
    out = {"n_objects": len(objs)}

    tp = TiledPredictor(model, image, tiling, axes="YX")
    t0 = time.perf_counter()
    tp.precompute()
    out["tiled_embed_s"] = time.perf_counter() - t0
    ious = {True: [], False: []}
    t0 = time.perf_counter()
    for t, _sl, crop, (x, y) in objs:
        masks, scores, _, (y0, y1, x0, x1) = tp.predict_window(
            0, points=[[x, y]], labels=[1], multimask_output=True
        )
        m = masks[int(np.argmax(scores))]
        inter = int(np.count_nonzero(m & (truth[y0:y1, x0:x1] == t)))
        ious[straddle[t]].append(inter / (int(m.sum()) + int(crop.sum()) - inter))
    out["tiled_click_s"] = (time.perf_counter() - t0) / max(len(objs), 1)
    out["on_demand_windows"] = tp.on_demand
    out["n_straddling"], out["n_interior"] = len(ious[True]), len(ious[False])
    out["iou_straddling"] = float(np.mean(ious[True])) if ious[True] else None
    out["iou_interior"] = float(np.mean(ious[False])) if ious[False] else None
    if ious[True] and ious[False]:
        out["iou_gap"] = abs(out["iou_straddling"] - out["iou_interior"])
    allv = ious[True] + ious[False]
    out["tiled_iou_all"] = float(np.mean(allv))
    out["tiled_below_0.5"] = int(sum(v < 0.5 for v in allv))
    del tp

    sp = StackPredictor(model, image, axes="YX")
    t0 = time.perf_counter()
    sp.set_slice(0)
    plain = {True: [], False: []}
    for t, sl, crop, (x, y) in objs:
        masks, scores, _ = sp(points=[[x, y]], labels=[1], multimask_output=True)
        m = masks[int(np.argmax(scores))]
        inter = int(np.count_nonzero(m[sl] & crop))
        plain[straddle[t]].append(inter / (int(np.count_nonzero(m)) + int(crop.sum()) - inter))
    out["untiled_click_s"] = (time.perf_counter() - t0) / max(len(objs), 1)
    out["untiled_iou_straddling"] = float(np.mean(plain[True])) if plain[True] else None
    out["untiled_iou_interior"] = float(np.mean(plain[False])) if plain[False] else None
    out["untiled_iou_all"] = float(np.mean(plain[True] + plain[False]))
    return out


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def print_run(name: str, r: dict) -> None:
    s = r["score"]
    print(f"  {name:<22} F1 {s['f1']:.3f}  P {s['precision']:.3f}  R {s['recall']:.3f}  "
          f"true {s['n_true']}  pred {s['n_predicted']}  matched {s['n_matched']}  "
          f"wall {r['wall_s']:.1f} s")  # fmt: skip
    if "straddling" in s:
        print(f"  {'':<22} straddling {s['straddling']}  split at a tile border "
              f"{s['split_at_border']}  split inside a tile {s['split_interior']}")  # fmt: skip
    d = ", ".join(f"{k} {_fmt(v)}" for k, v in s["diagnosis"].items())
    print(f"  {'':<22} missed: {d}")
    print(f"  {'':<22} $ {r['command']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images, 16 points per side")
    parser.add_argument("--size", type=int, help="side of items 1-3 (default 2048; quick 768)")
    parser.add_argument("--big-size", type=int, help="side of item 4 (default 2048; quick 1024)")
    parser.add_argument("--points-per-side", type=int, help="default 32 (quick 16)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--items", default="1,2,3,4", help="comma-separated subset of 1,2,3,4")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the temporary files")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    size = args.size or preset["size"]
    big = args.big_size or preset["big_size"]
    pps = args.points_per_side or preset["points_per_side"]
    items = {int(i) for i in args.items.split(",") if i.strip()}
    if args.seed >= 1_000_000:
        print("warning: seeds >= 1_000_000 are training seeds (scripts/train_tiny.py)")

    from napari_sam.stacks.tiling import plan_tiling
    from napari_sam.weights.registry import model_entry

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_tiling_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"cpu: {cpu_kind()}")
    print(f"model {MODEL}, seed {args.seed}, points per side {pps}, work dir {work}")
    res: dict = {"cpu": cpu_kind(), "seed": args.seed, "points_per_side": pps,
                 "size": size, "big_size": big, "targets": TARGETS}  # fmt: skip
    t_start = time.perf_counter()
    try:
        if items & {1, 2, 3}:
            img = work / "trained.tif"
            truth = make_image(img, size, args.seed, TRAINED, DENSITY)
            tiling = plan_tiling(truth.shape, (256, 256))
            print(f"\nimage {size}x{size}, radius {TRAINED}, {truth.max()} nuclei; "
                  f"default tiling {tiling}")  # fmt: skip
            if tiling is None:
                print("  (the image is not tiled by default: give --size above 384)")
        if items & {1, 2}:
            print("item 1/2: auto, default vs --no-tile")
            d = run_auto(img, work / "default.tif", pps)
            d["score"] = score(d.pop("labels"), truth, tiling)
            print_run("default", d)
            n = run_auto(img, work / "notile.tif", pps, ["--no-tile"])
            n["score"] = score(n.pop("labels"), truth, tiling)
            print_run("--no-tile", n)
            gain = d["score"]["f1"] - n["score"]["f1"]
            ok1 = d["score"]["f1"] >= TARGETS["f1"] and gain >= TARGETS["gain"]
            split = d["score"].get("split_at_border")
            print(f"  -> F1 default {d['score']['f1']:.3f}, --no-tile {n['score']['f1']:.3f}, "
                  f"difference {gain:+.3f}: {'PASS' if ok1 else 'FAIL'} (>= {TARGETS['f1']}, "
                  f"+{TARGETS['gain']})")  # fmt: skip
            print(f"  -> item 2: objects split at a tile border: {split}: "
                  f"{'PASS' if split == 0 else 'FAIL'}")  # fmt: skip
            res["item1"] = {"default": d, "no_tile": n, "gain": gain, "pass": ok1}
            res["item2"] = {"split_at_border": split, "pass": split == 0}
        if 3 in items and tiling is not None:
            print("item 3: clicks at object centres (in this process)")
            c = clicks(img, truth, tiling)
            gap = c.get("iou_gap")
            ok3 = gap is not None and gap <= TARGETS["click_gap"]
            print(f"  tiled:   straddling {_fmt(c['iou_straddling'])} (n {c['n_straddling']}), "
                  f"interior {_fmt(c['iou_interior'])} (n {c['n_interior']}), gap {_fmt(gap)}, "
                  f"all {c['tiled_iou_all']:.3f}, {c['tiled_below_0.5']} below 0.5; "
                  f"{c['on_demand_windows']} window(s) embedded on demand")  # fmt: skip
            print(
                f"  untiled: straddling {_fmt(c['untiled_iou_straddling'])}, interior "
                f"{_fmt(c['untiled_iou_interior'])}, all {c['untiled_iou_all']:.3f}"
            )
            print(f"  time: tile embeddings {c['tiled_embed_s']:.1f} s, "
                  f"{1000 * c['tiled_click_s']:.0f} ms/click tiled, "
                  f"{1000 * c['untiled_click_s']:.0f} ms/click untiled")  # fmt: skip
            print(f"  -> gap {_fmt(gap)}: {'PASS' if ok3 else 'FAIL'} (<= {TARGETS['click_gap']})")
            res["item3"] = {**c, "pass": ok3}
        if 4 in items:
            img4 = work / "double.tif"
            truth4 = make_image(img4, big, args.seed + 1, DOUBLE, DENSITY / 4)
            diameter = 2 * 28
            t_def = plan_tiling(truth4.shape, (256, 256))
            t_dia = plan_tiling(truth4.shape, (256, 256), diameter=diameter,
                                model_diameter=model_entry(MODEL).object_diameter)  # fmt: skip
            print(f"\nitem 4: image {big}x{big}, radius {DOUBLE}, {truth4.max()} nuclei; "
                  f"--diameter {diameter} tiling {t_dia}")  # fmt: skip
            d4 = run_auto(img4, work / "double_default.tif", pps)
            d4["score"] = score(d4.pop("labels"), truth4, t_def)
            print_run("default", d4)
            m4 = run_auto(img4, work / "double_diameter.tif", pps, ["--diameter", str(diameter)])
            m4["score"] = score(m4.pop("labels"), truth4, t_dia)
            print_run(f"--diameter {diameter}", m4)
            ref = res.get("item1", {}).get("default", {}).get("score", {}).get("f1")
            gap4 = None if ref is None else abs(m4["score"]["f1"] - ref)
            ok4 = gap4 is not None and gap4 <= TARGETS["diameter_gap"]
            print(f"  -> F1 default {d4['score']['f1']:.3f}, --diameter {m4['score']['f1']:.3f}; "
                  f"trained-size F1 {_fmt(ref)}, gap {_fmt(gap4)}: "
                  f"{'PASS' if ok4 else 'FAIL' if gap4 is not None else 'no item 1'} "
                  f"(<= {TARGETS['diameter_gap']})")  # fmt: skip
            res["item4"] = {"default": d4, "diameter": m4, "gap": gap4, "pass": ok4}
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    res["total_s"] = time.perf_counter() - t_start
    print(f"\ntotal {res['total_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
