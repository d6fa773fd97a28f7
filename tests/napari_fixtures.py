"""Fixtures of the napari plugin tests: a real X server (Xvfb) and a shown napari viewer.

Import the fixtures into a test module with ``from napari_fixtures import *``. When
``DISPLAY`` is unset (e.g. CI running plain ``pytest``), a private Xvfb is started for the
session; the tests skip, with the reason, only if no Xvfb can be started. Qt's offscreen
platform is never used: the acceptance criteria need a real event loop and GL canvas.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import numpy as np
import pytest

__all__ = ["ctrl_z", "idle", "messages", "nucleus", "only_layer", "open_sample", "records",
           "sam_widget", "tiny_random_model", "viewer", "wait_until", "xvfb_display"]  # fmt: skip


def _start_xvfb():
    exe = shutil.which("Xvfb")
    if exe is None:
        return None, "Xvfb is not installed (apt-get install xvfb)"
    read, write = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write)
    number = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        chunk = os.read(read, 16)
        if not chunk:
            break
        number += chunk
        if number.endswith(b"\n"):
            break
    os.close(read)
    if not number.strip():
        proc.kill()
        return None, "Xvfb did not start"
    return proc, f":{number.decode().strip()}"


@pytest.fixture(scope="session", autouse=True)
def xvfb_display():
    """The X display the tests use: ``$DISPLAY``, else a private Xvfb for the session."""
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        del os.environ["QT_QPA_PLATFORM"]
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    proc, display = _start_xvfb()
    if proc is None:
        pytest.skip(f"no X display for the napari tests: {display}")
    os.environ["DISPLAY"] = display
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    try:
        yield display
    finally:
        os.environ.pop("DISPLAY", None)
        proc.terminate()
        proc.wait(10)


def wait_until(qtbot, condition, timeout=60_000):
    """Process Qt events until ``condition()`` is true (fails after ``timeout`` ms)."""
    qtbot.waitUntil(lambda: bool(condition()), timeout=timeout)


@pytest.fixture
def viewer(xvfb_display, qtbot):
    """A shown napari viewer, closed after the test."""
    import napari

    v = napari.Viewer(show=True)
    yield v
    v.close()


_MODELS = {}


@pytest.fixture
def tiny_random_model(viewer):
    """``sam_tiny_nuclei``'s architecture with random weights (fast, for the wiring tests).

    Made after the viewer: TensorFlow must load after the OpenGL driver (see ``_tf``).
    """
    if "model" not in _MODELS:
        from napari_sam._napari._tf import ensure_tensorflow

        ensure_tensorflow()
        from napari_sam.model import SegmentAnythingModel
        from napari_sam.weights import model_config

        _MODELS["model"] = SegmentAnythingModel(model_config("sam_tiny_nuclei"))
    return _MODELS["model"]


@pytest.fixture
def sam_widget(viewer):
    """The Segment Anything widget, opened through the installed npe2 manifest."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam-tf", "Segment Anything")
    return widget


# ---------------------------------------------------------------------- helpers of the cases
def records():
    """napari's notifications so far."""
    from napari.utils.notifications import notification_manager

    return list(notification_manager.records)


def messages(since=0):
    """The texts of the notifications from number ``since`` on."""
    return [str(r.message) for r in records()[since:]]


def idle(qtbot, widget, timeout=120_000):
    """Process Qt events until the widget has no job or preview pending."""
    qtbot.wait(50)
    wait_until(qtbot, lambda: widget.idle, timeout)


def nucleus(labels, z=5, ends_inside=False):
    """The largest nucleus of slice ``z`` (of a 2-D image: the image) not touching the border.

    ``ends_inside``: one that starts or ends at least two slices inside the stack, so that
    propagation has a true end to find (not the end of the stack).
    """
    plane = labels if labels.ndim == 2 else labels[z]
    ids, counts = np.unique(plane[plane > 0], return_counts=True)
    for i in ids[np.argsort(-counts)]:
        m = plane == i
        if ends_inside:
            zs = np.flatnonzero((labels == i).any(axis=(1, 2)))
            if zs.min() < 2 and zs.max() > len(labels) - 3:
                continue
        if not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any()):
            return int(i), m
    raise AssertionError("no interior nucleus")


def ctrl_z(qtbot, viewer, layer):
    """Press Ctrl+Z on the canvas with ``layer`` active (napari's undo)."""
    from qtpy.QtCore import Qt

    viewer.layers.selection.active = layer
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_Z, Qt.ControlModifier)
    qtbot.wait(50)


def open_sample(viewer, widget, z):
    """Open the sample stack, set up the widget's layers and show slice ``z``."""
    viewer.open_sample("napari-sam-tf", "nuclei_stack")
    widget.image_box.setCurrentText("nuclei stack")
    points, boxes, preview, out = widget.setup_layers()
    viewer.dims.set_current_step(1, z)  # world axes: C, Z, Y, X
    return points, boxes, preview, out


def only_layer(viewer, image):
    """Remove every layer but ``image``."""
    for layer in [ly for ly in viewer.layers if ly is not image]:
        viewer.layers.remove(layer)
