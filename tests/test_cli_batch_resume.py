"""``napari-sam auto`` resumes within a stack: kill -9 half way, run again, same labels."""

from __future__ import annotations

import os
import re
import time

import numpy as np
import pytest
import tifffile

from napari_sam.segment.partial import PartialResults
from test_cli_batch import model_args
from test_cli_embed import SMALL, assert_labels_agree, kill_9_when, run_main, stack, write_weights

N = 6  # slices
# 8 x 8 prompts on 96 x 128 slices: some 0.05-0.2 s a slice, far longer than the 10 ms the
# killer polls at, so the kill lands half way (after 2 slices) on any machine
SETTINGS = ["--points-per-side", "8", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    tifffile.imwrite(d / "stack.tif", stack(N, 96, 128, seed=3), metadata={"axes": "ZYX"})
    return d, write_weights(d / "small.npz", SMALL)


def slices_done(folder):
    return sorted(f.name for f in folder.glob("slice_*.npy")) if folder.is_dir() else []


def counts(stderr: str) -> tuple[int, int]:
    m = re.search(r"(\d+) slice\(s\) computed, (\d+) resumed", stderr)
    assert m, stderr
    return int(m.group(1)), int(m.group(2))


def test_auto_kill_9_then_resume(files, tmp_path, capsys):
    d, weights = files
    out = tmp_path / "labels.tif"
    work = tmp_path / "labels.tif.partial"
    argv = ["auto", d / "stack.tif", "--out", out, *model_args(weights), *SETTINGS]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    kill_9_when(argv, lambda: len(slices_done(work)) >= 2, tmp_path / "log", 240, env=env)
    done = slices_done(work)
    assert 2 <= len(done) < N, done
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))  # no output while incomplete
    # a second run resumes: only the missing slices are computed
    code, stdout, err = run_main(capsys, *argv)  # in this process: no second start-up
    assert code == 0, err
    assert "wrote 1 label image(s)" in stdout
    assert f"resuming {d / 'stack.tif'}: {len(done)} of {N} slice(s) already segmented" in (
        "\n".join(err)
    )
    assert counts("\n".join(err)) == (N - len(done), len(done))
    assert out.is_file() and not work.exists()  # the work folder is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "labels.prompts.json", "labels.tif", "log"]  # fmt: skip
    got = tifffile.imread(out)
    assert got.shape == (N, 96, 128) and got.max() > 0
    # the same as an uninterrupted run (in process: faster)
    ref = tmp_path / "ref" / "labels.tif"
    ref.parent.mkdir()
    code, stdout, err = run_main(capsys, "auto", d / "stack.tif", "--out", ref,
                                 *model_args(weights), *SETTINGS)  # fmt: skip
    assert code == 0, err
    assert counts("\n".join(err)) == (N, 0)
    # the resumed labels come from a killed process and this one, the reference from this
    # one alone: oneDNN's rounding can differ between runs and CPU kinds (it depends on the batch
    # shape), so thresholded logits may flip a pixel or a near-tie pick another candidate
    assert_labels_agree(got, tifffile.imread(ref))
    assert sorted(p.name for p in ref.parent.iterdir()) == ["labels.prompts.json", "labels.tif"]


def interrupt_after(monkeypatch, k: int):
    """Make the next run stop (KeyboardInterrupt, as Ctrl+C) once ``k`` slices are stored."""
    real = PartialResults.put

    def put(self, n, labels):
        real(self, n, labels)
        if self.computed >= k:
            raise KeyboardInterrupt

    monkeypatch.setattr(PartialResults, "put", put)
    return lambda: monkeypatch.setattr(PartialResults, "put", real)


def test_changed_settings_discard_partial_results(files, tmp_path, capsys, monkeypatch):
    d, weights = files
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, stack(4, seed=5), metadata={"axes": "ZYX"})
    out = tmp_path / "l.tif"
    work = tmp_path / "l.tif.partial"
    argv = ["auto", small, "--out", out, *model_args(weights), "--points-per-side", "4",
            "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]  # fmt: skip
    restore = interrupt_after(monkeypatch, 2)
    code, stdout, err = run_main(capsys, *argv)
    assert code == 130 and "interrupted; run the same command again to resume" in err[-1]
    assert slices_done(work) == ["slice_0.npy", "slice_1.npy"] and not out.exists()
    # another threshold: the partial results are discarded, every slice is computed
    restore()
    interrupt_after(monkeypatch, 3)
    code, stdout, err = run_main(capsys, *argv[:-1], "0.5")
    assert code == 130
    text = "\n".join(err)
    assert f"discarded the partial results in {work}: made with other settings (generator)" in (
        text
    )
    assert "resuming" not in text and len(slices_done(work)) == 3
    # the input changes (other content, other mtime): discarded again
    restore()
    tifffile.imwrite(small, stack(4, seed=6), metadata={"axes": "ZYX"})
    os.utime(small, ns=(time.time_ns() + 10**9,) * 2)
    interrupt_after(monkeypatch, 1)
    code, stdout, err = run_main(capsys, *argv[:-1], "0.5")
    text = "\n".join(err)
    assert code == 130 and re.search(r"made with other settings \(.*input\)", text), text
    assert slices_done(work) == ["slice_0.npy"]
    # --overwrite discards a matching folder too
    restore()
    code, stdout, err = run_main(capsys, *argv[:-1], "0.5", "--overwrite")
    text = "\n".join(err)
    assert code == 0 and f"discarded the partial results in {work}: --overwrite" in text
    assert counts(text) == (4, 0) and out.is_file() and not work.exists()
    # the same command again: the output is skipped
    code, stdout, err = run_main(capsys, *argv[:-1], "0.5")
    assert code == 0 and "wrote 0 label image(s), skipped 1 already done" in stdout
    # a folder of that name holding something else is never deleted
    out.unlink()
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    code, stdout, err = run_main(capsys, *argv)
    assert code == 2 and re.match(
        r"napari-sam: error: --out: .*l\.tif\.partial holds files that are not partial results "
        r"\(notes\.txt\)",
        err[-1],
    ), err
    assert (work / "notes.txt").read_text() == "mine"


def test_empty_work_folder_without_key_is_taken_over(tmp_path):
    """A run killed between creating the folder and writing its key left an empty folder."""
    folder = tmp_path / "labels.tif.partial"
    folder.mkdir()
    partial = PartialResults(folder, {"a": 1}, n_slices=3, shape=(4, 5))
    assert partial.discarded is None and partial.done() == []
    assert (folder / "key.json").is_file()
    partial.put(1, np.ones((4, 5), np.uint32))
    partial.close()  # the folder's lock: one run at a time
    assert PartialResults(folder, {"a": 1}, 3, (4, 5)).get(1).sum() == 20
