"""The plugin's GUI-free parts: manifest, import hygiene, layer geometry, prompt grouping."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_sam._napari._session import Geometry, Session, propagation_prompts, split_prompts

SRC = Path(__file__).parents[1] / "src" / "napari_sam"
GUI_IMPORT = re.compile(
    r"^\s*(from|import)\s+(napari|qtpy|magicgui|vispy|PyQt\d|PySide\d)(\.|\s|$)", re.M
)


def test_manifest_is_valid_and_points_into_the_plugin_package():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManifest.from_distribution("napari-sam-tf")
    assert pm.name == "napari-sam-tf"
    names = {c.id: c.python_name for c in pm.contributions.commands}
    assert all(p.startswith("napari_sam._napari.") for p in names.values())
    assert [w.display_name for w in pm.contributions.widgets] == ["Segment Anything"]
    assert [s.key for s in pm.contributions.sample_data] == ["nuclei_stack"]
    for required in ("commit", "propagate", "embed_stack", "cycle_mask", "clear_prompts"):
        assert f"napari-sam-tf.{required}" in names


def test_core_never_imports_napari_or_qt():
    code = (
        "import sys, napari_sam, napari_sam._napari._session, napari_sam._napari.annotator, "
        "napari_sam.stacks; "
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


# ---------------------------------------------------------------------- the Qt-free annotator
class _FakeSession:
    """A session whose predictor returns the masks of ``truth`` at the prompted pixel."""

    tiled = False

    def __init__(self, truth):
        from test_propagation import OraclePredictor

        self.truth, self.embedded = truth, []
        self.sp = OraclePredictor(truth)

    def embed(self, index):
        self.embedded.append(tuple(index))

    def has_embedding(self, index):
        return tuple(index) in self.embedded

    def predict(self, index, obj, multimask=True):
        from napari_sam._napari._session import Prediction

        plane = self.truth[tuple(index)]
        x, y = (obj.points[0] if obj.points is not None else obj.box[:2] + 1).astype(int)
        m = plane == plane[y, x]
        masks = np.stack([m, np.zeros_like(m), m]) if multimask else m[None]
        return Prediction(masks, np.linspace(0.9, 0.5, len(masks)), np.zeros((len(masks), 4, 4)))

    def mask_prompt(self, index, mask, label, points=None, labels=None):
        return propagation_prompts(mask)

    propagate = Session.propagate


def _truth():
    truth = np.zeros((5, 32, 32), np.int32)
    truth[:, 4:12, 4:12] = 1  # an object through every slice
    truth[1:4, 20:28, 18:30] = 2  # one on slices 1..3
    return truth


def _point(x, y):
    from napari_sam._napari._session import ObjectPrompt

    return ObjectPrompt(np.array([[x, y]], np.float32), np.ones(1, np.float32))


def test_annotator_commit_gives_new_ids_and_writes_only_the_masks():
    from napari_sam._napari.annotator import Annotator

    truth = _truth()
    annot, session = Annotator(), _FakeSession(truth)
    labels = np.zeros(truth.shape, np.int32)
    labels[2, 0:2, 0:2] = 5  # an existing label
    labels[2, 4, 4] = 5  # inside the first object: kept (no overwrite)
    before = labels.copy()
    preds = annot.predict(session, (2,), [_point(8, 8), _point(24, 24)])
    assert len(preds) == 2 and annot.preview_index == (2,) and annot.predictions == preds
    assert annot.scores_text() == "0.90 (1/3), 0.90 (1/3)"
    preview = np.zeros_like(labels)
    annot.render_preview(preview)
    assert set(np.unique(preview[2])) == {0, 1, 2} and not preview[[0, 1, 3, 4]].any()
    done = annot.commit(labels)
    assert done.ids == [6, 7] and done.index == (2,) and annot.last_committed == ((2,), [6, 7])
    changed = labels != before
    assert not changed[[0, 1, 3, 4]].any()  # only the previewed slice
    np.testing.assert_array_equal(
        changed[2], ((truth[2] == 1) | (truth[2] == 2)) & (before[2] == 0)
    )
    assert labels[2, 4, 4] == 5 and done.pixels == changed.sum()
    assert annot.predictions == [] and annot.commit(labels) is None  # preview cleared
    annot.predict(session, (2,), [_point(8, 8)])
    annot.commit(labels, overwrite=True)
    assert labels[2, 4, 4] == 8  # overwrite
    annot.predict(session, (2,), [_point(8, 8)])
    full = np.full(truth.shape, 255, np.uint8)
    with pytest.raises(ValueError, match="does not fit"):  # id 256 in uint8 labels
        annot.commit(full)
    assert (full == 255).all() and annot.predictions


def test_annotator_cycle_refine_keeps_the_id_and_polarity_state():
    from napari_sam._napari.annotator import Annotator

    truth = _truth()
    annot, session = Annotator(), _FakeSession(truth)
    assert annot.positive_mode and annot.refine_id is None
    labels = np.zeros(truth.shape, np.int32)
    labels[3, 20:24, 18:22] = 4  # a rough label 4 of object 2
    annot.predict(session, (3,), [_point(8, 8)])
    assert annot.cycle_masks()[0].choice == 1 and not annot.predictions[0].mask.any()
    assert annot.cycle_masks()[0].choice == 2
    assert not annot.refine(labels, (3,), 9)  # not on the slice
    assert annot.refine(labels, (3,), 4) and annot.refining((3,)) and not annot.refining((2,))
    annot.predict(session, (3,), [], labels)  # the label itself is the prompt
    done = annot.commit(labels)
    assert done.ids == [4] and annot.refine_id is None
    np.testing.assert_array_equal(labels[3] == 4, truth[3] == 2)  # replaced, same id
    assert labels.max() == 4


def test_annotator_propagation_yields_slices_and_embedding_counts():
    from napari_sam._napari._session import Geometry
    from napari_sam._napari.annotator import Annotator

    truth = _truth()
    annot, session = Annotator(), _FakeSession(truth)
    geo = Geometry(truth.shape)
    labels = np.where(truth == 2, 3, 0).astype(np.int32) * (np.arange(5) == 2)[:, None, None]
    got = list(annot.propagate(session, labels, (2,), 3, geo, stop_iou=0.5))
    assert sorted(i for i, _, _ in got) == [(1,), (3,)]  # object 2 lives on slices 1..3
    assert annot.propagated == [(3,), (1,)]
    np.testing.assert_array_equal(labels == 3, truth == 2)
    job = annot.start_propagation(labels, (2,), 3, geo, axis=5, limits=(2, 3))
    assert job.axis == 0 and [i for i, _, _ in job.run(session)] == [(3,)]
    with pytest.raises(ValueError, match="not on this slice"):
        next(annot.propagate(session, labels, (0,), 3, geo))
    with pytest.raises(ValueError, match="no slice axis"):
        annot.start_propagation(labels[0], (), 3, Geometry((32, 32)))
    steps = annot.embed(session, [(0,), (1,), (2,)], cancel=lambda: len(session.embedded) >= 2)
    assert list(steps) == [1, 2] and session.embedded == [(0,), (1,)]


def test_annotator_sessions_are_made_by_plain_functions_and_adopted():
    """The worker's function makes the model and session; only ``adopt`` changes state."""
    from napari_sam._napari._tf import ensure_tensorflow

    ensure_tensorflow()
    from napari_sam._napari._jobs import embed_one, with_session
    from napari_sam._napari._session import Geometry
    from napari_sam._napari.annotator import Annotator, Built, SessionSpec
    from napari_sam.stacks.channels import ChannelSpec
    from napari_sam.weights import create_model

    from small_configs import TINY

    data = np.random.default_rng(0).integers(0, 255, (3, 40, 48)).astype(np.uint8)
    geo = Geometry(data.shape)
    spec = SessionSpec(data, geo, ChannelSpec("single", (0,)).resolve(1))
    annot = Annotator(create_model("sam_vit_b", in_channels=3, **TINY))
    assert annot.session_for(spec) is None
    items = list(with_session(None, annot.builder(spec), lambda s: embed_one(s, (1,))))
    assert annot.session is None and len(items) == 1 and isinstance(items[0], Built)
    session = annot.adopt(items[0])
    assert annot.session_for(spec) is session and session.has_embedding((1,))
    assert annot.model is items[0].model and annot.open_session(spec) is session
    other = SessionSpec(data[:2], Geometry((2, 40, 48)), spec.channels)
    assert annot.open_session(other) is not session and annot.model is items[0].model
    labels = np.zeros(geo.label_shape, np.int32)
    preds = annot.predict(annot.session, (0,), [_point(20, 20)])
    assert preds[0].masks.shape == (3, 40, 48)
    done = annot.commit(labels)  # random weights may predict nothing
    assert (done is None and not labels.any()) or (done.ids == [1] and labels.max() == 1)


# ---------------------------------------------------------------------- tiled (large) images
def _interior_nucleus(truth, tiling):
    """The largest nucleus well inside one tile's inner region (id, mask)."""
    ids, counts = np.unique(truth[truth > 0], return_counts=True)
    for i in ids[np.argsort(-counts)]:
        ys, xs = np.nonzero(truth == i)
        y0, y1, x0, x1 = tiling.inner(tiling.tile_at(ys.mean(), xs.mean()))
        if ys.min() > y0 + 4 and ys.max() < y1 - 4 and xs.min() > x0 + 4 and xs.max() < x1 - 4:
            return int(i), truth == i
    raise AssertionError("no nucleus inside a tile")


def test_tiled_session_previews_commits_propagates_and_embeds_all_tiles():
    """A 2 x 512 x 512 stack with the shipped tiny model: tiled, windowed masks, no
    full-size candidates, commits within the window, propagation, "Embed stack"."""
    from napari_sam._napari._tf import ensure_tensorflow

    ensure_tensorflow()
    from napari_sam._napari._jobs import preview_job, with_session
    from napari_sam._napari._session import Geometry, ObjectPrompt
    from napari_sam._napari._tiles import embed_all_tiles, paint_tiles, plan_for, ready_plane
    from napari_sam._napari.annotator import Annotator, SessionSpec
    from napari_sam.masks import iou, object_centre
    from napari_sam.stacks.channels import ChannelSpec
    from napari_sam.train.synthetic import make_nuclei_2d
    from napari_sam.weights import create_model
    from napari_sam.weights.registry import TINY_NUCLEI_WEIGHTS

    if not TINY_NUCLEI_WEIGHTS.is_file():
        pytest.skip("needs the shipped sam_tiny_nuclei weights")
    image, truth = make_nuclei_2d((512, 512), seed=1)
    stack, geo = np.stack([image, image]), Geometry((2, 512, 512))
    spec = SessionSpec(stack, geo, ChannelSpec("single", (0,)).resolve(1))
    annot = Annotator(create_model("sam_tiny_nuclei", pretrained=True))
    _, mask = _interior_nucleus(truth, plan_for((512, 512), (256, 256)))
    x, y = object_centre(mask)
    point = ObjectPrompt(np.array([[x, y]], np.float32), np.ones(1, np.float32))
    # the worker's function, making the session first (as the widget does)
    gen = with_session(None, annot.builder(spec), lambda s: preview_job(s, (0,), [point]))
    session = annot.adopt(next(gen))  # made, and its graphs traced on tile 0
    assert session.tiled and len(session.tiling) == 9 and session.ready_tiles((0,)) == [0]
    with pytest.raises(StopIteration) as stop:
        next(gen)
    result = stop.value.value
    (pred,) = result.predictions
    y0, y1, x0, x1 = pred.window
    assert pred.masks.shape[-2:] == (y1 - y0, x1 - x0) and (y1 - y0) * (x1 - x0) < 512 * 256
    assert iou(pred.mask, mask[y0:y1, x0:x1]) >= 0.7 and not mask[:y0].any()
    assert session.tiling.tile_at(y, x) in session.ready_tiles((0,))
    assert result.tiles[session.tiling.tile_at(y, x)] and not all(result.tiles.values())
    plane = ready_plane(session.tiling, session.ready_tiles((0,)), 1)
    paint_tiles(plane, session.tiling, 1, result.tiles)  # the overlay: ready tiles are 1
    assert plane[int(y), int(x)] == 1 and 0 < plane.mean() < 1
    annot.set_preview(result.predictions, (0,))
    preview = np.zeros(geo.label_shape, np.int32)
    annot.render_preview(preview)
    plane, window = annot.render_window()
    assert window == pred.window and (plane > 0).sum() == (preview[0] > 0).sum() > 0
    labels = np.zeros(geo.label_shape, np.int32)
    done = annot.commit(labels)
    assert done.ids == [1] and iou(labels[0] == 1, mask) >= 0.7 and not labels[1].any()
    assert not labels[0, :y0].any() and not labels[0, y1:].any()  # the window only
    got = list(annot.propagate(session, labels, (0,), 1, geo))
    assert [i for i, _, _ in got] == [(1,)] and got[0][2] is not None
    assert iou(labels[1] == 1, labels[0] == 1) >= 0.9  # the same image: the same object
    items = list(embed_all_tiles(session, (0,), cancel=None))
    progress = [i for i in items if i[0] == "progress"]
    assert progress[-1][1:] == (18, 18) and items[-1][:2] == ("tiles", (0,))
    assert sorted(items[-1][2]) == list(range(9)) and all(items[-1][2].values())
    assert session.has_embedding((0,)) and session.has_embedding((1,))


def test_one_click_one_object_splits_positive_points_outside_boxes():
    pts = np.array([[10, 10], [30, 30], [50, 50], [20, 40]], float)  # (row, col)
    pos = np.array([True, True, True, False])
    box = [np.array([[45, 45], [45, 60], [60, 60], [60, 45]], float)]
    together, _ = split_prompts(pts, pos, box, (64, 64))
    assert len(together) == 2 and len(together[1].points) == 3  # box, then the rest together
    apart, _ = split_prompts(pts, pos, box, (64, 64), one_per_click=True)
    assert len(apart) == 3  # the box (with its point), then one object per positive click
    for obj in apart[1:]:
        assert obj.labels.tolist() == [1.0, 0.0] or obj.labels.tolist() == [0.0, 1.0]
    assert {tuple(o.points[o.labels == 1][0]) for o in apart[1:]} == {(10.0, 10.0), (30.0, 30.0)}


def test_object_diameter_brings_large_nuclei_to_the_models_size():
    """[tiny-v2]: with an object diameter the session tiles the slice so that objects reach
    the model at its preferred size (a new session when the diameter changes); a click on a
    nucleus twice the trained size then gives its mask at full resolution."""
    from napari_sam._napari._tf import ensure_tensorflow

    ensure_tensorflow()
    from napari_sam._napari._jobs import model_diameter
    from napari_sam._napari._session import Geometry, ObjectPrompt
    from napari_sam._napari._tiles import plan_for
    from napari_sam._napari.annotator import Annotator, SessionSpec
    from napari_sam.masks import iou, object_centre
    from napari_sam.stacks.channels import ChannelSpec
    from napari_sam.stacks.diameter import estimate_diameter
    from napari_sam.stacks.view import StackView
    from napari_sam.train.synthetic import make_nuclei_2d
    from napari_sam.weights.registry import TINY_NUCLEI_WEIGHTS

    if not TINY_NUCLEI_WEIGHTS.is_file():
        pytest.skip("needs the shipped sam_tiny_nuclei weights")
    assert model_diameter("sam_tiny_nuclei") == 28.0 and model_diameter("sam_vit_b") is None
    with pytest.raises(ValueError, match="^object diameter: this model records no preferred"):
        plan_for((256, 256), (1024, 1024), 40.0, None)
    image, truth = make_nuclei_2d((256, 256), seed=3, radius_range=(24.0, 32.0))
    d = estimate_diameter(StackView(image, "YX"))
    assert 40 < d < 70, d
    geo, channels = Geometry(image.shape), ChannelSpec("single", (0,)).resolve(1)
    annot = Annotator()
    native = annot.open_session(SessionSpec(image, geo, channels, model_name="sam_tiny_nuclei"))
    assert native.tiling is None  # 256 x 256: the model's input size
    spec = SessionSpec(image, geo, channels, model_name="sam_tiny_nuclei", diameter=d)
    session = annot.open_session(spec)
    assert session is not native and annot.session_for(spec) is session
    side = round(256 * d / 28.0)
    assert session.tiled and session.tiling.tile == (side, side)
    ids, counts = np.unique(truth[truth > 0], return_counts=True)
    mask = truth == ids[np.argmax(counts)]
    x, y = object_centre(mask)
    prompt = ObjectPrompt(np.array([[x, y]], np.float32), np.array([1], np.int32))
    (pred,) = annot.predict(session, (), [prompt])
    plane = np.zeros(image.shape, bool)
    y0, y1, x0, x1 = pred.window or (0, 256, 0, 256)
    plane[y0:y1, x0:x1] = pred.mask
    assert iou(plane, mask) >= 0.8


def test_the_widgets_sessions_draw_as_the_model_records_unless_sam_masks():
    """``SessionSpec.sam_masks`` (the widget's "SAM's masks as decoded"): a session of its
    own whose predictor keeps SAM's masks; by default the model's outline and its decoder's
    guide."""
    from napari_sam._napari._tf import ensure_tensorflow

    ensure_tensorflow()
    from napari_sam._napari._jobs import model_outline_of
    from napari_sam._napari.annotator import Annotator, SessionSpec
    from napari_sam.stacks.channels import ChannelSpec
    from napari_sam.train.synthetic import make_nuclei_2d

    image = make_nuclei_2d((128, 128), seed=5)[0]
    geo, channels = Geometry(image.shape), ChannelSpec("single", (0,)).resolve(1)
    annot = Annotator()
    drawn = annot.open_session(SessionSpec(image, geo, channels, model_name="sam_tiny_nuclei"))
    assert drawn.sp.outline is not None and drawn.sp.outline.instances
    assert drawn.sp.guide is not None
    spec = SessionSpec(image, geo, channels, model_name="sam_tiny_nuclei", sam_masks=True)
    raw = annot.open_session(spec)
    assert raw is not drawn and raw.sp.outline is None and raw.sp.guide is None
    assert model_outline_of("sam_tiny_nuclei") and not model_outline_of("sam_vit_b")
    assert not model_outline_of("no such model")
