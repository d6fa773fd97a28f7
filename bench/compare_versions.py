"""The labels of this tree against those of another version of napari-sam (e.g. the main
before a refactoring), on the project's synthetic images: ``auto`` and ``segment`` on a 2-D
image, a 3-D stack and a tiled image, each version in its own process.

``python bench/compare_versions.py --ref-src /tmp/old/src`` (a checkout's ``src`` folder);
prints one line per case: identical, or the share of pixels that agree after matching ids.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile

SRC = Path(__file__).resolve().parents[1] / "src"


def _images(folder: Path) -> dict[str, tuple[Path, list[str], Path]]:
    from napari_sam.train.synthetic import make_nuclei_2d, make_nuclei_3d

    img2, lab2 = make_nuclei_2d((256, 256), seed=3)
    img3, lab3 = make_nuclei_3d((4, 160, 160), seed=4)
    big, labb = make_nuclei_2d((600, 560), seed=5)
    cases = {}
    for name, img, lab, extra in (("2d", img2, lab2, []), ("3d", img3, lab3, ["--axes", "ZYX"]),
                                  ("tiled", big, labb, ["--tile", "256"])):  # fmt: skip
        path = folder / f"{name}.tif"
        tifffile.imwrite(path, img)
        prompts = folder / f"{name}.csv"
        rows = ["object,slice,x,y,label"] if lab.ndim == 3 else ["object,x,y,label"]
        planes = lab if lab.ndim == 3 else lab[None]
        for z, plane in enumerate(planes):
            for k in [k for k in np.unique(plane) if k][:6]:
                ys, xs = np.nonzero(plane == k)
                i = len(ys) // 2
                head = f"{k},{z}," if lab.ndim == 3 else f"{k},"
                rows.append(f"{head}{xs[i]},{ys[i]},1")
        prompts.write_text("\n".join(rows) + "\n")
        cases[name] = (path, extra, prompts)
    return cases


def _run(src: Path, argv: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(src)}
    code = "import sys; from napari_sam.cli.entry import main; sys.exit(main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True,
                         text=True)  # fmt: skip
    if res.returncode:
        raise SystemExit(f"{src}: napari-sam {' '.join(argv)} failed:\n{res.stderr[-2000:]}")


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels that agree after giving each id of ``b`` the id of ``a`` it overlaps most."""
    if np.array_equal(a, b):
        return 1.0
    mapped = np.zeros_like(b)
    for k in np.unique(b[b > 0]):
        ids, n = np.unique(a[b == k], return_counts=True)
        mapped[b == k] = ids[np.argmax(n)]
    return float((mapped == a).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref-src", required=True, type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = _images(tmp)
        for name, (path, extra, prompts) in cases.items():
            model = ["--model", "sam_tiny_nuclei"]
            for cmd, more in (("auto", []), ("segment", ["--prompts", str(prompts)])):
                labels = {}
                for side, src in (("ref", args.ref_src), ("this", SRC)):
                    dest = tmp / f"{name}-{cmd}-{side}.tif"
                    _run(src, [cmd, str(path), "--out", str(dest), *model, *extra, *more])
                    labels[side] = tifffile.imread(dest)
                agree = _agreement(labels["ref"], labels["this"])
                out[f"{cmd} {name}"] = agree
                same = "identical" if agree == 1.0 else f"{100 * agree:.2f} % of pixels agree"
                print(f"{cmd:8s} {name:6s} {int(labels['this'].max()):4d} objects: {same}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
