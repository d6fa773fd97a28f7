"""napari on a large image: time from a click on a cold tile to its preview, and the Qt stall.

Opens a real viewer (run it under an X server, e.g.
``xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python bench/bench_napari_tiles.py``)
with a 16384 x 16384 uint16 image (synthetic nuclei: a 2048 x 2048 ``make_nuclei_2d`` image
repeated 8 x 8), the Segment Anything widget and the shipped ``sam_tiny_nuclei``. "Set up
layers" makes the session in the background (model, normalisation, tracing); then a point is
added on a nucleus of a tile that has no embedding yet, as a click does (the Points layer's
data event), and the script measures

* the time from the click to the preview (the widget's predictions drawn in the preview
  layer), and
* the longest gap of a 10 ms QTimer heartbeat meanwhile (the Qt event loop's longest stall),

for a first and a second cold tile and a warm one, then the commit, then "Embed stack" for
``--embed-seconds`` (tiles done, longest stall) and Cancel. ``--multiscale`` adds the image
as a three-level pyramid (dask levels) instead. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

SIDE, BLOCK = 16384, 2048


def cpu() -> str:
    """The CPU model name and whether it has AVX-512."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                 if ln.startswith("model name")), "unknown CPU")  # fmt: skip
    return f"{name}, {'with' if 'avx512' in info else 'without'} AVX-512"


def make_image(seed: int = 0):
    """The 16384 x 16384 image and the labels of its 2048 x 2048 block."""
    from napari_sam.train.synthetic import make_nuclei_2d

    block, truth = make_nuclei_2d((BLOCK, BLOCK), seed=seed)
    reps = SIDE // BLOCK
    return np.tile(block, (reps, reps)), truth


def nuclei_centres(truth, n: int = 3):
    """Centres (y, x) of the ``n`` largest nuclei of ``truth`` away from its border."""
    from napari_sam.masks import object_centre

    ids, counts = np.unique(truth[truth > 0], return_counts=True)
    out = []
    for i in ids[np.argsort(-counts)]:
        m = truth == i
        ys, xs = np.nonzero(m)
        if ys.min() > 300 and xs.min() > 300 and ys.max() < BLOCK - 300 and xs.max() < BLOCK - 300:
            x, y = object_centre(m)
            out.append((int(i), y, x))
        if len(out) == n:
            return out
    raise RuntimeError("not enough interior nuclei")


class Heartbeat:
    """A 10 ms QTimer recording when it fires."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.stamps: list[float] = []
        self.timer = QTimer(interval=10)
        self.timer.timeout.connect(lambda: self.stamps.append(time.perf_counter()))
        self.timer.start()

    def longest_gap(self, t0: float, t1: float) -> float:
        """The longest time without a beat between ``t0`` and ``t1``."""
        beats = [t for t in self.stamps if t0 <= t <= t1]
        return float(np.diff([t0, *beats, t1]).max())


def pump_until(app, condition, timeout: float = 300.0) -> float:
    """Process Qt events until ``condition()``; return the time it became true."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("the widget did not finish in time")
        app.processEvents()
        time.sleep(0.001)
    return time.perf_counter()


def click(app, widget, points, beat, y, x, label):
    """Add a point, wait for the preview; print and return the figures."""
    session = widget.session
    t = session.tiling.tile_at(y, x)
    cold = not session.sp.tile_ready((), t)
    widget.clear_prompts_at(())
    pump_until(app, lambda: widget.idle)
    t0 = time.perf_counter()
    points.add([y, x])
    t1 = pump_until(app, lambda: widget.predictions and widget.idle)
    t2 = t1 + 0.3
    pump_until(app, lambda: time.perf_counter() >= t2)  # and the repaint after it
    seconds, stall = t1 - t0, beat.longest_gap(t0, t2)
    kind = "cold" if cold else "warm"
    print(f"{label} ({kind} tile {t}): preview {seconds:.2f} s after the click, "
          f"longest event-loop stall {stall * 1000:.0f} ms, "
          f"predicted IoU {widget.predictions[0].score:.2f}")  # fmt: skip
    return seconds, stall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--multiscale", action="store_true", help="a 3-level pyramid layer")
    parser.add_argument("--embed-seconds", type=float, default=10.0,
                        help="run 'Embed stack' this long, then cancel it")  # fmt: skip
    args = parser.parse_args(argv)
    import napari
    from qtpy.QtWidgets import QApplication

    print(f"CPU: {cpu()}, {os.cpu_count()} cores; napari {napari.__version__}")
    print("load average at the start: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    image, truth = make_image()
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    if args.multiscale:
        import dask.array as da

        data = [da.from_array(image[::k, ::k], chunks=1024) for k in (1, 4, 16)]
        viewer.add_image(data, name="large", multiscale=True)
    else:
        viewer.add_image(image, name="large")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam", "Segment Anything")
    widget.image_box.setCurrentText("large")
    pump_until(app, lambda: True)
    t0 = time.perf_counter()
    points, _, preview, out = widget.setup_layers()
    t1 = time.perf_counter()
    pump_until(app, lambda: widget.idle and widget.session is not None)
    print(f"set up layers: {t1 - t0:.1f} s on the Qt thread; session made and traced in the "
          f"background in {time.perf_counter() - t1:.1f} s; {widget.session.tiling}")  # fmt: skip
    beat = Heartbeat()
    centres = nuclei_centres(truth)
    figures = []
    for k, label in enumerate(("first click", "second click")):
        _, y, x = centres[k]
        oy, ox = BLOCK * (3 + k), BLOCK * (5 - k)  # two blocks far from tile 0
        figures.append(click(app, widget, points, beat, oy + y, ox + x, label))
    _, y, x = centres[1]
    click(app, widget, points, beat, BLOCK * 4 + y, BLOCK * 4 + x + 1, "same tile again")
    m = widget.predictions[0]
    y0, y1, x0, x1 = m.window
    print(f"preview window {y1 - y0} x {x1 - x0} px; preview layer {preview.data.shape}")
    t0 = time.perf_counter()
    ids = widget.commit()
    t1 = time.perf_counter()
    pump_until(app, lambda: time.perf_counter() >= t1 + 0.3)
    written = int((out.data[y0:y1, x0:x1] == ids[0]).sum()) if ids else 0
    print(f"commit: {t1 - t0:.2f} s on the Qt thread, label {ids}, {written} px, "
          f"stall {beat.longest_gap(t0, t1 + 0.3) * 1000:.0f} ms")  # fmt: skip
    t0 = time.perf_counter()
    widget.embed_stack()  # "Embed stack": every tile, for --embed-seconds, then Cancel
    pump_until(app, lambda: time.perf_counter() >= t0 + args.embed_seconds)
    done = sum(widget.session.sp.tile_ready((), t) for t in range(len(widget.session.tiling)))
    t1 = time.perf_counter()
    widget.cancel()
    pump_until(app, lambda: widget.idle)
    print(f"embed stack: {done} tiles ready after {t1 - t0:.0f} s "
          f"({len(widget.session.tiling)} in all), cancelled in {time.perf_counter() - t1:.1f} s, "
          f"longest stall {beat.longest_gap(t0, time.perf_counter()) * 1000:.0f} ms")  # fmt: skip
    print("load average at the end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    (s1, g1), (s2, g2) = figures
    print(
        f"summary: first cold click {s1:.2f} s, stall {g1 * 1000:.0f} ms; second cold click "
        f"{s2:.2f} s, stall {g2 * 1000:.0f} ms"
    )
    viewer.close()


if __name__ == "__main__":
    main()
