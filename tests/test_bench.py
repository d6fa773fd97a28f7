"""The benchmark scripts run end to end (seconds-long smoke versions; no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_perf_smoke():
    out = run(str(BENCH / "bench_perf.py"), "--smoke", "--repeats", "1", "--prompts", "4")
    for row in (
        "encoder, reference (torch)",
        "encoder, napari-sam float32",
        "of the f32 matmul rate",
        "encoder, napari-sam bfloat16",
        "mask pixels equal, bfloat16 vs float32 encoder",
        "prompt to mask, napari-sam (median)",
        "| retraces after warm-up | 0 |",
    ):
        assert row in out, out


def test_bench_stacks_smoke():
    out = run(
        str(BENCH / "bench_stacks.py"), "--slices", "1", "--size", "128", "--reads", "3",
        "--read-slices", "2", "--repeats", "1", "--override", "encoder_nb_blocks=1",
        "--override", "input_size=[128, 128]", "--override", "encoder_global_attn_indices=[0]",
    )  # fmt: skip
    assert "ms" in out, out
