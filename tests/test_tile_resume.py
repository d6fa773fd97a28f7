"""``napari-sam auto`` on one large tiled slice resumes tile by tile ([newcomer] 4): Ctrl-C
or kill -9 after some tiles, run again, only the missing tiles are computed, same labels."""

from __future__ import annotations

import os
import re

import pytest
import tifffile

from napari_sam.segment.partial import TileResults
from napari_sam.train.synthetic import make_nuclei_2d
from test_cli_batch import model_args
from test_cli_embed import SMALL, assert_labels_agree, kill_9_when, run_main, write_weights

SETTINGS = ["--tile", "384", "--points-per-side", "3", "--pred-iou-thresh", "0",
            "--stability-score-thresh", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiles")
    tifffile.imwrite(d / "big.tif", make_nuclei_2d((2048, 2048), seed=7)[0])
    return d, write_weights(d / "small.npz", SMALL)


def tile_counts(stderr: str) -> tuple[int, int]:
    m = re.search(r"tiles: (\d+) computed, (\d+) resumed", stderr)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def tiles_on_disk(work):
    return sorted(work.glob("tile_*.npz")) if work.is_dir() else []


def test_ctrl_c_then_kill_9_then_resume_tile_by_tile(files, tmp_path, capsys, monkeypatch):
    d, weights = files
    out, work = tmp_path / "labels.tif", tmp_path / "labels.tif.partial"
    argv = ["auto", d / "big.tif", "--out", out, *model_args(weights), *SETTINGS]
    # the uninterrupted run, for reference
    ref = tmp_path / "ref" / "labels.tif"
    ref.parent.mkdir()
    code, _, err = run_main(capsys, *argv[:3], ref, *argv[4:])
    assert code == 0, err
    total = tile_counts("\n".join(err))[0]
    assert total >= 30, err  # 2048 x 2048 in tiles of 384 px
    # Ctrl-C after 5 tiles: one line says what was kept and how to resume
    real, puts = TileResults.put, []

    def put(self, t, arrays):
        real(self, t, arrays)
        puts.append(t)
        if len(puts) == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(TileResults, "put", put)
    code, _, err = run_main(capsys, *argv)
    monkeypatch.setattr(TileResults, "put", real)
    assert code == 130 and not out.exists()
    assert err[-1] == ("napari-sam: interrupted; run the same command again to resume (kept 0 "
                       f"finished slice(s) and 5 tile(s) of the slice in progress of big.tif in "
                       f"{work})")
    assert len(tiles_on_disk(work)) == 5
    # kill -9 once a few more tiles are stored
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    kill_9_when(argv, lambda: len(tiles_on_disk(work)) >= 9, tmp_path / "log", 300, env=env)
    kept = len(tiles_on_disk(work))
    assert 9 <= kept < total and not out.exists()
    # the rerun computes only the missing tiles, and gives the uninterrupted run's labels
    code, _, err = run_main(capsys, *argv)  # in this process: no second start-up to wait for
    assert code == 0, err
    assert tile_counts("\n".join(err)) == (total - kept, kept), err
    assert not work.exists()
    assert_labels_agree(tifffile.imread(out), tifffile.imread(ref))
