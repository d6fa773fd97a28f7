"""``napari-sam segment`` and ``napari-sam auto``: subprocess runs, resume, and bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tifffile

from napari_sam.segment.automatic import AutomaticMaskGenerator
from napari_sam.segment.driver import segment_stack
from napari_sam.stacks.encoder import ModelEncoder
from napari_sam.stacks.stack_predictor import StackPredictor
from napari_sam.weights import create_model
from test_cli_embed import (
    SMALL,
    assert_labels_agree,
    cli,
    overrides,
    run_main,
    stack,
    write_weights,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    tifffile.imwrite(
        d / "stack.tif", stack(3), imagej=True, resolution=(2.0, 2.0),
        metadata={"axes": "ZYX", "unit": "um", "spacing": 0.5},
    )  # fmt: skip
    return d, write_weights(d / "small.npz", SMALL)


def model_args(weights):
    return ["--model", "sam_vit_b", "--weights", weights, *overrides(SMALL)]


def test_segment_napari_csv_same_as_stack_predictor(files, tmp_path, capsys, monkeypatch):
    d, weights = files
    csv = tmp_path / "points.csv"  # as napari saves a Points layer of a ZYX stack
    csv.write_text(
        "index,axis-0,axis-1,axis-2\n0,0.0,10.0,12.0\n1,0.0,20.0,30.0\n2,2.0,30.0,40.5\n"
    )
    out = tmp_path / "labels.tif"
    res = cli("segment", d / "stack.tif", "--prompts", csv, "--out", out, *model_args(weights))
    assert res.returncode == 0, res.stderr
    assert "wrote 1 label image(s)" in res.stdout
    with tifffile.TiffFile(out) as tif:
        got = tif.asarray()
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
        assert tif.imagej_metadata["spacing"] == 0.5 and tif.imagej_metadata["unit"] == "um"
        assert tif.pages[0].tags["XResolution"].value == (2, 1)
    assert got.dtype == np.uint16 and got.shape == (3, 48, 64)
    # the same prompts straight through StackPredictor
    model = create_model("sam_vit_b", pretrained=weights, **SMALL)
    sp = StackPredictor(model, d / "stack.tif")
    want = np.zeros((3, 48, 64), np.uint16)
    masks, _, _ = sp.predict(0, points=[[12.0, 10.0], [30.0, 20.0]], labels=[1, 1],
                             multimask_output=False)  # fmt: skip
    want[0][masks[0]] = 1
    masks, scores, _ = sp.predict(2, points=[[40.5, 30.0]], labels=[1])
    want[2][masks[np.argmax(scores)]] = 2
    assert want[0].any() and want[2].any()
    # the CLI ran in another process: its float rounding may differ (oneDNN's depends on the
    # batch shape and the CPU kind), which can flip a pixel at the threshold
    assert_labels_agree(got, want)
    # run again (in process: faster): the complete output is skipped
    argv = ["segment", d / "stack.tif", "--prompts", csv, "--out", out, *model_args(weights)]
    code, stdout, err = run_main(capsys, *argv)
    assert code == 0 and "wrote 0 label image(s), skipped 1 already done" in stdout, err
    # a store written by 'embed' is reused: nothing is encoded again
    store = tmp_path / "s.emb"
    code, stdout, err = run_main(capsys, "embed", d / "stack.tif", "--out", store,
                                 *model_args(weights))  # fmt: skip
    assert code == 0, err
    monkeypatch.setattr(ModelEncoder, "encode", lambda *a: pytest.fail("encoded again"))
    code, stdout, err = run_main(capsys, *argv, "--store", store, "--overwrite")
    assert code == 0 and "wrote 1 label image(s)" in stdout, err
    assert_labels_agree(tifffile.imread(out), want)  # another model's graphs, as above


def test_segment_json_boxes_objects_on_several_slices(files, tmp_path, capsys):
    d, weights = files
    prompts = tmp_path / "p.json"
    objects = [
        {"slice": 0, "box": [5, 6, 40, 30], "points": [[20, 15]], "object": "a"},
        {"slice": 1, "points": [[30, 20], [50, 40]], "labels": [1, 0]},
        {"slice": 1, "box": [10, 10, 60, 45], "object": "a"},
    ]
    prompts.write_text(json.dumps(objects))
    out = tmp_path / "l.tif"
    code, _, err = run_main(capsys, "segment", d / "stack.tif", "--prompts", prompts,
                            "--out", out, *model_args(weights))  # fmt: skip
    assert code == 0, err
    got = tifffile.imread(out)
    model = create_model("sam_vit_b", pretrained=weights, **SMALL)
    sp = StackPredictor(model, d / "stack.tif")
    want = np.zeros(got.shape, np.uint16)
    m, _, _ = sp.predict(0, points=[[[20, 15]]], labels=[[1]], boxes=[[[5, 6, 40, 30]]],
                         multimask_output=False)  # fmt: skip
    want[0][m[0, 0]] = 1
    m, _, _ = sp.predict(1, points=[[30, 20], [50, 40]], labels=[1, 0], multimask_output=False)
    want[1][m[0]] = 2
    m, _, _ = sp.predict(1, boxes=[[10, 10, 60, 45]], multimask_output=False)
    want[1][m[0, 0] if m.ndim == 4 else m[0]] = 1  # object "a" again, drawn last
    assert set(np.unique(want)) == {0, 1, 2}
    # the CLI may decode the objects of a slice in one batch, here one at a time: oneDNN's
    # rounding depends on the batch shape, so a pixel at the threshold may flip
    assert_labels_agree(got, want)


def test_auto_folder_of_stacks_and_resume(files, tmp_path, capsys):
    d, weights = files
    inp = tmp_path / "in"
    inp.mkdir()
    tifffile.imwrite(inp / "a.tif", stack(2, seed=1), metadata={"axes": "ZYX"})
    tifffile.imwrite(inp / "b.tif", stack(2, seed=2), metadata={"axes": "ZYX"})
    out = tmp_path / "labels"
    argv = ["auto", inp, "--out", out, *model_args(weights), "--points-per-side", "4",
            "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]  # fmt: skip
    res = cli(*argv)
    assert res.returncode == 0, res.stderr
    assert "wrote 2 label image(s), skipped 0" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == [  # each with its record (provenance)
        "a_labels.prompts.json", "a_labels.tif", "b_labels.prompts.json", "b_labels.tif"]
    got = tifffile.imread(out / "a_labels.tif")
    assert got.dtype == np.uint16 and got.shape == (2, 48, 64) and got.max() > 0
    model = create_model("sam_vit_b", pretrained=weights, **SMALL)
    sp = StackPredictor(model, inp / "a.tif")
    gen = AutomaticMaskGenerator(sp.predictor, points_per_side=4, pred_iou_thresh=0,
                                 stability_score_thresh=0)  # fmt: skip
    # another process (and batch shapes): to float rounding, see assert_labels_agree
    assert_labels_agree(got, segment_stack(sp, gen))
    (out / "b_labels.tif").unlink()  # as if interrupted before b was written
    code, stdout, err = run_main(capsys, *argv)  # in process: faster
    assert code == 0 and "wrote 1 label image(s), skipped 1" in stdout, err
    assert (out / "b_labels.tif").is_file() and not list(out.glob(".*tmp"))


BAD_ROW = "x,y,slice\n10,12,0\n20,oops,1\n"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", r"INPUT: '.*nope\.tif' does not exist"),
        ("glob", r"INPUT: no file matches '.*\*\.tif'"),
        ("tiff_axes", r"--axes: cannot tell what the axes \['Q'\]"),
        ("bad_row", r"--prompts: p\.csv line 3: y 'oops' is not a number"),
        ("columns", r"--prompts: p\.csv line 2: 2 values but 3 columns"),
        ("outside", r"--prompts: p\.csv line 2: point \(x=64, y=5\) is outside the 64x48"),
        ("slice", r"--prompts: p\.csv line 2: slice 7 is outside the stack \(3\)"),
        ("json", r"--prompts: p\.json line 1: invalid JSON"),
        ("no_prompts", r"--prompts: '.*none\.csv': no such file"),
        ("unwritable", r"--out: cannot write to '.*no_dir'"),
        ("out_is_file", r"--out: cannot create folder"),
        ("points", r"--points-per-side: expected a positive integer, got 0"),
        ("min_slices", r"--min-slices: expected a positive integer, got 0"),
    ],
)
def test_bad_input_one_line_exit_2(files, tmp_path, capsys, case, expected):
    d, weights = files
    inp, out, prompts = d / "stack.tif", tmp_path / "l.tif", tmp_path / "p.csv"
    cmd, extra = "segment", []
    prompts.write_text("x,y,slice\n10,12,0\n")
    if case == "missing":
        inp = tmp_path / "nope.tif"
    elif case == "glob":
        inp = tmp_path / "*.tif"
    elif case == "tiff_axes":
        inp = tmp_path / "q.tif"
        tifffile.imwrite(inp, stack(2))  # no axes metadata: tifffile reports QYX
    elif case == "bad_row":
        prompts.write_text(BAD_ROW)
    elif case == "columns":
        prompts.write_text("x,y,slice\n10,12\n")
    elif case == "outside":
        prompts.write_text("x,y,slice\n64,5,0\n")
    elif case == "slice":
        prompts.write_text("x,y,slice\n6,5,7\n")
    elif case == "json":
        prompts = tmp_path / "p.json"
        prompts.write_text("[{'points': [[1, 2]]}]")
    elif case == "no_prompts":
        prompts = tmp_path / "none.csv"
    elif case == "unwritable":
        out = tmp_path / "no_dir" / "l.tif"
    elif case == "out_is_file":
        cmd, inp, out = "auto", d / "*.tif", d / "stack.tif"  # several inputs need a folder
    elif case == "points":
        cmd, extra = "auto", ["--points-per-side", "0"]
    elif case == "min_slices":
        cmd, extra = "auto", ["--min-slices", "0"]
    argv = [cmd, inp, "--out", out, *model_args(weights), *extra]
    if cmd == "segment":
        argv += ["--prompts", prompts]
    code, stdout, err = run_main(capsys, *argv)
    assert code == 2, (stdout, err)
    assert len(err) == 1, err
    assert err[0].startswith("napari-sam: error: ")
    assert re.search(expected, err[0]), err[0]
    if case != "out_is_file":
        assert not out.exists() and not list(out.parent.glob(".*tmp"))


def test_write_failure_leaves_no_output(files, tmp_path, capsys, monkeypatch):
    """A failure while writing (disk full, ...) leaves neither the output nor a temp file."""
    d, weights = files
    prompts = tmp_path / "p.json"
    prompts.write_text('[{"slice": 1, "points": [[10, 12]], "box": [2, 3, 30, 40]}]')
    out = tmp_path / "l.tif"

    def failing(file, data, **kwargs):  # a path or an open file
        file.write(b"partial") if hasattr(file, "write") else file.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", failing)
    code, _, err = run_main(capsys, "segment", d / "stack.tif", "--prompts", prompts,
                            "--out", out, *model_args(weights))  # fmt: skip
    errors = [line for line in err if line.startswith("napari-sam: error")]  # after a progress bar
    assert code == 2 and len(errors) == 1 and errors[0] == err[-1], err
    assert re.search(r"--out: cannot write '.*l\.tif' \(No space left on device\)", err[-1])
    assert list(tmp_path.iterdir()) == [prompts]


def test_help_explains_every_option(capsys):
    for cmd, options in [
        ("auto", ("--points-per-side", "--pred-iou-thresh", "--stability-score-thresh",
                  "--no-link-3d", "--min-overlap")),
        ("segment", ("--prompts", "axis-0", "JSON:")),
    ]:  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            from napari_sam.cli import main

            main([cmd, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        for option in ("INPUT", "--out", "--model", "--weights", "--override", "--axes",
                       "--channels", "--normalization", "--store", "--overwrite", "example",
                       *options):  # fmt: skip
            assert option in text, (cmd, option)


def test_write_label_tiff_dtypes_and_axes(tmp_path):
    from napari_sam.io.labels import write_label_tiff

    small = np.arange(2 * 3 * 4, dtype=np.uint32).reshape(2, 3, 4)
    write_label_tiff(tmp_path / "a.tif", small, "ZYX")
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
        np.testing.assert_array_equal(tif.asarray(), small)
        assert tif.asarray().dtype == np.uint16
    big = small + 70000  # above uint16: uint32, tifffile's shaped metadata keeps the axes
    write_label_tiff(tmp_path / "b.tif", big, "ZYX")
    with tifffile.TiffFile(tmp_path / "b.tif") as tif:
        assert tif.series[0].axes == "ZYX" and tif.asarray().dtype == np.uint32
        np.testing.assert_array_equal(tif.asarray(), big)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]


def test_rgb_image_auto_and_napari_csv(files, tmp_path, capsys):
    """A 2-D RGB image: auto gives consecutive ids; a 2-column napari CSV is one object."""
    d, weights = files
    rgb = np.random.default_rng(4).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    out = tmp_path / "auto.tif"
    code, _, err = run_main(capsys, "auto", tmp_path / "rgb.tif", "--out", out,
                            "--points-per-side", "3", "--pred-iou-thresh", "0",
                            "--stability-score-thresh", "0", *model_args(weights))  # fmt: skip
    assert code == 0, err
    labels = tifffile.imread(out)
    ids = np.unique(labels[labels > 0])
    assert labels.shape == (40, 56) and len(ids) > 0
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    csv = tmp_path / "p.csv"
    csv.write_text("index,axis-0,axis-1\n0,10,12\n1,30,40\n")
    out = tmp_path / "seg.tif"
    code, _, err = run_main(capsys, "segment", tmp_path / "rgb.tif", "--prompts", csv,
                            "--out", out, *model_args(weights))  # fmt: skip
    assert code == 0, err
    assert set(np.unique(tifffile.imread(out))) == {0, 1}
