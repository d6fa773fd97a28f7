"""Batch labelling on a dask cluster: the same labels as in one process, one model per worker."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam.batch import api as distributed
from napari_sam.batch.settings import overrides_as_options
from napari_sam.stacks.tiling import plan_tiling
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


@pytest.fixture(scope="module")
def two_workers():
    """A client of a two-process LocalCluster, shared by this module's tests (each worker
    process keeps the model it loaded: the tests compare worker statistics before and after)."""
    from dask.distributed import Client, LocalCluster

    cluster = dict(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None)
    with LocalCluster(**cluster) as c, Client(c) as client:
        yield client


def _cli_options(weights) -> list:
    flags = [f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')}={v}"
             for k, v in OPTIONS.items()]  # fmt: skip
    return ["--weights", weights, *overrides(SMALL), *flags]


def _stats(client, before=None):
    """Each worker's :func:`worker_stats`, less ``before`` (the same workers' earlier ones)."""
    now = client.run(distributed.worker_stats)
    before = before or {}
    return {w: {k: v - before.get(w, {}).get(k, 0) for k, v in s.items()} for w, s in now.items()}


def test_scheduler_option_and_errors_from_workers(data, capsys):
    from dask.distributed import LocalCluster

    d, weights = data
    bad = d / "bad"
    bad.mkdir()
    (bad / "x.npy").write_bytes(b"not an array")
    model = _cli_options(weights)
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


def test_cluster_gives_local_labels_and_loads_model_once_per_worker(data, two_workers):
    d, weights = data
    kw = dict(model="sam_vit_b", weights=str(weights), override=SMALL, **OPTIONS)
    local = distributed.auto(d / "in", d / "local", **kw)
    assert [p.name for p in local] == ["a_labels.tif", "b_labels.tif", "c_labels.tif"]
    client = two_workers
    before = _stats(client)
    written = distributed.auto(d / "in", d / "dask", client=client, **kw)
    stats = list(_stats(client, before).values())
    loaded = [s["loads"] for s in _stats(client).values()]
    assert [p.name for p in written] == [p.name for p in local]
    for a, b in zip(local, written, strict=True):
        want = tifffile.imread(a)
        assert want.max() > 0
        # worker processes vs this one: to float rounding (oneDNN's depends on the CPU kind and
        # batch shape; a pixel at the threshold may flip), see assert_labels_agree
        assert_labels_agree(tifffile.imread(b), want)
    # 3 files on 2 workers: one worker labelled several, yet each loaded the model once
    assert len(stats) == 2 and sum(s["tasks"] for s in stats) == 3, stats
    assert all(s["tasks"] > 0 for s in stats) and loaded == [1, 1], (stats, loaded)


def _records(store):
    return [json.loads(f.read_text()) for f in (store / "records").glob("*.json")]


def test_tiles_of_one_image_on_two_workers_give_the_local_labels(
    data, two_workers, tmp_path, capsys, monkeypatch
):
    from napari_sam.batch.embed import embed
    from napari_sam.batch.settings import EmbedSettings
    from napari_sam.stacks.store import EmbeddingStore

    _, weights = data
    image = tmp_path / "big.tif"  # 160 x 176 at the model's 64 px input: 3 x 4 tiles
    tifffile.imwrite(image, np.random.default_rng(7).integers(0, 4096, (160, 176), np.uint16))
    n = len(plan_tiling((160, 176), tuple(SMALL["input_size"])))
    kw = dict(model="sam_vit_b", weights=str(weights), override=SMALL, **OPTIONS)
    local = distributed.auto(image, tmp_path / "local.tif", store=tmp_path / "local.zarr", **kw)
    client = two_workers
    before = _stats(client)
    here = []  # tiles this process embeds into the store: none, the workers do
    compute = EmbeddingStore._compute
    monkeypatch.setattr(EmbeddingStore, "_compute", lambda st, items: (
        here.extend(i for i, _, _ in items), compute(st, items))[1])  # fmt: skip
    spread = distributed.auto(image, tmp_path / "dask.tif", store=tmp_path / "dask.zarr",
                              client=client, **kw)  # fmt: skip
    stats = list(_stats(client, before).values())
    loaded = [s["loads"] for s in _stats(client).values()]
    # the command line on a folder, without --store: the tiled image through a temporary store
    # next to its output (removed after), the small stack a worker's task
    (tmp_path / "mix").mkdir()
    shutil.copy(image, tmp_path / "mix" / "big.tif")
    shutil.copy(data[0] / "in" / "a.tif", tmp_path / "mix" / "a.tif")
    model, address = _cli_options(weights), ["--scheduler", client.scheduler.address]
    before = _stats(client)
    code, out, err = run_main(capsys, "auto", tmp_path / "mix", "--out", tmp_path / "labels",
                              *model, *address)  # fmt: skip
    assert code == 0 and "wrote 2 label image(s)" in out, err
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == [
        "a_labels.prompts.json", "a_labels.tif", "big_labels.prompts.json",
        "big_labels.tif"]  # fmt: skip
    assert sum(s["tasks"] for s in _stats(client, before).values()) == 1
    assert tifffile.imread(tmp_path / "labels" / "a_labels.tif").max() > 0
    # embed: the same tiles into a store of its own, then all of them reused
    es = EmbedSettings(input=str(image), out=str(tmp_path / "emb.zarr"), model="sam_vit_b",
                       weights=str(weights), override=overrides_as_options(SMALL))  # fmt: skip
    first = embed(es, client=client)
    code, again, err = run_main(capsys, "embed", image, "--out", tmp_path / "emb.zarr",
                                "--model", "sam_vit_b", "--weights", weights, *overrides(SMALL),
                                *address)  # fmt: skip  (the CLI's --scheduler)
    assert code == 0, err
    # a store made with another tiling: a one-line error from the worker, nothing written
    code, _, err = run_main(capsys, "auto", image, "--out", tmp_path / "bad.tif", *model, *address,
                            "--store", tmp_path / "dask.zarr", "--tile", "96")  # fmt: skip
    assert code == 2 and re.search(r"error: --store: .*tiling: stored .*embed --overwrite", err[-1])
    assert not (tmp_path / "bad.tif").exists()
    assert here == [], here
    want = tifffile.imread(local[0])
    assert want.max() > 1
    assert np.array_equal(tifffile.imread(spread[0]), want)
    assert np.array_equal(tifffile.imread(tmp_path / "labels" / "big_labels.tif"), want)
    # the workers embedded every tile (each some), each loading the model once, no whole file
    assert len(stats) == 2 and sum(s["tiles"] for s in stats) == n, stats
    assert all(s["tiles"] > 0 and s["tasks"] == 0 for s in stats) and loaded == [1, 1], stats
    assert (first.computed, first.reused, first.unit) == (n, 0, "tile")
    assert f"computed 0 tile(s), reused {n} of {n}" in again
    # complete records under one key, and the very embeddings of the local run
    stores = [tmp_path / name for name in ("local.zarr", "dask.zarr", "emb.zarr")]
    keys = set()
    for store in stores:
        records = _records(store)
        assert sorted(r["index"] for r in records) == list(range(n)), store
        keys |= {r["key"] for r in records}
    assert len(keys) == 1
    ref = zarr.open_array(str(stores[0]), mode="r")[:]
    for store in stores[1:]:
        assert np.array_equal(zarr.open_array(str(store), mode="r")[:], ref), store


def _snapshot(folder):
    """Every file below ``folder`` with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_scheduler_run_never_touches_a_users_store_beside_the_output(data, two_workers, tmp_path,
                                                                     capsys):  # fmt: skip
    """``auto --scheduler`` without ``--store`` on a tiled image: the user's own stores at
    ``<out>.emb.zarr`` (one matching the tiling, one made with another) stay as they were."""
    _, weights = data
    image = tmp_path / "big.tif"
    tifffile.imwrite(image, np.random.default_rng(3).integers(0, 4096, (160, 176), np.uint16))
    model, address = _cli_options(weights), ["--scheduler", two_workers.scheduler.address]
    embed = ["--model", "sam_vit_b", "--weights", weights, *overrides(SMALL)]
    same, other = tmp_path / "same.tif.emb.zarr", tmp_path / "other.tif.emb.zarr"
    for store, tiling in ((same, []), (other, ["--tile", "96"])):
        code, _, err = run_main(capsys, "embed", image, "--out", store, *embed, *tiling)
        assert code == 0, err
    before = {s: _snapshot(s) for s in (same, other)}
    for name in ("same.tif", "other.tif"):
        code, out, err = run_main(capsys, "auto", image, "--out", tmp_path / name, *model,
                                  *address)  # fmt: skip
        assert code == 0 and "wrote 1 label image(s)" in out, err
        assert tifffile.imread(tmp_path / name).max() > 0
    assert {s: _snapshot(s) for s in (same, other)} == before
    assert not any(p.name.endswith(".napari-sam-tiles.zarr") for p in tmp_path.iterdir())
    from napari_sam.batch.files import temporary_store

    assert temporary_store(tmp_path / "x.tif").name == ".x.tif.napari-sam-tiles.zarr"
