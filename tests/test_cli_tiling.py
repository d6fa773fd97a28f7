"""The command line on tiled images: embed per tile (resumable after kill -9), auto and segment
from the stored tiles, the tiling in the store's key."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile

from napari_sam.stacks.tiling import plan_tiling
from napari_sam.train.evaluation import instance_f1
from napari_sam.train.synthetic import make_nuclei_2d
from test_cli_embed import assert_labels_agree, kill_9_when, run_main

TINY = ["--model", "sam_tiny_nuclei"]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiles")
    img, truth = make_nuclei_2d((600, 640), seed=24680)
    tifffile.imwrite(d / "nuclei.tif", img)
    return d / "nuclei.tif", img, truth


def test_embed_auto_and_segment_share_the_tile_store(image, tmp_path, capsys):
    path, img, truth = image
    tiling = plan_tiling(img.shape, (256, 256))
    n = len(tiling)
    store = tmp_path / "nuclei.emb.zarr"
    code, out, err = run_main(capsys, "embed", path, "--out", store, *TINY)
    assert code == 0, err
    assert f"computed {n} tile(s), reused 0 of {n}" in out
    assert any(f"1 slice(s) x {n} tile(s) of 256x256 px" in line for line in err)
    code, out, _ = run_main(capsys, "embed", path, "--out", store, *TINY)
    assert f"computed 0 tile(s), reused {n} of {n}" in out
    # another tiling is another key: refused, never reused
    code, _, err = run_main(capsys, "embed", path, "--out", store, *TINY, "--tile", "192")
    assert code == 2 and re.search(r"--out: .*tiling: stored 'tiles:image=600x640:tile=256x256",
                                   err[-1]), err  # fmt: skip
    labels = tmp_path / "labels.tif"
    code, _, err = run_main(capsys, "auto", path, "--out", labels, "--store", store, *TINY,
                            "--method", "amg", "--points-per-side", "16")  # fmt: skip
    assert code == 0, err
    got = tifffile.imread(labels)
    assert got.shape == img.shape and instance_f1(got, truth).f1 >= 0.85
    # prompts on several tiles and on a tile border, from the same store
    csv = tmp_path / "prompts.csv"
    rows = ["object,x,y,label"]
    picks = [i for i in range(1, int(truth.max()) + 1)][:: max(1, int(truth.max()) // 12)]
    for k, i in enumerate(picks, start=1):
        ys, xs = np.nonzero(truth == i)
        rows.append(f"o{k},{xs.mean():.1f},{ys.mean():.1f},1")
    csv.write_text("\n".join(rows) + "\n")
    out_seg = tmp_path / "seg.tif"
    code, _, err = run_main(capsys, "segment", path, "--prompts", csv, "--out", out_seg,
                            "--store", store, *TINY)  # fmt: skip
    assert code == 0, err
    seg = tifffile.imread(out_seg)
    assert len(np.unique(seg)) - 1 == len(picks)
    for k, i in enumerate(picks, start=1):
        overlap = np.logical_and(seg == k, truth == i).sum()
        assert overlap >= 0.5 * (truth == i).sum(), (k, i)


def test_no_tile_and_tile_sizes(image, tmp_path, capsys):
    path, img, truth = image
    out = tmp_path / "notile.tif"
    code, _, err = run_main(capsys, "auto", path, "--out", out, *TINY, "--no-tile",
                            "--method", "amg", "--points-per-side", "8")  # fmt: skip
    assert code == 0, err
    assert instance_f1(tifffile.imread(out), truth).f1 < 0.6  # squeezed: nuclei too small
    store = tmp_path / "s.zarr"
    code, out_text, err = run_main(capsys, "embed", path, "--out", store, *TINY, "--tile", "320",
                                   "--halo", "40")  # fmt: skip
    n = len(plan_tiling(img.shape, (256, 256), tile=320, halo=40))
    assert code == 0 and f"computed {n} tile(s)" in out_text, err


def test_kill_9_while_embedding_tiles_resumes_with_the_missing_tiles(tmp_path, capsys):
    img, _ = make_nuclei_2d((1600, 1600), seed=13579)
    path = tmp_path / "big.npy"
    np.save(path, img)
    n = len(plan_tiling(img.shape, (256, 256)))
    store = tmp_path / "big.emb.zarr"
    argv = ["embed", path, "--out", store, *TINY]
    records = store / "records"
    kill_9_when(argv, lambda: records.is_dir() and len(list(records.glob("*.json"))) >= 5,
                tmp_path / "log", timeout=120)  # fmt: skip
    done = len(list(records.glob("*.json")))
    assert 5 <= done < n
    code, stdout, err = run_main(capsys, *argv)  # the resume, in this process
    assert code == 0, err
    assert f"computed {n - done} tile(s), reused {done} of {n}" in stdout
    # the tiles equal those of a fresh run in this process, to float rounding
    from napari_sam import create_model
    from napari_sam.stacks.tiled_predictor import TiledPredictor

    tp = TiledPredictor(create_model("sam_tiny_nuclei", pretrained=True), img,
                        plan_tiling(img.shape, (256, 256)), axes="YX", store=store)  # fmt: skip
    fresh = TiledPredictor(tp.model, img, tp.tiling, axes="YX", encoder=tp.encoder)
    for t in (0, done - 1, done, n - 1):
        np.testing.assert_allclose(tp.tile_embedding(0, t), fresh.tile_embedding(0, t),
                                   atol=1e-3, rtol=1e-3)  # fmt: skip


def test_segment_from_the_api_matches_the_cli(image, tmp_path, capsys):
    """`napari-sam segment` on a tiled image = TiledPredictor.predict in this process."""
    from napari_sam import TiledPredictor, create_model

    path, img, truth = image
    csv = tmp_path / "p.csv"
    csv.write_text("object,x,y,label\na,250.0,300.0,1\nb,500,100,1\nb,505,104,1\n")
    out = tmp_path / "l.tif"
    code, _, err = run_main(capsys, "segment", path, "--prompts", csv, "--out", out, *TINY)
    assert code == 0, err
    tp = TiledPredictor(create_model("sam_tiny_nuclei", pretrained=True), img,
                        plan_tiling(img.shape, (256, 256)), axes="YX")  # fmt: skip
    want = np.zeros(img.shape, np.uint16)
    m, s, _ = tp.predict(0, points=[[250.0, 300.0]], labels=[1])
    want[m[np.argmax(s)]] = 1
    m, _, _ = tp.predict(0, points=[[500, 100], [505, 104]], labels=[1, 1],
                         multimask_output=False)  # fmt: skip
    want[m[0]] = 2
    assert want.any()
    assert_labels_agree(tifffile.imread(out), want)
