"""The careless or hostile user: nothing the user made is lost, every mistake is one line.

Each case of the [hardening] issue is a test here, most with the issue's own command line.
In-process runs (``main``) are fast; a few run in a subprocess to check that the error comes
before TensorFlow is imported and that no traceback reaches the user.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager

import numpy as np
import pytest
import tifffile

from napari_sam.io.labels import is_label_output, write_label_tiff
from napari_sam.segment.partial import PartialLockedError, PartialResults
from test_cli_embed import SMALL, cli, overrides, run_main, stack, write_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_weights(tmp_path_factory.mktemp("w") / "small.npz", SMALL)


def model_args(weights):
    return ["--model", "sam_vit_b", "--weights", weights, *overrides(SMALL)]


AUTO = ["--points-per-side", "2", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


def one_error(code, err, pattern):
    """Exit 2 and one line ``napari-sam: error: ...`` matching ``pattern`` (after any
    progress bars); no traceback."""
    errors = [line for line in err if line.startswith("napari-sam: error: ")]
    assert code == 2, err
    assert len(errors) == 1 and errors[0] == err[-1], err
    assert not any("Traceback" in line for line in err), err
    assert re.search(pattern, errors[0]), errors[0]


def snapshot(folder):
    """Every file below ``folder`` with its bytes."""
    return {
        os.path.relpath(os.path.join(r, n), folder): open(os.path.join(r, n), "rb").read()
        for r, _, names in os.walk(folder) for n in names
    }  # fmt: skip


# -- 1. output names: the whole stem, collisions refused ------------------------------------


def test_dotted_names_keep_their_whole_stem(weights, tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    for i, name in enumerate(("cell.1.tif", "cell.2.tif")):
        tifffile.imwrite(inp / name, stack(1, seed=i)[0])
    code, stdout, err = run_main(capsys, "auto", inp, "--out", out, *model_args(weights), *AUTO)
    assert code == 0, err
    assert "wrote 2 label image(s)" in stdout
    assert sorted(p.name for p in out.iterdir()) == [  # each with its record (provenance)
        "cell.1_labels.prompts.json", "cell.1_labels.tif", "cell.2_labels.prompts.json",
        "cell.2_labels.tif"]  # fmt: skip


def test_colliding_output_names_are_refused(weights, tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    tifffile.imwrite(inp / "cell.tif", stack(1)[0])
    np.save(inp / "cell.npy", stack(1)[0])
    code, _, err = run_main(capsys, "auto", inp, "--out", out, *model_args(weights), *AUTO)
    one_error(code, err, r"--out: inputs 'cell\.npy' and 'cell\.tif' would both be written to "
                         r"'cell_labels\.tif'")  # fmt: skip
    assert not out.exists() or not list(out.iterdir())


# -- 2. embed never deletes what is not its own --------------------------------------------


@pytest.mark.parametrize("part", ["c", "records"])
def test_embed_keeps_a_folder_that_only_looks_like_store_leftovers(weights, tmp_path, capsys, part):
    img, udir = tmp_path / "img.tif", tmp_path / "udir"
    tifffile.imwrite(img, stack(1)[0])
    (udir / part / "important").mkdir(parents=True)
    (udir / part / "important" / "notes.txt").write_text("x")
    code, _, err = run_main(capsys, "embed", img, "--out", udir, *model_args(weights))
    one_error(code, err, r"--out: .*udir is a non-empty directory, not a store")
    assert snapshot(udir) == {f"{part}/important/notes.txt": b"x"}
    code, _, err = run_main(capsys, "embed", img, "--out", udir, "--overwrite",
                            *model_args(weights))  # fmt: skip
    assert code == 2 and snapshot(udir) == {f"{part}/important/notes.txt": b"x"}


def test_overwrite_removes_only_the_store_own_files(weights, tmp_path, capsys):
    img, store = tmp_path / "img.tif", tmp_path / "s.zarr"
    tifffile.imwrite(img, stack(2), metadata={"axes": "ZYX"})
    assert run_main(capsys, "embed", img, "--out", store, *model_args(weights))[0] == 0
    (store / "c" / "mine.txt").write_text("keep")
    argv = ["embed", img, "--out", store, "--normalization", "minmax", "--overwrite"]
    code, _, err = run_main(capsys, *argv, *model_args(weights))
    one_error(code, err, r"--out: .* holds files that are not part of an embedding store .*"
                         r"mine\.txt.*nothing was deleted")  # fmt: skip
    assert (store / "c" / "mine.txt").read_text() == "keep"
    assert (store / "zarr.json").is_file()  # still a store, its records intact
    (store / "c" / "mine.txt").unlink()
    code, stdout, err = run_main(capsys, *argv, *model_args(weights))
    assert code == 0 and "computed 2 slice(s)" in stdout, err


def test_empty_store_folders_are_taken_over(weights, tmp_path, capsys):
    """A discard killed after the last file left only empty folders: nothing to lose."""
    img, store = tmp_path / "img.tif", tmp_path / "s.zarr"
    tifffile.imwrite(img, stack(1)[0])
    (store / "c" / "0").mkdir(parents=True)
    (store / "records").mkdir()
    code, stdout, err = run_main(capsys, "embed", img, "--out", store, *model_args(weights))
    assert code == 0 and "computed 1 slice(s)" in stdout, err


# -- 3, 4. an output never replaces an input ------------------------------------------------


@pytest.mark.parametrize("flag", [[], ["--overwrite"]])
def test_segment_output_equal_to_the_input_is_refused(weights, tmp_path, capsys, flag):
    same, prompts = tmp_path / "same.tif", tmp_path / "p.csv"
    tifffile.imwrite(same, stack(1)[0])
    before = same.read_bytes()
    prompts.write_text("x,y\n10,12\n")
    argv = ["segment", same, "--prompts", prompts, "--out", same, *flag, *model_args(weights)]
    code, _, err = run_main(capsys, *argv)
    one_error(code, err, r"--out: '.*same\.tif' is the input")
    assert same.read_bytes() == before
    argv[argv.index("--out") + 1] = prompts
    code, _, err = run_main(capsys, *argv)
    one_error(code, err, r"--out: '.*p\.csv' is the prompts file")
    assert prompts.read_text() == "x,y\n10,12\n"


def test_rerun_into_the_input_folder_leaves_its_outputs_out(weights, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    tifffile.imwrite(folder / "x.tif", stack(1)[0])
    argv = ["auto", str(folder / "*.tif"), "--out", folder, *model_args(weights), *AUTO]
    code, stdout, err = run_main(capsys, *argv)
    assert code == 0 and "wrote 1 label image(s)" in stdout, err
    assert is_label_output(folder / "x_labels.tif")
    for flag in ([], ["--overwrite"]):
        code, stdout, err = run_main(capsys, *argv, *flag)
        assert code == 0, err
        assert any("left out 1 input(s)" in line for line in err), err
        assert sorted(p.name for p in folder.iterdir()) == ["x.tif", "x_labels.prompts.json",
                                                          "x_labels.tif"]  # fmt: skip


def test_a_user_image_named_like_an_output_is_never_replaced(weights, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    tifffile.imwrite(folder / "x.tif", stack(1)[0])
    tifffile.imwrite(folder / "x_labels.tif", stack(1, seed=3)[0])  # the user's, not ours
    before = snapshot(folder)
    code, _, err = run_main(capsys, "auto", folder, "--out", folder, "--overwrite",
                            *model_args(weights), *AUTO)  # fmt: skip
    one_error(code, err, r"--out: the label image of input 'x\.tif' would replace input "
                         r"'x_labels\.tif'")  # fmt: skip
    assert snapshot(folder) == before


# -- 5. non-finite pixels -------------------------------------------------------------------


def test_one_nan_pixel_does_not_poison_the_store(weights, tmp_path, capsys):
    from napari_sam.stacks.store import EmbeddingStore

    img, store = tmp_path / "nan.npy", tmp_path / "s.zarr"
    data = stack(2).astype(np.float32)
    data[1, 5, 7] = np.nan
    np.save(img, data)
    code, stdout, err = run_main(capsys, "embed", img, "--axes", "ZYX", "--out", store,
                                 *model_args(weights))  # fmt: skip
    assert code == 0 and "computed 2 slice(s)" in stdout, err
    import zarr

    assert np.isfinite(zarr.open_array(str(store), mode="r")[:]).all()
    assert EmbeddingStore  # the store's own check is tested in test_embedding_store.py


def test_all_nan_image_and_infinite_range_are_errors(weights, tmp_path, capsys):
    img, store = tmp_path / "nan.npy", tmp_path / "s.zarr"
    np.save(img, np.full((16, 16), np.nan, np.float32))
    code, _, err = run_main(capsys, "embed", img, "--out", store, *model_args(weights))
    one_error(code, err, r"INPUT: .*channel 0 has no finite value")
    assert not store.exists() or not snapshot(store)
    code, _, err = run_main(capsys, "embed", img, "--out", store, "--normalization",
                            "fixed:-inf,inf", *model_args(weights))  # fmt: skip
    one_error(code, err, r"--normalization: 'fixed:-inf,inf': .*finite")


# -- 7, 8. unwritable places, read-only file systems, disk full ----------------------------


@contextmanager
def tmpfs(path, options):
    """A real tmpfs mounted at ``path`` (root only); skips where mounting is not allowed."""
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_embed_and_train_on_a_read_only_file_system(weights, tmp_path, capsys):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, stack(1)[0])
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        code, _, err = run_main(capsys, "embed", img, "--out", ro / "s.zarr", *model_args(weights))
        one_error(code, err, r"--out: cannot write to '.*ro' \(Read-only file system\)")
        labels = tmp_path / "l.npy"
        np.save(labels, np.zeros((48, 64), np.uint16))
        code, _, err = run_main(capsys, "train", img, labels, "--out", ro / "w.npz",
                                *model_args(weights))  # fmt: skip
        one_error(code, err, r"--out: cannot write to '.*ro' \(Read-only file system\)")


@pytest.mark.parametrize("command", ["embed", "train", "auto"])
def test_unwritable_output_folder_is_one_line(tmp_path, capsys, command, monkeypatch):
    """As root, permissions do not stop writes: the probe's failure is injected."""
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, stack(1)[0])
    outs = {"embed": ["--out", tmp_path / "s.zarr"], "auto": ["--out", tmp_path / "l.tif"],
            "train": [tmp_path / "img.tif", "--out", tmp_path / "w.npz"]}  # fmt: skip

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", denied)
    code, _, err = run_main(capsys, command, img, *outs[command], "--model", "sam_tiny_nuclei")
    monkeypatch.undo()
    one_error(code, err, r"--out: cannot write to '.*' \(Permission denied\)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tif"]


def test_disk_full_during_embed_keeps_a_resumable_store(weights, tmp_path, capsys):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, stack(6), metadata={"axes": "ZYX"})
    # the SMALL model's embedding is 8 x 8 x 32 float32 = 8 KiB a slice (+ a record)
    with tmpfs(tmp_path / "full", "size=40k") as full:
        store = full / "s.zarr"
        code, _, err = run_main(capsys, "embed", img, "--out", store, *model_args(weights))
        one_error(code, err, r"--out: cannot write the store .*\(No space left on device\); "
                             r"the slices done so far are kept")  # fmt: skip
        done = len(list((store / "records").glob("*.json")))
        assert 0 < done < 6
        assert not [f for f in (store / "records").iterdir() if f.name.startswith(".")]
        # room again: a rerun computes only the missing slices
        subprocess.run(["mount", "-o", "remount,size=1m", str(full)], check=True)
        code, stdout, err = run_main(capsys, "embed", img, "--out", store, *model_args(weights))
        assert code == 0, err
        assert f"computed {6 - done} slice(s), reused {done} of 6" in stdout


def test_disk_full_in_auto_work_folder_is_one_line(weights, tmp_path, capsys, monkeypatch):
    from napari_sam import partial as partial_module

    img, out = tmp_path / "img.tif", tmp_path / "l.tif"
    tifffile.imwrite(img, stack(3), metadata={"axes": "ZYX"})
    real = partial_module.write_atomic
    calls = []

    def full(path, write, fsync=False):
        calls.append(path.name)
        if path.name == "slice_1.npy":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write, fsync)

    monkeypatch.setattr(partial_module, "write_atomic", full)
    code, _, err = run_main(capsys, "auto", img, "--out", out, *model_args(weights), *AUTO)
    one_error(code, err, r"--out: cannot write '.*slice_1\.npy' \(No space left on device\); "
                         r"the slices done so far are kept")  # fmt: skip
    assert not out.exists()
    assert (tmp_path / "l.tif.partial" / "slice_0.npy").is_file()
    monkeypatch.setattr(partial_module, "write_atomic", real)
    code, _, err = run_main(capsys, "auto", img, "--out", out, *model_args(weights), *AUTO)
    assert code == 0 and any("1 of 3 slice(s) already segmented" in line for line in err), err


# -- 9. malformed JSON prompts --------------------------------------------------------------


@pytest.mark.parametrize("entry", [{"points": 5}, {"points": [[3, 4]], "labels": 5}])
def test_scalar_json_prompts_are_one_line(weights, tmp_path, capsys, entry):
    img, prompts = tmp_path / "img.tif", tmp_path / "p.json"
    tifffile.imwrite(img, stack(1)[0])
    prompts.write_text(json.dumps([entry]))
    code, _, err = run_main(capsys, "segment", img, "--prompts", prompts, "--out",
                            tmp_path / "l.tif", *model_args(weights))  # fmt: skip
    one_error(code, err, r"--prompts: p\.json object 0: '(points|labels)' must be a list")


# -- 10. two runs on one output --------------------------------------------------------------


def test_a_second_run_on_the_same_work_folder_is_refused(tmp_path):
    folder = tmp_path / "l.tif.partial"
    first = PartialResults(folder, {"a": 1}, 3, (4, 5))
    live_tmp = folder / f".slice_2.npy.{os.getpid()}-1.tmp"  # a live writer's temp file
    live_tmp.write_bytes(b"in progress")
    stale_tmp = folder / ".slice_1.npy.999999999-1.tmp"  # left by a killed process
    stale_tmp.write_bytes(b"x")
    from napari_sam._atomic import _HOST

    ours = folder / f".slice_1.json.{_HOST}_999999999-5.tmp"  # this machine's, killed
    ours.write_bytes(b"x")
    theirs = folder / ".slice_1.json.other-node_999999999-5.tmp"  # another machine's writer
    theirs.write_bytes(b"x")
    with pytest.raises(PartialLockedError, match="another napari-sam run is writing"):
        PartialResults(folder, {"a": 1}, 3, (4, 5))
    assert live_tmp.exists()
    first.put(0, np.ones((4, 5), np.uint32))
    first.close()
    with PartialResults(folder, {"a": 1}, 3, (4, 5)) as second:
        assert second.done() == [0] and live_tmp.exists() and not stale_tmp.exists()
        assert not ours.exists() and theirs.exists()


def test_concurrent_auto_gives_one_line(weights, tmp_path, capsys):
    img, out = tmp_path / "img.tif", tmp_path / "l.tif"
    tifffile.imwrite(img, stack(2), metadata={"axes": "ZYX"})
    held = PartialResults(tmp_path / "l.tif.partial", {"other": "run"}, 2, (48, 64))
    try:
        code, _, err = run_main(capsys, "auto", img, "--out", out, *model_args(weights), *AUTO)
        one_error(code, err, r"--out: another napari-sam run is writing .*l\.tif\.partial")
    finally:
        held.close()
    assert not out.exists()


# -- 11. the right message, early --------------------------------------------------------------


def test_truncated_tiff_is_reported_as_input(weights, tmp_path, capsys):
    good, bad = tmp_path / "good.tif", tmp_path / "trunc.tif"
    tifffile.imwrite(good, stack(3, 256, 256), metadata={"axes": "ZYX"})
    raw = good.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    code, _, err = run_main(capsys, "embed", bad, "--out", tmp_path / "s.zarr",
                            *model_args(weights))  # fmt: skip
    one_error(code, err, r"INPUT: cannot read the pixels of '.*trunc\.tif': the file is "
                         r"truncated or damaged")  # fmt: skip


def test_zero_slice_tiff_and_axes_hints(tmp_path, capsys):
    zero = tmp_path / "zero.tif"
    with pytest.warns(UserWarning):
        tifffile.imwrite(zero, np.zeros((0, 32, 32), np.uint16))
    code, _, err = run_main(capsys, "embed", zero, "--out", tmp_path / "s", "--model",
                            "sam_tiny_nuclei")  # fmt: skip
    one_error(code, err, r"holds no pixels \(shape \(0, 32, 32\)\)")
    qq = tmp_path / "qq.tif"
    tifffile.imwrite(qq, np.zeros((2, 5, 16, 16), np.uint16))  # tifffile: QQYX
    code, _, err = run_main(capsys, "embed", qq, "--out", tmp_path / "s", "--model",
                            "sam_tiny_nuclei")  # fmt: skip
    one_error(code, err, r"--axes: .*e\.g\. 'ZTYX'")


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--override", "encoder_nb_heads=oops"], r"--override: .*not valid JSON"),
        (["--override", "input_size=[1,2,3]"], r"--override: "),
        (["--weights", "DIR"], r"--weights: '.*' is a directory; expected a checkpoint file"),
        (["--weights", "EMPTY"], r"--weights: '.*empty\.pth' is empty"),
        (["--model", "sam_vit_q"], r"--model: unknown model 'sam_vit_q'"),
        (["--normalization", "fixed:nan,1"], r"--normalization: "),
        (["--tile", "32"], r"--tile: expected at least 64 pixels a side, got 32"),
        (["--tile", "256", "--halo", "128"], r"--halo: 128 px is half the tile \(256 px\)"),
        (["--diameter", "0"], r"--diameter: expected a positive object size in pixels, auto or"
         r" native, got 0"),
        (["--diameter", "-5"], r"--diameter: expected a positive object size"),
        (["--diameter", "big"], r"--diameter: expected a positive object size in pixels, auto or"
         r" native, got big"),
        (["--no-tile", "--tile", "256"], r"--no-tile: cannot be combined with --tile"),
        (["--tile", "256", "--diameter", "30"], r"--tile: give either --tile or --diameter"),
        (
            ["--model", "sam_vit_b", "--diameter", "30"],
            r"--diameter: this model records no preferred object size; give a tile size",
        ),
    ],
)
def test_option_errors_come_before_tensorflow(tmp_path, argv, pattern):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, stack(1)[0])
    (tmp_path / "empty.pth").write_bytes(b"")
    argv = [str(tmp_path) if a == "DIR" else str(tmp_path / "empty.pth") if a == "EMPTY"
            else a for a in argv]  # fmt: skip
    if "--model" not in argv:
        argv += ["--model", "sam_tiny_nuclei"]
    one_error_without_tensorflow(["embed", str(img), "--out", str(tmp_path / "s"), *argv], pattern)


def one_error_without_tensorflow(argv, pattern):
    """The CLI with ``argv`` in a fresh process: one error line matching ``pattern``, and
    TensorFlow never imported."""
    code = (
        "import sys, napari_sam.cli as c\n"
        f"rc = c.main({argv!r})\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    one_error(proc.returncode, lines, pattern)


def test_upper_case_npz_weights_are_read_as_npz(weights, tmp_path):
    from napari_sam.weights import read_checkpoint

    upper = tmp_path / "W.NPZ"
    upper.write_bytes(weights.read_bytes())
    assert set(read_checkpoint(upper)) == set(read_checkpoint(weights))


def test_repaired_chunk_is_reported(weights, tmp_path, capsys):
    img, store = tmp_path / "img.tif", tmp_path / "s.zarr"
    tifffile.imwrite(img, stack(2), metadata={"axes": "ZYX"})
    assert run_main(capsys, "embed", img, "--out", store, *model_args(weights))[0] == 0
    chunk = store / "c" / "1" / "0" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[100] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    proc = cli("embed", img, "--out", store, *model_args(weights))  # warnings as a user sees
    assert proc.returncode == 0, proc.stderr
    assert "computed 1 slice(s), reused 1 of 2 (1 damaged slice(s) recomputed)" in proc.stdout
    warned = [line for line in proc.stderr.splitlines() if "damaged" in line]
    assert len(warned) == 1, proc.stderr
    assert re.search(r"^napari-sam: warning: embedding store .*: the stored embedding of "
                        r"slice 1 is damaged \(checksum mismatch\); it is computed again$",
                        warned[0]), warned  # fmt: skip


def test_verbose_shows_the_traceback(tmp_path, capsys):
    code, _, err = run_main(capsys, "embed", tmp_path / "nope.tif", "--out", tmp_path / "s",
                            "--model", "sam_tiny_nuclei", "-v")  # fmt: skip
    assert code == 2 and any("Traceback" in line for line in err)
    assert err[-1].startswith("napari-sam: error: INPUT: ")


def test_label_images_carry_the_software_tag(tmp_path):
    path = write_label_tiff(tmp_path / "l.tif", np.ones((4, 4), np.uint16), "YX")
    assert is_label_output(path) and not is_label_output(tmp_path / "missing.tif")


def test_tensorflow_start_up_lines_only_with_verbose(tmp_path, monkeypatch):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, stack(1)[0])
    noise = ("absl::InitializeLog", "cuda", "cuInit", "rebuild TensorFlow")
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # as a user's shell has it
    for flag, shown in (([], False), (["-v"], True)):
        proc = cli("embed", img, "--out", tmp_path / f"s{len(flag)}.zarr", "--model",
                   "sam_tiny_nuclei", *flag)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert any(n in proc.stderr for n in noise) == shown, proc.stderr


def test_halo_too_large_for_the_default_tile(tmp_path, capsys):
    img = tmp_path / "wide.tif"
    tifffile.imwrite(img, stack(1, 200, 400)[0])  # tiled by default: 400 > 1.5 x 256
    code, _, err = run_main(capsys, "auto", img, "--out", tmp_path / "l.tif", "--model",
                            "sam_tiny_nuclei", "--halo", "128")  # fmt: skip
    one_error(code, err, r"--halo: 128 px is half the tile \(256 px\) or more")
    assert not (tmp_path / "l.tif").exists()


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (
            ["--method", "ais", "--model", "sam_vit_b"],
            r"--method: ais needs an instance decoder, and model "
            r"'sam_vit_b' has none: pass --decoder FILE",
        ),
        (
            ["--method", "ais", "--weights", "PLAIN"],
            r"--method: ais needs an instance decoder, "
            r"and '.*plain\.pth' has none",
        ),
        (
            ["--method", "ais", "--weights", "BROKEN"],
            r"--weights: cannot read checkpoint "
            r"'.*broken\.pth'",
        ),
        (["--decoder", "DIR"], r"--decoder: '.*' is a directory; expected a checkpoint file"),
        (["--decoder", "MISSING"], r"--decoder: '.*missing_decoder\.pt': no such file"),
    ],
)
def test_auto_method_and_decoder_errors_come_before_tensorflow(tmp_path, argv, pattern):
    import torch

    img = tmp_path / "img.tif"
    tifffile.imwrite(img, stack(1)[0])
    torch.save({"image_encoder.pos_embed": torch.zeros(1, 4, 4, 8)}, tmp_path / "plain.pth")
    (tmp_path / "broken.pth").write_bytes(b"PK\x03\x04 not a zip")
    files = {
        "DIR": tmp_path,
        "PLAIN": tmp_path / "plain.pth",
        "BROKEN": tmp_path / "broken.pth",
        "MISSING": tmp_path / "missing_decoder.pt",
    }
    argv = [str(files.get(a, a)) for a in argv]
    argv += [] if "--model" in argv else ["--model", "sam_tiny_nuclei"]
    one_error_without_tensorflow(["auto", str(img), "--out", str(tmp_path / "o"), *argv], pattern)
