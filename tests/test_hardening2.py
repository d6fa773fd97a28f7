"""The second probe of careless and hostile use ([hardening-2]): each numbered case a test.

Nothing the user made is lost or taken for done, no silent wrong result, one line per mistake.
(Case 1, the dask route's temporary store, is in ``test_distributed.py``; case 2, the
checkpoint zip bomb, in ``test_pth_reader.py``.)
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tifffile

from napari_sam.io.labels import label_source, write_label_tiff
from test_bad_input import AUTO, model_args, one_error, one_error_without_tensorflow, snapshot
from test_cli_embed import SMALL, run_main, stack, write_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_weights(tmp_path_factory.mktemp("w") / "small.npz", SMALL)


# -- 3. only this program's labels of this input count as done -------------------------------


@pytest.mark.parametrize("other", ["unrelated", "labels_of_another_input"])
def test_an_existing_output_that_is_not_ours_is_refused_not_skipped(weights, tmp_path, capsys,
                                                                    other):  # fmt: skip
    img, out = tmp_path / "x.tif", tmp_path / "x_labels.tif"
    tifffile.imwrite(img, stack(1)[0])
    if other == "unrelated":
        tifffile.imwrite(out, np.ones((5, 7), np.uint8))  # the user's file, not tagged
    else:
        write_label_tiff(out, np.ones((5, 7), np.uint16), "YX", source="y.tif")
    before = snapshot(tmp_path)
    code, _, err = run_main(capsys, "auto", img, "--out", out, *model_args(weights), *AUTO)
    one_error(code, err, r"--out: '.*x_labels\.tif' exists and is not napari-sam's labels of "
                         r"'x\.tif'; pass --overwrite")  # fmt: skip
    assert snapshot(tmp_path) == before
    code, stdout, err = run_main(capsys, "auto", img, "--out", out, "--overwrite",
                                 *model_args(weights), *AUTO)  # fmt: skip
    assert code == 0 and "wrote 1 label image(s)" in stdout, err
    assert label_source(out) == "x.tif"
    code, stdout, err = run_main(capsys, "auto", img, "--out", out, *model_args(weights), *AUTO)
    assert code == 0 and "wrote 0 label image(s), skipped 1 already done" in stdout, err


# -- 4. tiny float values: normalised by their range, and the choice said ----------------------


def test_float_images_with_tiny_values_are_stretched_by_their_range(weights, tmp_path, capsys):
    ints = stack(1)[0]
    tiny = (ints / 4095 * 3.9e-6).astype(np.float32)  # max below 4e-6: not 8-bit data
    labels = []
    for name, data in (("ints.tif", ints), ("tiny.tif", tiny)):
        tifffile.imwrite(tmp_path / name, data)
        out = tmp_path / f"{name}_labels.tif"
        code, _, err = run_main(capsys, "auto", tmp_path / name, "--out", out,
                                *model_args(weights), *AUTO)  # fmt: skip
        assert code == 0, err
        said = [line for line in err if line.startswith("napari-sam: normalisation auto: ")]
        assert len(said) == 1 and "percentiles 0.1 .. 99.9" in said[0], err
        labels.append(tifffile.imread(out))
    assert re.search(r"values [0-9.]+e-09 \.\. 3\.89[0-9]*e-06 -> 0 \.\. 255", said[0]), said
    assert labels[0].max() > 0
    np.testing.assert_array_equal(labels[1], labels[0])  # percentiles scale with the data


# -- 5. a trailing separator means a folder ----------------------------------------------------


def test_out_with_a_trailing_slash_is_a_folder(weights, tmp_path, capsys):
    img = tmp_path / "x.tif"
    tifffile.imwrite(img, stack(1)[0])
    code, stdout, err = run_main(capsys, "auto", img, "--out", f"{tmp_path / 'somedir'}/",
                                 *model_args(weights), *AUTO)  # fmt: skip
    assert code == 0 and "wrote 1 label image(s)" in stdout, err
    assert (tmp_path / "somedir").is_dir()
    assert sorted(p.name for p in (tmp_path / "somedir").iterdir()) == [
        "x_labels.prompts.json", "x_labels.tif"]  # fmt: skip


# -- 6. prompt files: slices are whole numbers inside the stack; defaults said ------------------


def _prompts(tmp_path, view, text, name="p.json"):
    from napari_sam.io.prompt_files import read_prompts

    path = tmp_path / name
    path.write_text(text if isinstance(text, str) else json.dumps(text))
    return read_prompts(path, view)


@pytest.mark.parametrize(
    ("shape", "axes", "entry", "match"),
    [
        ((3, 20, 30), "ZYX", {"slice": 1.5, "points": [[3, 4]]},
         r"p\.json object 0: slice coordinate 1\.5 is not a whole number"),
        ((2, 3, 20, 30), "TZYX", {"slice": [1, 0.5], "points": [[3, 4]]},
         r"p\.json object 0: slice coordinate 0\.5 is not a whole number"),
        ((20, 30), "YX", {"slice": 99, "points": [[3, 4]]},
         r"p\.json object 0: slice 99 is outside the image \(one 2-D slice"),
        ((3, 20, 30), "ZYX", {"slice": 3, "points": [[3, 4]]},
         r"p\.json object 0: slice Z=3 is outside the stack"),
    ],
)  # fmt: skip
def test_json_slices_must_be_whole_and_inside(tmp_path, shape, axes, entry, match):
    from napari_sam.io.prompt_files import PromptFileError
    from napari_sam.stacks import StackView

    view = StackView(np.zeros(shape, np.uint8), axes)
    with pytest.raises(PromptFileError, match=match):
        _prompts(tmp_path, view, [entry])


def test_csv_slice_numbers_are_never_rounded(tmp_path):
    from napari_sam.io.prompt_files import PromptFileError
    from napari_sam.stacks import StackView

    view = StackView(np.zeros((3, 20, 30), np.uint8), "ZYX")
    with pytest.raises(PromptFileError, match=r"p\.csv line 2: slice '1\.5' is not a whole"):
        _prompts(tmp_path, view, "slice,x,y\n1.5,3,4\n", "p.csv")
    with pytest.raises(PromptFileError, match=r"p\.csv line 2: slice coordinate '0\.5' is not"):
        _prompts(tmp_path, view, "z,x,y\n0.5,3,4\n", "p.csv")
    assert _prompts(tmp_path, view, "slice,x,y\n2.0,3,4\n", "p.csv")[0].slice == (2,)


def test_a_missing_slice_on_a_stack_is_said(tmp_path):
    from napari_sam.stacks import StackView

    view = StackView(np.zeros((3, 20, 30), np.uint8), "ZYX")
    with pytest.warns(UserWarning, match=r"p\.json: 2 object\(s\) without 'slice' are taken to "
                                         r"be on slice 0 of the Z stack"):  # fmt: skip
        objs = _prompts(tmp_path, view, [{"points": [[3, 4]]}, {"points": [[5, 6]]},
                                         {"slice": 2, "points": [[5, 6]]}])  # fmt: skip
    assert [o.slice for o in objs] == [(0,), (0,), (2,)]
    view2d = StackView(np.zeros((20, 30), np.uint8), "YX")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _prompts(tmp_path, view2d, [{"points": [[3, 4]]}, {"slice": 0, "box": [1, 2, 5, 6]}])


# -- 7. train: instance labels are whole numbers >= 0 -------------------------------------------


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([[0, -1], [2, 2]], np.int16), r"LABELS: '.*lab\.tif' holds negative values"),
        (np.array([[0, 1.5], [2, 2]], np.float32), r"LABELS: '.*lab\.tif' holds a value 1\.5 "
                                                     r"that is not a whole number"),
        (np.array([[0, np.nan], [2, 2]], np.float32), r"not a whole number"),
    ],
)  # fmt: skip
def test_train_refuses_labels_that_are_not_instance_labels(tmp_path, labels, match):
    tifffile.imwrite(tmp_path / "img.tif", stack(1, h=2, w=2)[0])
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    one_error_without_tensorflow(["train", str(tmp_path / "img.tif"), str(tmp_path / "lab.tif"),
                                  "--model", "sam_tiny_nuclei", "--from-scratch", "--out",
                                  str(tmp_path / "o.npz")], match)  # fmt: skip
    assert not (tmp_path / "o.npz").exists()


def test_whole_float_labels_are_taken_as_integers():
    from napari_sam.batch.train import check_instance_labels

    out = check_instance_labels(np.array([[0.0, 1.0], [2.0, 2.0]], np.float32), "lab.tif")
    assert out.dtype == np.int64 and out.tolist() == [[0, 1], [2, 2]]


# -- 9. sizes bounded by what the image and memory allow, one line each -----------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (["--diameter", "1e9"], r"--diameter: objects of 1e\+09 px are larger than the image "
                                r"\(600 x 500 px\)"),
        (["--diameter", "100000"], r"--diameter: objects of 100000 px are larger"),
        (["--tile", "64", "--halo", "31"], r"--halo: 31 px leaves the 64 px tiles advancing "
                                           r"only 2 px .* at most 24 px"),
        (["--tile", "100000"], r"--tile: 100000 px windows are too large for memory"),
    ],
)  # fmt: skip
def test_tiling_sizes_are_bounded_before_anything_is_written(tmp_path, options, match):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, stack(1, h=600, w=500)[0])
    store = tmp_path / "s.zarr"
    one_error_without_tensorflow(["embed", str(img), "--out", str(store), "--model",
                                  "sam_tiny_nuclei", *options], match)  # fmt: skip
    assert not store.exists()


def test_a_diameter_whose_windows_exceed_memory_is_named():
    from napari_sam.stacks.tiling import plan_tiling

    with pytest.raises(ValueError, match=r"^diameter: objects of 1000 px would need windows of "
                                         r"9143 x 9143 px, too large"):  # fmt: skip
        plan_tiling((20000, 20000), (256, 256), diameter=1000, model_diameter=28)


def test_points_per_side_is_bounded(tmp_path):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, stack(1)[0])
    one_error_without_tensorflow(["auto", str(img), "--out", str(tmp_path / "l.tif"),
                                  "--model", "sam_tiny_nuclei", "--method", "amg",
                                  "--points-per-side", "100000"],
                                 r"--points-per-side: 100000 would prompt 10,000,000,000 points "
                                 r"per image or tile; expected at most 256")  # fmt: skip


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (json.dumps([{"points": [[1, 1]] * 200_000}]),
         r"--prompts: p\.json object 0: more than 1000 points for one object"),
        ("[" * 100_000 + "]" * 100_000, r"--prompts: p\.json: JSON nested too deeply"),
    ],
)  # fmt: skip
def test_huge_or_deep_prompt_files_are_one_line(tmp_path, text, match):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, stack(1)[0])
    (tmp_path / "p.json").write_text(text)
    one_error_without_tensorflow(["segment", str(img), "--prompts", str(tmp_path / "p.json"),
                                  "--out", str(tmp_path / "l.tif"), "--model",
                                  "sam_tiny_nuclei"], match)  # fmt: skip


# -- 10. --scheduler: one line, whatever is (or is not) at the address ------------------------


@pytest.mark.parametrize("address", ["not a url", "/etc/passwd"])
def test_a_scheduler_that_is_no_address_is_one_line(tmp_path, address):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, stack(1)[0])
    one_error_without_tensorflow(["auto", str(img), "--out", str(tmp_path / "l.tif"), "--model",
                                  "sam_tiny_nuclei", "--scheduler", address],
                                 rf"--scheduler: '{address}' is not a scheduler")  # fmt: skip


def test_a_scheduler_address_where_something_else_answers_is_one_line(weights, tmp_path, capsys):
    import socket
    import threading

    pytest.importorskip("dask.distributed")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer():  # an HTTP server's reply to whatever comes
        for _ in range(20):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello")

    threading.Thread(target=answer, daemon=True).start()
    try:
        img = tmp_path / "img.tif"
        tifffile.imwrite(img, stack(1)[0])
        code, _, err = run_main(capsys, "auto", img, "--out", tmp_path / "l.tif",
                                *model_args(weights), *AUTO, "--scheduler",
                                f"tcp://127.0.0.1:{port}")  # fmt: skip
    finally:
        server.close()
    one_error(code, err, rf"--scheduler: (no dask scheduler answers at|cannot reach) "
                         rf"'tcp://127\.0\.0\.1:{port}'")  # fmt: skip
    assert not (tmp_path / "l.tif").exists()


# -- 11. the command line's own words ----------------------------------------------------------


def test_four_channels_are_explained_in_the_command_lines_words(tmp_path):
    img = tmp_path / "rgba.tif"
    tifffile.imwrite(img, np.zeros((64, 64, 4), np.uint8), photometric="rgb",
                     extrasamples=["unassalpha"])  # fmt: skip
    one_error_without_tensorflow(["embed", str(img), "--out", str(tmp_path / "s"), "--model",
                                  "sam_tiny_nuclei"],
                                 r"--channels: the image has 4 channels; choose up to three with "
                                 r"--channels rgb:0,1,2")  # fmt: skip


def test_an_override_that_makes_no_model_blames_override(tmp_path):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, stack(1)[0])
    one_error_without_tensorflow(["embed", str(img), "--out", str(tmp_path / "s"), "--model",
                                  "sam_tiny_nuclei", "--override", "embed_dim=7"],
                                 r"--override: embed_dim 7 must be a multiple of 8 \(8 and twice "
                                 r"decoder_nb_heads 4\)")  # fmt: skip


@pytest.mark.parametrize("option", [["--points-per-side", "16"], ["--pred-iou-thresh", "0.5"],
                                    ["--stability-score-thresh", "0.5"]])  # fmt: skip
def test_grid_options_with_ais_are_refused(tmp_path, option):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, stack(1)[0])
    decoder = tmp_path / "vit_b_decoder.pt"
    decoder.write_bytes(b"not read: the option is checked first")
    one_error_without_tensorflow(["auto", str(img), "--out", str(tmp_path / "l.tif"), "--model",
                                  "vit_b_lm", "--decoder", str(decoder), *option],
                                 rf"{option[0]}: sets the grid prompts of --method amg, and this "
                                 r"run uses ais")  # fmt: skip
