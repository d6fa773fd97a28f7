"""The CLI's label images remember how they were made ([provenance] 2 and 4): a sidecar in the
prompt-file format, replayed by ``segment`` to the same labels, refused with other weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from test_cli_batch import model_args
from test_cli_embed import SMALL, run_main, stack, write_weights


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("provenance")
    tifffile.imwrite(d / "stack.tif", stack(3, 48, 64, seed=5), metadata={"axes": "ZYX"})
    (d / "prompts.csv").write_text("object,z,x,y,label\na,0,20,20,1\na,1,21,20,1\nb,2,40,30,1\n"
                                   "c,1,10,35,1\n")  # fmt: skip
    return d, write_weights(d / "w.npz", SMALL), write_weights(d / "other.npz", SMALL, seed=1)


def test_segment_writes_a_sidecar_that_replays_to_the_same_labels(files, tmp_path, capsys):
    d, weights, other = files
    out = tmp_path / "l.tif"
    code, _, err = run_main(capsys, "segment", d / "stack.tif", "--prompts", d / "prompts.csv",
                            "--out", out, *model_args(weights))  # fmt: skip
    assert code == 0, err
    side = tmp_path / "l.prompts.json"
    record = json.loads(side.read_text())
    made = record["made_by"]
    assert made["command"] == "segment" and made["model"] == "sam_vit_b"
    assert len(made["weights_hash"]) == 40 and made["input"] == "stack.tif"
    assert made["normalization"] and made["tiling"] is None
    assert [(o["object"], o["slice"], o["id"]) for o in record["objects"]] == [
        ("a", [0], 1), ("a", [1], 1), ("b", [2], 2), ("c", [1], 3)]  # fmt: skip
    first = tifffile.imread(out)
    assert set(np.unique(first)) - {0} <= {1, 2, 3} and first.max() > 0
    # replay: the same labels, bit for bit
    again = tmp_path / "again.tif"
    code, _, err = run_main(capsys, "segment", d / "stack.tif", "--prompts", side, "--out", again,
                            *model_args(weights))  # fmt: skip
    assert code == 0, err
    np.testing.assert_array_equal(tifffile.imread(again), first)
    assert json.loads((tmp_path / "again.prompts.json").read_text())["objects"] == (
        record["objects"])
    # other weights: refused with one line naming both hashes, unless asked for
    code, _, err = run_main(capsys, "segment", d / "stack.tif", "--prompts", side, "--out",
                            tmp_path / "x.tif", *model_args(other))  # fmt: skip
    errors = [e for e in err if e.startswith("napari-sam: error")]
    assert code == 2 and len(errors) == 1 and "--allow-other-model" in errors[0], err
    assert made["weights_hash"][:16] in errors[0] and not (tmp_path / "x.tif").exists()
    code, _, err = run_main(capsys, "segment", d / "stack.tif", "--prompts", side, "--out",
                            tmp_path / "x.tif", *model_args(other),
                            "--allow-other-model")  # fmt: skip
    assert code == 0 and any("warning" in e and made["weights_hash"][:16] in e for e in err), err


def test_auto_records_its_method_and_a_foreign_file_is_left_alone(files, tmp_path, capsys):
    d, weights, _ = files
    out = tmp_path / "a.tif"
    code, _, err = run_main(capsys, "auto", d / "stack.tif", "--out", out, *model_args(weights),
                            "--points-per-side", "2")  # fmt: skip
    assert code == 0, err
    made = json.loads((tmp_path / "a.prompts.json").read_text())["made_by"]
    assert made["command"] == "auto" and made["segmenter"]["points_per_side"] == 2
    mine = tmp_path / "b.prompts.json"
    mine.write_text('{"my": "notes"}')
    code, _, err = run_main(capsys, "auto", d / "stack.tif", "--out", tmp_path / "b.tif",
                            *model_args(weights), "--points-per-side", "2")  # fmt: skip
    assert code == 0 and mine.read_text() == '{"my": "notes"}'
    assert any("left" in e and "b.prompts.json" in e for e in err), err


def test_a_bad_sidecar_is_one_line_naming_the_file(files, tmp_path, capsys):
    d, weights, _ = files
    bad = tmp_path / "bad.prompts.json"
    bad.write_text('{"made_by": "yesterday", "objects": [{"slice": 0, "points": [[5, 5]]}]}')
    code, _, err = run_main(capsys, "segment", d / "stack.tif", "--prompts", bad, "--out",
                            tmp_path / "o.tif", *model_args(weights))  # fmt: skip
    errors = [e for e in err if e.startswith("napari-sam: error")]
    assert code == 2 and len(errors) == 1 and "bad.prompts.json" in errors[0], err
    bad.write_text('{"made_by": {}, "objects": [{"slice": 0, "points": [[5, 5]], "idd": 1}]}')
    code, _, err = run_main(capsys, "segment", d / "stack.tif", "--prompts", bad, "--out",
                            tmp_path / "o.tif", *model_args(weights))  # fmt: skip
    errors = [e for e in err if e.startswith("napari-sam: error")]
    assert code == 2 and len(errors) == 1 and "bad.prompts.json object 0" in errors[0], err


def test_the_encoder_dtype_is_chosen_reported_and_recorded(files, tmp_path, capsys,
                                                            monkeypatch):  # fmt: skip
    """[first-use] 6: ``--dtype`` (default auto, here pinned by NAPARI_SAM_DTYPE), reported by
    ``-v``, kept in the sidecar; a bad NAPARI_SAM_DTYPE is one line before TensorFlow."""
    d, weights, _ = files
    for extra, want, why in (([], "float32", "set by NAPARI_SAM_DTYPE"),
                             (["--dtype", "bfloat16"], "bfloat16", "as asked")):  # fmt: skip
        out = tmp_path / f"{want}.tif"
        code, _, err = run_main(capsys, "auto", "-v", d / "stack.tif", "--out", out,
                                *model_args(weights), "--points-per-side", "2", *extra)  # fmt: skip
        assert code == 0, err
        assert any(f"image encoder {want}: {why}" in e for e in err), err
        made = json.loads(out.with_suffix(".prompts.json").read_text())["made_by"]
        assert made["encoder_dtype"] == want
    monkeypatch.setenv("NAPARI_SAM_DTYPE", "half")
    code, _, err = run_main(capsys, "auto", d / "stack.tif", "--out", tmp_path / "x.tif",
                            *model_args(weights))  # fmt: skip
    assert code == 2 and err == ["napari-sam: error: NAPARI_SAM_DTYPE: expected float32, "
                                 "bfloat16 or auto, got 'half'"], err  # fmt: skip
