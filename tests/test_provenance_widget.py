"""[provenance] 1-3 without a display: the widget's annotator records each committed object
(click, box, refine, the candidate kept), the record follows undo, and ``napari-sam segment``
replays the sidecar to the same labels, bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from test_cli_embed import run_main

pytest.importorskip("napari")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    from napari_sam._napari._session import Geometry
    from napari_sam._napari.annotator import Annotator, SessionSpec
    from napari_sam.stacks.channels import ChannelSpec
    from napari_sam.train.synthetic import make_nuclei_2d

    d = tmp_path_factory.mktemp("record")
    pairs = [make_nuclei_2d((256, 256), seed=s) for s in (11, 12)]
    shifted = [np.roll(p, 1, axis=1) for p in pairs[0]]  # slice 1: slice 0 moved by a pixel
    data = np.stack([pairs[0][0], shifted[0], pairs[1][0]])
    truth = np.stack([pairs[0][1], shifted[1], pairs[1][1]])
    tifffile.imwrite(d / "stack.tif", data, metadata={"axes": "ZYX"})
    annot = Annotator()
    spec = SessionSpec(data, Geometry(data.shape), ChannelSpec("single", (0,)).resolve(1))
    return d, data, truth, annot, annot.open_session(spec)


def _centre(truth, label):
    from napari_sam.masks import object_centre

    return np.array([object_centre(truth == label)], np.float64)


def _box(truth, label):
    ys, xs = np.nonzero(truth == label)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)


def _replay(d, side, out, capsys, *extra):
    code, _, err = run_main(capsys, "segment", d / "stack.tif", "--prompts", side, "--out", out,
                            "--model", "sam_tiny_nuclei", *extra)  # fmt: skip
    assert code == 0, err
    return tifffile.imread(out)


@pytest.mark.parametrize("undo", [False, True])
def test_click_box_refine_undo_replays_exactly(made, tmp_path, capsys, undo):
    from napari_sam._napari._jobs import made_by
    from napari_sam._napari._session import ObjectPrompt
    from napari_sam.io.prompt_log import PromptLog
    from napari_sam.io.provenance import write_sidecar

    d, data, truth, annot, session = made
    labels, log = np.zeros(data.shape, np.int32), PromptLog()
    ids = [int(i) for i in np.unique(truth[0]) if i][:3]
    one = ObjectPrompt(_centre(truth[0], ids[0]), np.ones(1))
    annot.predict(session, (0,), [one])
    annot.commit(labels, log=log)  # 1: a click
    annot.predict(session, (0,), [ObjectPrompt(box=_box(truth[0], ids[1]))])
    annot.commit(labels, overwrite=True, log=log)  # 2: a box, over other labels
    annot.predict(session, (2,), [ObjectPrompt(_centre(truth[2], 1), np.ones(1))])
    best = annot.predictions[0].choice
    kept = annot.cycle_masks()[0].choice  # another candidate than the best
    assert kept != best
    annot.commit(labels, log=log)  # 3: on slice 2
    before = labels.copy()
    assert annot.refine(labels, (0,), 1)
    y, x = np.argwhere(truth[0] == ids[2])[0]  # a second nucleus added to object 1
    annot.predict(session, (0,), [ObjectPrompt(np.array([[x, y]], float), np.ones(1))], labels)
    annot.commit(labels, log=log)  # 4: refine
    assert not np.array_equal(labels, before)
    if not undo:  # object 2 followed onto slice 1 (over what is there), not onto slice 2
        from napari_sam._napari._session import Geometry

        done = list(annot.propagate(session, labels, (0,), 2, Geometry(data.shape),
                                    overwrite=True, log=log))  # fmt: skip
        assert [d[0] for d in done] == [(1,)], [d[0] for d in done]
    if undo:  # napari's Ctrl-Z: the labels go back, the log is not told
        labels[...] = before
    objects = log.objects(labels)
    steps = [(o["step"], o["id"], o.get("refine", False)) for o in objects]
    assert steps == [(1, 1, False), (2, 2, False), (3, 3, False)] + ([] if undo else
                                                                     [(4, 1, True), (5, 2, False)])
    assert undo or objects[-1]["propagate"] == {"from": [0], "axis": 0, "stop_iou": 0.5,
                                                "limits": None}
    assert objects[2]["choice"] == kept and objects[2]["multimask"] is True
    assert objects[1]["overwrite"] is True and "points" not in objects[1]
    side = write_sidecar(tmp_path / "l.prompts.json", made_by(session, "sam_tiny_nuclei"),
                         objects)  # fmt: skip
    got = _replay(d, side, tmp_path / "replayed.tif", capsys)
    np.testing.assert_array_equal(got, labels)
    again = json.loads((tmp_path / "replayed.prompts.json").read_text())["objects"]
    assert [(o["step"], o["id"]) for o in again] == [s[:2] for s in steps]
    if undo:  # objects the record does not have (propagated, painted): said, not hidden
        made = {**made_by(session, "sam_tiny_nuclei"), "unrecorded": [[1, 7], [1, 8]]}
        auto = {"object": "9", "slice": [1], "step": 4, "id": 9, "overwrite": False,
                "everything": {"method": "ais", "min_size": 25}}
        side = write_sidecar(tmp_path / "more.prompts.json", made, [*objects, auto])
        code, _, err = run_main(capsys, "segment", d / "stack.tif", "--prompts", side, "--out",
                                tmp_path / "more.tif", "--model", "sam_tiny_nuclei")  # fmt: skip
        assert code == 0 and any("2 object(s)" in e and "[1, 7]" in e for e in err), err
        assert any("1 object(s) of the record were made by Segment everything without its "
                   "'axis'" in e for e in err), err  # fmt: skip
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "more.tif"), labels)


def test_segment_everything_replays_exactly_even_after_an_object_is_erased(made, tmp_path,
                                                                          capsys):  # fmt: skip
    """A click, then Segment everything over the stack (linked slice to slice, slivers around
    the click left out) as the widget does it, then an object erased on one slice: the replay
    of the record gives the same labels, bit for bit."""
    from napari_sam._napari._everything import segment_slices, segmenter_for
    from napari_sam._napari._jobs import made_by
    from napari_sam._napari._session import ObjectPrompt
    from napari_sam.io.prompt_log import PromptLog
    from napari_sam.io.provenance import write_sidecar
    from napari_sam.segment.instances import min_object_area, write_instances

    d, data, truth, annot, session = made
    labels, log = np.zeros(data.shape, np.int32), PromptLog()
    first = [int(i) for i in np.unique(truth[0]) if i][0]
    annot.predict(session, (0,), [ObjectPrompt(_centre(truth[0], first), np.ones(1))])
    annot.commit(labels, log=log)  # 1: a click
    min_area = min_object_area("sam_tiny_nuclei")
    how = {**segmenter_for(session.sp).describe(), "axis": 0, "min_area": min_area}
    step = log.next_step
    for item in segment_slices(session, [(0,), (1,), (2,)]):  # 2: Segment everything
        if item[0] == "progress":
            continue
        index, instances = item
        got = write_instances(labels, index, instances, False, axis=0, min_area=min_area)
        log.prune(labels, [index])
        log.add(labels, index, [{"id": i, "overwrite": False, "everything": how} for i in got],
                step)  # fmt: skip
    linked = sorted(set(np.unique(labels[0])) & set(np.unique(labels[1])) - {0, 1})
    assert len(linked) > 3 and len(np.unique(labels[2])) > 3  # slice 1 follows slice 0
    labels[0][labels[0] == linked[0]] = 0  # erased on slice 0 only, after slice 1 linked to it
    objects = log.objects(labels)
    assert sum("everything" in o for o in objects) == sum(len(np.unique(p)) - 1 for p in labels) - 1
    side = write_sidecar(tmp_path / "e.prompts.json", made_by(session, "sam_tiny_nuclei"),
                         objects)  # fmt: skip
    np.testing.assert_array_equal(_replay(d, side, tmp_path / "e.tif", capsys), labels)
    bad = json.loads(side.read_text())
    for o in bad["objects"]:
        if "everything" in o:
            o["everything"]["min_size"] = 1234
    (tmp_path / "bad.prompts.json").write_text(json.dumps(bad))
    code, _, err = run_main(capsys, "segment", d / "stack.tif", "--prompts",
                            tmp_path / "bad.prompts.json", "--out", tmp_path / "bad.tif",
                            "--model", "sam_tiny_nuclei")  # fmt: skip
    assert code != 0 and "made by Segment everything with" in err[-1], err
    assert not (tmp_path / "bad.tif").exists()


def test_the_log_keeps_hand_edits_marked_and_drops_erased_objects(made):
    from napari_sam.io.prompt_log import PromptLog

    labels = np.zeros((2, 8, 8), np.int32)
    log = PromptLog()
    labels[0, 1:3, 1:3] = 1
    log.add(labels, (0,), [{"id": 1, "points": [[1.5, 1.5]], "labels": [1]}])
    labels[0, 5:7, 5:7] = 2
    log.add(labels, (0,), [{"id": 2, "box": [5, 5, 6, 6]}])
    labels[0, 1, 1] = 0  # painted by hand
    labels[0][labels[0] == 2] = 0  # erased
    objects = log.objects(labels)
    assert [(o["id"], o.get("edited")) for o in objects] == [(1, True)]
    assert "digests" not in objects[0] and log.next_step == 2
