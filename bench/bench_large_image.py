"""Peak memory and resumability of ``napari-sam embed`` on an image larger than it may hold.

Writes a ``SIZE x SIZE`` uint16 ``.npy`` memmap (synthetic nuclei: a 2048 x 2048
``make_nuclei_2d`` image tiled over it, each copy flipped differently, written block by
block), then

1. runs ``napari-sam embed big.npy --model MODEL --out STORE`` as a subprocess and samples
   its ``/proc/<pid>/status`` (VmHWM, RssAnon, RssFile) and the number of tile records
   every ``--interval`` seconds: peak resident memory, tiles, wall time, tiles/s. With
   ``--max-seconds`` the run is stopped (SIGKILL) after that long and the figures are those
   of the part done (the peak is reached early and stays flat: see the samples);
2. runs it again into a fresh store, SIGKILLs it once ``--kill-after`` tiles have records,
   reruns it and checks from its last line (``computed X tile(s), reused Y of Z``) that
   only the missing tiles were computed: ``X + Y == Z`` and ``Y >= records before the kill``.

``python bench/bench_large_image.py`` (20000 x 20000, about 11000 tiles; hours on 2 cores),
``--quick`` (1600 x 1600, about 35 s: the smoke test), ``--size N``,
``--max-seconds S``, ``--json FILE``. Temporary files go to ``--workdir`` (default: a new
folder in the system temp dir, deleted at the end unless ``--keep``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GIB = 1 << 30
QUICK_SIZE = 1600
_DONE = re.compile(r"computed (\d+) (?:tile|slice)\(s\), reused (\d+) of (\d+)")
_TILES = re.compile(r"x (\d+) tile\(s\) of (\d+)x(\d+) px")


def write_memmap(path: Path, size: int, block: int = 2048, seed: int = 0) -> None:
    """Write a ``size x size`` uint16 ``.npy`` of synthetic nuclei, one block at a time.

    Parameters
    ----------
    path : Path
        The ``.npy`` file to create.
    size : int
        Side of the square image in pixels.
    block : int
        Side of the synthetic image that is tiled over it (flipped four ways).
    seed : int
        Seed of :func:`~napari_sam.train.synthetic.make_nuclei_2d`.
    """
    from napari_sam.train.synthetic import make_nuclei_2d

    base, _ = make_nuclei_2d((min(block, size),) * 2, seed=seed)
    variants = [base, base[::-1], base[:, ::-1], base[::-1, ::-1]]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(size, size))
    b = base.shape[0]
    for r in range(0, size, b):
        for c in range(0, size, b):
            v = variants[(r // b + 2 * (c // b)) % 4]
            out[r : r + b, c : c + b] = v[: size - r, : size - c]
        out.flush()
    del out


def _status(pid: int) -> dict[str, int]:
    """VmHWM, VmRSS, RssAnon and RssFile of a live process, in bytes ({} once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def _records(store: Path) -> int:
    try:
        return sum(1 for f in os.scandir(store / "records") if f.name.endswith(".json"))
    except OSError:
        return 0


def run_embed(image: Path, store: Path, args, kill_at=None, max_seconds=None) -> dict:
    """Run ``napari-sam embed`` once, sampling its memory; SIGKILL it at ``kill_at`` records
    or after ``max_seconds``. Returns the figures and the samples."""
    exe = Path(sys.executable).with_name("napari-sam")
    cmd = [str(exe) if exe.exists() else "napari-sam", "embed", str(image),
           "--model", args.model, "--out", str(store)] + args.extra  # fmt: skip
    err_path = store.with_suffix(".stderr.txt")
    t0 = time.monotonic()
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        samples, peak, killed = [], {}, False
        while proc.poll() is None:
            st = _status(proc.pid)
            for k, v in st.items():
                peak[k] = max(peak.get(k, 0), v)
            n = _records(store)
            t = time.monotonic() - t0
            if st:
                samples.append((round(t, 1), n, st.get("VmRSS", 0), st.get("RssAnon", 0)))
            if (kill_at is not None and n >= kill_at) or (max_seconds and t > max_seconds):
                st = _status(proc.pid)  # the last figures before the kill
                for k, v in st.items():
                    peak[k] = max(peak.get(k, 0), v)
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(args.interval)
        out, _ = proc.communicate()
    wall = time.monotonic() - t0
    stderr = err_path.read_text(errors="replace")
    if not killed and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-2000:]}")
    done = _DONE.search(out or "")
    tiles = _TILES.search(stderr)
    n_rec = _records(store)
    # tiles/s over the part that embedded: from the first record to the last sample
    first = next((s for s in samples if s[1] > 0), None)
    rate = None
    if first is not None and samples[-1][1] > first[1] and samples[-1][0] > first[0]:
        rate = (samples[-1][1] - first[1]) / (samples[-1][0] - first[0])
    return {
        "cmd": " ".join(cmd),
        "killed": killed,
        "wall_s": round(wall, 1),
        "tiles_total": int(tiles.group(1)) if tiles else None,
        "tile_px": f"{tiles.group(2)}x{tiles.group(3)}" if tiles else None,
        "records": n_rec,
        "computed": int(done.group(1)) if done else None,
        "reused": int(done.group(2)) if done else None,
        "total": int(done.group(3)) if done else None,
        "tiles_per_s": round(rate, 2) if rate else None,
        "peak_hwm_gib": round(peak.get("VmHWM", 0) / GIB, 3),
        "peak_anon_gib": round(peak.get("RssAnon", 0) / GIB, 3),
        "peak_file_gib": round(peak.get("RssFile", 0) / GIB, 3),
        "samples": samples,
    }


def _timeline(samples, rows: int = 12) -> str:
    if not samples:
        return "    (no samples)"
    pick = sorted({round(i) for i in np.linspace(0, len(samples) - 1, min(rows, len(samples)))})
    lines = ["      t (s)  records  RSS (GiB)  anon (GiB)"]
    for i in pick:
        t, n, rss, anon = samples[i]
        lines.append(f"    {t:7.1f}  {n:7d}  {rss / GIB:9.3f}  {anon / GIB:10.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the benchmark; exit status 1 when a check fails."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=20000, help="image side in pixels")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_SIZE} px: a smoke test")
    p.add_argument("--model", default="sam_tiny_nuclei")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop the measured run after this long (partial figures)")  # fmt: skip
    p.add_argument("--kill-after", type=int, default=None,
                   help="records before the SIGKILL (default: a third, at most 200)")  # fmt: skip
    p.add_argument("--no-resume", action="store_true", help="skip the SIGKILL/rerun check")
    p.add_argument("--limit-gib", type=float, default=2.0, help="peak RSS allowed")
    p.add_argument("--interval", type=float, default=0.25, help="seconds between samples")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the image and the stores")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("extra", nargs="*", help="more embed options after --, e.g. -- --tile 512")
    args = p.parse_args(argv)
    size = QUICK_SIZE if args.quick else args.size
    work = args.workdir or Path(tempfile.mkdtemp(prefix="napari-sam-bench-large-"))
    work.mkdir(parents=True, exist_ok=True)
    need = size * size * 2 + 2 * (512 << 10) * size * size / 192**2  # image + 2 stores
    free = shutil.disk_usage(work).free
    if need > free and not args.max_seconds:
        print(f"warning: about {need / GIB:.1f} GiB needed in {work}, {free / GIB:.1f} free")
    ok, report = True, {"size": size, "model": args.model, "cpu": _cpu()}
    try:
        image = work / "big.npy"
        t = time.monotonic()
        write_memmap(image, size)
        print(f"{size} x {size} uint16 memmap ({image.stat().st_size / GIB:.2f} GiB) written "
              f"in {time.monotonic() - t:.1f} s: {image}")  # fmt: skip
        run = run_embed(image, work / "store.zarr", args, max_seconds=args.max_seconds)
        report["run"] = run
        part = " (stopped: partial)" if run["killed"] else ""
        print(f"\nembed{part}: {run['cmd']}")
        print(
            f"  tiles: {run['tiles_total']} of {run['tile_px']} px; records written: "
            f"{run['records']}; wall {run['wall_s']} s; {run['tiles_per_s']} tiles/s"
        )
        print(
            f"  peak RSS (VmHWM) {run['peak_hwm_gib']:.3f} GiB (anon {run['peak_anon_gib']:.3f}"
            f", file-backed {run['peak_file_gib']:.3f}); limit {args.limit_gib} GiB"
        )
        print(_timeline(run["samples"]))
        if run["peak_hwm_gib"] > args.limit_gib:
            ok = False
            print("  FAIL: peak RSS over the limit")
        if not run["killed"] and run["computed"] != run["tiles_total"]:
            ok = False
            print(f"  FAIL: computed {run['computed']} of {run['tiles_total']} tiles")
        if not args.keep:
            shutil.rmtree(work / "store.zarr", ignore_errors=True)
        if not args.no_resume:
            ok &= _resume(image, work, args, run["tiles_total"] or 1, report)
    finally:
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("\nOK" if ok else "\nFAILED")
    return 0 if ok else 1


def _resume(image: Path, work: Path, args, total: int, report: dict) -> bool:
    store = work / "resume.zarr"
    kill_at = args.kill_after or max(1, min(200, total // 3))
    first = run_embed(image, store, args, kill_at=kill_at)
    before = first["records"]
    again = run_embed(image, store, args)
    x, y, z = again["computed"], again["reused"], again["total"]
    ok = x is not None and x + y == z == total and y >= before
    report["resume"] = {"kill_at": kill_at, "records_before": before, "killed_run": first,
                        "rerun": again, "ok": ok}  # fmt: skip
    print(f"\nresume: SIGKILL after {kill_at} records ({first['wall_s']} s, "
          f"{before} records on disk), rerun: computed {x}, reused {y} of {z} "
          f"({again['wall_s']} s, peak RSS {again['peak_hwm_gib']:.3f} GiB)")  # fmt: skip
    print(f"  {'ok' if ok else 'FAIL'}: computed + reused == total ({total}) and reused >= "
          f"records before the kill")  # fmt: skip
    return ok


def _cpu() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    name = re.search(r"model name\s*:\s*(.*)", info)
    avx = "avx512" if "avx512f" in info else "no avx512"
    return f"{name.group(1) if name else 'unknown'}, {os.cpu_count()} cores, {avx}"


if __name__ == "__main__":
    sys.exit(main())
