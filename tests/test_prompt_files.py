"""Prompt files: the CSV napari writes for the plugin's Points layer (``positive`` column)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from napari_sam.io.prompt_files import PromptFileError, read_prompts
from napari_sam.stacks import StackView


def test_positive_column_of_the_plugins_points_layer(tmp_path):
    view = StackView(np.zeros((3, 20, 30), np.uint8), "ZYX")
    csv = tmp_path / "p.csv"
    csv.write_text(
        "index,axis-0,axis-1,axis-2,positive\n0,1.0,5.0,7.0,True\n1,1.0,9.0,12.0,False\n"
    )
    (obj,) = read_prompts(csv, view)
    pts, labels, box = obj.arrays()
    np.testing.assert_array_equal(pts, [[7.0, 5.0], [12.0, 9.0]])  # x, y
    np.testing.assert_array_equal(labels, [1.0, 0.0])
    assert box is None
    csv.write_text("index,axis-0,axis-1,axis-2,positive\n0,1.0,5.0,7.0,maybe\n")
    with pytest.raises(PromptFileError, match="line 2: positive 'maybe' must be True or False"):
        read_prompts(csv, view)


def _json_error(tmp_path, view, entries):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(PromptFileError) as info:
        read_prompts(path, view)
    return str(info.value)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"points": 5}, r"object 0: 'points' must be a list of \[x, y\]"),
        ({"points": "12"}, r"object 0: 'points' must be a list of \[x, y\]"),
        ({"points": {"x": 1, "y": 2}}, r"object 0: 'points' must be a list of \[x, y\]"),
        ({"points": [1, 2]}, r"'points' must be a list of \[x, y\] points; a point is 1"),
        ({"points": [[1, 2, 3]]}, r"a point is \[1, 2, 3\]"),
        ({"points": [["a", 2]]}, r"point coordinate 'a' is not a number"),
        ({"points": [[1, None]]}, r"point coordinate None is not a number"),
        ({"points": [[1, 2]], "labels": 5}, r"object 0: 'labels' must be a list"),
        ({"points": [[1, 2]], "labels": "1"}, r"'labels' must be a list"),
        ({"points": [[1, 2]], "labels": {"0": 1}}, r"'labels' must be a list"),
        ({"points": [[1, 2]], "labels": [1, 0]}, r"one value per point, got 2 for 1"),
        ({"points": [[1, 2]], "labels": [5]}, r"label 5 must be 1 \(foreground\) or 0"),
        ({"points": [[1, 2]], "labels": [[1]]}, r"label \[1\] must be 1"),
        ({"points": [[1, 2]], "labels": [None]}, r"label None must be 1"),
        ({"box": 5}, r"'box' must be \[x0, y0, x1, y1\], got 5"),
        ({"box": "1,2,3,4"}, r"'box' must be \[x0, y0, x1, y1\]"),
        ({"box": {"x0": 1}}, r"'box' must be \[x0, y0, x1, y1\]"),
        ({"box": [1, 2, 3, [4]]}, r"box \[4\] is not a number"),
        ({"box": [9, 2, 3, 4]}, r"box .* must have x0 <= x1"),
        ({"box": [1, 2, 3, 4], "slice": {"z": 1}}, r"'slice' must be a slice number"),
        ({"box": [1, 2, 3, 4], "slice": "two"}, r"slice coordinate 'two' is not a number"),
        ({"box": [1, 2, 3, 4], "slice": [[1]]}, r"'slice' must be a slice number"),
        ({"box": [1, 2, 3, 4], "slice": True}, r"'slice' must be a slice number"),
        ({"box": [1, 2, 3, 4], "slice": 7}, r"slice Z=7 is outside the stack"),
        ({"box": [1, 2, 3, 4], "object": {"a": 1}}, r"'object' must be a name or a number"),
        ({"box": [1, 2, 3, 4], "object": [1]}, r"'object' must be a name or a number"),
        ({"points": [], "box": None}, r"no point .* and no 'box'"),
        ({"points": [[1, 2]], "label": [0]}, r"unknown key\(s\) 'label'; expected"),
        ([1, 2], r"object 0: expected \{'points'"),
    ],
)
def test_malformed_json_entries_are_named(tmp_path, entry, match):
    view = StackView(np.zeros((3, 20, 30), np.uint8), "ZYX")
    good = {"slice": 0, "points": [[3, 4]]}
    # the bad entry is the second one: the message names the file and entry 1
    message = _json_error(tmp_path, view, [good, entry])
    assert message.startswith("p.json object 1: ")
    assert re.search(match.replace("object 0", "object 1"), message), message


def test_well_formed_json_still_reads(tmp_path):
    view = StackView(np.zeros((3, 20, 30), np.uint8), "ZYX")
    path = tmp_path / "p.json"
    entries = [
        {"slice": 1, "points": [[3, 4], [5.5, 6]], "labels": [1, 0], "object": 7},
        {"slice": [2], "box": [1, 2, 3, 4], "object": "7"},  # same object on another slice
        {"slice": "0", "box": [1, 2, 3, 4], "points": None},
    ]
    path.write_text(json.dumps({"objects": entries}))
    a, b, c = read_prompts(path, view)
    assert (a.key, a.slice, a.labels, a.box) == ("7", (1,), [1.0, 0.0], None)
    assert (b.key, b.slice, b.points, b.box) == ("7", (2,), [], [1.0, 2.0, 3.0, 4.0])
    assert c.slice == (0,) and c.points == []


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"step": 0, "id": 1, "points": [[1, 2]]}, r"'step' must be a whole number >= 1, got 0"),
        ({"step": "2", "id": 1, "points": [[1, 2]]}, r"'step' must be a whole number >= 1"),
        ({"step": 2, "points": [[1, 2]]}, r"a recorded object needs its label 'id'"),
        ({"step": 2, "id": True, "points": [[1, 2]]}, r"'id' must be a whole number >= 1"),
        ({"step": 2, "id": 1, "choice": -1, "points": [[1, 2]]}, r"'choice' must be .* >= 0"),
        ({"step": 2, "id": 1, "overwrite": "no", "box": [1, 2, 3, 4]},
         r"'overwrite' must be true or false, got 'no'"),
        ({"step": 2, "id": 1, "refine": 1}, r"'refine' must be true or false"),
        ({"id": 1, "refine": True}, r"'refine' needs the 'step'"),
        ({"step": 2, "id": 1, "propagate": {"from": [0], "axis": "z", "stop_iou": 0.5}},
         r"'propagate' must be \{'from': \[slice\], 'axis': n"),
        ({"slice": 0, "points": [[1, 2]]}, r"either every object has its 'step'"),
    ],
)
def test_a_malformed_widget_record_is_named(tmp_path, entry, match):
    """[provenance]: a bad sidecar of the widget's record is one line naming file and entry."""
    view = StackView(np.zeros((3, 20, 30), np.uint8), "ZYX")
    good = {"slice": 0, "points": [[3, 4]], "step": 1, "id": 1, "object": "1"}
    message = _json_error(tmp_path, view, [good, {"slice": 0, **entry}])
    assert message.startswith("p.json"), message
    assert re.search(match, message), message


def test_a_widget_record_keeps_each_entry_apart(tmp_path):
    view = StackView(np.zeros((3, 20, 30), np.uint8), "ZYX")
    path = tmp_path / "p.json"
    entries = [
        {"object": "1", "slice": [0], "step": 1, "id": 1, "points": [[3, 4]], "labels": [1],
         "multimask": True, "choice": 2, "overwrite": False},
        {"object": "1", "slice": [0], "step": 2, "id": 1, "refine": True, "edited": True},
    ]
    path.write_text(json.dumps({"made_by": {}, "objects": entries}))
    a, b = read_prompts(path, view)
    assert (a.step, a.label_id, a.multimask, a.choice, a.overwrite, a.refine) == (
        1, 1, True, 2, False, False)  # fmt: skip
    assert (b.step, b.refine, b.points, b.box, b.overwrite) == (2, True, [], None, True)
