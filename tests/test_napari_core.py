"""The plugin's GUI-free parts: manifest, import hygiene, layer geometry, prompt grouping."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_sam._napari._session import Geometry, propagation_prompts, split_prompts

SRC = Path(__file__).parents[1] / "src" / "napari_sam"
GUI_IMPORT = re.compile(
    r"^\s*(from|import)\s+(napari|qtpy|magicgui|vispy|PyQt\d|PySide\d)(\.|\s|$)", re.M
)


def test_manifest_is_valid_and_points_into_the_plugin_package():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManifest.from_distribution("napari-sam")
    assert pm.name == "napari-sam"
    names = {c.id: c.python_name for c in pm.contributions.commands}
    assert all(p.startswith("napari_sam._napari.") for p in names.values())
    assert [w.display_name for w in pm.contributions.widgets] == ["Segment Anything"]
    assert [s.key for s in pm.contributions.sample_data] == ["nuclei_stack"]
    for required in ("commit", "propagate", "embed_stack", "cycle_mask", "clear_prompts"):
        assert f"napari-sam.{required}" in names


def test_core_never_imports_napari_or_qt():
    code = (
        "import sys, napari_sam, napari_sam._napari._session, napari_sam.stacks; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'vispy')]; "
        "print(bad); sys.exit(bool(bad))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    for path in SRC.rglob("*.py"):
        if "_napari" in path.parts:
            continue
        hit = GUI_IMPORT.search(path.read_text())
        assert hit is None, f"{path} imports {hit.group(0).strip()!r}"


def test_geometry_of_layers():
    g = Geometry((2, 12, 64, 48), channel_axis=0)
    assert (g.axes, g.label_shape, g.n_channels, g.n_slice_dims) == ("CZYX", (12, 64, 48), 2, 1)
    assert Geometry((5, 3, 32, 32)).axes == "TZYX"
    assert Geometry((32, 32, 3), rgb=True).axes == "YXS"
    with pytest.raises(ValueError, match="spatial"):
        Geometry((10,))
    with pytest.raises(ValueError, match="spatial"):
        Geometry((3, 10), channel_axis=0)
    with pytest.raises(ValueError, match="first axis"):
        Geometry((12, 2, 32, 32), channel_axis=1)


def test_split_prompts_one_object_per_box_and_drops_outside_points():
    pts = np.array([[10, 10], [50, 50], [52, 55], [500, 3]])  # (row, col)
    pos = np.array([True, True, False, True])
    box = np.array([[40, 40], [40, 60], [60, 60], [60, 40]])
    objs, dropped = split_prompts(pts, pos, [box], (64, 64))
    assert dropped == 1 and len(objs) == 2
    np.testing.assert_array_equal(objs[0].box, [40, 40, 60, 60])
    np.testing.assert_array_equal(objs[0].points, [[50, 50], [55, 52]])  # (x, y)
    np.testing.assert_array_equal(objs[0].labels, [1, 0])
    np.testing.assert_array_equal(objs[1].points, [[10, 10]])
    assert split_prompts(pts[2:3], pos[2:3], [], (64, 64))[0] == []  # only negative: nothing


def test_propagation_prompts_from_a_mask():
    mask = np.zeros((40, 40), bool)
    mask[10:20, 5:25] = True
    p = propagation_prompts(mask)
    np.testing.assert_array_equal(p.box, [5, 10, 24, 19])
    x, y = p.points[0]
    assert mask[int(y), int(x)] and p.labels.tolist() == [1.0]


def _oracle_session(truth, nid, beyond=None):
    """A Session whose predictor returns the true mask of ``nid`` (``beyond`` past its end)."""
    from types import SimpleNamespace

    from napari_sam._napari._session import Prediction, Session

    session = Session.__new__(Session)
    session.sp = SimpleNamespace(view=SimpleNamespace(stack_shape=truth.shape[:1]))
    calls = []

    def predict(index, obj, multimask=True):
        calls.append((index, obj))
        m = truth[index[0]] == nid
        if not m.any() and beyond is not None:
            m = beyond
        return Prediction(m[None], np.ones(1), np.zeros((1, 4, 4)))

    session.predict = predict
    return session, calls


def test_propagation_follows_the_object_and_stops_where_it_ends():
    from napari_sam.train.synthetic import make_sample_stack

    _, truth = make_sample_stack(0)
    nid = int(np.bincount(truth[5].ravel())[1:].argmax() + 1)
    zs = np.flatnonzero((truth == nid).any(axis=(1, 2)))
    session, calls = _oracle_session(truth, nid)
    got = sorted(i[0] for i, _ in session.propagate((5,), truth[5] == nid, stop_iou=0.0))
    assert got == [z for z in zs if z != 5]
    assert all(obj.box is not None and obj.points is not None for _, obj in calls)
    other = truth[5] == truth[5][truth[5] != nid].max()  # SAM jumping to another object
    session, _ = _oracle_session(truth, nid, beyond=other)
    got = sorted(i[0] for i, _ in session.propagate((5,), truth[5] == nid, stop_iou=0.3))
    assert got[0] >= zs.min() - 1 and got[-1] <= zs.max() + 1
    assert not set(got) - set(zs)  # the jump has IoU 0 with the previous slice: stopped
    got = [i for i, _ in session.propagate((5,), truth[5] == nid, limits=(5, 6))]
    assert got == [(6,)]
    assert list(session.propagate((5,), truth[5] == nid, cancel=lambda: True)) == []
