"""Batch labelling on a dask cluster: the same labels as in one process, one model per worker."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam.batch import api as distributed
from test_cli_embed import SMALL, assert_labels_agree, overrides, run_main, stack, write_weights

pytest.importorskip("dask.distributed")

OPTIONS = dict(points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0, no_link_3d=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    (d / "in").mkdir()
    for i, name in enumerate("abc"):
        tifffile.imwrite(d / "in" / f"{name}.tif", stack(2, seed=i + 1), metadata={"axes": "ZYX"})
    return d, write_weights(d / "small.npz", SMALL)


def test_cluster_gives_local_labels_and_loads_model_once_per_worker(data):
    from dask.distributed import Client, LocalCluster

    d, weights = data
    kw = dict(model="sam_vit_b", weights=str(weights), override=SMALL, **OPTIONS)
    local = distributed.auto(d / "in", d / "local", **kw)
    assert [p.name for p in local] == ["a_labels.tif", "b_labels.tif", "c_labels.tif"]
    cluster = dict(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None)
    with LocalCluster(**cluster) as c, Client(c) as client:
        written = distributed.auto(d / "in", d / "dask", client=client, **kw)
        stats = list(client.run(distributed.worker_stats).values())
    assert [p.name for p in written] == [p.name for p in local]
    for a, b in zip(local, written, strict=True):
        want = tifffile.imread(a)
        assert want.max() > 0
        # worker processes vs this one: to float rounding (oneDNN's depends on the CPU kind and
        # batch shape; a pixel at the threshold may flip), see assert_labels_agree
        assert_labels_agree(tifffile.imread(b), want)
    # 3 files on 2 workers: one worker labelled several, yet each loaded the model once
    assert len(stats) == 2 and sum(s["tasks"] for s in stats) == 3, stats
    assert all(s["loads"] == (s["tasks"] > 0) for s in stats), stats


def test_scheduler_option_and_errors_from_workers(data, capsys):
    from dask.distributed import LocalCluster

    d, weights = data
    bad = d / "bad"
    bad.mkdir()
    (bad / "x.npy").write_bytes(b"not an array")
    flags = [f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')}={v}"
             for k, v in OPTIONS.items()]  # fmt: skip
    model = ["--weights", weights, *overrides(SMALL), *flags]
    code, out, err = run_main(capsys, "auto", d / "in", "--out", d / "one", *model)
    assert code == 0 and "wrote 3 label image(s)" in out, err
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        address = ["--scheduler", cluster.scheduler_address]
        code, out, err = run_main(capsys, "auto", d / "in", "--out", d / "two", *model, *address)
        assert code == 0 and "wrote 3 label image(s), skipped 0" in out, err
        for name in ("a", "b", "c"):
            want = tifffile.imread(d / "one" / f"{name}_labels.tif")
            # a worker's own model and graphs: to float rounding, as above
            assert_labels_agree(tifffile.imread(d / "two" / f"{name}_labels.tif"), want)
        code, out, err = run_main(
            capsys, "auto", bad, "--out", d / "bad_out", "--weights", weights,
            *address, "--points-per-side", "2",
        )  # fmt: skip
    assert code == 2 and "error: INPUT: " in err[-1], err
    assert not list((d / "bad_out").iterdir())


def test_segment_with_prompt_files_on_a_cluster(data, tmp_path):
    from dask.distributed import Client, LocalCluster

    d, weights = data
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    for i, name in enumerate("abc"):
        (prompts / f"{name}.csv").write_text(f"x,y,z\n{20 + i},15,0\n30,{20 + i},1\n")
    kw = dict(model="sam_vit_b", weights=str(weights), override=SMALL)
    local = distributed.segment(d / "in", tmp_path / "local", prompts, **kw)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            written = distributed.segment(d / "in", tmp_path / "dask", prompts, client=client, **kw)
    assert len(written) == len(local) == 3
    for a, b in zip(local, written, strict=True):
        want = tifffile.imread(a)
        assert set(np.unique(want)) == {0, 1, 2}
        assert_labels_agree(tifffile.imread(b), want)  # a worker's own model: as above
